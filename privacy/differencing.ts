/**
 * The differencing attack (Dinur-Nissim style subtraction of two aggregates; for smart meters, e.g. Buescher
 * et al. PoPETs 2017): an insider at the utility who knows that a household's meter was silent for interval t
 * (it arranged or learnt of the outage) subtracts the release of t, which lacks the household, from the release
 * of t - 1, which has it: S(t-1) - S(t) = E_h(t-1) + (others' change between the two intervals). Where no such
 * pair was released (one release missing, or memberships not differing by exactly that household), the
 * attacker falls back on what it holds anyway: the household's billed energy per day spread evenly.
 * @module
 */

/** A released neighbourhood aggregate (latest revision). */
export interface Release {
  start: number;
  meters: number;
  energyWh: number;
}

/** Error of the recovered household energy per attacked interval. */
export interface DifferencingScore {
  maeWh: number;
  intervals: number;
  /** How many of them the attacker could subtract (the rest used the fallback). */
  subtracted: number;
  /** MAE of the fallback alone on the same intervals: what the attacker knows without any subtraction. */
  baselineMaeWh: number;
  /** Per attacked interval (start of the interval recovered): the estimate's error, Wh. */
  errorsWh: { start: number; errorWh: number; subtracted: boolean }[];
}

/**
 * Runs the attack for every interval start in `silent` and scores the household energy recovered for the
 * interval before it against `truthWh` (the household's energy per interval start).
 * @example
 * ```ts
 * differencingAttack(releases, [T + 900], 900, new Map([[T, 120]]), () => 100).maeWh;
 * ```
 */
export function differencingAttack(releases: Release[], silent: number[], intervalS: number, truthWh: Map<number, number>, fallbackWh: (start: number) => number): DifferencingScore {
  const byStart = new Map(releases.map((r) => [r.start, r]));
  let err = 0;
  let base = 0;
  let subtracted = 0;
  const errorsWh: DifferencingScore['errorsWh'] = [];
  for (const t of silent) {
    const prev = t - intervalS;
    const a = byStart.get(prev);
    const b = byStart.get(t);
    const truth = truthWh.get(prev) ?? 0;
    const fallback = fallbackWh(prev);
    const sub = a !== undefined && b !== undefined && a.meters - b.meters === 1;
    const e = Math.abs((sub ? a.energyWh - b.energyWh : fallback) - truth);
    if (sub) subtracted++;
    err += e;
    base += Math.abs(fallback - truth);
    errorsWh.push({ start: prev, errorWh: e, subtracted: sub });
  }
  const n = silent.length;
  return { maeWh: n ? err / n : 0, intervals: n, subtracted, baselineMaeWh: n ? base / n : 0, errorsWh };
}
