/** The pure cores of the household's views and exports (ucs/web/series.ts, ucs/web/export.ts). */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Status, encodeReadingBatch, decodeReadingBatch } from '../../protocol/reading.js';
import { bodyRows, upgradeRow, type Row } from '../../ucs/web/body.js';
import { dates } from '../../ucs/web/dates.js';
import { CSV_HEADER, toCsv, toEspiXml } from '../../ucs/web/export.js';
import { commands, shellWord } from '../../ucs/web/settings.js';
import { attributeGaps, MAX_ATTRIBUTED_GAP_S, bucketBounds, compare, cumulative, energyBetween, formatKwh, intervalBounds, lastYear, liveNow, powerSeries, shiftRange, spanRange, sumEnergy, sumFlows } from '../../ucs/web/series.js';

const utc = (y: number, m: number, d: number, h = 0, min = 0, sec = 0) => Date.UTC(y, m - 1, d, h, min, sec) / 1000;
const row = (time: number, energyWh: number, meter = 'a000000000000001', extra: Partial<Row> = {}): Row => ({ meter, time, period: 60, importWh: 1000 + energyWh, powerW: energyWh * 60, status: 0, energyWh, exportWh: 0, exportEnergyWh: 0, ...extra });

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

  it('has years of local months, and finds the same period last year (same date, ISO week number, month)', () => {
    const z = 'Europe/Amsterdam';
    const y = spanRange('year', utc(2024, 6, 15), z);
    expect(y.start).toBe(utc(2023, 12, 31, 23));
    const months = bucketBounds('year', y, z);
    expect(months).toHaveLength(13);
    expect(months[3]).toBe(utc(2024, 3, 31, 22)); // 1 April, summer time
    expect(lastYear('day', spanRange('day', utc(2024, 2, 29, 12), z), z)).toEqual(spanRange('day', utc(2023, 2, 28, 12), z));
    expect(lastYear('month', spanRange('month', utc(2024, 6, 15), z), z)).toEqual(spanRange('month', utc(2023, 6, 15), z));
    expect(lastYear('year', y, z)).toEqual(spanRange('year', utc(2023, 6, 15), z));
    // ISO week 1 of 2025 starts on 30 December 2024; week 1 of 2024 on 1 January 2024.
    expect(lastYear('week', spanRange('week', utc(2025, 1, 1, 12), z), z)).toEqual(spanRange('week', utc(2024, 1, 3), z));
    // Week 53 of 2020 has no twin in 2019 (52 weeks): the last week of 2019.
    expect(lastYear('week', spanRange('week', utc(2020, 12, 30, 12), z), z)).toEqual(spanRange('week', utc(2019, 12, 25), z));
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
          expect(total).toBe(energyBetween(rows, bounds[0]!, bounds[bounds.length - 1]!) ?? 0);
          // And the buckets without data are exactly those in which no reading starts.
          const flows = sumFlows(rows, bounds);
          flows.importWh.forEach((v, i) => expect(v === null).toBe(!rows.some((r) => r.time >= bounds[i]! && r.time < bounds[i + 1]!)));
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
    // The previous day has no readings: no data, not 0, and no change to speak of.
    expect(compare([row(86_400 + 100, 15)], day, prev, 86_400 + 3_600)).toEqual({ current: 15, previousSameSpan: null, previousTotal: null, changePct: null });
    expect(compare([], day, prev, 86_400 + 3_600).current).toBeNull();
    const prosumer = [row(100, 10, 'm', { exportEnergyWh: 4 }), row(86_400 + 100, 3, 'm', { exportEnergyWh: 9 })];
    expect(compare(prosumer, day, prev, 86_400 + 3_600, 'export')).toMatchObject({ current: 9, previousSameSpan: 4, changePct: 125 });
    expect(compare(prosumer, day, prev, 86_400 + 3_600, 'net')).toMatchObject({ current: -6, previousSameSpan: 6 });
  });

  it('leaves buckets without readings empty (null), never 0, in both directions and net', () => {
    const rows = [row(0, 5, 'm', { exportEnergyWh: 2 }), row(60, 0, 'm', { exportEnergyWh: 7 }), row(7200, 3, 'm')];
    expect(sumFlows(rows, [0, 3600, 7200, 10_800, 14_400])).toEqual({ importWh: [5, null, 3, null], exportWh: [9, null, 0, null], netWh: [-4, null, 3, null] });
    expect(sumEnergy(rows, [0, 3600, 7200])).toEqual([5, 0]);
    expect(cumulative([1, null, 3, null])).toEqual([1, null, 4, null]);
    expect(energyBetween(rows, 3600, 7200)).toBeNull();
    // The power line is broken where readings are missing.
    expect(powerSeries([row(0, 1), row(60, 2), row(600, 3)])).toEqual({ times: [0, 60, 120, 600], watts: [60, 120, null, 180] });
  });

  it('attributes the energy of a gap to the reading after it, as the PES does, in both directions', () => {
    const m = 'a000000000000001';
    const r = (time: number, importWh: number, energyWh: number, exportWh = 0, exportEnergyWh = 0, status = 0): Row => ({ meter: m, time, period: 60, importWh, powerW: 0, status, energyWh, exportWh, exportEnergyWh });
    // Batches [0,60) and [180,240) reached the household; the one between them never did.
    const rows = [r(0, 110, 10, 5, 5), r(60, 120, 10, 5, 0), r(180, 150, 5, 40, 3)];
    const got = attributeGaps(rows);
    expect(got.map((x) => [x.energyWh, x.exportEnergyWh])).toEqual([[10, 5], [10, 0], [30, 35]]);
    // Register sums: everything between the first register and the last is counted once.
    expect(got.reduce((a, x) => a + x.energyWh, 0)).toBe(150 - 100);
    // From the row before the range; a reset keeps its own energy; overlapping rows are left alone.
    expect(attributeGaps([r(180, 150, 5)], new Map([[m, r(60, 120, 10)]]))[0]!.energyWh).toBe(30);
    expect(attributeGaps([r(60, 120, 10), r(180, 7, 7, 0, 0, Status.REGISTER_RESET)])[1]!.energyWh).toBe(7);
    expect(attributeGaps([r(60, 120, 10), r(90, 200, 10)])[1]!.energyWh).toBe(10);
    // A silence of more than a week is not a lost frame: its energy is not piled into one reading.
    expect(attributeGaps([r(60, 120, 10), r(120 + MAX_ATTRIBUTED_GAP_S, 150, 5)])[1]!.energyWh).toBe(30);
    expect(attributeGaps([r(60, 120, 10), r(121 + MAX_ATTRIBUTED_GAP_S, 150, 5)])[1]!.energyWh).toBe(5);
  });

  it('sums power across meters per period start and headlines each meter’s newest reading', () => {
    const rows = [row(0, 1, 'm1'), row(0, 2, 'm2'), row(60, 3, 'm1'), row(60, 4, 'm2', { importWh: 5000 })];
    expect(powerSeries(rows)).toEqual({ times: [0, 60], watts: [180, 420] });
    expect(liveNow(rows)).toEqual({ watts: 420, at: 120, registerWh: 1003 + 5000, exportRegisterWh: 0, meters: 2 });
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

describe('stream rows', () => {
  it('carry import and export of either form of the batch; rows of the first store version upgrade with nothing exported', () => {
    const m = 'a000000000000001';
    const long = decodeReadingBatch(encodeReadingBatch({ prevWh: 1000, prevExportWh: 500, readings: [{ time: 0, period: 900, importWh: 1003, powerW: 12, status: 0, exportWh: 692 }, { time: 900, period: 900, importWh: 1014, powerW: 44, status: 0, exportWh: 809 }] }));
    expect(bodyRows({ meter: m, ...long }).map((r) => [r.energyWh, r.exportWh, r.exportEnergyWh])).toEqual([[3, 692, 192], [11, 809, 117]]);
    const short = bodyRows({ meter: m, prevWh: 10, readings: [{ time: 0, period: 60, importWh: 12, powerW: 120, status: 0 }] })[0]!;
    expect(short).toEqual({ meter: m, time: 0, period: 60, importWh: 12, powerW: 120, status: 0, energyWh: 2, exportWh: 0, exportEnergyWh: 0 });
    const { exportWh: _a, exportEnergyWh: _b, ...v1 } = short;
    expect(upgradeRow(v1)).toEqual(short);
    expect(upgradeRow(short)).toEqual(short);
  });
});

describe('exports', () => {
  const rows = [row(utc(2024, 5, 2), 9, 'b000000000000002', { exportWh: 40, exportEnergyWh: 4 }), row(utc(2024, 5, 1, 23, 59), 7), row(utc(2024, 5, 2), 8, 'a000000000000001', { status: 1 })];

  it('CSV: one line per reading, by meter then time, ISO UTC times, export columns last, CRLF', () => {
    expect(toCsv(rows)).toBe(
      [
        CSV_HEADER,
        'a000000000000001,2024-05-01T23:59:00Z,2024-05-02T00:00:00Z,60,1007,7,420,0,0,0',
        'a000000000000001,2024-05-02T00:00:00Z,2024-05-02T00:01:00Z,60,1008,8,480,1,0,0',
        'b000000000000002,2024-05-02T00:00:00Z,2024-05-02T00:01:00Z,60,1009,9,540,0,40,4',
        '',
      ].join('\r\n'),
    );
    expect(CSV_HEADER.startsWith('meter,start,end,period_s,import_register_wh,energy_wh,power_w,status,')).toBe(true);
    expect(toCsv([])).toBe(CSV_HEADER + '\r\n');
  });

  it('Green Button XML: per meter a UsagePoint, a MeterReading and ReadingType per flow direction, IntervalBlocks per local day', () => {
    let n = 0;
    const xml = toEspiXml(rows, { household: 'hh<1>', zone: 'Europe/London', generatedAt: utc(2024, 6, 1), uuid: () => `00000000-0000-4000-8000-${String(++n).padStart(12, '0')}` });
    expect(xml.startsWith('<?xml version="1.0" encoding="UTF-8"?>\n<feed xmlns="http://www.w3.org/2005/Atom">')).toBe(true);
    expect(xml).toContain('household hh&#60;1&#62;');
    expect(xml.match(/<UsagePoint xmlns="http:\/\/naesb.org\/espi">/g)).toHaveLength(2);
    // Meter a never exported: import only; meter b is a prosumer: both directions.
    expect([...xml.matchAll(/<flowDirection>(\d+)<\/flowDirection>/g)].map((m) => m[1])).toEqual(['1', '1', '19']);
    expect(xml.match(/<ReadingType [^]*?<\/ReadingType>/g)![0]).toContain('<accumulationBehaviour>4</accumulationBehaviour><commodity>1</commodity><dataQualifier>12</dataQualifier><flowDirection>1</flowDirection><intervalLength>60</intervalLength><kind>12</kind><phase>769</phase><powerOfTenMultiplier>0</powerOfTenMultiplier><timeAttribute>0</timeAttribute><uom>72</uom>');
    const blocks = [...xml.matchAll(/<IntervalBlock [^>]*><interval><duration>(\d+)<\/duration><start>(\d+)<\/start><\/interval>(.*?)<\/IntervalBlock>/g)];
    // 23:59Z and 00:00Z on 1/2 May are both 2 May in London (BST): one block for meter a.
    expect(blocks.map((b) => [Number(b[1]), Number(b[2])])).toEqual([
      [120, utc(2024, 5, 1, 23, 59)],
      [60, utc(2024, 5, 2)],
      [60, utc(2024, 5, 2)],
    ]);
    const readings = [...xml.matchAll(/<IntervalReading><timePeriod><duration>(\d+)<\/duration><start>(\d+)<\/start><\/timePeriod><value>(\d+)<\/value><\/IntervalReading>/g)];
    expect(readings.map((r) => [Number(r[2]), Number(r[3])])).toEqual([
      [utc(2024, 5, 1, 23, 59), 7],
      [utc(2024, 5, 2), 8],
      [utc(2024, 5, 2), 9],
      [utc(2024, 5, 2), 4],
    ]);
    expect(xml).toContain('<link rel="related" href="RetailCustomer/hh&#60;1&#62;/UsagePoint/1/MeterReading"/>');
    expect(xml).toContain('<LocalTimeParameters xmlns="http://naesb.org/espi"><dstEndRule>AE0E2000</dstEndRule><dstOffset>3600</dstOffset><dstStartRule>3E0E1000</dstStartRule><tzOffset>0</tzOffset></LocalTimeParameters>');
    expect(new Set(xml.match(/urn:uuid:[0-9a-f-]+/g)).size).toBe(xml.match(/<id>/g)!.length);
  });
});

describe('Settings walkthrough and date formats', () => {
  it('quotes shell words only when needed, and fills the household’s values into the commands', () => {
    expect(shellWord('household-hh1')).toBe('household-hh1');
    expect(shellWord("it's $HOME")).toBe(`'it'\\''s $HOME'`);
    const c = commands('hh.1', { mqttUrl: 'wss://broker.example.net:8083', username: 'household-hh.1', password: 'p@ss word' });
    expect(c.password).toBe(`umask 077 && printf '%s\\n' 'p@ss word' > household-hh.1.password`);
    expect(c.watch).toBe('npx smartermeter ucs watch --household hh.1 --key hh.1.key.pem --pes-key pes-sign.pub.pem --mqtt wss://broker.example.net:8083 --username household-hh.1 --password-file household-hh.1.password');
    expect(c.haBridge).toBe(c.watch.replace('ucs watch', 'ucs ha-bridge') + ' --ha-mqtt mqtt://homeassistant.local:1883');
  });

  it('writes every date in the locale’s format, in the household’s zone, and names the zone with its offset', () => {
    const d = dates('Europe/London', 'en-GB');
    const t = utc(2024, 7, 1, 12, 5, 9);
    expect(d.day(t)).toMatch(/^Mon,? 1 Jul 2024$/);
    expect(d.dateTimeSeconds(t)).toMatch(/^Mon,? 1 Jul 2024,? 13:05:09$/);
    expect(d.period('week', utc(2024, 7, 1))).toBe('Week 27, 2024 (1 Jul – 7 Jul)');
    expect(d.period('month', t)).toBe('July 2024');
    expect(d.period('year', t)).toBe('2024');
    expect(d.zoneLabel(t)).toBe('Europe/London (UTC+01:00)');
    expect(d.zoneLabel(utc(2024, 1, 1))).toBe('Europe/London (UTC+00:00)');
    expect(dates('America/New_York', 'en-US').day(t)).toBe('Mon, Jul 1, 2024');
  });
});
