/**
 * Validation and estimation (the "VE" of VEE) of a neighbourhood's stored windows: pure functions from the
 * latest revisions of its aggregates to findings (flags on windows, with their evidence) and estimates for
 * missing windows. Nothing here changes a stored value: findings and estimates are kept apart (see
 * mdms/web/quality.ts), and an estimate is never a measurement — bills never read it.
 *
 * Rules (thresholds in {@link QualityRules}):
 * - `gap`: a window of the grid with no aggregate (missing, or suppressed by the PES under k);
 * - `meter-drop`: fewer contributing meters than the reference (the fleet's count for the neighbourhood, or
 *   the most seen over the previous day if that is more): a meter silent for that interval;
 * - `spike`: an isolated excursion: far from the mean of its two neighbouring windows in robust units (MAD of
 *   those residuals over the range), and relatively far from both that mean and the median of the same window
 *   on the previous days;
 * - `flat`: the same energy in at least `flatIntervals` consecutive windows (a stuck value);
 * - `late-revision`: a revision committed more than `lateRevisionS` after its window ended;
 * - `changepoint`: a day where the neighbourhood's daily energy changes regime for at least
 *   `changepointMinDays` (augurs' Bayesian online change-point detector, normal-gamma model; anomaly.ts),
 *   flagged on that day;
 * - `peer-outlier`: days where a neighbourhood departs from the other neighbourhoods (anomaly.ts; it needs
 *   the peers, so it runs in the check of several neighbourhoods, mdms/web/quality.ts, not here).
 * @module
 */
import { changepointFindings, dailyEnergy, DEFAULT_ANOMALY_RULES, type AnomalyRules } from './anomaly.js';
import { regularSeries } from './forecast.js';

/** The row fields the rules read (a stored NeighbourhoodRow has them all). */
export interface WindowRow {
  start: number;
  end: number;
  meters: number;
  energyWh: number;
  revision: number;
  receivedAtMs: number;
}

export const QUALITY_RULES = ['gap', 'meter-drop', 'spike', 'flat', 'late-revision', 'changepoint', 'peer-outlier'] as const;
export type QualityRule = (typeof QUALITY_RULES)[number];

/** One finding on one window. Evidence holds the figures that triggered it (for the data-quality team). */
export interface Finding {
  neighbourhood: string;
  start: number;
  end: number;
  rule: QualityRule;
  evidence: Record<string, number | string>;
}

/** An estimate for a missing window, kept apart from measurements and never billed. */
export interface Estimate {
  neighbourhood: string;
  start: number;
  end: number;
  energyWh: number;
  method: 'same-window-last-week' | 'same-window-yesterday';
}

/** Configurable thresholds (with those of the anomaly rules). */
export interface QualityRules extends AnomalyRules {
  /** Flag a spike beyond this many robust standard deviations (1.4826 x MAD) from its neighbours' mean. */
  spikeZ: number;
  /** ... and above (1 + this) times, or below 1 / (1 + this) of, both that mean and the same-window median of previous days. */
  spikeRelative: number;
  /** Previous days (same window) the spike rule needs before it judges a window. */
  spikeMinDays: number;
  /** Consecutive identical energies that make a flat line. */
  flatIntervals: number;
  /** A revision committed this long after its window's end is late, seconds. */
  lateRevisionS: number;
}

/**
 * Defaults: spike at 6 robust sd and 2.2 times (or under 1/2.2) its references, after 3 days (on 20 synthetic
 * households, simultaneous ovens reach twice the neighbouring windows); flat over 4 windows; late after 2 days.
 */
export const DEFAULT_RULES: QualityRules = { ...DEFAULT_ANOMALY_RULES, spikeZ: 6, spikeRelative: 1.2, spikeMinDays: 3, flatIntervals: 4, lateRevisionS: 2 * 86_400 };

const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

/**
 * Runs every rule over one neighbourhood's latest rows in `[from, to)` (defaults: the rows' own span).
 * @example
 * ```ts
 * const { findings, estimates } = validateWindows('nb1', rows, { fleetMeters: 20 });
 * findings.filter((f) => f.rule === 'gap');
 * ```
 */
export function validateWindows(
  neighbourhood: string,
  rows: readonly WindowRow[],
  opts: { from?: number; to?: number; fleetMeters?: number | null; rules?: Partial<QualityRules> } = {},
): { findings: Finding[]; estimates: Estimate[] } {
  const rules = { ...DEFAULT_RULES, ...opts.rules };
  const findings: Finding[] = [];
  const estimates: Estimate[] = [];
  if (rows.length === 0) return { findings, estimates };
  const series = regularSeries(rows, { ...(opts.from !== undefined ? { from: opts.from } : {}), ...(opts.to !== undefined ? { to: opts.to } : {}) });
  const { stepS, start } = series;
  const day = 86_400 / stepS;
  const byIndex = new Map<number, WindowRow>();
  for (const r of rows) if (r.end - r.start === stepS) byIndex.set((r.start - start) / stepS, r);
  const at = (i: number) => ({ neighbourhood, start: start + i * stepS, end: start + (i + 1) * stepS });
  const v = series.values;

  // gap, with its estimate
  v.forEach((x, i) => {
    if (x !== null) return;
    findings.push({ ...at(i), rule: 'gap', evidence: { intervalS: stepS } });
    const week = i >= 7 * day ? v[i - 7 * day] : null;
    const yesterday = i >= day ? v[i - day] : null;
    if (week != null) estimates.push({ ...at(i), energyWh: week, method: 'same-window-last-week' });
    else if (yesterday != null) estimates.push({ ...at(i), energyWh: yesterday, method: 'same-window-yesterday' });
  });

  // meter-drop
  for (const [i, r] of byIndex) {
    // The fleet's count, or more if more meters reported in the previous day (a fleet file out of date).
    let reference = opts.fleetMeters ?? 0;
    for (let j = Math.max(0, i - day); j <= i; j++) reference = Math.max(reference, byIndex.get(j)?.meters ?? 0);
    if (r.meters < reference) findings.push({ ...at(i), rule: 'meter-drop', evidence: { meters: r.meters, expected: reference } });
  }

  // spike: an isolated excursion, far both from its neighbouring windows and from the same window on the
  // previous days (a change of routine, such as a weekend morning, moves several windows and is not a spike)
  const local: { i: number; r: number; base: number; med: number }[] = [];
  for (let i = 1; i + 1 < v.length; i++) {
    const [p, x, n] = [v[i - 1], v[i], v[i + 1]];
    if (p == null || x == null || n == null) continue;
    const same: number[] = [];
    for (let k = 1; k <= 7 && i - k * day >= 0; k++) if (v[i - k * day] != null) same.push(v[i - k * day]!);
    if (same.length < rules.spikeMinDays) continue;
    local.push({ i, r: x - (p + n) / 2, base: (p + n) / 2, med: median(same) });
  }
  if (local.length) {
    const mad = median(local.map((x) => Math.abs(x.r))) * 1.4826;
    for (const { i, r, base, med } of local) {
      const x = v[i]!;
      const far = (ref: number) => x > Math.max(ref, 1) * (1 + rules.spikeRelative) || x * (1 + rules.spikeRelative) < ref;
      if (mad > 0 && Math.abs(r) > rules.spikeZ * mad && far(base) && far(med) && Math.sign(x - med) === Math.sign(r)) {
        findings.push({ ...at(i), rule: 'spike', evidence: { energyWh: x, neighboursWh: Math.round(base), sameWindowMedianWh: Math.round(med), robustZ: Math.round((r / mad) * 10) / 10 } });
      }
    }
  }

  // flat
  for (let i = 0; i < v.length; ) {
    let j = i + 1;
    while (v[i] !== null && j < v.length && v[j] === v[i]) j++;
    if (v[i] !== null && j - i >= rules.flatIntervals) for (let k = i; k < j; k++) findings.push({ ...at(k), rule: 'flat', evidence: { energyWh: v[i]!, run: j - i } });
    i = j;
  }

  // late revision
  for (const [i, r] of byIndex) {
    const lateS = Math.floor(r.receivedAtMs / 1000) - r.end;
    if (r.revision > 0 && lateS > rules.lateRevisionS) findings.push({ ...at(i), rule: 'late-revision', evidence: { revision: r.revision, lateS } });
  }

  // change points in daily energy (complete days only; see anomaly.ts)
  findings.push(...changepointFindings(neighbourhood, dailyEnergy([...byIndex.values()], start, Math.floor(v.length / day), rules.dayCoverage), start, rules));

  findings.sort((a, b) => a.start - b.start || a.rule.localeCompare(b.rule));
  return { findings, estimates };
}
