import { generateKeyPairSync, hkdfSync, scryptSync } from 'node:crypto';
import { hkdf } from '@noble/hashes/hkdf.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { describe, expect, it } from 'vitest';
import { cborEncode } from '../../protocol/cbor.js';
import {
  ACTIVATION_DERIVATION,
  ACTIVATION_INFO,
  activationDerivation,
  activationMasterInputs,
  activationSecrets,
  activationSecretsSync,
  activationVerifier,
  bindingKey,
  bindingKeySync,
  decodeHouseholdKey,
  expandActivationMaster,
  MAX_SPKI_BYTES,
  meterStreamKey,
  normaliseCode,
} from '../../protocol/household-key.js';
import { topics } from '../../protocol/topics.js';
import { activationMessage, rotationMessage, spkiOf } from './binding-fixture.js';

const key = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
const t = topics.householdKey('hh1');

describe('household-key message', () => {
  it('round-trips a binding by activation and by rotation, and an empty payload is a withdrawal', () => {
    const a = decodeHouseholdKey(t, activationMessage('hh1', 'ABCD-EFGH-JKLM', key, 100));
    expect(a).toMatchObject({ household: 'hh1', boundAt: 100, auth: { type: 'activation' } });
    expect(Buffer.from(a.spki!)).toEqual(spkiOf(key));
    expect(decodeHouseholdKey(t, rotationMessage('hh1', key, key, 101))).toMatchObject({ boundAt: 101, auth: { type: 'rotation' } });
    expect(decodeHouseholdKey(t, new Uint8Array(0))).toEqual({ household: 'hh1', spki: null });
  });

  it('refuses version 1 (no proof), other topics and households, and malformed fields', () => {
    const spki = spkiOf(key);
    const good = activationMessage('hh1', 'ABCD-EFGH-JKLM', key, 100);
    expect(() => decodeHouseholdKey(t, cborEncode([1, 'hh1', spki]))).toThrow(/version/);
    expect(() => decodeHouseholdKey(topics.household('hh1'), good)).toThrow(/not a household key topic/);
    expect(() => decodeHouseholdKey(topics.householdKey('hh2'), good)).toThrow(/differs from topic/);
    const base = [2, 'hh1', spki, 100, [1, new Uint8Array(32)], new Uint8Array(256)];
    const variant = (i: number, v: unknown) => cborEncode(base.map((x, j) => (j === i ? v : x)));
    expect(() => decodeHouseholdKey(t, variant(2, new Uint8Array(0)))).toThrow(/spki/);
    expect(() => decodeHouseholdKey(t, variant(2, new Uint8Array(MAX_SPKI_BYTES + 1)))).toThrow(/spki/);
    expect(() => decodeHouseholdKey(t, variant(3, -1))).toThrow(/boundAt/);
    expect(() => decodeHouseholdKey(t, variant(4, [3, new Uint8Array(32)]))).toThrow(/auth type/);
    expect(() => decodeHouseholdKey(t, variant(4, [1, new Uint8Array(31)]))).toThrow(/mac/);
    expect(() => decodeHouseholdKey(t, variant(5, new Uint8Array(0)))).toThrow(/possession/);
    expect(() => decodeHouseholdKey(t, cborEncode(base.slice(0, 5)))).toThrow(/6 elements/);
  });

  it('derives the binding key from the normalised code, per household, the same way sync and async', async () => {
    expect(normaliseCode(' abcd efgh-jklm ')).toBe('ABCD-EFGH-JKLM');
    expect(normaliseCode('abc')).toBeNull();
    const k = bindingKeySync('ABCD-EFGH-JKLM', 'hh1');
    expect(Buffer.from(await bindingKey('abcd efgh jklm', 'hh1'))).toEqual(Buffer.from(k));
    expect(Buffer.from(bindingKeySync('ABCD-EFGH-JKLM', 'hh2'))).not.toEqual(Buffer.from(k));
    expect(() => bindingKeySync('short', 'hh1')).toThrow(/12 letters/);
  });
});

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const all = (s: { verifier: Uint8Array; binding: Uint8Array; stream: Uint8Array }) => [s.verifier, s.binding, s.stream].map(hex);

describe('the values an activation code gives, by derivation', () => {
  it('HKDF-SHA-256 as used here gives RFC 5869 test case 1', () => {
    const ikm = new Uint8Array(22).fill(0x0b);
    const salt = Uint8Array.from({ length: 13 }, (_, i) => i);
    const info = Uint8Array.from({ length: 10 }, (_, i) => 0xf0 + i);
    expect(hex(hkdf(sha256, ikm, salt, info, 42))).toBe('3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865');
  });

  it('derivation 2: one scrypt under smartermeter/activation/v2/<hh>, then HKDF per label, as node:crypto computes it', () => {
    const master = scryptSync('ABCD-EFGH-JKLM', 'smartermeter/activation/v2/hh1', 32, { N: 1 << 14, r: 8, p: 1 });
    const label = (info: string) => hex(new Uint8Array(hkdfSync('sha256', master, Buffer.alloc(0), info, 32)));
    const expected = [label('smartermeter/activation/v2/ucs-verifier'), label('smartermeter/activation/v2/binding'), label('smartermeter/activation/v2/e2e-stream')];
    expect(Object.values(ACTIVATION_INFO)).toEqual(['smartermeter/activation/v2/ucs-verifier', 'smartermeter/activation/v2/binding', 'smartermeter/activation/v2/e2e-stream']);
    expect(all(activationSecretsSync(' abcd efgh jklm', 'hh1', 2))).toEqual(expected); // the typed code is normalised
    const { code, salt } = activationMasterInputs('abcd-efgh-jklm', 'hh1');
    expect([Buffer.from(code).toString(), Buffer.from(salt).toString()]).toEqual(['ABCD-EFGH-JKLM', 'smartermeter/activation/v2/hh1']);
    expect(new Set(expected).size).toBe(3);
    expect(ACTIVATION_DERIVATION).toBe(2);
  });

  it('derivation 2 async equals sync, differs per household and code, and from derivation 1', async () => {
    const v2 = all(activationSecretsSync('ABCD-EFGH-JKLM', 'hh1', 2));
    expect(all(await activationSecrets('ABCD-EFGH-JKLM', 'hh1', 2))).toEqual(v2);
    const others = [activationSecretsSync('ABCD-EFGH-JKLM', 'hh2', 2), activationSecretsSync('ABCD-EFGH-JKLN', 'hh1', 2), activationSecretsSync('ABCD-EFGH-JKLM', 'hh1', 1)].flatMap(all);
    for (const v of v2) expect(others).not.toContain(v);
  });

  it('derivation 1 is the three scrypts it always was (the vectors of docs/protocol.md are derivation 1)', async () => {
    const v1 = await activationSecrets('ABCD-EFGH-JKLM', 'hh1', 1);
    expect(all(v1)).toEqual([await activationVerifier('ABCD-EFGH-JKLM', 'hh1'), await bindingKey('ABCD-EFGH-JKLM', 'hh1'), await meterStreamKey('ABCD-EFGH-JKLM', 'hh1')].map(hex));
    expect(all(activationSecretsSync('abcd efgh jklm', 'hh1', 1))).toEqual(all(v1));
    expect(hex(v1.verifier)).toBe(hex(scryptSync('ABCD-EFGH-JKLM', 'smartermeter/ucs-activation/v1/hh1', 32, { N: 1 << 14, r: 8, p: 1 })));
  });

  it('zeroes the master after the HKDF step, also when refusing it', () => {
    const { code, salt } = activationMasterInputs('ABCD-EFGH-JKLM', 'hh1');
    const master = new Uint8Array(scryptSync(code, salt, 32, { N: 1 << 14, r: 8, p: 1 }));
    const s = expandActivationMaster(master);
    expect(master).toEqual(new Uint8Array(32));
    expect(all(s)).toEqual(all(activationSecretsSync('ABCD-EFGH-JKLM', 'hh1', 2)));
    const short = new Uint8Array(31).fill(7);
    expect(() => expandActivationMaster(short)).toThrow(/32 bytes/);
    expect(short).toEqual(new Uint8Array(31));
    expect(() => expandActivationMaster('x' as unknown as Uint8Array)).toThrow(/32 bytes/);
  });

  it('refuses an unknown derivation, a malformed code and a malformed household', async () => {
    for (const v of [0, 3, '2', null, undefined, 2.5]) expect(() => activationDerivation(v)).toThrow(/must be 1 or 2/);
    expect(activationDerivation(1)).toBe(1);
    expect(() => activationSecretsSync('ABCD-EFGH-JKLM', 'hh1', 3 as 2)).toThrow(/must be 1 or 2/);
    await expect(activationSecrets('ABCD-EFGH-JKL', 'hh1', 2)).rejects.toThrow(/12 letters/);
    expect(() => activationSecretsSync('ABCD-EFGH-JKLM', 'a/b', 2)).toThrow(TypeError);
  });
});
