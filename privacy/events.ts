/**
 * The appliance-event attack: the edge-detection stage of Hart's non-intrusive load monitoring (G. W. Hart,
 * "Nonintrusive appliance load monitoring", Proc. IEEE 80(12), 1992): a step in power of at least a threshold
 * between two consecutive samples is an appliance switching on (up) or off (down). Scored like NILMTK's event
 * metrics: detections matched one to one to true on/off edges of the same direction within a tolerance, F1.
 * @module
 */
import { mulberry32 } from '../firmware/sources/synthetic.js';
import type { GroundTruth } from '../firmware/sources/synthetic.js';

/**
 * Step that counts as a large appliance switching, W. 400 W is above every small load of the synthetic model
 * (fridge 80-129 W, lighting 60-239 W, base noise +-15 W) and at or below every large one (washer 400-699 W, kettle
 * 1.8-3 kW, oven 2-2.6 kW); Hart's own detector used a fixed step threshold of this kind.
 */
export const HART_THRESHOLD_W = 400;

/** One switching event: time (Unix s) and direction. */
export interface ApplianceEvent {
  time: number;
  on: boolean;
}

/** F1 with its parts. */
export interface EventScore {
  f1: number;
  precision: number;
  recall: number;
  detected: number;
  truth: number;
}

/**
 * Steps of at least `thresholdW` between consecutive values (`values[i]` covers `[start + i*stepS, +stepS)`):
 * an event at the boundary between the two. NaN values (no sample) break the chain.
 * @example
 * ```ts
 * hartEvents([100, 2600, 2600, 100], 0, 60); // [{ time: 60, on: true }, { time: 180, on: false }]
 * ```
 */
export function hartEvents(values: ArrayLike<number>, start: number, stepS: number, thresholdW = HART_THRESHOLD_W): ApplianceEvent[] {
  const out: ApplianceEvent[] = [];
  for (let i = 1; i < values.length; i++) {
    const d = values[i]! - values[i - 1]!;
    if (Number.isNaN(d)) continue;
    if (Math.abs(d) >= thresholdW) out.push({ time: start + i * stepS, on: d > 0 });
  }
  return out;
}

/**
 * The true events: on and off edges of every appliance of at least `thresholdW`, within `[from, to)`.
 * @example
 * ```ts
 * truthEvents(loadTruth('apt-01.truth.json')).length;
 * ```
 */
export function truthEvents(truth: GroundTruth, thresholdW = HART_THRESHOLD_W, from = truth.start, to = truth.end): ApplianceEvent[] {
  const out: ApplianceEvent[] = [];
  for (const a of truth.appliances) {
    if (a.powerW < thresholdW) continue;
    if (a.start > from && a.start < to) out.push({ time: a.start, on: true });
    if (a.end > from && a.end < to) out.push({ time: a.end, on: false });
  }
  return out.sort((x, y) => x.time - y.time);
}

/**
 * Matches detections to true events (same direction, |dt| <= toleranceS, each used once, nearest first) and
 * scores them. An empty detection set scores F1 0 (or 1 if there was nothing to find).
 * @example
 * ```ts
 * scoreEvents([{ time: 60, on: true }], [{ time: 61, on: true }], 60).f1; // 1
 * ```
 */
export function scoreEvents(detected: ApplianceEvent[], truth: ApplianceEvent[], toleranceS: number): EventScore {
  const used = new Uint8Array(truth.length);
  let tp = 0;
  const sorted = [...truth.keys()].sort((a, b) => truth[a]!.time - truth[b]!.time);
  for (const d of detected) {
    let best = -1;
    let bestDt = Infinity;
    for (const j of sorted) {
      const t = truth[j]!;
      if (used[j] || t.on !== d.on) continue;
      const dt = Math.abs(t.time - d.time);
      if (dt <= toleranceS && dt < bestDt) [best, bestDt] = [j, dt];
    }
    if (best >= 0) {
      used[best] = 1;
      tp++;
    }
  }
  const precision = detected.length ? tp / detected.length : truth.length ? 0 : 1;
  const recall = truth.length ? tp / truth.length : 1;
  const f1 = precision + recall > 0 ? (2 * precision * recall) / (precision + recall) : 0;
  return { f1, precision, recall, detected: detected.length, truth: truth.length };
}

/**
 * F1 of a chance detector: as many events as `detections`, at boundaries drawn uniformly from
 * `start + i*stepS` (i in 1..steps-1) with a fair-coin direction, scored like the attack; the mean over
 * `trials` runs of mulberry32(`seed`).
 * @example
 * ```ts
 * chanceF1(40, truth, start, 60, 2880, 60); // about 0.02
 * ```
 */
export function chanceF1(detections: number, truth: ApplianceEvent[], start: number, stepS: number, steps: number, toleranceS: number, seed = 13, trials = 200): number {
  const rnd = mulberry32(seed);
  let sum = 0;
  for (let r = 0; r < trials; r++) {
    const guess: ApplianceEvent[] = [];
    for (let i = 0; i < detections; i++) guess.push({ time: start + (1 + Math.floor(rnd() * (steps - 1))) * stepS, on: rnd() < 0.5 });
    sum += scoreEvents(guess, truth, toleranceS).f1;
  }
  return sum / trials;
}
