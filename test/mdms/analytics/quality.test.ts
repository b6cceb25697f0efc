/**
 * The VEE rules on a synthetic neighbourhood whose household data is known: a clean fortnight raises no
 * finding; a gap, a silent meter and a spike injected into it are each flagged on their own window and
 * nothing else is; flat lines, late revisions and a change of regime are flagged too; a gap gets an
 * estimate, marked with its method.
 */
import { describe, expect, it } from 'vitest';
import { syntheticNeighbourhood } from '../../../bench/forecast.js';
import { validateWindows, type WindowRow } from '../../../mdms/analytics/quality.js';

const MONDAY = Date.UTC(2024, 0, 1) / 1000;
const nb = syntheticNeighbourhood(Array.from({ length: 20 }, (_, i) => 300 + i), MONDAY, 14);
const clean: WindowRow[] = nb.total.values.map((energyWh, i) => ({ start: MONDAY + i * 900, end: MONDAY + (i + 1) * 900, meters: 20, energyWh: energyWh!, revision: 0, receivedAtMs: (MONDAY + (i + 1) * 900) * 1000 }));
const at = (i: number) => MONDAY + i * 900;

describe('validateWindows', () => {
  it('finds nothing in a clean fortnight', () => {
    expect(validateWindows('nb1', clean, { fleetMeters: 20 })).toEqual({ findings: [], estimates: [] });
    expect(validateWindows('nb1', clean).findings).toEqual([]);
  });

  it('flags an injected gap, silent meter and spike, each on its window, and estimates the gap', () => {
    const [G, M, S] = [10 * 96 + 30, 11 * 96 + 50, 12 * 96 + 70];
    const rows = clean
      .filter((_, i) => i !== G)
      .map((r) => (r.start === at(M) ? { ...r, meters: 19, energyWh: r.energyWh - nb.households[0]!.values[M]! } : r.start === at(S) ? { ...r, energyWh: r.energyWh * 3 } : r));
    for (const fleetMeters of [20, null]) {
      const { findings, estimates } = validateWindows('nb1', rows, { fleetMeters });
      expect(findings.map((f) => [f.rule, f.start])).toEqual([
        ['gap', at(G)],
        ['meter-drop', at(M)],
        ['spike', at(S)],
      ]);
      expect(findings[1]!.evidence).toEqual({ meters: 19, expected: 20 });
      expect(findings[2]!.evidence.energyWh).toBe(clean[S]!.energyWh * 3);
      expect(estimates).toEqual([{ neighbourhood: 'nb1', start: at(G), end: at(G) + 900, energyWh: nb.total.values[G - 7 * 96], method: 'same-window-last-week' }]);
    }
  });

  it('flags a flat line, a late revision and a change of regime', () => {
    const F = 9 * 96 + 10;
    const rows = clean.map((r, i) => {
      if (i >= F && i < F + 5) return { ...r, energyWh: 777 };
      if (i === 200) return { ...r, revision: 1, receivedAtMs: (r.end + 3 * 86_400) * 1000 };
      if (i >= 10 * 96) return { ...r, energyWh: Math.round(r.energyWh * 1.4) };
      return r;
    });
    const { findings } = validateWindows('nb1', rows, { fleetMeters: 20 });
    expect(findings.filter((f) => f.rule === 'flat').map((f) => f.start)).toEqual([0, 1, 2, 3, 4].map((k) => at(F + k)));
    expect(findings.filter((f) => f.rule === 'late-revision')).toEqual([{ neighbourhood: 'nb1', start: at(200), end: at(201), rule: 'late-revision', evidence: { revision: 1, lateS: 3 * 86_400 } }]);
    expect(findings.filter((f) => f.rule === 'changepoint').map((f) => [f.start, f.end])).toEqual([[MONDAY + 10 * 86_400, MONDAY + 11 * 86_400]]);
    expect(findings.filter((f) => !['flat', 'late-revision', 'changepoint'].includes(f.rule))).toEqual([]);
  });

  it('takes its thresholds from the rules', () => {
    const rows = clean.map((r, i) => (i >= 100 && i < 103 ? { ...r, energyWh: 5 } : r));
    expect(validateWindows('nb1', rows).findings.filter((f) => f.rule === 'flat')).toEqual([]);
    expect(validateWindows('nb1', rows, { rules: { flatIntervals: 3 } }).findings.filter((f) => f.rule === 'flat')).toHaveLength(3);
  });
});
