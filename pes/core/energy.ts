/**
 * Energy attribution: turns each meter's reading batches into signed energy contributions ("ops") to the
 * window of a given time, such that, for any arrival order and any loss pattern,
 *
 *   sum of all ops of a meter == (register at the end of the latest processed period) - (baseline prevWh)
 *
 * exactly (no register reset), without keeping any plaintext history. Per meter we keep only the baseline,
 * the end of the latest processed period (`lastTime`, `lastWh`) and a bounded list of unfilled gaps.
 *
 * - The first batch ever seen sets the baseline; a batch from before it (the meter's first frames, overtaken)
 *   moves the baseline back to its own start, the stretch in between becoming a gap as below.
 * - A batch starting at or after `lastTime` is preceded by a gap `[lastTime, start)` whose energy
 *   (`prevWh - lastWh`) goes to the window of the batch's first reading ("a frame lost for good shifts its
 *   energy to the next interval"); a gap of positive length is remembered.
 * - A batch that arrives late and lies inside a remembered gap is folded into its own windows, and the gap's
 *   attribution is corrected by an op of `e(left) + e(right) - e(gap)` at the gap's target time (normally the
 *   negative of the batch's energy). The gap shrinks or splits; the remainders stay attributed where they were.
 * - A batch overlapping processed time (or the baseline) without a matching gap is rejected (`timeBackwards`).
 * - A register that decreases across a gap, or at a contiguous boundary, is rejected (`registerDecrease`):
 *   the batch is not folded, and the meter is re-based at the batch's end so that its following batches flow
 *   again (a meter exchanged or reset without the flag would otherwise be stuck for ever). The energy of the
 *   rejected stretch is not attributed anywhere; the counter and the log line say so.
 * Readings inside a batch obey the REGISTER_RESET flag (see protocol/reading.ts).
 *
 * The export register (1-0:2.8.0, protocol v2) runs through the same rules beside the import register: every
 * op carries both energies, a gap both register differences, and either register decreasing is a
 * `registerDecrease`; so the identity above holds for import and for export separately. A short-form batch
 * has an export register of 0 throughout.
 * @module
 */
import { readingEnergies, readingExports, type ReadingBatch } from '../../protocol/reading.js';

/**
 * A stretch of time with no processed readings, whose energy (import and export) was attributed to the
 * windows of `at`.
 */
export interface Gap {
  fromTime: number;
  toTime: number;
  fromWh: number;
  toWh: number;
  /** Export register at `fromTime` and at `toTime`. */
  fromExportWh: number;
  toExportWh: number;
  /** Start time of the reading whose windows received the gap's energy. */
  at: number;
}

/** Per meter: the baseline and the latest processed end, each with both registers, and the open gaps. */
export interface EnergyState {
  baseTime: number;
  baseWh: number;
  baseExportWh: number;
  lastTime: number;
  lastWh: number;
  lastExportWh: number;
  /** Sorted by `fromTime`, disjoint, all before `lastTime`. */
  gaps: Gap[];
}

/** One signed contribution of imported (`wh`) and exported (`exportWh`) energy to the windows of time `time` (a reading's start). */
export interface EnergyOp {
  time: number;
  wh: number;
  exportWh: number;
}

export type Attribution =
  | { ok: true; state: EnergyState; ops: EnergyOp[]; gapOpened: boolean; gapFilled: boolean; gapsForgotten: number }
  | { ok: false; reason: 'timeBackwards' | 'registerDecrease'; state: EnergyState | null };

/** Gaps remembered per meter; older ones are forgotten (a late batch inside one is then `timeBackwards`). */
export const MAX_GAPS = 64;

const batchStart = (b: ReadingBatch): number => b.readings[0]!.time;
function batchEnd(b: ReadingBatch): number {
  const last = b.readings[b.readings.length - 1]!;
  return last.time + last.period;
}
/** The batch's registers at its end: import, export. */
function lastRegisters(b: ReadingBatch): [number, number] {
  const last = b.readings[b.readings.length - 1]!;
  return [last.importWh, last.exportWh ?? 0];
}

function readingOps(b: ReadingBatch): EnergyOp[] {
  const e = readingEnergies(b);
  const x = readingExports(b);
  return b.readings.map((r, i) => ({ time: r.time, wh: e[i]!, exportWh: x[i]! }));
}

/**
 * A state as persisted by any version: a state file from before the export register has no export fields,
 * and its meters' export registers were 0 (version 1 batches carry none), so they read as 0.
 * @example
 * ```ts
 * energyState({ baseTime: 0, baseWh: 5, lastTime: 60, lastWh: 9, gaps: [] }).lastExportWh; // 0
 * ```
 */
export function energyState(e: unknown): EnergyState | null {
  if (e === null || e === undefined) return null;
  const s = e as Partial<EnergyState> & Pick<EnergyState, 'baseTime' | 'baseWh' | 'lastTime' | 'lastWh' | 'gaps'>;
  return {
    ...s,
    baseExportWh: s.baseExportWh ?? 0,
    lastExportWh: s.lastExportWh ?? 0,
    gaps: s.gaps.map((g) => ({ ...g, fromExportWh: g.fromExportWh ?? 0, toExportWh: g.toExportWh ?? 0 })),
  };
}

/**
 * Attributes one (validated) batch given the meter's state (null for a meter never seen). Pure: returns the
 * new state and the ops; the caller folds the ops and keeps the state. Import and export go through the same
 * rules side by side: a gap carries both, a late fill moves both back, and a decrease of either register is
 * `registerDecrease`.
 * @example
 * ```ts
 * const a = attribute(state, batch);
 * if (a.ok) for (const op of a.ops) fold(op.time, op.wh, op.exportWh);
 * ```
 */
export function attribute(state: EnergyState | null, batch: ReadingBatch): Attribution {
  const start = batchStart(batch);
  const end = batchEnd(batch);
  const [last, lastX] = lastRegisters(batch);
  const prevX = batch.prevExportWh ?? 0;
  if (state === null) {
    return {
      ok: true,
      state: { baseTime: start, baseWh: batch.prevWh, baseExportWh: prevX, lastTime: end, lastWh: last, lastExportWh: lastX, gaps: [] },
      ops: readingOps(batch),
      gapOpened: false,
      gapFilled: false,
      gapsForgotten: 0,
    };
  }
  if (start >= state.lastTime) {
    const gapWh = batch.prevWh - state.lastWh;
    const gapX = prevX - state.lastExportWh;
    if (gapWh < 0 || gapX < 0) {
      return { ok: false, reason: 'registerDecrease', state: { ...state, lastTime: end, lastWh: last, lastExportWh: lastX } };
    }
    const ops = readingOps(batch);
    const gaps = state.gaps.slice();
    const gapOpened = start > state.lastTime;
    if (gapWh !== 0 || gapX !== 0) ops.unshift({ time: start, wh: gapWh, exportWh: gapX });
    if (gapOpened) {
      gaps.push({ fromTime: state.lastTime, toTime: start, fromWh: state.lastWh, toWh: batch.prevWh, fromExportWh: state.lastExportWh, toExportWh: prevX, at: start });
    }
    const gapsForgotten = Math.max(0, gaps.length - MAX_GAPS);
    if (gapsForgotten) gaps.splice(0, gapsForgotten);
    return { ok: true, state: { ...state, lastTime: end, lastWh: last, lastExportWh: lastX, gaps }, ops, gapOpened, gapFilled: false, gapsForgotten };
  }
  if (end <= state.baseTime) return extendBaseline(state, batch, start, end, last, lastX);
  const i = state.gaps.findIndex((g) => g.fromTime <= start && end <= g.toTime);
  if (i < 0) return { ok: false, reason: 'timeBackwards', state };
  const g = state.gaps[i]!;
  const left = batch.prevWh - g.fromWh;
  const right = g.toWh - last;
  const leftX = prevX - g.fromExportWh;
  const rightX = g.toExportWh - lastX;
  if (left < 0 || right < 0 || leftX < 0 || rightX < 0) return { ok: false, reason: 'registerDecrease', state };
  const ops = readingOps(batch);
  const correction = left + right - (g.toWh - g.fromWh);
  const correctionX = leftX + rightX - (g.toExportWh - g.fromExportWh);
  if (correction !== 0 || correctionX !== 0) ops.push({ time: g.at, wh: correction, exportWh: correctionX });
  const parts: Gap[] = [];
  if (start > g.fromTime) parts.push({ ...g, toTime: start, toWh: batch.prevWh, toExportWh: prevX });
  if (end < g.toTime) parts.push({ ...g, fromTime: end, fromWh: last, fromExportWh: lastX });
  const gaps = state.gaps.slice(0, i).concat(parts, state.gaps.slice(i + 1));
  return { ok: true, state: { ...state, gaps }, ops, gapOpened: false, gapFilled: true, gapsForgotten: 0 };
}

/**
 * A batch that ends at or before the baseline: the meter's first frames overtaken by later ones (sent
 * before its gateway was up, or lost to line noise and retransmitted). Their readings were never counted,
 * so they are folded into their own windows and the PES's knowledge now starts at the batch; the stretch
 * between the batch and the old baseline, if any, is a gap like any lost frame: its energy goes to the old
 * baseline's first reading, and a batch filling it later moves it back.
 */
function extendBaseline(state: EnergyState, batch: ReadingBatch, start: number, end: number, last: number, lastX: number): Attribution {
  const gapWh = state.baseWh - last;
  const gapX = state.baseExportWh - lastX;
  if (gapWh < 0 || gapX < 0) return { ok: false, reason: 'registerDecrease', state };
  const ops = readingOps(batch);
  if (gapWh !== 0 || gapX !== 0) ops.push({ time: state.baseTime, wh: gapWh, exportWh: gapX });
  const gapOpened = end < state.baseTime;
  const gap: Gap = { fromTime: end, toTime: state.baseTime, fromWh: last, toWh: state.baseWh, fromExportWh: lastX, toExportWh: state.baseExportWh, at: state.baseTime };
  const gaps = gapOpened ? [gap, ...state.gaps] : state.gaps.slice();
  const gapsForgotten = Math.max(0, gaps.length - MAX_GAPS);
  if (gapsForgotten) gaps.splice(0, gapsForgotten);
  return { ok: true, state: { ...state, baseTime: start, baseWh: batch.prevWh, baseExportWh: batch.prevExportWh ?? 0, gaps }, ops, gapOpened, gapFilled: false, gapsForgotten };
}

/**
 * Drops gaps whose target windows are gone (`gone(at)` true): a batch inside them could no longer be
 * folded anyway, since its own windows are older still.
 * @example
 * ```ts
 * state = pruneGaps(state, (t) => t < horizon);
 * ```
 */
export function pruneGaps(state: EnergyState, gone: (at: number) => boolean): EnergyState {
  if (state.gaps.length === 0 || !gone(state.gaps[0]!.at)) return state;
  return { ...state, gaps: state.gaps.filter((g) => !gone(g.at)) };
}
