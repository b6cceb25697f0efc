/**
 * The household viewers refuse replayed meter-sealed stream messages (ucs/web/stream-guard.ts, docs/protocol.md
 * §11.5): the pure per-meter window, the browser's opener (ucs/web/seal.ts, its state restored as after a
 * reload) and the Node viewers' opener (ucs/stream.ts `openHouseholdMessage`).
 */
import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { parseMeterStream } from '../../protocol/envelope.js';
import { meterStreamKeySync } from '../../protocol/household-key.js';
import { sealMeterStream } from '../../protocol/meter-seal.js';
import { REPLAY_WINDOW } from '../../protocol/replay-window.js';
import { topics } from '../../protocol/topics.js';
import { openHouseholdMessage, RepeatedMessageError } from '../../ucs/stream.js';
import { generateHouseholdKey, importPrivateKey, keyIdOf } from '../../ucs/web/keys.js';
import { importPesVerifyKey, importStreamKey, OpenError, StreamOpener } from '../../ucs/web/seal.js';
import { MeterStreamGuard } from '../../ucs/web/stream-guard.js';

const T = topics.household('hh1');
const A = Buffer.from('534d520000000001', 'hex');
const B = Buffer.from('534d520000000002', 'hex');
const key = meterStreamKeySync('ABCD-EFGH-JKLM', 'hh1');
const seal = (st: Buffer, ic: number) => sealMeterStream(key, T, st, ic, { meter: st.toString('hex'), prevWh: 1000 + ic, readings: [[1_700_000_000 + ic * 60, 60, 1001 + ic, 60, 0]] });

/** Runs a message through the guard as a viewer does (its tag verified): the verdict, marked when fresh. */
function see(g: MeterStreamGuard, payload: Uint8Array): string {
  const e = parseMeterStream(payload);
  const v = g.check(e);
  if (v === 'fresh') g.mark(e);
  return v;
}

describe('MeterStreamGuard', () => {
  it('accepts each frame counter of a meter once, tells a redelivery from a replay, and keeps meters apart', () => {
    const g = new MeterStreamGuard();
    const a5 = seal(A, 5);
    expect(see(g, a5)).toBe('fresh');
    expect(see(g, a5)).toBe('duplicate'); // the very message again (MQTT redelivery)
    expect(see(g, seal(A, 5))).toBe('replayed'); // counter 5 again, another message
    expect(see(g, seal(A, 9))).toBe('fresh');
    expect(see(g, seal(A, 7))).toBe('fresh'); // older, never seen: a retransmitted frame the PES forwarded late
    expect(see(g, seal(A, 7))).toBe('replayed');
    expect(see(g, seal(B, 1))).toBe('fresh'); // another meter's counters are its own
    expect(g.highest('534d520000000001')).toBe(9);
  });

  it('refuses a counter below the window, however it came (an old message replayed)', () => {
    const g = new MeterStreamGuard();
    const old = seal(A, 10);
    expect(see(g, old)).toBe('fresh');
    expect(see(g, seal(A, 10 + REPLAY_WINDOW))).toBe('fresh');
    expect(see(g, old)).toBe('replayed');
    expect(see(g, seal(A, 9))).toBe('replayed'); // never seen, but at or below highest - W
    expect(see(g, seal(A, 11))).toBe('fresh'); // never seen, the oldest counter still inside the window
  });

  it('survives a restart through its state, and refuses a state that is not one', () => {
    const g = new MeterStreamGuard();
    const m = seal(A, 40);
    see(g, m);
    see(g, seal(A, 38));
    const again = new MeterStreamGuard(structuredClone(g.state())); // as IndexedDB stores and returns it
    expect(see(again, m)).toBe('duplicate');
    expect(see(again, seal(A, 38))).toBe('replayed');
    expect(see(again, seal(A, 39))).toBe('fresh');
    expect(new MeterStreamGuard(undefined).highest('534d520000000001')).toBe(-1);
    expect(() => new MeterStreamGuard([1])).toThrow(/object/);
    expect(() => new MeterStreamGuard({ nometer: g.state()['534d520000000001'] })).toThrow(/names no meter/);
    expect(() => new MeterStreamGuard({ '534d520000000001': { highest: 'x', bitmap: new Uint8Array(128) } })).toThrow(/highest/);
    expect(() => new MeterStreamGuard({ '534d520000000001': { highest: 3, bitmap: new Uint8Array(5) } })).toThrow(/bitmap/);
  });
});

describe('viewers', () => {
  it("the browser's opener drops a replay after the tag, and still refuses it after a reload", async () => {
    const { spki, pkcs8 } = await generateHouseholdKey(2048);
    const pes = await importPesVerifyKey(generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'der' }));
    const streamKey = await importStreamKey(key);
    const opener = new StreamOpener(await importPrivateKey(pkcs8), await keyIdOf(spki), pes, streamKey);
    const reason = async (o: StreamOpener, p: Uint8Array) => ((await o.open(T, p).then(() => null, (e: unknown) => e)) as OpenError | null)?.reason ?? 'opened';
    const first = seal(A, 3);
    expect(await reason(opener, first)).toBe('opened');
    expect(await reason(opener, first)).toBe('duplicate');
    expect(await reason(opener, seal(A, 3))).toBe('replayed');
    const forged = Buffer.from(seal(A, 3));
    forged[forged.length - 1]! ^= 1;
    expect(await reason(opener, forged)).toBe('tampered'); // a forgery is never counted as a replay
    const reloaded = new StreamOpener(await importPrivateKey(pkcs8), await keyIdOf(spki), pes, streamKey, new MeterStreamGuard(structuredClone(opener.guard.state())));
    expect(await reason(reloaded, first)).toBe('duplicate');
    expect(await reason(reloaded, seal(A, 2))).toBe('opened');
    expect(await reason(reloaded, seal(A, 4))).toBe('opened');
  });

  it("the Node viewers' opener (ucs watch, ha-bridge) drops a replay with its guard", () => {
    const g = new MeterStreamGuard();
    const m = seal(A, 8);
    expect(openHouseholdMessage({ streamKey: key }, T, m, undefined, g)).toMatchObject({ meter: '534d520000000001' });
    const verdict = (p: Uint8Array) => {
      try {
        openHouseholdMessage({ streamKey: key }, T, p, undefined, g);
        return 'opened';
      } catch (e) {
        return e instanceof RepeatedMessageError ? e.verdict : (e as Error).message;
      }
    };
    expect(verdict(m)).toBe('duplicate');
    expect(verdict(seal(A, 8))).toBe('replayed');
    expect(verdict(seal(A, 9))).toBe('opened');
  });
});
