import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { cborEncode } from '../../protocol/cbor.js';
import { bindingKey, bindingKeySync, decodeHouseholdKey, MAX_SPKI_BYTES, normaliseCode } from '../../protocol/household-key.js';
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
