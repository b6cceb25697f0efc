/**
 * The occupancy attack, training-free in the manner of Molina-Markham et al. ("Private memoirs of a smart
 * meter", BuildSys 2010) and Kleiminger et al. (occupancy from electricity, 83-94 % accuracy on ECO): a slot
 * whose mean power stands out from the series' own base load is "home" (someone awake uses appliances and
 * light); a quiet slot at night is "asleep", a quiet slot by day "away". Scored per slot against the ground
 * truth at the slot's middle, beside the majority-class baseline (always guessing the commonest state).
 * @module
 */
import type { GroundTruth, Occupancy } from '../firmware/sources/synthetic.js';

/** Mean power above the base load (the 10th percentile of slot means) that marks an active slot, W. */
export const ACTIVE_MARGIN_W = 50;
/** Quiet slots whose middle falls in [NIGHT_FROM_H, 24) or [0, NIGHT_TO_H) (UTC hours of the truth's zone: the sample's is UTC) are "asleep". */
export const NIGHT_FROM_H = 23;
export const NIGHT_TO_H = 7;

/** Accuracy of a guess per slot and of the majority-class baseline. */
export interface OccupancyScore {
  accuracy: number;
  chance: number;
  slots: number;
}

/**
 * Mean of each slot of `perSlot` values (NaN-free means; NaN if the slot has no value).
 * @example
 * ```ts
 * slotMeans([1, 3, 5, 7], 2); // [2, 6]
 * ```
 */
export function slotMeans(values: ArrayLike<number>, perSlot: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < values.length; i += perSlot) {
    let s = 0;
    let n = 0;
    for (let j = i; j < Math.min(values.length, i + perSlot); j++) if (!Number.isNaN(values[j]!)) [s, n] = [s + values[j]!, n + 1];
    out.push(n ? s / n : NaN);
  }
  return out;
}

/**
 * Guesses each slot's state from its mean power (`means[i]` covers `[start + i*slotS, +slotS)`).
 * @example
 * ```ts
 * guessOccupancy([80, 400, 85], 0, 900); // ['asleep', 'home', 'asleep'] (slots at 00:00, 00:15, 00:30 UTC)
 * ```
 */
export function guessOccupancy(means: number[], start: number, slotS: number, marginW = ACTIVE_MARGIN_W): Occupancy[] {
  const known = means.filter((m) => !Number.isNaN(m)).sort((a, b) => a - b);
  const base = known.length ? known[Math.floor(known.length * 0.1)]! : 0;
  return means.map((m, i) => {
    if (m - base > marginW) return 'home';
    const hour = Math.floor(((start + i * slotS + slotS / 2) % 86400) / 3600);
    return hour >= NIGHT_FROM_H || hour < NIGHT_TO_H ? 'asleep' : 'away';
  });
}

/**
 * The true state at the middle of each slot (undefined outside the truth's range).
 * @example
 * ```ts
 * trueOccupancy(truth, truth.start, 900, 192);
 * ```
 */
export function trueOccupancy(truth: GroundTruth, start: number, slotS: number, slots: number): (Occupancy | undefined)[] {
  return Array.from({ length: slots }, (_, i) => {
    const t = start + i * slotS + slotS / 2;
    return truth.occupancy.find((o) => o.start <= t && t < o.end)?.state;
  });
}

/**
 * Accuracy of `guess` against `truth` over slots where both are known, and the majority-class baseline.
 * @example
 * ```ts
 * scoreOccupancy(['home', 'away'], ['home', 'home']); // { accuracy: 0.5, chance: 1, slots: 2 }
 * ```
 */
export function scoreOccupancy(guess: Occupancy[], truth: (Occupancy | undefined)[]): OccupancyScore {
  let right = 0;
  let n = 0;
  const counts = new Map<Occupancy, number>();
  guess.forEach((g, i) => {
    const t = truth[i];
    if (t === undefined) return;
    n++;
    if (g === t) right++;
    counts.set(t, (counts.get(t) ?? 0) + 1);
  });
  return { accuracy: n ? right / n : 0, chance: n ? Math.max(0, ...counts.values()) / n : 0, slots: n };
}
