/**
 * The household's costs and bill preview (ucs/web/bill.ts) against the utility's own rules: feed-in credits
 * in lib/billing.ts `priceBill` (the MDMS's pricing), the tariff file, billing periods cut as the PES cuts them
 * (pes/core/calendar.ts), energy per band attributed as the PES attributes it (pes/core/energy.ts) — so that
 * the household's bill equals the utility's to the minor unit, feed-in lines included.
 */
import fc from 'fast-check';
import { DateTime } from 'luxon';
import { describe, expect, it } from 'vitest';
import { BillingError, priceBill, type TariffVersion } from '../../lib/billing.js';
import { parseTariff } from '../../lib/tariff.js';
import { Calendar } from '../../pes/core/calendar.js';
import { attribute, type EnergyState } from '../../pes/core/energy.js';
import type { ReadingBatch } from '../../protocol/reading.js';
import { billingPeriodAt, billingPeriodsIn, billPreview, bandEnergies, parseHouseholdTariff, priceParts, priceRange, billingParts } from '../../ucs/web/bill.js';
import { bodyRows, type Row } from '../../ucs/web/body.js';
import { attributeGaps, spanRange } from '../../ucs/web/series.js';

const AMS = 'Europe/Amsterdam';
const local = (iso: string, zone = AMS) => DateTime.fromISO(iso, { zone }).toSeconds();

const SCHEDULE = {
  tz: AMS,
  bands: [
    { name: 'normal', rules: [{ days: [1, 2, 3, 4, 5], from: '07:00', to: '23:00' }] },
    { name: 'low', default: true },
  ],
};
const VERSION = { currency: 'EUR', minorDigits: 2, standingMilliPerDay: 98_765, vatBasisPoints: 2100 };
const FILE = {
  name: 'Dubbel tarief',
  ...SCHEDULE,
  billing: { period: '1mo' },
  prices: [
    { effectiveFrom: '2024-01-01', ...VERSION, bands: [{ band: 'normal', priceMilliPerKwh: 31_234, feedInMilliPerKwh: 9_876 }, { band: 'low', priceMilliPerKwh: 27_111, feedInMilliPerKwh: 7_777 }] },
    // A price change in the middle of a billing period: the MDMS pro-rates, and so must the preview.
    { effectiveFrom: '2024-04-10', ...VERSION, bands: [{ band: 'normal', priceMilliPerKwh: 33_333, feedInMilliPerKwh: 11_111 }, { band: 'low', priceMilliPerKwh: 25_000 }] },
  ],
};

describe('feed-in credits in the utility’s pricing (lib/billing.ts), as the preview relies on them', () => {
  const v = (over: Partial<TariffVersion> = {}): TariffVersion => ({
    id: 1,
    code: 'c',
    name: 'T',
    currency: 'EUR',
    minorDigits: 2,
    tz: AMS,
    effectiveFrom: '2024-01-01',
    standingMilliPerDay: 0,
    vatBasisPoints: 0,
    bands: [{ band: 'flat', priceMilliPerKwh: 30_000, feedInMilliPerKwh: 15_000 }],
    ...over,
  });
  const day = { start: local('2024-03-01'), end: local('2024-03-02') };
  const feedIn = (bill: ReturnType<typeof priceBill>) => bill.lines.filter((l) => l.kind === 'feedin');

  it('credits exported energy per band as a negative line, rounded once half to even, netted before VAT', () => {
    // 1 kWh imported at 30.000c, 2.1 kWh fed in at 15.000c: 30c - 31.5c -> -32c (31.5 rounds to 32), VAT 21 % of -2c.
    const bill = priceBill([{ ...day, bands: { flat: 1000 }, exportBands: { flat: 2100 } }], [v({ vatBasisPoints: 2100 })]);
    expect(bill.lines.map((l) => [l.kind, l.amountMinor])).toEqual([['energy', 30], ['feedin', -32], ['standing', 0]]);
    expect(feedIn(bill)).toEqual([expect.objectContaining({ band: 'flat', energyWh: 2100, feedInMilliPerKwh: 15_000, amountMinor: -32 })]);
    expect(bill.exportWh).toBe(2100);
    expect(bill.subtotalMinor).toBe(30 - 32);
    expect(bill.vat).toEqual([{ basisPoints: 2100, baseMinor: -2, amountMinor: 0 }]); // -0.42 -> 0
    expect(bill.totalMinor).toBe(-2); // a credit
    // 2.3 kWh fed in: 34.5c -> 34 (half to even), the exact negative of a charge of the same figures.
    expect(feedIn(priceBill([{ ...day, bands: { flat: 0 }, exportBands: { flat: 2300 } }], [v()]))[0]!.amountMinor).toBe(-34);
  });

  it('adds no feed-in line without export, prices a band without a feed-in price at 0, refuses an unpriced band or a bad price', () => {
    expect(feedIn(priceBill([{ ...day, bands: { flat: 1000 } }], [v()]))).toEqual([]);
    expect(feedIn(priceBill([{ ...day, bands: { flat: 1000 }, exportBands: { flat: 0 } }], [v()]))).toEqual([]);
    const free = priceBill([{ ...day, bands: { flat: 0 }, exportBands: { flat: 500 } }], [v({ bands: [{ band: 'flat', priceMilliPerKwh: 1 }] })]);
    expect(feedIn(free).map((l) => [l.energyWh, l.amountMinor])).toEqual([[500, 0]]);
    expect(() => priceBill([{ ...day, bands: {}, exportBands: { other: 5 } }], [v()])).toThrow(/no price for band "other"/);
    expect(() => priceBill([{ ...day, bands: {} }], [v({ bands: [{ band: 'flat', priceMilliPerKwh: 1, feedInMilliPerKwh: 1.5 }] })])).toThrow(BillingError);
  });

  it('pro-rates feed-in between tariff versions exactly as import, and the total is the sum of every line and VAT', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 5e7 }), fc.integer({ min: 0, max: 5e7 }), fc.integer({ min: 0, max: 80_000 }), (imp, exp, price) => {
        const month = { start: local('2024-04-01'), end: local('2024-05-01') };
        const versions = [v({ vatBasisPoints: 900 }), v({ id: 2, effectiveFrom: '2024-04-10', vatBasisPoints: 900, bands: [{ band: 'flat', priceMilliPerKwh: 30_000, feedInMilliPerKwh: price }] })];
        const bill = priceBill([{ ...month, bands: { flat: imp }, exportBands: { flat: exp } }], versions);
        expect(feedIn(bill).reduce((a, l) => a + l.energyWh, 0)).toBe(exp);
        for (const l of feedIn(bill)) expect(l.amountMinor).toBeLessThanOrEqual(0);
        const lines = bill.lines.reduce((a, l) => a + l.amountMinor, 0);
        expect(bill.subtotalMinor).toBe(lines);
        expect(bill.totalMinor).toBe(lines + bill.vatMinor);
      }),
      { numRuns: 60 },
    );
  });
});

describe('the tariff file (ucs --tariff)', () => {
  it('reads the PES’s band schedule, the billing period and the MDMS’s prices', () => {
    const t = parseHouseholdTariff(FILE);
    expect(t.schedule).toEqual(parseTariff(SCHEDULE));
    expect(t.billing).toEqual({ period: { unit: 'month', count: 1 }, tz: AMS });
    expect(t.versions.map((x) => [x.id, x.effectiveFrom, x.tz, x.bands.length])).toEqual([
      [1, '2024-01-01', AMS, 2],
      [2, '2024-04-10', AMS, 2],
    ]);
    expect(parseHouseholdTariff({ ...FILE, billing: { period: '6h', tz: 'UTC' } }).billing).toEqual({ period: { unit: 'hour', count: 6 }, tz: 'UTC' });
    expect(parseHouseholdTariff({ ...FILE, billing: undefined }).billing.period).toEqual({ unit: 'day', count: 1 });
  });

  it('names the field of every mistake', () => {
    const bad = (over: Record<string, unknown>) => () => parseHouseholdTariff({ ...FILE, ...over });
    expect(bad({ colour: 'red' })).toThrow(/unknown field "colour"/);
    expect(bad({ billing: { period: '5h' } })).toThrow(/tariff.billing.period/);
    expect(bad({ billing: { period: '1mo', tz: 'Mars/Olympus' } })).toThrow(/tariff.billing.tz/);
    expect(bad({ prices: [] })).toThrow(/tariff.prices must be an array/);
    expect(bad({ prices: [{ ...FILE.prices[0], bands: [{ band: 'normal', priceMilliPerKwh: 1 }] }] })).toThrow(/band "low" of the schedule has no price/);
    expect(bad({ prices: [{ ...FILE.prices[0], currency: 'euro' }] })).toThrow(/tariff.prices\[0\]: tariff: currency/);
    expect(bad({ prices: [{ ...FILE.prices[0], bands: [{ band: 'low', priceMilliPerKwh: 1, feedInMilliPerKwh: 1.5 }] }] })).toThrow(/feed-in price/);
    expect(bad({ bands: [{ name: 'x' }] })).toThrow(/tariff/);
  });
});

describe('billing periods as the PES cuts them', () => {
  it('agree with pes/core/calendar.ts for days, months and N hours in a zone with daylight saving', () => {
    const tariff = parseTariff(SCHEDULE);
    for (const period of ['1d', '1mo', '6h'] as const) {
      const t = parseHouseholdTariff({ ...FILE, billing: { period, tz: AMS } });
      const cal = new Calendar(900, t.billing.period, AMS, tariff);
      fc.assert(
        fc.property(fc.integer({ min: 1_700_000_000, max: 1_800_000_000 }), (at) => {
          const pes = cal.billing(at);
          expect(billingPeriodAt(t, at)).toEqual({ start: pes.start, end: pes.end });
        }),
        { numRuns: 150 },
      );
    }
    const monthly = parseHouseholdTariff(FILE);
    expect(billingPeriodsIn(monthly, { start: local('2024-03-15'), end: local('2024-05-02') }).map((p) => DateTime.fromSeconds(p.start, { zone: AMS }).toISODate())).toEqual(['2024-03-01', '2024-04-01', '2024-05-01']);
  });
});

/**
 * A prosumer's 15-minute readings from `from` local time for `days`, in batches of 4 (an hour), some batches
 * lost for good (`lost` batch indexes) — what reached the household and the PES alike.
 */
function prosumer(from: string, days: number, lost: Set<number>): { batches: ReadingBatch[]; rows: Row[] } {
  const start = local(from);
  let imp = 4_200_000;
  let exp = 1_700_000;
  const batches: ReadingBatch[] = [];
  for (let b = 0; b < days * 24; b++) {
    const prevWh = imp;
    const prevExportWh = exp;
    const readings = [];
    for (let i = 0; i < 4; i++) {
      const time = start + (b * 4 + i) * 900;
      const hour = DateTime.fromSeconds(time, { zone: AMS }).hour;
      const e = ((time / 900) * 7919) % 97; // a deterministic load
      const sun = hour >= 10 && hour < 16 ? ((time / 900) * 104_729) % 211 : 0;
      // Within a quarter hour a kettle can draw from the grid while the panels feed in: both registers move.
      imp += sun ? e >> 1 : e;
      exp += sun >> 1;
      readings.push({ time, period: 900, importWh: imp, powerW: e * 4, status: 0, exportWh: exp });
    }
    if (!lost.has(b)) batches.push({ prevWh, prevExportWh, readings });
  }
  return { batches, rows: batches.flatMap((b) => bodyRows({ meter: 'a000000000000001', ...b })) };
}

/** What the PES holds for the household: its attribution of both registers (pes/core/energy.ts) folded by period and band (pes/core/calendar.ts). */
function pesTotals(batches: ReadingBatch[], t: ReturnType<typeof parseHouseholdTariff>) {
  const cal = new Calendar(900, t.billing.period, t.billing.tz, t.schedule);
  const out = new Map<number, { start: number; end: number; bands: Record<string, number>; exportBands: Record<string, number> }>();
  let state: EnergyState | null = null;
  for (const b of batches) {
    const a = attribute(state, b);
    if (!a.ok) throw new Error(a.reason);
    state = a.state;
    for (const op of a.ops) {
      const slot = cal.billing(op.time);
      const p = out.get(slot.start) ?? { start: slot.start, end: slot.end, bands: { normal: 0, low: 0 }, exportBands: { normal: 0, low: 0 } };
      p.bands[slot.band] = (p.bands[slot.band] ?? 0) + op.wh;
      p.exportBands[slot.band] = (p.exportBands[slot.band] ?? 0) + op.exportWh;
      out.set(slot.start, p);
    }
  }
  return [...out.values()].sort((a, b) => a.start - b.start);
}

describe('the household’s bill equals the utility’s', () => {
  const tariff = parseHouseholdTariff(FILE);
  // From mid-March (a month the browser saw only partly) over the DST change and the price change of 10 April,
  // to the first days of May; two batches never arrived (their energy shifts into the next reading).
  const { batches, rows } = prosumer('2024-03-20T13:00', 44, new Set([100, 555]));
  const attributed = attributeGaps(rows);
  const pes = pesTotals(batches, tariff);

  it('has the same energy per band, imported and exported, as the PES’s billing totals', () => {
    expect(rows.some((r) => r.exportEnergyWh > 0 && r.energyWh > 0)).toBe(true);
    for (const p of pes) {
      const mine = bandEnergies(attributed, tariff.schedule, p.start, p.end);
      expect({ bands: mine.bands, exportBands: mine.exportBands }).toEqual({ bands: p.bands, exportBands: p.exportBands });
    }
    // Without the gap attribution the lost batches' energy would be missing.
    const naive = bandEnergies(rows, tariff.schedule, pes[1]!.start, pes[1]!.end);
    expect(naive.bands).not.toEqual(pes[1]!.bands);
  });

  it('prices April, a whole billing period with a price change and feed-in, to the same minor unit', () => {
    const april = pes.find((p) => p.start === local('2024-04-01'))!;
    const utility = priceBill([april], tariff.versions);
    const mine = priceRange(attributed, tariff, { start: april.start, end: april.end });
    expect(mine.bill).toEqual(utility);
    expect(utility.lines.some((l) => l.kind === 'feedin')).toBe(true);
    expect(new Set(utility.lines.map((l) => l.tariffId))).toEqual(new Set([1, 2]));
    // April priced from its days' parts is April's bill too (parts of one period are joined first).
    const days = [];
    for (let d = april.start; d < april.end; d = spanRange('day', d, AMS).end) days.push(...billingParts(attributed, tariff, spanRange('day', d, AMS)));
    expect(priceParts(days, tariff).bill).toEqual(utility);
    // Two months priced together: the bill over both periods.
    const both = pes.filter((p) => p.start === april.start || p.start === local('2024-03-01'));
    expect(priceRange(attributed, tariff, { start: both[0]!.start, end: april.end }).bill).toEqual(priceBill(both, tariff.versions));
  });

  it('previews the running period up to the newest reading, and says when this browser’s readings start after the period began', () => {
    const end = rows.at(-1)!.time + 900;
    const preview = billPreview(attributed, tariff, end, rows[0]!.time);
    expect(preview.period).toEqual({ start: local('2024-05-01'), end: local('2024-06-01') });
    expect(preview.upTo).toBe(end);
    expect(preview.complete).toBe(true);
    const may = pes.find((p) => p.start === local('2024-05-01'))!;
    expect(preview.priced.bill).toEqual(priceBill([{ ...may, end }], tariff.versions));
    expect(preview.priced.bill!.lines.find((l) => l.kind === 'standing')).toMatchObject({ days: DateTime.fromSeconds(end, { zone: AMS }).day });
    const march = billPreview(attributed, tariff, local('2024-03-25'), rows[0]!.time);
    expect(march.complete).toBe(false);
    // Before the first tariff version: no price, and why.
    expect(priceRange(attributed, tariff, { start: local('2023-12-31'), end: local('2024-01-01') }).error).toMatch(/no tariff version is in effect/);
  });
});
