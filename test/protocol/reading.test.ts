import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { cborEncode } from '../../protocol/cbor.js';
import { decodeReadingBatch, encodeReadingBatch, hasExport, MAX_READINGS_PER_BATCH, readingEnergies, readingExports, Status, type Reading, type ReadingBatch } from '../../protocol/reading.js';

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
    expect(() => decodeReadingBatch(cborEncode([0]))).toThrow(/reading batch must be an array of 2..3/);
    expect(() => decodeReadingBatch(cborEncode([0, [[1, 2, 3]]]))).toThrow(/readings\[0\] must be an array of 5..5/);
    expect(() => decodeReadingBatch(cborEncode(['0', [[T0, 900, 1, 1, 0]]]))).toThrow(/prevWh/);
    // A long-form batch (three elements) needs six-element readings, and the other way round.
    expect(() => decodeReadingBatch(cborEncode([0, [[T0, 900, 1, 1, 0]], 1]))).toThrow(/readings\[0\] must be an array of 6..6/);
    expect(() => decodeReadingBatch(cborEncode([0, [[T0, 900, 1, 1, 0, 5]]]))).toThrow(/readings\[0\] must be an array of 5..5/);
    expect(() => decodeReadingBatch(cborEncode([0, [[T0, 900, 1, 1, 0, 5], [T0 + 900, 900, 2, 1, 0]], 1]))).toThrow(/readings\[1\] must be an array of 6..6/);
    expect(() => decodeReadingBatch(cborEncode([0, [[T0, 900, 1, 1, 0, 5]], -1]))).toThrow(/prevExportWh/);
    expect(() => decodeReadingBatch(cborEncode([0, [[T0, 900, 1, 1, 0, 5]], 1, 2]))).toThrow(/2..3/);
  });
});

describe('reading batch with the export register (long form)', () => {
  const x = (i: number, importWh: number, exportWh: number, status = 0): Reading => ({ ...r(i, importWh, status), exportWh });
  const rawLong = (b: ReadingBatch) =>
    cborEncode([b.prevWh, b.readings.map((y) => [y.time, y.period, y.importWh, y.powerW, y.status, y.exportWh ?? 0]), b.prevExportWh ?? 0]);

  it('round-trips, and gives import and export energies as separate register differences', () => {
    const b = { prevWh: 1000, prevExportWh: 500, readings: [x(0, 1002, 500), x(1, 1002, 530), x(2, 1010, 531)] };
    const bytes = encodeReadingBatch(b);
    expect(bytes[0]).toBe(0x83); // a three-element array: the long form
    expect(decodeReadingBatch(bytes)).toEqual(b);
    expect(readingEnergies(b)).toEqual([2, 0, 8]);
    expect(readingExports(b)).toEqual([0, 30, 1]);
  });

  it('a meter whose export register is 0 sends the short form, byte for byte the import-only batch', () => {
    const withZeros = { prevWh: 1000, prevExportWh: 0, readings: [x(0, 1002, 0), x(1, 1005, 0)] };
    const importOnly = { prevWh: 1000, readings: [r(0, 1002), r(1, 1005)] };
    expect(hasExport(withZeros)).toBe(false);
    expect(encodeReadingBatch(withZeros)).toEqual(encodeReadingBatch(importOnly));
    expect(encodeReadingBatch(withZeros).length).toBeLessThan(encodeReadingBatch({ prevWh: 1000, prevExportWh: 1, readings: [x(0, 1002, 1), x(1, 1005, 1)] }).length);
    expect(readingExports(decodeReadingBatch(encodeReadingBatch(withZeros)))).toEqual([0, 0]);
    // A long form with zeros is accepted (a receiver is liberal), and means the same.
    expect(readingExports(decodeReadingBatch(rawLong(withZeros)))).toEqual([0, 0]);
  });

  it('once the export register moved, even a batch without new export goes long (its register is not 0)', () => {
    const b = { prevWh: 1000, prevExportWh: 7, readings: [x(0, 1002, 7)] };
    expect(encodeReadingBatch(b)[0]).toBe(0x83);
    expect(readingExports(b)).toEqual([0]);
  });

  it('an export register that decreases is rejected without REGISTER_RESET; with it, both registers restart from 0', () => {
    const dec = { prevWh: 1000, prevExportWh: 50, readings: [x(0, 1005, 60), x(1, 1010, 55)] };
    expect(() => decodeReadingBatch(rawLong(dec))).toThrow(/readings\[1\]\.exportWh decreases without the register-reset flag/);
    expect(() => encodeReadingBatch(dec)).toThrow(TypeError);
    expect(() => decodeReadingBatch(rawLong({ prevWh: 0, prevExportWh: 50, readings: [x(0, 1, 49)] }))).toThrow(/exportWh decreases/);
    const reset = { prevWh: 1000, prevExportWh: 50, readings: [x(0, 1005, 60), x(1, 40, 3, Status.REGISTER_RESET), x(2, 45, 9)] };
    const back = decodeReadingBatch(rawLong(reset));
    expect(readingEnergies(back)).toEqual([5, 40, 5]);
    expect(readingExports(back)).toEqual([10, 3, 6]);
  });

  it('energies of both registers sum exactly to last register minus the starting one', () => {
    fc.assert(
      fc.property(
        fc.nat({ max: 2 ** 40 }),
        fc.nat({ max: 2 ** 40 }),
        fc.array(fc.tuple(fc.nat({ max: 100_000 }), fc.nat({ max: 100_000 })), { minLength: 1, maxLength: MAX_READINGS_PER_BATCH }),
        (prevWh, prevExportWh, deltas) => {
          let imp = prevWh;
          let exp = prevExportWh;
          const b = { prevWh, prevExportWh, readings: deltas.map(([di, de], i) => x(i, (imp += di), (exp += de))) };
          const back = decodeReadingBatch(encodeReadingBatch(b));
          expect(readingEnergies(back)).toEqual(deltas.map((d) => d[0]));
          expect(readingExports(back)).toEqual(deltas.map((d) => d[1]));
        },
      ),
    );
  });
});
