/**
 * Anomalies in neighbourhood demand, on daily energy: a neighbourhood whose level changes for good (a change
 * point in its own history) or that departs, on some days, from the other neighbourhoods (a peer outlier).
 * Pure functions (no I/O besides the augurs WebAssembly, loaded once); findings carry their evidence.
 *
 * - {@link dailyEnergy}: stored windows summed into days; a day with too few stored windows is `null`.
 * - {@link regimes}: augurs' Bayesian online change-point detector (normal-gamma prior) on robustly
 *   standardised daily energy. A run shorter than `changepointMinDays` is an excursion, not a regime: its days
 *   are set aside and the detector runs again without them, so a single odd day yields no change point.
 * - {@link changepointFindings}: the first day of each regime after the first, with before/after levels.
 * - {@link peerOutliers}: each neighbourhood's day is taken relative to its own regime's median day (so
 *   neighbourhoods of any size compare, and a change point is not also an outlier), then relative to the
 *   median of the OTHER neighbourhoods on the same day (a fleet-wide cold day or holiday cancels out); augurs'
 *   MAD outlier detector flags the log-departures beyond its threshold, one finding per run of outlying days.
 *
 * Choice and parameters (`npm run bench -- anomaly`, figures in mdms/README.md): days, not hours (in a first
 * trial on clean 20-household fleets, the largest hourly MAD score, 72-102, came close to that of a whole day
 * at 1.5x, 105-162: ovens and kettles dominate an hour); MAD, not DBSCAN (as good or better on every injected
 * case but 1.3x, fewer other findings, a graded score for the evidence, and a threshold that does not
 * scale with the widest departure in the data).
 * @module
 */
import type { OutlierOutput } from '@bsull/augurs/outlier';
import { augursChangepoint, augursOutlier } from './augurs.js';

const DAY = 86_400;

/** Thresholds of the anomaly rules. */
export interface AnomalyRules {
  /** A day counts only with at least this share of its windows stored (its energy is then scaled to a whole day). */
  dayCoverage: number;
  /** Days a regime must last before its start is a change point (shorter runs are excursions). */
  changepointMinDays: number;
  /** Hazard lambda of the change-point detector (augurs' default 250: a change is a priori rare). */
  changepointHazard: number;
  /** augurs' detector for peer outliers: 'mad' (the default) or 'dbscan' (kept to measure against, bench/anomaly.ts). */
  peerDetector: 'mad' | 'dbscan';
  /**
   * Sensitivity in (0, 1) of that detector. MAD: threshold = 7.94 - 7.10 x sqrt(sensitivity) robust sd
   * (0.1 -> 5.7). DBSCAN: epsilon = 1.1 x (1 - sensitivity) x the span of all departures.
   */
  peerSensitivity: number;
  /** Neighbourhoods with data on a day needed to judge it (one to judge, the others as its peers). */
  peerMin: number;
}

/**
 * Defaults: days with 75 % of their windows; regimes of 3 days or more; MAD sensitivity 0.1 (threshold 5.7
 * robust sd), which raised nothing on 18 clean synthetic fleets of 3 to 8 neighbourhoods (largest score 4.7)
 * and found a day at 1.5x or 0.5x of its usual level in every one; at least 3 neighbourhoods.
 */
export const DEFAULT_ANOMALY_RULES: AnomalyRules = { dayCoverage: 0.75, changepointMinDays: 3, changepointHazard: 250, peerDetector: 'mad', peerSensitivity: 0.1, peerMin: 3 };

/** A regime: consecutive days (indices, inclusive) around one level. */
export interface Regime {
  first: number;
  last: number;
  /** Median daily energy of its days, Wh. */
  medianWh: number;
  /** Mean daily energy of its days, Wh. */
  meanWh: number;
}

/** A finding of one of the two rules (the same shape as a data-quality finding). */
export interface AnomalyFinding {
  neighbourhood: string;
  start: number;
  end: number;
  rule: 'changepoint' | 'peer-outlier';
  evidence: Record<string, number | string>;
}

const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const mean = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

/**
 * Daily energy from stored windows: day `d` is `[dayStart + d day, dayStart + (d + 1) day)` and holds the windows
 * that start in it. A day whose windows cover at least `coverage` of it is their sum scaled to the whole day;
 * otherwise `null`.
 * @example
 * ```ts
 * dailyEnergy([{ start: 0, end: 43_200, energyWh: 5 }, { start: 86_400, end: 172_800, energyWh: 9 }], 0, 2, 0.5); // [10, 9]
 * ```
 */
export function dailyEnergy(rows: readonly { start: number; end: number; energyWh: number }[], dayStart: number, days: number, coverage = DEFAULT_ANOMALY_RULES.dayCoverage): (number | null)[] {
  const sum = new Array<number>(days).fill(0);
  const covered = new Array<number>(days).fill(0);
  for (const r of rows) {
    const d = Math.floor((r.start - dayStart) / DAY);
    if (d < 0 || d >= days) continue;
    sum[d]! += r.energyWh;
    covered[d]! += r.end - r.start;
  }
  return sum.map((x, d) => (covered[d]! > 0 && covered[d]! >= coverage * DAY ? (x * DAY) / Math.min(covered[d]!, DAY) : null));
}

/** The detector's runs over `xs` (indices into xs), as [first, last] pairs. */
function runs(xs: readonly number[], hazard: number): [number, number][] {
  const m = median(xs);
  // Standardised robustly, so the detector's default unit-variance prior fits any neighbourhood's size.
  const mad = median(xs.map((x) => Math.abs(x - m))) * 1.4826 || 1;
  const detector = augursChangepoint().ChangepointDetector.normalGamma({ hazardLambda: hazard });
  try {
    // An index is the last day of a run (0 always comes first and ends nothing).
    const lasts = detector.detectChangepoints(xs.map((x) => (x - m) / mad)).indices.filter((i) => i > 0 && i < xs.length - 1);
    const starts = [0, ...lasts.map((i) => i + 1)];
    return starts.map((s, k) => [s, (starts[k + 1] ?? xs.length) - 1]);
  } finally {
    detector.free();
  }
}

/**
 * The regimes of a daily series (`null` days are skipped). Fewer than 4 known days: one regime, unjudged.
 * @example
 * ```ts
 * regimes([100, 104, 97, 101, 99, 103, 98, 140, 144, 137, 141, 139, 143, 138]).map((r) => r.first); // [0, 7]
 * ```
 */
export function regimes(daily: readonly (number | null)[], rules: Partial<AnomalyRules> = {}): Regime[] {
  const { changepointMinDays, changepointHazard } = { ...DEFAULT_ANOMALY_RULES, ...rules };
  let days = daily.flatMap((x, d) => (x === null ? [] : [d]));
  if (days.length === 0) return [];
  let found: [number, number][] = [[0, days.length - 1]];
  // Set excursions (short runs) aside and look again; after three passes, short runs are simply ignored.
  for (let pass = 0; days.length >= 4; pass++) {
    found = runs(days.map((d) => daily[d]!), changepointHazard);
    const short = found.filter(([a, b]) => b - a + 1 < changepointMinDays);
    if (short.length === 0 || short.length === found.length || pass === 3) break;
    const drop = new Set(short.flatMap(([a, b]) => days.slice(a, b + 1)));
    days = days.filter((d) => !drop.has(d));
    found = [[0, days.length - 1]];
  }
  const long = found.filter(([a, b]) => b - a + 1 >= changepointMinDays);
  const kept = long.length ? long : [[0, days.length - 1] as [number, number]];
  // Regimes cover the whole range: each runs from its first day to the day before the next one's first.
  const firsts = kept.map(([a], k) => (k === 0 ? 0 : days[a]!));
  return kept.map(([a, b], k) => {
    const own = days.slice(a, b + 1).map((d) => daily[d]!);
    return { first: firsts[k]!, last: k + 1 < firsts.length ? firsts[k + 1]! - 1 : daily.length - 1, medianWh: median(own), meanWh: mean(own) };
  });
}

/**
 * Change points of one neighbourhood: the first day of each regime after the first, flagged on that day, with
 * the mean daily energy before and after, the change in percent and the runs' lengths in days.
 * @example
 * ```ts
 * changepointFindings('nb1', daily, dayStart).map((f) => f.start); // first days of new regimes
 * ```
 */
export function changepointFindings(neighbourhood: string, daily: readonly (number | null)[], dayStart: number, rules: Partial<AnomalyRules> = {}): AnomalyFinding[] {
  const rs = regimes(daily, rules);
  return rs.slice(1).map((r, k) => {
    const before = rs[k]!;
    return {
      neighbourhood,
      start: dayStart + r.first * DAY,
      end: dayStart + (r.first + 1) * DAY,
      rule: 'changepoint' as const,
      evidence: {
        beforeDayWh: Math.round(before.meanWh),
        afterDayWh: Math.round(r.meanWh),
        changePct: Math.round((r.meanWh / before.meanWh - 1) * 1000) / 10,
        beforeDays: before.last - before.first + 1,
        afterDays: r.last - r.first + 1,
      },
    };
  });
}

/** What {@link peerOutliers} returns: findings, or why the rule could not judge. */
export interface PeerResult {
  findings: AnomalyFinding[];
  /** Days judged (with enough neighbourhoods). */
  daysJudged: number;
  skipped?: string;
}

/**
 * Peer outliers over neighbourhoods' daily energies on the same days (`daily[d]` covers
 * `[dayStart + d day, dayStart + (d + 1) day)`; all arrays the same length). Evidence: the largest MAD score
 * of the run, the departure from the peers' median on that day in percent, the peers' normal band in
 * percent (augurs' cluster band), the run's length in days, and the peers' names.
 * @example
 * ```ts
 * const { findings } = peerOutliers([{ neighbourhood: 'a', daily: a }, { neighbourhood: 'b', daily: b }, { neighbourhood: 'c', daily: c }], dayStart);
 * ```
 */
export function peerOutliers(input: readonly { neighbourhood: string; daily: readonly (number | null)[] }[], dayStart: number, rules: Partial<AnomalyRules> = {}): PeerResult {
  const r = { ...DEFAULT_ANOMALY_RULES, ...rules };
  const days = input[0]?.daily.length ?? 0;
  if (input.some((x) => x.daily.length !== days)) throw new RangeError('peerOutliers: every neighbourhood needs the same days');
  // Each day against its own regime's usual day, in log units.
  const own = input.map(({ daily }) => {
    const level = new Array<number>(days).fill(NaN);
    for (const g of regimes(daily, r)) for (let d = g.first; d <= g.last; d++) level[d] = g.medianWh;
    return daily.map((x, d) => (x === null || !Number.isFinite(level[d]!) ? NaN : Math.log(Math.max(x, 1) / Math.max(level[d]!, 1))));
  });
  // ... then against the median of the other neighbourhoods that day, leaving out the one found most
  // outlying that day by a first pass (with few neighbourhoods, one odd peer would otherwise move the
  // reference and make a normal neighbourhood look odd).
  const judged = (d: number) => own.filter((xs) => Number.isFinite(xs[d]!)).length >= r.peerMin;
  let daysJudged = 0;
  for (let d = 0; d < days; d++) if (judged(d)) daysJudged++;
  if (input.length < r.peerMin) return { findings: [], daysJudged: 0, skipped: `fewer than ${r.peerMin} neighbourhoods` };
  if (daysJudged === 0) return { findings: [], daysJudged, skipped: `no day with data from ${r.peerMin} neighbourhoods` };
  const reference = (n: number, d: number, odd: ReadonlySet<string>): number[] => {
    const others = own.flatMap((ys, k) => (k !== n && Number.isFinite(ys[d]!) ? [k] : []));
    const kept = others.filter((k) => !odd.has(`${k}/${d}`));
    return kept.length ? kept : others;
  };
  let odd = new Set<string>();
  let departure: number[][] = [];
  let out: OutlierOutput | undefined;
  for (let pass = 0; pass < 2; pass++) {
    departure = own.map((xs, n) => xs.map((x, d) => (Number.isFinite(x) && judged(d) ? x - median(reference(n, d, odd).map((k) => own[k]![d]!)) : NaN)));
    const detector = augursOutlier().OutlierDetector[r.peerDetector]({ sensitivity: r.peerSensitivity });
    try {
      out = detector.detect(departure);
    } catch (e) {
      // No spread at all (every departure equal, e.g. identical neighbourhoods): nothing departs.
      return { findings: [], daysJudged, skipped: `no spread between neighbourhoods (${e instanceof Error ? e.message : String(e)})` };
    } finally {
      detector.free();
    }
    if (!out.outlyingSeries.length || pass === 1) break;
    // The most outlying neighbourhood of each day with an outlier is left out of the others' reference.
    const results = out.seriesResults;
    odd = new Set();
    for (let d = 0; d < days; d++) {
      const flagged = results.flatMap((s, n) => (s.outlierIntervals.some((iv) => d >= iv.start && d < (iv.end ?? days)) ? [n] : []));
      if (flagged.length) odd.add(`${flagged.reduce((a, b) => (results[b]!.scores[d]! > results[a]!.scores[d]! ? b : a))}/${d}`);
    }
  }
  if (!out) return { findings: [], daysJudged };
  const pct = (x: number) => Math.round((Math.exp(x) - 1) * 1000) / 10;
  const band = out.clusterBand;
  const findings: AnomalyFinding[] = [];
  out.seriesResults.forEach((s, n) => {
    for (const iv of s.outlierIntervals) {
      const end = iv.end ?? days;
      let at = iv.start;
      for (let d = iv.start; d < end; d++) if ((s.scores[d] ?? 0) > (s.scores[at] ?? 0)) at = d;
      const peers = reference(n, at, odd).map((k) => input[k]!.neighbourhood);
      findings.push({
        neighbourhood: input[n]!.neighbourhood,
        start: dayStart + iv.start * DAY,
        end: dayStart + end * DAY,
        rule: 'peer-outlier',
        evidence: {
          score: Math.round(s.scores[at]! * 10) / 10,
          departurePct: pct(departure[n]![at]!),
          ...(band ? { bandLowPct: pct(band.min[at]!), bandHighPct: pct(band.max[at]!) } : {}),
          days: end - iv.start,
          peers: peers.length > 8 ? `${peers.slice(0, 8).join(' ')} +${peers.length - 8}` : peers.join(' '),
        },
      });
    }
  });
  findings.sort((a, b) => a.start - b.start || a.neighbourhood.localeCompare(b.neighbourhood));
  return { findings, daysJudged };
}
