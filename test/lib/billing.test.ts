import fc from 'fast-check';
import { DateTime } from 'luxon';
import { describe, expect, it } from 'vitest';
import {
  apportion,
  BillingError,
  formatMoney,
  formatScaled,
  localDays,
  parseScaled,
  priceBill,
  roundHalfEven,
  type BillingPeriod,
  type TariffVersion,
} from '../../lib/billing.js';
import { bandAt, parseTariff } from '../../lib/tariff.js';

const LONDON = 'Europe/London';
/** Unix seconds of a local wall-clock time. */
const local = (iso: string, zone = LONDON): number => DateTime.fromISO(iso, { zone }).toSeconds();

const version = (over: Partial<TariffVersion> = {}): TariffVersion => ({
  id: 1,
  code: 'tou',
  name: 'Time of use',
  currency: 'GBP',
  minorDigits: 2,
  tz: LONDON,
  effectiveFrom: '2024-01-01',
  standingMilliPerDay: 53_350,
  vatBasisPoints: 0,
  bands: [
    { band: 'peak', priceMilliPerKwh: 30_000 },
    { band: 'offpeak', priceMilliPerKwh: 15_000 },
  ],
  ...over,
});

/** What the PES does with a tariff: each reading's energy goes to the band of its local start time. */
function bandTotals(tariffJson: unknown, readings: { start: number; wh: number }[]): Record<string, number> {
  const tariff = parseTariff(tariffJson);
  const out: Record<string, number> = {};
  for (const r of readings) {
    const b = bandAt(tariff, r.start);
    out[b] = (out[b] ?? 0) + r.wh;
  }
  return out;
}

/** 15-minute readings over [from, to) of `wh` each, with overrides at given local times. */
function readings(from: number, to: number, wh: number, overrides: Record<string, number> = {}, zone = LONDON): { start: number; wh: number }[] {
  const out: { start: number; wh: number }[] = [];
  for (let t = from; t < to; t += 900) {
    const hhmm = DateTime.fromSeconds(t, { zone }).toFormat('HH:mm');
    out.push({ start: t, wh: overrides[hhmm] ?? wh });
  }
  return out;
}

describe('roundHalfEven', () => {
  it.each([
    [5n, 2n, 2n],
    [7n, 2n, 4n],
    [3n, 2n, 2n],
    [1n, 2n, 0n],
    [-1n, 2n, 0n],
    [-3n, 2n, -2n],
    [-5n, 2n, -2n],
    [-7n, 2n, -4n],
    [2_500_001n, 1_000_000n, 3n],
    [2_499_999n, 1_000_000n, 2n],
    [10n, 5n, 2n],
    [-11n, 5n, -2n],
  ])('%d / %d -> %d', (n, d, want) => {
    expect(roundHalfEven(n, d)).toBe(want);
  });
  it('refuses a non-positive denominator', () => {
    expect(() => roundHalfEven(1n, 0n)).toThrow(RangeError);
  });
});

describe('apportion', () => {
  it('gives ties to the earlier part', () => {
    expect(apportion(10, [1, 1, 1])).toEqual([4, 3, 3]);
    expect(apportion(100_001, [15, 15])).toEqual([50_001, 50_000]);
    expect(apportion(-10, [1, 1, 1])).toEqual([-4, -3, -3]);
  });
  it('always adds up exactly and stays within 1 Wh of the exact share', () => {
    fc.assert(
      fc.property(fc.integer({ min: -1e12, max: 1e12 }), fc.array(fc.integer({ min: 1, max: 40 * 86_400 }), { minLength: 1, maxLength: 6 }), (total, weights) => {
        const parts = apportion(total, weights);
        expect(parts.reduce((a, b) => a + b, 0)).toBe(total);
        const sum = weights.reduce((a, b) => a + b, 0);
        parts.forEach((p, i) => {
          // |p - total * w / sum| < 1  <=>  |p * sum - total * w| < sum
          const diff = BigInt(p) * BigInt(sum) - BigInt(total) * BigInt(weights[i]!);
          expect(diff < 0n ? -diff : diff).toBeLessThan(BigInt(sum));
        });
      }),
    );
  });
});

describe('localDays (standing-charge days)', () => {
  it('counts a 23-hour and a 25-hour day in Europe/London as one day each', () => {
    expect(local('2024-04-01') - local('2024-03-31')).toBe(23 * 3600);
    expect(localDays(local('2024-03-31'), local('2024-04-01'), LONDON)).toBe(1);
    expect(local('2024-10-28') - local('2024-10-27')).toBe(25 * 3600);
    expect(localDays(local('2024-10-27'), local('2024-10-28'), LONDON)).toBe(1);
    expect(localDays(local('2024-03-01'), local('2024-04-01'), LONDON)).toBe(31);
    expect(localDays(local('2024-10-01'), local('2024-11-01'), LONDON)).toBe(31);
  });
  it('never counts a day twice nor misses one across consecutive spans, even unaligned ones', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 3 * 86_400 }), { minLength: 1, maxLength: 12 }), fc.integer({ min: 0, max: 366 * 86_400 }), (lens, offset) => {
        let t = local('2024-01-01') + offset;
        const start = t;
        let sum = 0;
        for (const l of lens) {
          sum += localDays(t, t + l, LONDON);
          t += l;
        }
        expect(sum).toBe(localDays(start, t, LONDON));
      }),
      { numRuns: 60 },
    );
  });
});

describe('priceBill', () => {
  it('prices one period: energy per band, standing charge, exact rounding', () => {
    const bill = priceBill([{ start: local('2024-06-17'), end: local('2024-06-18'), bands: { peak: 4200, offpeak: 6100 } }], [version()]);
    // peak 4.2 kWh x 30.000 p = 126 p; offpeak 6.1 kWh x 15.000 p = 91.5 p -> 92 (half to even); standing 53.35 p -> 53
    expect(bill.lines.map((l) => [l.kind, l.kind === 'standing' ? l.days : l.band, l.amountMinor])).toEqual([
      ['energy', 'peak', 126],
      ['energy', 'offpeak', 92],
      ['standing', 1, 53],
    ]);
    expect(bill.subtotalMinor).toBe(271);
    expect(bill.totalMinor).toBe(271);
    expect(bill.energyWh).toBe(10_300);
    expect(formatMoney(bill.totalMinor, bill.currency, bill.minorDigits)).toBe('£2.71');
  });

  it('rounds each line once, half to even', () => {
    const v = version({ standingMilliPerDay: 500, bands: [{ band: 'flat', priceMilliPerKwh: 1000 }] });
    const day = (d: string, wh: number): BillingPeriod => ({ start: local(d), end: local(d) + 86_400, bands: { flat: wh } });
    // 0.5 kWh x 1 p = 0.5 p -> 0 ; 1.5 kWh -> 1.5 p -> 2 ; 2.5 kWh -> 2 ; standing 0.5 p -> 0
    expect(priceBill([day('2024-06-03', 500)], [v]).lines.map((l) => l.amountMinor)).toEqual([0, 0]);
    expect(priceBill([day('2024-06-03', 1500)], [v]).lines.map((l) => l.amountMinor)).toEqual([2, 0]);
    expect(priceBill([day('2024-06-03', 2500)], [v]).lines.map((l) => l.amountMinor)).toEqual([2, 0]);
    // Three days together: 3 x 0.5 p standing = 1.5 p -> 2, rounded once on the line (not 0 + 0 + 0).
    const three = priceBill([day('2024-06-03', 500), day('2024-06-04', 500), day('2024-06-05', 500)], [v]);
    expect(three.lines).toMatchObject([
      { kind: 'energy', energyWh: 1500, amountMinor: 2 },
      { kind: 'standing', days: 3, amountMinor: 2 },
    ]);
  });

  it('applies VAT per rate on the subtotal, half to even', () => {
    const bill = priceBill([{ start: local('2024-06-17'), end: local('2024-06-18'), bands: { peak: 5000, offpeak: 0 } }], [version({ vatBasisPoints: 500, standingMilliPerDay: 0 })]);
    // 5 kWh x 30 p = 150 p; 0 Wh -> 0 p; standing 0; VAT 5 % of 150 = 7.5 -> 8
    expect(bill.subtotalMinor).toBe(150);
    expect(bill.vat).toEqual([{ basisPoints: 500, baseMinor: 150, amountMinor: 8 }]);
    expect(bill.totalMinor).toBe(158);
  });

  it('band boundaries: readings starting at 07:00 and 22:45 are peak, 06:45 and 23:00 off-peak (as the PES splits them)', () => {
    const tariffJson = { tz: LONDON, bands: [{ name: 'peak', rules: [{ days: [1, 2, 3, 4, 5], from: '07:00', to: '23:00' }] }, { name: 'offpeak', default: true }] };
    const from = local('2024-06-17'); // a Monday
    const bands = bandTotals(tariffJson, readings(from, local('2024-06-18'), 10, { '06:45': 1000, '07:00': 2000, '22:45': 3000, '23:00': 4000 }));
    // 64 peak intervals (07:00-23:00): 62 x 10 + 2000 + 3000; 32 off-peak: 30 x 10 + 1000 + 4000
    expect(bands).toEqual({ peak: 5620, offpeak: 5300 });
    const bill = priceBill([{ start: from, end: local('2024-06-18'), bands }], [version()]);
    // 5.62 kWh x 30 p = 168.6 -> 169; 5.3 kWh x 15 p = 79.5 -> 80 (half to even); standing 53.35 -> 53
    expect(bill.lines.map((l) => l.amountMinor)).toEqual([169, 80, 53]);
    expect(bill.totalMinor).toBe(302);
  });

  it('DST days in Europe/London: 92 and 100 intervals, one standing day each', () => {
    const tariffJson = { tz: LONDON, bands: [{ name: 'peak', rules: [{ days: [1, 2, 3, 4, 5, 6, 7], from: '16:00', to: '19:00' }] }, { name: 'offpeak', default: true }] };
    const spring = bandTotals(tariffJson, readings(local('2024-03-31'), local('2024-04-01'), 10));
    expect(spring).toEqual({ peak: 120, offpeak: 800 }); // 12 + 80 intervals
    const autumn = bandTotals(tariffJson, readings(local('2024-10-27'), local('2024-10-28'), 10));
    expect(autumn).toEqual({ peak: 120, offpeak: 880 }); // 12 + 88 intervals
    const s = priceBill([{ start: local('2024-03-31'), end: local('2024-04-01'), bands: spring }], [version()]);
    // 0.12 kWh x 30 p = 3.6 -> 4; 0.8 kWh x 15 p = 12; 1 day -> 53.35 -> 53
    expect(s.lines.map((l) => (l.kind === 'standing' ? `${l.days}d:${l.amountMinor}` : l.amountMinor))).toEqual([4, 12, '1d:53']);
    const a = priceBill([{ start: local('2024-10-27'), end: local('2024-10-28'), bands: autumn }], [version()]);
    // 0.88 kWh x 15 p = 13.2 -> 13
    expect(a.lines.map((l) => (l.kind === 'standing' ? `${l.days}d:${l.amountMinor}` : l.amountMinor))).toEqual([4, 13, '1d:53']);
  });

  it('a month of daily periods over the March DST change has 31 standing days, rounded once', () => {
    const periods: BillingPeriod[] = [];
    for (let d = DateTime.fromISO('2024-03-01', { zone: LONDON }); d.month === 3; d = d.plus({ days: 1 })) {
      periods.push({ start: d.toSeconds(), end: d.plus({ days: 1 }).toSeconds(), bands: { peak: 1000, offpeak: 2000 } });
    }
    const bill = priceBill(periods, [version()]);
    expect(bill.periods).toBe(31);
    // 31 x 53.35 p = 1653.85 -> 1654 (not 31 x 53 = 1643); 31 kWh x 30 p = 930; 62 kWh x 15 p = 930
    expect(bill.lines).toMatchObject([
      { kind: 'energy', band: 'peak', energyWh: 31_000, amountMinor: 930 },
      { kind: 'energy', band: 'offpeak', energyWh: 62_000, amountMinor: 930 },
      { kind: 'standing', days: 31, amountMinor: 1654 },
    ]);
    expect(bill.totalMinor).toBe(3514);
  });

  it('tariff change mid-period: energy pro-rated by time, standing days split, each at its own rates', () => {
    const v1 = version({ id: 1, name: 'TOU 2024', vatBasisPoints: 500, standingMilliPerDay: 50_000 });
    const v2 = version({
      id: 2,
      name: 'TOU July 2024',
      effectiveFrom: '2024-07-01',
      vatBasisPoints: 500,
      standingMilliPerDay: 60_000,
      bands: [
        { band: 'peak', priceMilliPerKwh: 36_000 },
        { band: 'offpeak', priceMilliPerKwh: 12_000 },
      ],
    });
    const bill = priceBill([{ start: local('2024-06-16'), end: local('2024-07-16'), bands: { peak: 100_001, offpeak: 50_000 } }], [v2, v1]);
    // 15 days each side: peak 100001 Wh -> 50001 + 50000 (tie to the earlier), offpeak 25000 + 25000
    expect(bill.lines.map((l) => (l.kind === 'standing' ? [l.tariffId, 'standing', l.days, l.amountMinor] : [l.tariffId, l.band, l.energyWh, l.amountMinor]))).toEqual([
      [1, 'peak', 50_001, 1500], // 50.001 kWh x 30 p = 1500.03
      [1, 'offpeak', 25_000, 375],
      [1, 'standing', 15, 750],
      [2, 'peak', 50_000, 1800],
      [2, 'offpeak', 25_000, 300],
      [2, 'standing', 15, 900],
    ]);
    expect(bill.lines[0]).toMatchObject({ from: local('2024-06-16'), to: local('2024-07-01') });
    expect(bill.lines[3]).toMatchObject({ from: local('2024-07-01'), to: local('2024-07-16') });
    expect(bill.subtotalMinor).toBe(5625);
    expect(bill.vatMinor).toBe(281); // 281.25
    expect(bill.totalMinor).toBe(5906);
  });

  it('tariff change on the DST day pro-rates by the real length of each side (24 h : 23 h)', () => {
    const flat = (id: number, from: string, price: number): TariffVersion =>
      version({ id, effectiveFrom: from, standingMilliPerDay: 10_000, bands: [{ band: 'flat', priceMilliPerKwh: price }] });
    const bill = priceBill([{ start: local('2024-03-30'), end: local('2024-04-01'), bands: { flat: 16_920 } }], [flat(1, '2024-01-01', 20_000), flat(2, '2024-03-31', 25_000)]);
    // 16920 x 86400/169200 = 8640 Wh and 16920 x 82800/169200 = 8280 Wh
    expect(bill.lines).toMatchObject([
      { kind: 'energy', tariffId: 1, energyWh: 8640, amountMinor: 173 }, // 172.8
      { kind: 'standing', tariffId: 1, days: 1, amountMinor: 10 },
      { kind: 'energy', tariffId: 2, energyWh: 8280, amountMinor: 207 },
      { kind: 'standing', tariffId: 2, days: 1, amountMinor: 10 },
    ]);
  });

  it('a change exactly at a period boundary splits nothing', () => {
    const v2 = version({ id: 2, effectiveFrom: '2024-07-01', bands: [{ band: 'peak', priceMilliPerKwh: 1 }, { band: 'offpeak', priceMilliPerKwh: 1 }] });
    const june = priceBill([{ start: local('2024-06-01'), end: local('2024-07-01'), bands: { peak: 1000, offpeak: 1000 } }], [version(), v2]);
    expect(new Set(june.lines.map((l) => l.tariffId))).toEqual(new Set([1]));
    const july = priceBill([{ start: local('2024-07-01'), end: local('2024-08-01'), bands: { peak: 1000, offpeak: 1000 } }], [version(), v2]);
    expect(new Set(july.lines.map((l) => l.tariffId))).toEqual(new Set([2]));
  });

  it('refuses what it cannot bill correctly', () => {
    const p = { start: local('2024-06-17'), end: local('2024-06-18'), bands: { peak: 1, offpeak: 1 } };
    expect(() => priceBill([p], [version({ effectiveFrom: '2024-06-17' })])).not.toThrow();
    expect(() => priceBill([p], [version({ effectiveFrom: '2024-06-18' })])).toThrow(/no tariff version is in effect/);
    expect(() => priceBill([{ ...p, bands: { shoulder: 5 } }], [version()])).toThrow(/no price for band "shoulder"/);
    expect(() => priceBill([p, { ...p, start: p.start + 3600, end: p.end + 3600 }], [version()])).toThrow(/overlap/);
    expect(() => priceBill([p], [version(), version({ id: 2 })])).toThrow(/two versions/);
    expect(() => priceBill([p], [version(), version({ id: 2, effectiveFrom: '2024-02-01', currency: 'EUR' })])).toThrow(/same currency/);
    expect(() => priceBill([], [version()])).toThrow(BillingError);
    expect(() => priceBill([p], [version({ tz: 'Mars/Olympus' })])).toThrow(/IANA/);
    expect(() => priceBill([p], [version({ effectiveFrom: '2024-02-30' })])).toThrow(/effective date/);
    expect(() => priceBill([p], [version({ bands: [{ band: 'peak', priceMilliPerKwh: 1.5 }] })])).toThrow(/price of band/);
  });

  it('amounts are integers for any integer input (no float money)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 10_000_000 }),
        fc.integer({ min: 0, max: 10_000_000 }),
        fc.integer({ min: -100_000, max: 1_000_000 }),
        fc.integer({ min: 0, max: 2000 }),
        (peak, offpeak, price, vat) => {
          const bill = priceBill(
            [{ start: local('2024-06-01'), end: local('2024-07-01'), bands: { peak, offpeak } }],
            [version({ vatBasisPoints: vat, bands: [{ band: 'peak', priceMilliPerKwh: price }, { band: 'offpeak', priceMilliPerKwh: 15_000 }] })],
          );
          for (const l of bill.lines) expect(Number.isSafeInteger(l.amountMinor)).toBe(true);
          expect(bill.totalMinor).toBe(bill.lines.reduce((a, l) => a + l.amountMinor, 0) + bill.vatMinor);
          // The peak line is within half a penny of the exact value.
          const exact = BigInt(peak) * BigInt(price);
          const got = BigInt(bill.lines[0]!.amountMinor) * 1_000_000n;
          expect((got - exact < 0n ? exact - got : got - exact) * 2n <= 1_000_000n).toBe(true);
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe('priceBill: feed-in (energy exported)', () => {
  const day = { start: local('2024-06-17'), end: local('2024-06-18') };
  const feedIn = (over: Partial<TariffVersion> = {}): TariffVersion =>
    version({
      standingMilliPerDay: 0,
      bands: [
        { band: 'peak', priceMilliPerKwh: 30_000, feedInMilliPerKwh: 9_000 },
        { band: 'offpeak', priceMilliPerKwh: 15_000 },
      ],
      ...over,
    });

  it('adds a negative feed-in line per band with energy fed in, rounded once, half to even, like the energy lines', () => {
    const bill = priceBill([{ ...day, bands: { peak: 4200, offpeak: 6100 }, exportBands: { peak: 2500, offpeak: 0 } }], [feedIn()]);
    // peak 126 p, offpeak 91.5 -> 92; fed in 2.5 kWh x 9 p = 22.5 -> -22 (half to even); offpeak fed in nothing: no line
    expect(bill.lines.map((l) => [l.kind, l.kind === 'standing' ? l.days : l.band, l.kind === 'standing' ? null : l.energyWh, l.amountMinor])).toEqual([
      ['energy', 'peak', 4200, 126],
      ['energy', 'offpeak', 6100, 92],
      ['feedin', 'peak', 2500, -22],
      ['standing', 1, null, 0],
    ]);
    expect(bill.lines[2]).toMatchObject({ feedInMilliPerKwh: 9_000, tariffId: 1 });
    expect(bill).toMatchObject({ energyWh: 10_300, exportWh: 2500, subtotalMinor: 196, totalMinor: 196 });
    // 1.5 kWh x 9 p = 13.5 -> -14: the other half goes away from zero when that is the even neighbour.
    expect(priceBill([{ ...day, bands: { peak: 0, offpeak: 0 }, exportBands: { peak: 1500 } }], [feedIn()]).lines.find((l) => l.kind === 'feedin')!.amountMinor).toBe(-14);
  });

  it('nets feed-in before VAT (one VAT per rate on the net), and a bill can be a credit with negative VAT', () => {
    const v = feedIn({ vatBasisPoints: 500 });
    // 5 kWh x 30 p = 150; fed in 10 kWh x 9 p = -90; net 60; VAT 5 % = 3; total 63
    const netted = priceBill([{ ...day, bands: { peak: 5000, offpeak: 0 }, exportBands: { peak: 10_000 } }], [v]);
    expect(netted).toMatchObject({ subtotalMinor: 60, vat: [{ basisPoints: 500, baseMinor: 60, amountMinor: 3 }], vatMinor: 3, totalMinor: 63 });
    // 1 kWh x 30 p = 30; fed in 30 kWh x 9 p = -270; net -240; VAT -12; total -252: the household is owed £2.52.
    const credit = priceBill([{ ...day, bands: { peak: 1000, offpeak: 0 }, exportBands: { peak: 30_000 } }], [v]);
    expect(credit).toMatchObject({ subtotalMinor: -240, vatMinor: -12, totalMinor: -252 });
    expect(formatMoney(credit.totalMinor, credit.currency, credit.minorDigits)).toBe('-£2.52');
  });

  it('pro-rates feed-in between tariff versions like energy, each at its own feed-in rate', () => {
    const v1 = feedIn({ id: 1, name: 'June' });
    const v2 = feedIn({ id: 2, name: 'July', effectiveFrom: '2024-07-01', bands: [{ band: 'peak', priceMilliPerKwh: 30_000, feedInMilliPerKwh: 12_000 }, { band: 'offpeak', priceMilliPerKwh: 15_000 }] });
    const bill = priceBill([{ start: local('2024-06-16'), end: local('2024-07-16'), bands: { peak: 0, offpeak: 0 }, exportBands: { peak: 100_001 } }], [v1, v2]);
    const fed = bill.lines.filter((l) => l.kind === 'feedin');
    // 15 days each side: 50001 + 50000 Wh; 50.001 kWh x 9 p = 450.009 -> -450; 50 kWh x 12 p = -600
    expect(fed.map((l) => [l.tariffId, l.energyWh, l.amountMinor])).toEqual([
      [1, 50_001, -450],
      [2, 50_000, -600],
    ]);
    expect(bill.exportWh).toBe(100_001);
  });

  it('a band without a feed-in price pays 0; a band the tariff does not know cannot take feed-in; nothing fed in needs no price', () => {
    const zero = priceBill([{ ...day, bands: { peak: 0, offpeak: 0 }, exportBands: { offpeak: 800 } }], [feedIn()]);
    expect(zero.lines.find((l) => l.kind === 'feedin')).toMatchObject({ band: 'offpeak', energyWh: 800, feedInMilliPerKwh: 0, amountMinor: 0 });
    expect(() => priceBill([{ ...day, bands: { peak: 1 }, exportBands: { shoulder: 5 } }], [feedIn()])).toThrow(/no price for band "shoulder" \(energy fed in\)/);
    expect(() => priceBill([{ ...day, bands: { peak: 1 }, exportBands: { shoulder: 0 } }], [feedIn()])).not.toThrow();
    expect(() => priceBill([{ ...day, bands: { peak: 1 }, exportBands: { peak: 0.5 } }], [feedIn()])).toThrow(/energy fed in of band "peak" must be an integer/);
    expect(() => priceBill([{ ...day, bands: { peak: 1 } }], [feedIn({ bands: [{ band: 'peak', priceMilliPerKwh: 1, feedInMilliPerKwh: 0.5 }] })])).toThrow(/feed-in price of band "peak"/);
    expect(() => priceBill([{ ...day, bands: { peak: 1 } }], [feedIn({ bands: [{ band: 'peak', priceMilliPerKwh: 1, feedInMilliPerKwh: 2e9 }] })])).toThrow(/feed-in price/);
  });

  it('a feed-in line is exactly minus the energy line of the same Wh at the same rate, for any integers', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 1e9 }), fc.integer({ min: -1_000_000, max: 1_000_000 }), (wh, rate) => {
        const v = version({ standingMilliPerDay: 0, bands: [{ band: 'x', priceMilliPerKwh: rate, feedInMilliPerKwh: rate }] });
        const bill = priceBill([{ ...day, bands: { x: wh }, exportBands: { x: wh } }], [v]);
        const [energy, fed] = bill.lines;
        expect(fed).toMatchObject({ kind: 'feedin', energyWh: wh });
        expect(fed!.amountMinor).toBe(-energy!.amountMinor || 0);
        expect(bill.subtotalMinor).toBe(0);
      }),
      { numRuns: 300 },
    );
  });
});

describe('decimal helpers', () => {
  it('parse and format scaled integers exactly', () => {
    expect(parseScaled('24.567', 3)).toBe(24_567);
    expect(parseScaled('0.5', 3)).toBe(500);
    expect(parseScaled('-1', 3)).toBe(-1000);
    expect(parseScaled('1.2345', 3)).toBeNull();
    expect(parseScaled('1e3', 3)).toBeNull();
    expect(parseScaled('', 3)).toBeNull();
    expect(parseScaled('99999999', 3)).toBeNull(); // > 10^9
    expect(formatScaled(24_567, 3)).toBe('24.567');
    expect(formatScaled(-5, 2)).toBe('-0.05');
    expect(formatScaled(7, 0)).toBe('7');
    expect(formatMoney(-50, 'EUR', 2)).toBe('-€0.50');
    expect(formatMoney(1234, 'JPY', 0)).toBe('1234 JPY');
  });
  it('round-trips', () => {
    fc.assert(
      fc.property(fc.integer({ min: -1e9, max: 1e9 }), (n) => {
        expect(parseScaled(formatScaled(n, 3), 3)).toBe(n);
      }),
    );
  });
});
