/**
 * Anomalies across neighbourhoods on synthetic fleets whose household data is known: one neighbourhood with a
 * step change (+40 % from day 10) and another with an odd day are each found on their own days and nothing
 * else is; a clean fleet raises nothing; a fleet-wide day is nobody's outlier; three neighbourhoods (the
 * demo's) suffice; too few neighbourhoods or no spread are reported, not thrown.
 */
import { describe, expect, it } from 'vitest';
import { syntheticNeighbourhood } from '../../../bench/forecast.js';
import { changepointFindings, dailyEnergy, peerOutliers, regimes } from '../../../mdms/analytics/anomaly.js';

const MONDAY = Date.UTC(2024, 0, 1) / 1000;
const DAY = 86_400;
const DAYS = 28;
/** Daily energy of five synthetic neighbourhoods of 20 households (hourly windows, summed into days). */
const clean = Array.from({ length: 5 }, (_, k) => {
  const nb = syntheticNeighbourhood(Array.from({ length: 20 }, (_, i) => 4000 + 100 * k + i), MONDAY, DAYS, 3600);
  return dailyEnergy(nb.total.values.map((energyWh, i) => ({ start: MONDAY + i * 3600, end: MONDAY + (i + 1) * 3600, energyWh: energyWh! })), MONDAY, DAYS) as number[];
});
const fleet = (daily: readonly (readonly (number | null)[])[]) => daily.map((d, k) => ({ neighbourhood: `nb${k}`, daily: d }));
const scale = (v: readonly number[], days: (d: number) => boolean, f: number) => v.map((x, d) => (days(d) ? Math.round(x * f) : x));
const all = (daily: readonly (readonly (number | null)[])[]) => [...fleet(daily).flatMap((x) => changepointFindings(x.neighbourhood, x.daily, MONDAY)), ...peerOutliers(fleet(daily), MONDAY).findings];

describe('anomalies across neighbourhoods', () => {
  it('a clean fleet raises nothing', () => {
    expect(all(clean)).toEqual([]);
    expect(peerOutliers(fleet(clean), MONDAY).daysJudged).toBe(DAYS);
  });

  it('finds a step change (+40 % from day 10) as a change point and an odd day (x1.5) as a peer outlier, on their days only', () => {
    const daily = clean.map((v, k) => (k === 0 ? scale(v, (d) => d >= 10, 1.4) : k === 1 ? scale(v, (d) => d === 15, 1.5) : v));
    const found = all(daily);
    expect(found.map((f) => [f.neighbourhood, f.rule, (f.start - MONDAY) / DAY, (f.end - MONDAY) / DAY])).toEqual([
      ['nb0', 'changepoint', 10, 11],
      ['nb1', 'peer-outlier', 15, 16],
    ]);
    const [step, odd] = found;
    expect(step!.evidence).toMatchObject({ beforeDays: 10, afterDays: 18 });
    expect(step!.evidence.changePct).toBeGreaterThan(30);
    expect(step!.evidence.changePct).toBeLessThan(50);
    expect(odd!.evidence).toMatchObject({ days: 1, peers: 'nb0 nb2 nb3 nb4' });
    expect(odd!.evidence.score).toBeGreaterThan(5.7);
    expect(odd!.evidence.departurePct).toBeGreaterThan(35);
    expect(odd!.evidence.departurePct).toBeGreaterThan(odd!.evidence.bandHighPct as number);
  });

  it('a low day and a two-day excursion are peer outliers, not change points', () => {
    const daily = clean.map((v, k) => (k === 2 ? scale(v, (d) => d === 5, 0.5) : k === 3 ? scale(v, (d) => d === 20 || d === 21, 1.6) : v));
    expect(all(daily).map((f) => [f.neighbourhood, f.rule, (f.start - MONDAY) / DAY, f.evidence.days])).toEqual([
      ['nb2', 'peer-outlier', 5, 1],
      ['nb3', 'peer-outlier', 20, 2],
    ]);
  });

  it('a day that is odd everywhere (a cold day, a holiday) is nobody\'s outlier', () => {
    expect(peerOutliers(fleet(clean.map((v) => scale(v, (d) => d === 12, 1.5))), MONDAY).findings).toEqual([]);
  });

  it('works with three neighbourhoods: only the odd one is flagged, not the peer its day pulls', () => {
    const three = clean.slice(0, 3).map((v, k) => (k === 1 ? scale(v, (d) => d === 15, 0.6) : v));
    expect(peerOutliers(fleet(three), MONDAY).findings.map((f) => [f.neighbourhood, (f.start - MONDAY) / DAY, f.evidence.peers])).toEqual([['nb1', 15, 'nb0 nb2']]);
  });

  it('judges a day only with three neighbourhoods holding it; reports why it cannot judge', () => {
    const holes = clean.map((v, k) => v.map((x, d) => (k > 1 && d === 7 ? null : x)));
    const r = peerOutliers(fleet(holes), MONDAY);
    expect(r.daysJudged).toBe(DAYS - 1);
    expect(r.findings).toEqual([]);
    expect(peerOutliers(fleet(clean.slice(0, 2)), MONDAY)).toEqual({ findings: [], daysJudged: 0, skipped: 'fewer than 3 neighbourhoods' });
    const same = peerOutliers(fleet([clean[0]!, clean[0]!, clean[0]!]), MONDAY);
    expect(same.findings).toEqual([]);
    expect(same.skipped).toMatch(/no spread/);
    expect(() => peerOutliers(fleet([clean[0]!, clean[1]!.slice(1)]), MONDAY)).toThrow(RangeError);
  });
});

describe('regimes and daily energy', () => {
  it('keeps a step as two regimes, an excursion inside one, and leaves unknown days out', () => {
    const v = clean[4]!;
    expect(regimes(v).map((r) => [r.first, r.last])).toEqual([[0, DAYS - 1]]);
    expect(regimes(scale(v, (d) => d >= 14, 0.7)).map((r) => [r.first, r.last])).toEqual([[0, 13], [14, DAYS - 1]]);
    expect(regimes(scale(v, (d) => d === 9, 2)).map((r) => [r.first, r.last])).toEqual([[0, DAYS - 1]]);
    expect(regimes(v.map((x, d) => (d % 5 === 0 ? null : x))).map((r) => [r.first, r.last])).toEqual([[0, DAYS - 1]]);
    expect(regimes([null, null])).toEqual([]);
    expect(regimes([5, 6, 5]).map((r) => r.medianWh)).toEqual([5]);
  });

  it('scales a partly stored day to the whole day and drops one with too few windows', () => {
    const rows = [
      { start: 0, end: 43_200, energyWh: 10 },
      { start: 43_200, end: 64_800, energyWh: 6 },
      { start: DAY, end: DAY + 3600, energyWh: 99 },
      { start: -3600, end: 0, energyWh: 7 },
      { start: 2 * DAY, end: 2 * DAY + 3600, energyWh: 5 },
    ];
    expect(dailyEnergy(rows, 0, 2)).toEqual([(16 * DAY) / 64_800, null]);
    expect(dailyEnergy(rows, 0, 2, 0.01)[1]).toBe(99 * 24);
  });
});
