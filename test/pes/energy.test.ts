import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { attribute, energyState, pruneGaps, type EnergyState } from '../../pes/core/energy.js';
import { Status, type ReadingBatch } from '../../protocol/reading.js';

/** A meter's consecutive batches of 60-s readings from `t0`, register starting at `wh0`. */
function series(t0: number, wh0: number, sizes: number[], energies: number[]): ReadingBatch[] {
  let t = t0;
  let wh = wh0;
  let k = 0;
  return sizes.map((n) => {
    const prevWh = wh;
    const readings = Array.from({ length: n }, () => {
      wh += energies[k++ % energies.length]!;
      const r = { time: t, period: 60, importWh: wh, powerW: 0, status: 0 };
      t += 60;
      return r;
    });
    return { prevWh, readings };
  });
}

function run(batches: ReadingBatch[]) {
  let state: EnergyState | null = null;
  const perTime = new Map<number, number>();
  const rejected: string[] = [];
  for (const b of batches) {
    const a = attribute(state, b);
    state = a.state;
    if (!a.ok) {
      rejected.push(a.reason);
      continue;
    }
    for (const op of a.ops) perTime.set(op.time, (perTime.get(op.time) ?? 0) + op.wh);
  }
  const total = [...perTime.values()].reduce((s, v) => s + v, 0);
  return { state: state!, perTime, total, rejected };
}

const arbSeries = fc
  .record({
    sizes: fc.array(fc.integer({ min: 1, max: 6 }), { minLength: 1, maxLength: 30 }),
    energies: fc.array(fc.integer({ min: 0, max: 5000 }), { minLength: 1, maxLength: 50 }),
    wh0: fc.integer({ min: 0, max: 2 ** 40 }),
  })
  .map(({ sizes, energies, wh0 }) => series(1_700_000_000, wh0, sizes, energies));

describe('energy attribution', () => {
  it('in order: every reading energy goes to its own window, nothing else', () => {
    const b = series(1000 * 60, 500, [3, 2, 4], [1, 2, 3, 4, 5]);
    const { perTime, total, state } = run(b);
    const all = b.flatMap((x) => x.readings);
    expect(total).toBe(state.lastWh - 500);
    let prev = 500;
    for (const r of all) {
      expect(perTime.get(r.time)).toBe(r.importWh - prev);
      prev = r.importWh;
    }
    expect(state.gaps).toEqual([]);
  });

  it('sum over all windows == last register - baseline prevWh, for any arrival order and drops', () => {
    fc.assert(
      fc.property(
        arbSeries.chain((batches) =>
          fc.tuple(fc.constant(batches), fc.shuffledSubarray(batches, { minLength: 1, maxLength: batches.length })),
        ),
        ([, arrived]) => {
          const { state, total, perTime } = run(arrived);
          expect(total).toBe(state.lastWh - state.baseWh);
          // No window is ever left negative (a correction never exceeds the gap energy it corrects).
          for (const v of perTime.values()) expect(v).toBeGreaterThanOrEqual(0);
        },
      ),
      { numRuns: 500 },
    );
  });

  it('every batch delivered, first one first: per-window energy equals the true readings exactly', () => {
    fc.assert(
      fc.property(
        arbSeries.chain((batches) => fc.tuple(fc.constant(batches), fc.shuffledSubarray(batches.slice(1), { minLength: batches.length - 1 }))),
        ([batches, rest]) => {
          const { perTime, rejected, state } = run([batches[0]!, ...rest]);
          expect(rejected).toEqual([]);
          expect(state.gaps).toEqual([]);
          let prev = batches[0]!.prevWh;
          for (const r of batches.flatMap((x) => x.readings)) {
            expect(perTime.get(r.time) ?? 0).toBe(r.importWh - prev);
            prev = r.importWh;
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it('every batch delivered, in any order (first one included): per-window energy equals the true readings exactly', () => {
    fc.assert(
      fc.property(
        arbSeries.chain((batches) => fc.tuple(fc.constant(batches), fc.shuffledSubarray(batches, { minLength: batches.length }))),
        ([batches, arrived]) => {
          const { perTime, rejected, state } = run(arrived);
          expect(rejected).toEqual([]);
          expect(state.gaps).toEqual([]);
          expect(state.baseWh).toBe(batches[0]!.prevWh);
          let prev = batches[0]!.prevWh;
          for (const r of batches.flatMap((x) => x.readings)) {
            expect(perTime.get(r.time) ?? 0).toBe(r.importWh - prev);
            prev = r.importWh;
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it("a meter's first frames overtaken by later ones move the baseline back instead of being lost", () => {
    const [b1, b2, b3] = series(60_000, 100, [2, 2, 2], [10, 20, 30, 40, 50, 60]);
    let a = attribute(null, b3!);
    a = attribute(a.state, b1!);
    // b1's own readings, and the stretch b2 covers (30 + 40) as a gap attributed to b3's first reading.
    expect(a.ok && a.ops).toEqual([
      { time: b1!.readings[0]!.time, wh: 10, exportWh: 0 },
      { time: b1!.readings[1]!.time, wh: 20, exportWh: 0 },
      { time: b3!.readings[0]!.time, wh: 70, exportWh: 0 },
    ]);
    expect(a.ok && a.gapOpened).toBe(true);
    expect(a.state).toMatchObject({ baseTime: b1!.readings[0]!.time, baseWh: 100 });
    a = attribute(a.state, b2!);
    expect(a.ok && a.gapFilled).toBe(true);
    expect(a.state!.gaps).toEqual([]);
    // A batch overlapping the baseline without a gap is still refused.
    expect(attribute(a.state, { prevWh: 100, readings: [{ ...b1!.readings[0]!, period: 180 }] })).toMatchObject({ ok: false, reason: 'timeBackwards' });
  });

  it('a lost frame shifts its energy to the next window; its late arrival moves it back', () => {
    const [b1, b2, b3] = series(60_000, 100, [2, 2, 2], [10, 20, 30, 40, 50, 60]);
    let a = attribute(null, b1!);
    a = attribute(a.state, b3!);
    expect(a.ok && a.gapOpened).toBe(true);
    // Gap energy (30 + 40) goes to the first reading of b3.
    expect(a.ok && a.ops).toEqual([
      { time: b3!.readings[0]!.time, wh: 70, exportWh: 0 },
      { time: b3!.readings[0]!.time, wh: 50, exportWh: 0 },
      { time: b3!.readings[1]!.time, wh: 60, exportWh: 0 },
    ]);
    a = attribute(a.state, b2!);
    expect(a.ok && a.gapFilled).toBe(true);
    expect(a.ok && a.ops).toEqual([
      { time: b2!.readings[0]!.time, wh: 30, exportWh: 0 },
      { time: b2!.readings[1]!.time, wh: 40, exportWh: 0 },
      { time: b3!.readings[0]!.time, wh: -70, exportWh: 0 },
    ]);
    expect(a.state!.gaps).toEqual([]);
  });

  it('a late batch in the middle of a gap splits it; both halves stay attributed to the gap target', () => {
    const b = series(60_000, 0, [1, 1, 1, 1, 1], [5, 6, 7, 8, 9]);
    let a = attribute(null, b[0]!);
    a = attribute(a.state, b[4]!);
    a = attribute(a.state, b[2]!);
    expect(a.ok).toBe(true);
    expect(a.state!.gaps.map((g) => [g.fromTime, g.toTime, g.fromWh, g.toWh, g.at])).toEqual([
      [b[1]!.readings[0]!.time, b[2]!.readings[0]!.time, 5, 11, b[4]!.readings[0]!.time],
      [b[3]!.readings[0]!.time, b[4]!.readings[0]!.time, 18, 26, b[4]!.readings[0]!.time],
    ]);
  });

  it('rejects overlap with processed time, and a register that decreases', () => {
    const [b1, b2] = series(60_000, 100, [2, 2], [1, 2, 3, 4]);
    const s1 = attribute(null, b1!).state!;
    const s2 = attribute(s1, b2!).state!;
    expect(attribute(s2, b1!)).toMatchObject({ ok: false, reason: 'timeBackwards' });
    // Contiguous batch whose prevWh is below the last register: rejected, meter re-based at its end.
    const down: ReadingBatch = { prevWh: 50, readings: [{ time: s2.lastTime, period: 60, importWh: 55, powerW: 0, status: 0 }] };
    const r = attribute(s2, down);
    expect(r).toMatchObject({ ok: false, reason: 'registerDecrease' });
    expect(r.state).toMatchObject({ lastTime: s2.lastTime + 60, lastWh: 55 });
    // The next batch flows again from the new base.
    const next: ReadingBatch = { prevWh: 55, readings: [{ time: s2.lastTime + 60, period: 60, importWh: 57, powerW: 0, status: 0 }] };
    expect(attribute(r.state, next)).toMatchObject({ ok: true, ops: [{ wh: 2, exportWh: 0 }] });
  });

  it('rejects a late batch whose registers do not fit inside the gap', () => {
    const b = series(60_000, 0, [1, 1, 1], [5, 6, 7]);
    const s = attribute(attribute(null, b[0]!).state, b[2]!).state!;
    const bad: ReadingBatch = { prevWh: 4, readings: [{ ...b[1]!.readings[0]! }] };
    expect(attribute(s, bad)).toMatchObject({ ok: false, reason: 'registerDecrease' });
  });

  it('honours REGISTER_RESET inside a batch', () => {
    const b1: ReadingBatch = { prevWh: 900, readings: [{ time: 60, period: 60, importWh: 950, powerW: 0, status: 0 }] };
    const b2: ReadingBatch = {
      prevWh: 950,
      readings: [
        { time: 120, period: 60, importWh: 7, powerW: 0, status: Status.REGISTER_RESET },
        { time: 180, period: 60, importWh: 10, powerW: 0, status: 0 },
      ],
    };
    const a = attribute(attribute(null, b1).state, b2);
    expect(a.ok && a.ops).toEqual([
      { time: 120, wh: 7, exportWh: 0 },
      { time: 180, wh: 3, exportWh: 0 },
    ]);
  });

  it('forgets the oldest gaps beyond the bound and prunes gaps whose windows are gone', () => {
    const b = series(60_000, 0, Array(140).fill(1), [1]);
    let s: EnergyState | null = null;
    let forgotten = 0;
    for (let i = 0; i < b.length; i += 2) {
      const a = attribute(s, b[i]!);
      s = a.state;
      if (a.ok) forgotten += a.gapsForgotten;
    }
    expect(s!.gaps.length).toBe(64);
    expect(forgotten).toBe(69 - 64);
    const cut = s!.gaps[10]!.at;
    expect(pruneGaps(s!, (t) => t < cut).gaps.length).toBe(54);
  });
});

/**
 * A prosumer's consecutive batches: import and export registers from `wh0` and `x0`; while the export register
 * is still 0 a batch is sent in the short form (no export fields), as a meter does before its first export.
 */
function pairSeries(t0: number, wh0: number, x0: number, sizes: number[], energies: number[], exports: number[]): ReadingBatch[] {
  let t = t0;
  let wh = wh0;
  let x = x0;
  let k = 0;
  return sizes.map((n) => {
    const prevWh = wh;
    const prevExportWh = x;
    const readings = Array.from({ length: n }, () => {
      wh += energies[k % energies.length]!;
      x += exports[k++ % exports.length]!;
      const r = { time: t, period: 60, importWh: wh, powerW: 0, status: 0, exportWh: x };
      t += 60;
      return r;
    });
    if (x === 0) return { prevWh, readings: readings.map(({ exportWh: _, ...r }) => r) };
    return { prevWh, prevExportWh, readings };
  });
}

function runPairs(batches: ReadingBatch[]) {
  let state: EnergyState | null = null;
  const imp = new Map<number, number>();
  const exp = new Map<number, number>();
  const rejected: string[] = [];
  for (const b of batches) {
    const a = attribute(state, b);
    state = a.state;
    if (!a.ok) {
      rejected.push(a.reason);
      continue;
    }
    for (const op of a.ops) {
      imp.set(op.time, (imp.get(op.time) ?? 0) + op.wh);
      exp.set(op.time, (exp.get(op.time) ?? 0) + op.exportWh);
    }
  }
  const total = (m: Map<number, number>) => [...m.values()].reduce((s, v) => s + v, 0);
  return { state: state!, imp, exp, importTotal: total(imp), exportTotal: total(exp), rejected };
}

const arbPairs = fc
  .record({
    sizes: fc.array(fc.integer({ min: 1, max: 6 }), { minLength: 1, maxLength: 30 }),
    energies: fc.array(fc.integer({ min: 0, max: 5000 }), { minLength: 1, maxLength: 50 }),
    // Mostly zero (night, cloud), sometimes large (noon sun): the export register often stays 0 for a while.
    exports: fc.array(fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 4000 })), { minLength: 1, maxLength: 50 }),
    wh0: fc.integer({ min: 0, max: 2 ** 40 }),
    x0: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 2 ** 40 })),
  })
  .map(({ sizes, energies, exports, wh0, x0 }) => pairSeries(1_700_000_000, wh0, x0, sizes, energies, exports));

describe('energy attribution of the export register', () => {
  it('import and export each sum exactly to last register - baseline, for any arrival order and drops; no window negative in either', () => {
    fc.assert(
      fc.property(
        arbPairs.chain((batches) => fc.tuple(fc.constant(batches), fc.shuffledSubarray(batches, { minLength: 1, maxLength: batches.length }))),
        ([, arrived]) => {
          const { state, importTotal, exportTotal, imp, exp, rejected } = runPairs(arrived);
          expect(rejected).toEqual(rejected.filter((r) => r === 'timeBackwards'));
          expect(importTotal).toBe(state.lastWh - state.baseWh);
          expect(exportTotal).toBe(state.lastExportWh - state.baseExportWh);
          for (const v of imp.values()) expect(v).toBeGreaterThanOrEqual(0);
          for (const v of exp.values()) expect(v).toBeGreaterThanOrEqual(0);
        },
      ),
      { numRuns: 500 },
    );
  });

  it('every batch delivered, in any order: per-window import and export equal the true readings exactly', () => {
    fc.assert(
      fc.property(
        arbPairs.chain((batches) => fc.tuple(fc.constant(batches), fc.shuffledSubarray(batches, { minLength: batches.length }))),
        ([batches, arrived]) => {
          const { imp, exp, rejected, state } = runPairs(arrived);
          expect(rejected).toEqual([]);
          expect(state.gaps).toEqual([]);
          let prev = batches[0]!.prevWh;
          let prevX = batches[0]!.prevExportWh ?? 0;
          for (const r of batches.flatMap((x) => x.readings)) {
            expect(imp.get(r.time) ?? 0).toBe(r.importWh - prev);
            expect(exp.get(r.time) ?? 0).toBe((r.exportWh ?? 0) - prevX);
            prev = r.importWh;
            prevX = r.exportWh ?? 0;
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it('a lost frame shifts its export to the next window too; its late arrival moves both back', () => {
    const [b1, b2, b3] = pairSeries(60_000, 100, 500, [2, 2, 2], [1, 2, 3, 4, 5, 6], [10, 20, 30, 40, 50, 60]);
    let a = attribute(null, b1!);
    a = attribute(a.state, b3!);
    expect(a.ok && a.ops[0]).toEqual({ time: b3!.readings[0]!.time, wh: 3 + 4, exportWh: 30 + 40 });
    a = attribute(a.state, b2!);
    expect(a.ok && a.gapFilled).toBe(true);
    expect(a.ok && a.ops).toEqual([
      { time: b2!.readings[0]!.time, wh: 3, exportWh: 30 },
      { time: b2!.readings[1]!.time, wh: 4, exportWh: 40 },
      { time: b3!.readings[0]!.time, wh: -7, exportWh: -70 },
    ]);
    expect(a.state!.gaps).toEqual([]);
  });

  it('a gap with export only (import flat, sun on the panels, nobody home) carries the export alone', () => {
    const [b1, b2, b3] = pairSeries(60_000, 100, 0, [1, 1, 1], [0], [0, 25, 0]);
    const a = attribute(attribute(null, b1!).state, b3!);
    expect(a.ok && a.ops).toEqual([
      { time: b3!.readings[0]!.time, wh: 0, exportWh: 25 },
      { time: b3!.readings[0]!.time, wh: 0, exportWh: 0 },
    ]);
    const filled = attribute(a.state, b2!);
    expect(filled.ok && filled.ops).toEqual([
      { time: b2!.readings[0]!.time, wh: 0, exportWh: 25 },
      { time: b3!.readings[0]!.time, wh: 0, exportWh: -25 },
    ]);
  });

  it('an export register that decreases across a boundary or inside a gap is registerDecrease, even with import rising', () => {
    const [b1, b2, b3] = pairSeries(60_000, 100, 500, [2, 2, 2], [5], [5]);
    const s1 = attribute(null, b1!).state!;
    const down: ReadingBatch = { prevWh: s1.lastWh, prevExportWh: s1.lastExportWh - 1, readings: [{ time: s1.lastTime, period: 60, importWh: s1.lastWh + 3, powerW: 0, status: 0, exportWh: s1.lastExportWh + 2 }] };
    const r = attribute(s1, down);
    expect(r).toMatchObject({ ok: false, reason: 'registerDecrease', state: { lastTime: s1.lastTime + 60, lastWh: s1.lastWh + 3, lastExportWh: s1.lastExportWh + 2 } });
    // A short-form batch from a meter whose export register is not 0 says "0": a decrease too.
    const short: ReadingBatch = { prevWh: s1.lastWh, readings: [{ time: s1.lastTime, period: 60, importWh: s1.lastWh + 3, powerW: 0, status: 0 }] };
    expect(attribute(s1, short)).toMatchObject({ ok: false, reason: 'registerDecrease' });
    // Inside a gap: b2's export does not fit between b1's end and b3's start.
    const s3 = attribute(s1, b3!).state!;
    const bad = { ...b2!, prevExportWh: (b2!.prevExportWh ?? 0) - 1 };
    expect(attribute(s3, bad)).toMatchObject({ ok: false, reason: 'registerDecrease' });
    expect(attribute(s3, b2!)).toMatchObject({ ok: true, gapFilled: true });
  });

  it('REGISTER_RESET restarts both registers from 0', () => {
    const b1: ReadingBatch = { prevWh: 900, prevExportWh: 400, readings: [{ time: 60, period: 60, importWh: 950, powerW: 0, status: 0, exportWh: 420 }] };
    const b2: ReadingBatch = {
      prevWh: 950,
      prevExportWh: 420,
      readings: [
        { time: 120, period: 60, importWh: 7, powerW: 0, status: Status.REGISTER_RESET, exportWh: 2 },
        { time: 180, period: 60, importWh: 10, powerW: 0, status: 0, exportWh: 9 },
      ],
    };
    const a = attribute(attribute(null, b1).state, b2);
    expect(a.ok && a.ops).toEqual([
      { time: 120, wh: 7, exportWh: 2 },
      { time: 180, wh: 3, exportWh: 7 },
    ]);
  });

  it('a state persisted before the export register reads with export registers 0', () => {
    const old = { baseTime: 0, baseWh: 5, lastTime: 180, lastWh: 9, gaps: [{ fromTime: 60, toTime: 120, fromWh: 6, toWh: 8, at: 120 }] };
    expect(energyState(old)).toEqual({ ...old, baseExportWh: 0, lastExportWh: 0, gaps: [{ ...old.gaps[0], fromExportWh: 0, toExportWh: 0 }] });
    expect(energyState(null)).toBeNull();
    // A meter that starts exporting after the upgrade: the first long-form batch opens no export gap.
    const next: ReadingBatch = { prevWh: 9, prevExportWh: 0, readings: [{ time: 180, period: 60, importWh: 9, powerW: 0, status: 0, exportWh: 40 }] };
    expect(attribute(energyState(old), next)).toMatchObject({ ok: true, ops: [{ time: 180, wh: 0, exportWh: 40 }] });
  });
});
