/**
 * The crash harness's own check, on its own: the expected totals agree with the meter's register semantics,
 * and the comparison flags every kind of difference (so a crash run that loses or double-counts fails).
 */
import { describe, expect, it } from 'vitest';
import { ImportRegister } from '../../firmware/register.js';
import { SyntheticModel } from '../../firmware/sources/synthetic.js';
import { compareExport } from '../../bench/harness/crash/check.js';
import { expectedTotals, registerDeltas } from '../../bench/harness/crash/expected.js';
import { parseExport } from '../../bench/harness/crash/probes.js';

const T0 = Date.UTC(2024, 0, 1) / 1000;
const meters = [
  { seed: 1000, household: 'h1', neighbourhood: 'n1' },
  { seed: 1001, household: 'h2', neighbourhood: 'n1' },
];

function exportOf(e: ReturnType<typeof expectedTotals>): { billed: Map<string, Map<number, number>>; nbs: Map<string, Map<number, number>> } {
  const copy = (m: Map<string, Map<number, number>>) => new Map([...m].map(([k, v]) => [k, new Map(v)]));
  return { billed: copy(e.billing), nbs: copy(e.neighbourhood) };
}

describe('crash harness: expected totals', () => {
  it("equal the firmware register's deltas (floor of the exact mW·s total) for a day of a synthetic meter", () => {
    const model = new SyntheticModel(1000);
    const reg = new ImportRegister();
    let prev = 0;
    const fromRegister: number[] = [];
    for (let t = T0; t < T0 + 86400; t += 60) {
      const { importWh } = reg.integrate(model.powerMilliW(t), 60);
      fromRegister.push(importWh - prev);
      prev = importWh;
    }
    expect(registerDeltas(1000, T0, 1)).toEqual(fromRegister);
  });

  it('split one register into billing days and neighbourhood intervals without losing a Wh', () => {
    const e = expectedTotals(meters, { start: T0, days: 2, intervalS: 900, billingS: 86400 });
    expect(e.readings).toBe(2 * 2 * 1440);
    for (const m of meters) {
      const total = registerDeltas(m.seed, T0, 2).reduce((a, b) => a + b, 0);
      expect([...e.billing.get(m.household)!.values()].reduce((a, b) => a + b, 0)).toBe(total);
      expect(e.meteredWh.get(m.household)).toBe(total);
    }
    expect(e.neighbourhood.get('n1')!.size).toBe(2 * 96);
  });
});

describe('crash harness: comparison', () => {
  const e = expectedTotals(meters, { start: T0, days: 2, intervalS: 900, billingS: 86400 });

  it('passes an exact export', () => {
    const { billed, nbs } = exportOf(e);
    const c = compareExport(e, billed, nbs);
    expect(c.problems).toEqual([]);
    expect([c.billingPeriodsChecked, c.neighbourhoodWindowsChecked]).toEqual([4, 192]);
  });

  it('flags one Wh billed too much, a missing billing day, a billed day without readings, a shifted interval', () => {
    const { billed, nbs } = exportOf(e);
    const h1 = billed.get('h1')!;
    h1.set(T0, h1.get(T0)! + 1);
    billed.get('h2')!.delete(T0 + 86400);
    billed.get('h2')!.set(T0 + 2 * 86400, 5);
    const n1 = nbs.get('n1')!;
    n1.set(T0, n1.get(T0)! - 3);
    n1.set(T0 + 900, n1.get(T0 + 900)! + 3); // energy moved to the next interval: totals equal, intervals not
    const c = compareExport(e, billed, nbs);
    expect(c.problems).toEqual([
      `household h1, period 2024-01-01: billed ${h1.get(T0)}, metered ${h1.get(T0)! - 1} Wh`,
      `household h2, period 2024-01-02: billed nothing, metered ${e.billing.get('h2')!.get(T0 + 86400)} Wh`,
      'household h2: billed 5 Wh for 2024-01-03, a period without readings',
      'neighbourhood n1: 2 of 192 intervals differ from the register deltas',
    ]);
    expect(c.households.find((h) => h.household === 'h1')).toMatchObject({ billedWh: e.meteredWh.get('h1')! + 1 });
  });

  it('reads the MDMS export format', () => {
    const billing = 'household,start,end,band,energy_wh\nh1,2024-01-01T00:00:00Z,2024-01-02T00:00:00Z,flat,1200\nh1,2024-01-01T00:00:00Z,2024-01-02T00:00:00Z,peak,34\n';
    expect(parseExport(billing, 'billing')).toEqual(new Map([['h1', new Map([[T0, 1234]])]]));
    const nb = 'neighbourhood,start,end,meters,energy_wh\nn1,2024-01-01T00:15:00Z,2024-01-01T00:30:00Z,3,77\n';
    expect(parseExport(nb, 'neighbourhood')).toEqual(new Map([['n1', new Map([[T0 + 900, 77]])]]));
    expect(() => parseExport('meter,x\n', 'billing')).toThrow(/header/);
  });
});
