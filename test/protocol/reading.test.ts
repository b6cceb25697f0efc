import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { cborEncode } from '../../protocol/cbor.js';
import { decodeReadingBatch, encodeReadingBatch, MAX_READINGS_PER_BATCH, readingEnergies, Status, type Reading, type ReadingBatch } from '../../protocol/reading.js';

const T0 = 1_699_999_200;
const r = (i: number, importWh: number, status = 0, period = 900): Reading => ({ time: T0 + i * 900, period, importWh, powerW: 100, status });
/** Encodes without the encoder's checks, as a faulty or hostile meter could. */
const raw = (b: ReadingBatch) => cborEncode([b.prevWh, b.readings.map((x) => [x.time, x.period, x.importWh, x.powerW, x.status])]);

describe('reading batch', () => {
  it('round-trips and gives energies as register differences', () => {
    const b = { prevWh: 1000, readings: [r(0, 1002), r(1, 1002), r(2, 1010, Status.POWER_FAILURE)] };
    expect(decodeReadingBatch(encodeReadingBatch(b))).toEqual(b);
    expect(readingEnergies(b)).toEqual([2, 0, 8]);
  });

  it('registers of 2^32 Wh and more travel as CBOR integers and come back exact', () => {
    const b = { prevWh: 2 ** 40, readings: [r(0, 2 ** 40 + 7), r(1, 2 ** 48)] };
    const bytes = encodeReadingBatch(b);
    expect(bytes.subarray(0, 10).toString('hex')).toBe('82' + '1b0000010000000000'); // prevWh as a CBOR integer, not a float64
    expect(decodeReadingBatch(bytes)).toEqual(b);
    expect(readingEnergies(b)).toEqual([7, 2 ** 48 - 2 ** 40 - 7]);
  });

  it('energies sum exactly to last register minus prevWh when there is no reset', () => {
    fc.assert(
      fc.property(fc.nat({ max: 2 ** 40 }), fc.array(fc.nat({ max: 100_000 }), { minLength: 1, maxLength: MAX_READINGS_PER_BATCH }), (prevWh, deltas) => {
        let reg = prevWh;
        const b = { prevWh, readings: deltas.map((d, i) => r(i, (reg += d))) };
        const back = decodeReadingBatch(encodeReadingBatch(b));
        expect(readingEnergies(back)).toEqual(deltas);
      }),
    );
  });

  it('a decreasing register is rejected without REGISTER_RESET and accepted with it', () => {
    const dec = { prevWh: 1000, readings: [r(0, 1005), r(1, 40)] };
    expect(() => decodeReadingBatch(raw(dec))).toThrow(/readings\[1\]\.importWh decreases without the register-reset flag/);
    expect(() => encodeReadingBatch(dec)).toThrow(TypeError);
    expect(() => decodeReadingBatch(raw({ prevWh: 1000, readings: [r(0, 999)] }))).toThrow(/decreases/);
    const reset = { prevWh: 1000, readings: [r(0, 1005), r(1, 40, Status.REGISTER_RESET), r(2, 45)] };
    expect(readingEnergies(decodeReadingBatch(raw(reset)))).toEqual([5, 40, 5]);
  });

  it('rejects time going backwards (overlapping periods) but allows gaps', () => {
    expect(() => decodeReadingBatch(raw({ prevWh: 0, readings: [r(1, 1), r(0, 2)] }))).toThrow(/time goes backwards/);
    const overlap = { prevWh: 0, readings: [r(0, 1), { ...r(1, 2), time: T0 + 899 }] };
    expect(() => decodeReadingBatch(raw(overlap))).toThrow(/backwards/);
    expect(decodeReadingBatch(raw({ prevWh: 0, readings: [r(0, 1), r(5, 2)] })).readings).toHaveLength(2);
  });

  it('rejects unknown status bits, period 0 or over a day, and out-of-range or non-integer fields', () => {
    const bad: [string, ReadingBatch][] = [
      ['unknown status', { prevWh: 0, readings: [r(0, 1, 0x08)] }],
      ['status 0x80', { prevWh: 0, readings: [r(0, 1, 0x80)] }],
      ['period 0', { prevWh: 0, readings: [r(0, 1, 0, 0)] }],
      ['period > 1 day', { prevWh: 0, readings: [r(0, 1, 0, 86_401)] }],
      ['negative power', { prevWh: 0, readings: [{ ...r(0, 1), powerW: -1 }] }],
      ['fractional energy', { prevWh: 0, readings: [r(0, 1.5)] }],
      ['register beyond 2^48', { prevWh: 0, readings: [r(0, 2 ** 48 + 1)] }],
      ['time beyond 2^32 - 1', { prevWh: 0, readings: [{ ...r(0, 1), time: 2 ** 32 }] }],
      ['no readings', { prevWh: 0, readings: [] }],
      ['too many readings', { prevWh: 0, readings: Array.from({ length: MAX_READINGS_PER_BATCH + 1 }, (_, i) => r(i, i)) }],
    ];
    for (const [what, b] of bad) {
      expect(() => decodeReadingBatch(raw(b)), what).toThrow(TypeError);
      expect(() => encodeReadingBatch(b), what).toThrow(TypeError);
    }
  });

  it('rejects structurally wrong CBOR with an error naming the field', () => {
    expect(() => decodeReadingBatch(cborEncode([0]))).toThrow(/reading batch must be an array of 2..2/);
    expect(() => decodeReadingBatch(cborEncode([0, [[1, 2, 3]]]))).toThrow(/readings\[0\] must be an array of 5..5/);
    expect(() => decodeReadingBatch(cborEncode(['0', [[T0, 900, 1, 1, 0]]]))).toThrow(/prevWh/);
    expect(() => decodeReadingBatch(cborEncode([0, [[T0, 900, 1, 1, 0]], 1]))).toThrow(TypeError);
  });
});
