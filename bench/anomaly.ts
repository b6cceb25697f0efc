/**
 * `npm run bench -- anomaly`: how well the anomaly rules across neighbourhoods (mdms/analytics/anomaly.ts)
 * find what is injected into synthetic fleets whose household data is known, and what they raise on clean ones.
 *
 * Fleets: 6 seeds x {3, 5, 8} neighbourhoods of 20 synthetic households (firmware/sources/synthetic.ts),
 * 28 days of 15-minute windows summed into days. Scenarios on each fleet:
 * - clean: every finding is false (`clean_findings`; `max_clean_score` is the largest MAD score seen);
 * - one neighbourhood's day 15 scaled by f (f = 0.5 ... 2): found if a peer outlier of that neighbourhood
 *   starts on that day (`detect_<f>x`, share of the 18 fleets); any other finding is counted in `extra_findings`;
 * - a step (x0.7, x1.2, x1.4) from day 5, 14 or 24 in one neighbourhood: found if a change point of that
 *   neighbourhood is on that day (`step_<f>x`, share of the 54 cases; any other finding in `extra_findings`);
 * - a step of +40 % from day 10 in one neighbourhood together with a 1.5x day in another: both found on their
 *   days (`step_and_day_found`);
 * - a day at 1.5x in every neighbourhood (a cold day): no peer outlier expected (`fleet_wide_findings`).
 * Each figure is given for the MAD detector the MDMS uses (`mad`) and, for comparison, for the same pipeline with
 * augurs' DBSCAN detector (sensitivity 0.5) in its place (`dbscan`).
 * @module
 */
import { changepointFindings, dailyEnergy, peerOutliers, type AnomalyFinding, type AnomalyRules } from '../mdms/analytics/anomaly.js';
import { syntheticNeighbourhood } from './forecast.js';

const DAY = 86_400;
const START = Date.UTC(2024, 0, 1) / 1000; // a Monday
const DAYS = 28;
const FACTORS = [0.5, 0.7, 0.8, 1.2, 1.3, 1.5, 2] as const;
const STEPS = [0.7, 1.2, 1.4] as const;
const STEP_DAYS = [5, 14, 24] as const;
const SIZES = [3, 5, 8] as const;
const FLEETS = 6;

const scale = (v: readonly number[], on: (d: number) => boolean, f: number) => v.map((x, d) => (on(d) ? Math.round(x * f) : x));

function findings(daily: readonly number[][], rules: Partial<AnomalyRules>): AnomalyFinding[] {
  const input = daily.map((d, k) => ({ neighbourhood: `nb${k}`, daily: d }));
  return [...input.flatMap((x) => changepointFindings(x.neighbourhood, x.daily, START, rules)), ...peerOutliers(input, START, rules).findings];
}
const at = (f: AnomalyFinding, nb: number, day: number, rule: AnomalyFinding['rule']) => f.neighbourhood === `nb${nb}` && f.start === START + day * DAY && f.rule === rule;

/** Runs the section (see the module comment). */
export async function run(): Promise<Record<string, unknown>> {
  const fleets: number[][][] = [];
  for (let f = 0; f < FLEETS; f++) {
    process.stderr.write(`anomaly: fleet ${f + 1}/${FLEETS}\n`);
    fleets.push(
      Array.from({ length: Math.max(...SIZES) }, (_, k) => {
        const nb = syntheticNeighbourhood(Array.from({ length: 20 }, (_, i) => 100_000 * (f + 1) + 100 * k + i), START, DAYS);
        return dailyEnergy(nb.total.values.map((energyWh, i) => ({ start: START + i * 900, end: START + (i + 1) * 900, energyWh: energyWh! })), START, DAYS) as number[];
      }),
    );
  }
  const detectors: Record<string, Partial<AnomalyRules>> = { mad: { peerDetector: 'mad', peerSensitivity: 0.1 }, dbscan: { peerDetector: 'dbscan', peerSensitivity: 0.5 } };
  const out: Record<string, unknown> = { fleets: `${FLEETS} seeds x ${SIZES.join('/')} neighbourhoods of 20 synthetic households, ${DAYS} days of 15-minute windows` };
  const cases = FLEETS * SIZES.length;
  let checkMs = 0;
  let checks = 0;
  for (const [name, rules] of Object.entries(detectors)) {
    const figures: Record<string, number> = {};
    let clean = 0;
    let extra = 0;
    let both = 0;
    let wide = 0;
    let maxScore = 0;
    const hits = new Map<number, number>(FACTORS.map((f) => [f, 0]));
    const steps = new Map<number, number>(STEPS.map((f) => [f, 0]));
    for (const fleet of fleets) {
      for (const size of SIZES) {
        const base = fleet.slice(0, size);
        const t0 = performance.now();
        const c = findings(base, rules);
        if (name === 'mad') ((checkMs += performance.now() - t0), checks++);
        clean += c.length;
        if (rules.peerDetector === 'mad') {
          const input = base.map((d, k) => ({ neighbourhood: `nb${k}`, daily: d }));
          // The largest score on clean data: the same check with a threshold nothing can miss.
          for (const x of peerOutliers(input, START, { ...rules, peerSensitivity: 0.999 }).findings) maxScore = Math.max(maxScore, Number(x.evidence.score));
        }
        for (const f of FACTORS) {
          const found = findings(base.map((v, k) => (k === 1 ? scale(v, (d) => d === 15, f) : v)), rules);
          if (found.some((x) => at(x, 1, 15, 'peer-outlier'))) hits.set(f, hits.get(f)! + 1);
          extra += found.filter((x) => !at(x, 1, 15, 'peer-outlier')).length;
        }
        for (const f of STEPS) {
          for (const day of STEP_DAYS) {
            const found = findings(base.map((v, k) => (k === 0 ? scale(v, (d) => d >= day, f) : v)), rules);
            if (found.some((x) => at(x, 0, day, 'changepoint'))) steps.set(f, steps.get(f)! + 1);
            extra += found.filter((x) => !at(x, 0, day, 'changepoint')).length;
          }
        }
        const mixed = findings(base.map((v, k) => (k === 0 ? scale(v, (d) => d >= 10, 1.4) : k === 1 ? scale(v, (d) => d === 15, 1.5) : v)), rules);
        if (mixed.length === 2 && mixed.some((x) => at(x, 0, 10, 'changepoint')) && mixed.some((x) => at(x, 1, 15, 'peer-outlier'))) both++;
        wide += findings(base.map((v) => scale(v, (d) => d === 12, 1.5)), rules).filter((x) => x.rule === 'peer-outlier').length;
      }
    }
    const r3 = (x: number) => Math.round(x * 1000) / 1000;
    figures.clean_findings = clean;
    for (const f of FACTORS) figures[`detect_${String(f).replace('.', '_')}x`] = r3(hits.get(f)! / cases);
    for (const f of STEPS) figures[`step_${String(f).replace('.', '_')}x`] = r3(steps.get(f)! / (cases * STEP_DAYS.length));
    figures.extra_findings = extra;
    figures.step_and_day_found = r3(both / cases);
    figures.fleet_wide_findings = wide;
    if (name === 'mad') figures.max_clean_score = maxScore;
    out[name] = figures;
  }
  out.check_ms = Math.round((checkMs / checks) * 10) / 10;
  return out;
}
