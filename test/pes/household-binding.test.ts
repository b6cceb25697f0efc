/**
 * Security finding 1: with only the household app's broker password, a retained key message for a household
 * that never registered made the PES seal that household's stream to the attacker's key. Now only the holder
 * of the activation code (first key) or of the bound key (a rotation) can bind a key, and the new key must
 * sign the binding; the binding survives a restart and never rolls back.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { createPes } from '../../pes/pes.js';
import { cborEncode } from '../../protocol/cbor.js';
import { keyId, openStream } from '../../protocol/seal.js';
import { topics } from '../../protocol/topics.js';
import { activationMessage, rotationMessage, spkiOf } from '../protocol/binding-fixture.js';
import { makeFleet, uplink, type SimMeter } from './helpers.js';

const T0 = 1_700_000_000 - (1_700_000_000 % 86400);
const rsa = () => generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
const dir = mkdtempSync(join(tmpdir(), 'pes-binding-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('household key binding', () => {
  it('refuses what a broker password alone can publish, accepts the activation code, then only rotations by the bound key', async () => {
    const f = await makeFleet({ n: 2, start: T0 });
    const pes = createPes({ keys: f.keys, intervalS: 900, latenessS: 60, k: 1, logger: pino({ level: 'silent' }) });
    const t = topics.householdKey('hh1');
    const attacker = rsa();
    const household = rsa();

    // The probe's attack: the old, proof-less message, and the new one with a guessed code.
    expect(pes.householdKey(t, cborEncode([1, 'hh1', spkiOf(attacker)]))).toBe(false);
    expect(pes.householdKey(t, activationMessage('hh1', new Uint8Array(randomBytes(32)), attacker))).toBe(false);
    // A key the publisher does not hold (proof of possession by another key) is refused too.
    expect(pes.householdKey(t, activationMessage('hh1', f.bindingKeys.get('hh1')!, attacker, 1_765_000_000, spkiOf(household)))).toBe(false);
    // Another household's code does not bind this one.
    expect(pes.householdKey(t, activationMessage('hh1', f.bindingKeys.get('hh0')!, attacker))).toBe(false);
    expect(pes.counters).toMatchObject({ badHouseholdKey: 4, householdKeys: 0 });

    // The household, with its code.
    expect(pes.householdKey(t, activationMessage('hh1', f.bindingKeys.get('hh1')!, household, 1_765_000_000))).toBe(true);
    // The code works once: afterwards a code holder cannot take the stream over...
    expect(pes.householdKey(t, activationMessage('hh1', f.bindingKeys.get('hh1')!, attacker, 1_765_000_100))).toBe(false);
    // ...nor can a rotation signed by any key but the bound one, nor a replayed or older binding.
    expect(pes.householdKey(t, rotationMessage('hh1', attacker, attacker, 1_765_000_200))).toBe(false);
    expect(pes.householdKey(t, activationMessage('hh1', f.bindingKeys.get('hh1')!, household, 1_765_000_000))).toBe(false);
    const next = rsa();
    expect(pes.householdKey(t, rotationMessage('hh1', household, next, 1_765_000_000))).toBe(false); // not newer
    expect(pes.householdKey(t, rotationMessage('hh1', household, next, 1_765_000_300))).toBe(true);
    expect(pes.counters).toMatchObject({ badHouseholdKey: 8, householdKeys: 2 });

    // The stream goes to the rotated key only.
    const m = f.meters[1] as SimMeter;
    pes.ingestUplink(uplink([m.frame(m.batch(2))]));
    await pes.idle();
    const s = pes.sent.filter((x) => x.kind === 'household');
    expect(s).toHaveLength(1);
    expect(() => openStream(household, f.pesVerify, s[0]!.topic, s[0]!.payload)).toThrow();
    expect(openStream(next, f.pesVerify, s[0]!.topic, s[0]!.payload)).toMatchObject({ meter: m.id });
    await pes.close();
  });

  it('keeps the binding across a restart: the used code and an older message stay refused', async () => {
    const f = await makeFleet({ n: 1, start: T0 });
    const stateFile = join(dir, 'pes.sqlite');
    const opts = { keys: f.keys, stateFile, intervalS: 900, latenessS: 60, k: 1, logger: pino({ level: 'silent' }) };
    const t = topics.householdKey('hh0');
    const first = rsa();
    const second = rsa();
    const a = createPes(opts);
    expect(a.householdKey(t, activationMessage('hh0', f.bindingKeys.get('hh0')!, first, 1_765_000_000))).toBe(true);
    expect(a.householdKey(t, rotationMessage('hh0', first, second, 1_765_000_500))).toBe(true);
    a.commit();
    await a.close();

    const b = createPes(opts);
    expect(b.householdKey(t, activationMessage('hh0', f.bindingKeys.get('hh0')!, rsa(), 1_765_001_000))).toBe(false);
    expect(b.householdKey(t, rotationMessage('hh0', first, rsa(), 1_765_001_000))).toBe(false); // `first` is no longer bound
    const third = rsa();
    expect(b.householdKey(t, rotationMessage('hh0', second, third, 1_765_001_000))).toBe(true);
    expect(keyId(third).length).toBe(8);
    await b.close();
  });
});
