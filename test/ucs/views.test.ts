/** The pure cores of the household's views and exports (ucs/web/series.ts, ucs/web/export.ts). */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Row } from '../../ucs/web/body.js';
import { CSV_HEADER, toCsv, toEspiXml } from '../../ucs/web/export.js';
import { bucketBounds, compare, cumulative, energyBetween, formatKwh, intervalBounds, liveNow, powerSeries, shiftRange, spanRange, sumEnergy } from '../../ucs/web/series.js';

const utc = (y: number, m: number, d: number, h = 0, min = 0) => Date.UTC(y, m - 1, d, h, min) / 1000;
const row = (time: number, energyWh: number, meter = 'a000000000000001', extra: Partial<Row> = {}): Row => ({ meter, time, period: 60, importWh: 1000 + energyWh, powerW: energyWh * 60, status: 0, energyWh, ...extra });

describe('calendar ranges in the household time zone', () => {
  it('has 23-, 24- and 25-hour local days around the DST changes (Europe/London 2024)', () => {
    const z = 'Europe/London';
    const len = (r: { start: number; end: number }) => (r.end - r.start) / 3600;
    expect(len(spanRange('day', utc(2024, 3, 31, 12), z))).toBe(23);
    expect(len(spanRange('day', utc(2024, 10, 27, 12), z))).toBe(25);
    expect(len(spanRange('day', utc(2024, 7, 1, 12), z))).toBe(24);
    expect(bucketBounds('day', spanRange('day', utc(2024, 3, 31, 12), z), z)).toHaveLength(24);
    // 00:30 BST on 1 July is still 30 June in UTC.
    expect(spanRange('day', utc(2024, 6, 30, 23, 30), z).start).toBe(utc(2024, 6, 30, 23));
  });

  it('starts weeks on Monday and months on the 1st, and shifts by whole periods', () => {
    const z = 'America/New_York';
    const w = spanRange('week', utc(2024, 5, 16, 15), z); // Thursday
    expect(new Date(w.start * 1000).getUTCDay()).toBe(1);
    expect(w.start).toBe(utc(2024, 5, 13, 4));
    expect(bucketBounds('week', w, z)).toHaveLength(8);
    const m = spanRange('month', utc(2024, 3, 15), z);
    expect(bucketBounds('month', m, z)).toHaveLength(32);
    expect(shiftRange('month', m, -1, z)).toEqual(spanRange('month', utc(2024, 2, 10), z));
    expect(bucketBounds('month', shiftRange('month', m, -1, z), z)).toHaveLength(30); // 29 days in February 2024
  });

  it('splits a period into fixed intervals of absolute time', () => {
    expect(intervalBounds({ start: 0, end: 3600 }, 900)).toEqual([0, 900, 1800, 2700, 3600]);
    expect(() => intervalBounds({ start: 0, end: 10 }, 0)).toThrow(RangeError);
  });
});

describe('energy per bucket and comparisons', () => {
  it('puts each reading in the bucket of its period start and ignores readings outside', () => {
    const rows = [row(0, 5), row(60, 7), row(3600, 11), row(7200, 13), row(-60, 17)];
    expect(sumEnergy(rows, [0, 3600, 7200])).toEqual([12, 11]);
  });

  it('buckets add up to the energy of the whole period (any rows, any bounds)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ t: fc.integer({ min: 0, max: 99_999 }), wh: fc.integer({ min: 0, max: 1e6 }) }), { maxLength: 80 }),
        fc.uniqueArray(fc.integer({ min: 0, max: 100_000 }), { minLength: 2, maxLength: 12 }),
        (rs, b) => {
          const bounds = [...b].sort((x, y) => x - y);
          const rows = rs.map((r) => row(r.t, r.wh));
          const total = sumEnergy(rows, bounds).reduce((s, v) => s + v, 0);
          expect(total).toBe(energyBetween(rows, bounds[0]!, bounds[bounds.length - 1]!));
        },
      ),
      { numRuns: 200 },
    );
  });

  it('compares a period so far with the same elapsed span of the previous one', () => {
    const day = { start: 86_400, end: 172_800 };
    const prev = { start: 0, end: 86_400 };
    const rows = [row(100, 10), row(3_000, 20), row(50_000, 30), row(86_400 + 100, 15), row(86_400 + 2_000, 10)];
    expect(compare(rows, day, prev, 86_400 + 3_600)).toEqual({ current: 25, previousSameSpan: 30, previousTotal: 60, changePct: -16.7 });
    expect(compare([row(86_400 + 100, 15)], day, prev, 86_400 + 3_600).changePct).toBeNull();
  });

  it('sums power across meters per period start and headlines each meter’s newest reading', () => {
    const rows = [row(0, 1, 'm1'), row(0, 2, 'm2'), row(60, 3, 'm1'), row(60, 4, 'm2', { importWh: 5000 })];
    expect(powerSeries(rows)).toEqual({ times: [0, 60], watts: [180, 420] });
    expect(liveNow(rows)).toEqual({ watts: 420, at: 120, registerWh: 1003 + 5000, meters: 2 });
    expect(liveNow([])).toBeNull();
    expect(cumulative([1, 2, 3])).toEqual([1, 3, 6]);
  });

  it('formats integer Wh as kWh exactly', () => {
    expect(formatKwh(12345)).toBe('12.345');
    expect(formatKwh(5)).toBe('0.005');
    expect(formatKwh(-1005)).toBe('-1.005');
    expect(formatKwh(2 ** 48)).toBe('281474976710.656');
    expect(() => formatKwh(1.5)).toThrow(RangeError);
    fc.assert(
      fc.property(fc.maxSafeInteger(), (wh) => {
        expect(BigInt(formatKwh(wh).replace('.', ''))).toBe(BigInt(wh));
      }),
    );
  });
});

describe('exports', () => {
  const rows = [row(utc(2024, 5, 2), 9, 'b000000000000002'), row(utc(2024, 5, 1, 23, 59), 7), row(utc(2024, 5, 2), 8, 'a000000000000001', { status: 1 })];

  it('CSV: one line per reading, by meter then time, ISO UTC times, CRLF', () => {
    expect(toCsv(rows)).toBe(
      [
        CSV_HEADER,
        'a000000000000001,2024-05-01T23:59:00Z,2024-05-02T00:00:00Z,60,1007,7,420,0',
        'a000000000000001,2024-05-02T00:00:00Z,2024-05-02T00:01:00Z,60,1008,8,480,1',
        'b000000000000002,2024-05-02T00:00:00Z,2024-05-02T00:01:00Z,60,1009,9,540,0',
        '',
      ].join('\r\n'),
    );
    expect(toCsv([])).toBe(CSV_HEADER + '\r\n');
  });

  it('Green Button XML: a UsagePoint, MeterReading and ReadingType (Wh, delta data) per meter, IntervalBlocks per UTC day', () => {
    let n = 0;
    const xml = toEspiXml(rows, { household: 'hh<1>', generatedAt: utc(2024, 6, 1), uuid: () => `00000000-0000-4000-8000-${String(++n).padStart(12, '0')}` });
    expect(xml.startsWith('<?xml version="1.0" encoding="UTF-8"?>\n<feed xmlns="http://www.w3.org/2005/Atom">')).toBe(true);
    expect(xml).toContain('household hh&#60;1&#62;');
    expect(xml.match(/<UsagePoint xmlns="http:\/\/naesb.org\/espi">/g)).toHaveLength(2);
    expect(xml.match(/<ReadingType [^]*?<\/ReadingType>/g)![0]).toContain('<accumulationBehaviour>4</accumulationBehaviour><commodity>1</commodity><dataQualifier>12</dataQualifier><flowDirection>1</flowDirection><intervalLength>60</intervalLength><kind>12</kind><phase>769</phase><powerOfTenMultiplier>0</powerOfTenMultiplier><timeAttribute>0</timeAttribute><uom>72</uom>');
    const blocks = [...xml.matchAll(/<IntervalBlock [^>]*><interval><duration>(\d+)<\/duration><start>(\d+)<\/start><\/interval>(.*?)<\/IntervalBlock>/g)];
    expect(blocks.map((b) => [b[1], Number(b[2])])).toEqual([
      ['86400', utc(2024, 5, 1)],
      ['86400', utc(2024, 5, 2)],
      ['86400', utc(2024, 5, 2)],
    ]);
    const readings = [...xml.matchAll(/<IntervalReading><timePeriod><duration>(\d+)<\/duration><start>(\d+)<\/start><\/timePeriod><value>(\d+)<\/value><\/IntervalReading>/g)];
    expect(readings.map((r) => [Number(r[2]), Number(r[3])])).toEqual([
      [utc(2024, 5, 1, 23, 59), 7],
      [utc(2024, 5, 2), 8],
      [utc(2024, 5, 2), 9],
    ]);
    expect(xml).toContain('<link rel="related" href="RetailCustomer/hh&#60;1&#62;/UsagePoint/1/MeterReading"/>');
    expect(new Set(xml.match(/urn:uuid:[0-9a-f-]+/g)).size).toBe(xml.match(/<id>/g)!.length);
  });
});
