import { describe, expect, it } from 'vitest';
import { cborEncode } from '../../protocol/cbor.js';
import { decodeHouseholdKey, encodeHouseholdKey, MAX_SPKI_BYTES } from '../../protocol/household-key.js';
import { topics } from '../../protocol/topics.js';

const spki = Uint8Array.from({ length: 294 }, (_, i) => i & 0xff);

describe('household-key message', () => {
  it('round-trips, and an empty payload is a withdrawal', () => {
    const t = topics.householdKey('hh1');
    const m = decodeHouseholdKey(t, encodeHouseholdKey('hh1', spki));
    expect(m.household).toBe('hh1');
    expect(Uint8Array.from(m.spki!)).toEqual(spki);
    expect(decodeHouseholdKey(t, new Uint8Array(0))).toEqual({ household: 'hh1', spki: null });
  });

  it('refuses other topics, versions, households, and SPKIs empty or oversized', () => {
    const t = topics.householdKey('hh1');
    expect(() => decodeHouseholdKey(topics.household('hh1'), encodeHouseholdKey('hh1', spki))).toThrow(/not a household key topic/);
    expect(() => decodeHouseholdKey(t, cborEncode([2, 'hh1', spki]))).toThrow(/version/);
    expect(() => decodeHouseholdKey(t, cborEncode([1, 'hh2', spki]))).toThrow(/differs from topic/);
    expect(() => decodeHouseholdKey(t, cborEncode([1, 'hh1', new Uint8Array(0)]))).toThrow(/spki/);
    expect(() => decodeHouseholdKey(t, cborEncode([1, 'hh1', new Uint8Array(MAX_SPKI_BYTES + 1)]))).toThrow(/spki/);
    expect(() => decodeHouseholdKey(t, cborEncode([1, 'hh1', 'text']))).toThrow();
    expect(() => decodeHouseholdKey(t, cborEncode([1, 'hh1', spki, 0]))).toThrow();
    expect(() => encodeHouseholdKey('a/b', spki)).toThrow(/household/);
    expect(() => encodeHouseholdKey('hh1', new Uint8Array(MAX_SPKI_BYTES + 1))).toThrow(/spki/);
  });
});
