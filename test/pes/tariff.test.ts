import { describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { Calendar } from '../../pes/core/calendar.js';
import { parseBillingPeriod } from '../../pes/duration.js';
import { bandAt, parseTariff } from '../../lib/tariff.js';
import { createPes } from '../../pes/pes.js';
import type { BillingAggregate } from '../../protocol/aggregate.js';
import { latest, makeFleet, openAggregates, uplink } from './helpers.js';

const LONDON = {
  tz: 'Europe/London',
  bands: [
    { name: 'night', rules: [{ days: [1, 2, 3, 4, 5, 6, 7], from: '00:00', to: '07:00' }] },
    { name: 'peak', rules: [{ days: [1, 2, 3, 4, 5, 6, 7], from: '16:00', to: '19:00' }] },
    { name: 'day', default: true },
  ],
};

describe('tariff validation', () => {
  it.each([
    [{ tz: 'UTC', bands: [] }, /1\.\.16 bands/],
    [{ tz: 'UTC', bands: [{ name: 'a' }] }, /needs at least one rule/],
    [{ tz: 'UTC', bands: [{ name: 'a', default: true }, { name: 'b', default: true }] }, /exactly one default band, found 2/],
    [{ tz: 'UTC', bands: [{ name: 'a', rules: [{ days: [1], from: '01:00', to: '02:00' }] }] }, /exactly one default band, found 0/],
    [{ tz: 'Mars/Olympus', bands: [{ name: 'flat', default: true }] }, /IANA time zone/],
    [{ bands: [{ name: 'p', rules: [{ days: [1], from: '07:00', to: '09:00' }] }, { name: 'o', default: true }] }, /tz is required/],
    [{ tz: 'UTC', bands: [{ name: 'p', rules: [{ days: [8], from: '07:00', to: '09:00' }] }, { name: 'o', default: true }] }, /ISO weekdays 1\.\.7/],
    [{ tz: 'UTC', bands: [{ name: 'p', rules: [{ days: [1], from: '7:00', to: '09:00' }] }, { name: 'o', default: true }] }, /"HH:MM"/],
    [{ tz: 'UTC', bands: [{ name: 'p', rules: [{ days: [1], from: '23:00', to: '07:00' }] }, { name: 'o', default: true }] }, /two rules/],
    [{ tz: 'UTC', bands: [{ name: 'p', rules: [{ days: [1], from: '24:00', to: '24:00' }] }, { name: 'o', default: true }] }, /between 00:00 and 23:59/],
    [
      {
        tz: 'UTC',
        bands: [
          { name: 'p', rules: [{ days: [1, 2], from: '07:00', to: '10:00' }] },
          { name: 'q', rules: [{ days: [2], from: '09:30', to: '11:00' }] },
          { name: 'o', default: true },
        ],
      },
      /overlap on ISO day 2: band "p" and band "q"/,
    ],
    [{ tz: 'UTC', bands: [{ name: 'o', default: true, rules: [{ days: [1], from: '01:00', to: '02:00' }] }] }, /must not have rules/],
    [{ tz: 'UTC', bands: [{ name: 'o', default: true, rule: [] }] }, /unknown field "rule"/],
    [{ tz: 'UTC', bands: [{ name: 'o o', default: true }] }, /name must match/],
    [{ tz: 'UTC', bands: [{ name: '__proto__', default: true }] }, /not be __proto__/],
  ])('rejects %j', (json, msg) => {
    expect(() => parseTariff(json)).toThrow(msg);
  });

  it('accepts the documented example, adjacent rules and 24:00', () => {
    const t = parseTariff({
      tz: 'Europe/London',
      bands: [
        { name: 'peak', rules: [{ days: [1, 2, 3, 4, 5], from: '07:00', to: '23:00' }] },
        { name: 'late', rules: [{ days: [1], from: '23:00', to: '24:00' }] },
        { name: 'offpeak', default: true },
      ],
    });
    // 2024-01-08 is a Monday; London is on GMT in January.
    expect(bandAt(t, Date.UTC(2024, 0, 8, 6, 59) / 1000)).toBe('offpeak');
    expect(bandAt(t, Date.UTC(2024, 0, 8, 7, 0) / 1000)).toBe('peak');
    expect(bandAt(t, Date.UTC(2024, 0, 8, 23, 30) / 1000)).toBe('late');
    expect(bandAt(t, Date.UTC(2024, 0, 6, 12, 0) / 1000)).toBe('offpeak'); // Saturday
    // In July (BST) 07:00 local is 06:00 UTC.
    expect(bandAt(t, Date.UTC(2024, 6, 8, 6, 0) / 1000)).toBe('peak');
  });
});

describe('billing periods', () => {
  it('parses 1d, 1mo and Nh, and rejects anything else naming the flag', () => {
    expect(parseBillingPeriod('1d')).toEqual({ unit: 'day', count: 1 });    expect(parseBillingPeriod('1mo')).toEqual({ unit: 'month', count: 1 });
    expect(parseBillingPeriod('6h')).toEqual({ unit: 'hour', count: 6 });
    expect(() => parseBillingPeriod('5h')).toThrow(/dividing 24/);
    expect(() => parseBillingPeriod('2d')).toThrow(/--billing-period/);
  });
});

describe('billing periods and bands', () => {
  it('aligns days to local midnight and months to the 1st, across DST', () => {
    const t = parseTariff(LONDON);
    const day = new Calendar(900, { unit: 'day', count: 1 }, 'Europe/London', t);
    // 2024-03-31 (clocks go forward at 01:00 UTC): a 23-hour day starting at 00:00 UTC.
    expect(day.billing(Date.UTC(2024, 2, 31, 12) / 1000)).toMatchObject({ start: Date.UTC(2024, 2, 31) / 1000, end: Date.UTC(2024, 2, 31, 23) / 1000 });
    // 2024-10-27 (clocks go back): a 25-hour day starting at 23:00 UTC the day before.
    expect(day.billing(Date.UTC(2024, 9, 27, 12) / 1000)).toMatchObject({ start: Date.UTC(2024, 9, 26, 23) / 1000, end: Date.UTC(2024, 9, 28) / 1000 });
    const month = new Calendar(900, { unit: 'month', count: 1 }, 'Europe/London', t);
    expect(month.billing(Date.UTC(2024, 6, 15) / 1000)).toMatchObject({ start: Date.UTC(2024, 5, 30, 23) / 1000, end: Date.UTC(2024, 6, 31, 23) / 1000 });
    expect(day.intervalStart(Date.UTC(2024, 2, 31, 12, 14, 59) / 1000)).toBe(Date.UTC(2024, 2, 31, 12) / 1000);
  });

  it('splits a household total by band on the spring DST day in Europe/London', async () => {
    const start = Date.UTC(2024, 2, 30, 12) / 1000; // Saturday noon UTC, before the change
    const f = await makeFleet({ n: 1, start, startWh: () => 5_000_000 });
    const m = f.meters[0]!;
    const pes = createPes({ keys: f.keys, k: 1, billing: '1d', tariff: parseTariff(LONDON), latenessS: 0, logger: pino({ level: 'silent' }) });
    const hourEnergy = (h: number) => 1000 + h; // h = hours since `start`
    let h = 0;
    for (let i = 0; i < 48; i++) pes.ingestUplink(uplink([m.frame(m.batch(1, 3600, () => hourEnergy(h++)))]));
    pes.flush();
    await pes.idle();
    const bills = latest(openAggregates(f, pes.sent));
    const dst = bills.get(`billing|hh0|${Date.UTC(2024, 2, 31) / 1000}`) as BillingAggregate;
    expect(dst.end - dst.start).toBe(23 * 3600);
    // Expected by UTC hour of 2024-03-31, worked out by hand: 00:00 UTC = 00:00 GMT; from 01:00 UTC the
    // clock reads BST (UTC+1). Night 00:00-07:00 local = UTC 00..05; peak 16:00-19:00 local = UTC 15..17.
    const e = (utcHour: number) => hourEnergy(12 + utcHour); // 2024-03-31T00Z is 12 h after `start`
    const range = (a: number, b: number) => Array.from({ length: b - a + 1 }, (_, i) => a + i);
    const total = (hs: number[]) => hs.reduce((s, x) => s + e(x), 0);
    expect(dst.bands).toEqual({ night: total(range(0, 5)), peak: total(range(15, 17)), day: total([...range(6, 14), ...range(18, 22)]) });
    // The Saturday before (GMT all day): night 00..06 UTC local = UTC, peak 16..18.
    const sat = bills.get(`billing|hh0|${Date.UTC(2024, 2, 30) / 1000}`) as BillingAggregate;
    const es = (utcHour: number) => hourEnergy(utcHour - 12);
    const totalS = (hs: number[]) => hs.reduce((s, x) => s + es(x), 0);
    expect(sat.bands).toEqual({ night: 0, peak: totalS(range(16, 18)), day: totalS([...range(12, 15), ...range(19, 23)]) });
    await pes.close();
  });
});
