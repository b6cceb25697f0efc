/**
 * Exports of the household's own readings, made in the browser: CSV and Green Button (NAESB ESPI REQ.21)
 * XML. Both carry exactly the decrypted rows; nothing is rounded (energy in integer Wh, ESPI `uom` 72 = Wh
 * with `powerOfTenMultiplier` 0), imported and exported energy alike.
 * @module
 */
import { DateTime } from 'luxon';
import type { Row } from './body.js';

const iso = (t: number) => new Date(t * 1000).toISOString().replace('.000Z', 'Z');
const byMeterTime = (a: Row, b: Row) => (a.meter < b.meter ? -1 : a.meter > b.meter ? 1 : a.time - b.time);

/** Header of {@link toCsv}. The export columns come last, so that readers of the first eight are unchanged. */
export const CSV_HEADER = 'meter,start,end,period_s,import_register_wh,energy_wh,power_w,status,export_register_wh,export_energy_wh';

/**
 * CSV (RFC 4180, CRLF) of the rows, ordered by meter then time; times in ISO 8601 UTC. Columns: meter id,
 * period start, period end, period length (s), import register at the end (Wh), energy imported in the
 * period (Wh), average power (W), status flags (protocol/reading.ts `Status`), export register at the end
 * (Wh), energy exported in the period (Wh).
 * @example
 * ```ts
 * download('readings.csv', toCsv(rows));
 * ```
 */
export function toCsv(rows: readonly Row[]): string {
  const lines = [CSV_HEADER];
  for (const r of [...rows].sort(byMeterTime)) {
    lines.push([r.meter, iso(r.time), iso(r.time + r.period), r.period, r.importWh, r.energyWh, r.powerW, r.status, r.exportWh, r.exportEnergyWh].join(','));
  }
  return lines.join('\r\n') + '\r\n';
}

const xmlEscape = (s: string) => s.replace(/[<>&'"]/g, (c) => `&#${c.charCodeAt(0)};`);
const ESPI = 'http://naesb.org/espi';

/** ESPI `LocalTimeParameters` of a zone (usage.xsd `TimeConfiguration`). */
export interface LocalTime {
  /** Standard offset from UTC, s. */
  tzOffset: number;
  /** Daylight-saving offset on top of it, s (0 without DST). */
  dstOffset: number;
  /** `DstRuleType` bit maps as 8 hex digits; `FFFFFFFF` without DST. */
  dstStartRule: string;
  dstEndRule: string;
}

/** A DST change: UTC instant and the offsets (minutes) before and after. */
function transitions(zone: string, year: number): { at: number; before: number; after: number }[] {
  const out: { at: number; before: number; after: number }[] = [];
  const offset = (t: number) => DateTime.fromSeconds(t, { zone }).offset;
  let t = DateTime.fromObject({ year, month: 1, day: 1 }, { zone: 'UTC' }).toSeconds();
  const end = DateTime.fromObject({ year: year + 1, month: 1, day: 1 }, { zone: 'UTC' }).toSeconds();
  for (; t < end; t += 6 * 3600) {
    if (offset(t) === offset(t + 6 * 3600)) continue;
    let lo = t;
    let hi = t + 6 * 3600;
    while (hi - lo > 60) {
      const mid = lo + Math.floor((hi - lo) / 120) * 60;
      if (offset(mid) === offset(lo)) lo = mid;
      else hi = mid;
    }
    out.push({ at: hi, before: offset(lo), after: offset(hi) });
  }
  return out;
}

/** The wall-clock time (old offset) of a change, as the rule fields of ESPI's DstRuleType. */
function ruleOf(change: { at: number; before: number }, check: { at: number; before: number } | undefined): string {
  const local = DateTime.fromSeconds(change.at + change.before * 60, { zone: 'UTC' });
  const seconds = local.minute * 60 + local.second;
  const nth = Math.ceil(local.day / 7);
  const isLast = local.day + 7 > local.daysInMonth!;
  // Prefer "last <weekday>" when the next year's change agrees with it (e.g. the EU's last Sunday of March).
  const next = check ? DateTime.fromSeconds(check.at + check.before * 60, { zone: 'UTC' }) : undefined;
  let op: number;
  if (isLast && (!next || next.day + 7 > next.daysInMonth!)) op = 7;
  else if (!next || Math.ceil(next.day / 7) === nth) op = nth + 1;
  else op = 0;
  const dom = op === 0 ? local.day : 0;
  const dow = op === 0 ? 0 : local.weekday;
  const v = local.month * 2 ** 28 + op * 2 ** 25 + dom * 2 ** 20 + dow * 2 ** 17 + local.hour * 2 ** 12 + seconds;
  return v.toString(16).toUpperCase().padStart(8, '0');
}

/**
 * The ESPI local time parameters of `zone` in `year`: standard offset, DST offset and the DST start and end
 * rules (month, the nth or last weekday, the local wall-clock time of the change), or no DST.
 * @example
 * ```ts
 * localTimeParameters('America/New_York', 2024); // { tzOffset: -18000, dstOffset: 3600, dstStartRule: '360E2000', dstEndRule: 'B40E2000' }
 * ```
 */
export function localTimeParameters(zone: string, year: number): LocalTime {
  const changes = transitions(zone, year);
  const jan = DateTime.fromObject({ year, month: 1, day: 1 }, { zone }).offset;
  const jul = DateTime.fromObject({ year, month: 7, day: 1 }, { zone }).offset;
  const standard = Math.min(jan, jul);
  const start = changes.find((c) => c.after > c.before);
  const end = changes.find((c) => c.after < c.before);
  if (!start || !end) return { tzOffset: jan * 60, dstOffset: 0, dstStartRule: 'FFFFFFFF', dstEndRule: 'FFFFFFFF' };
  const following = transitions(zone, year + 1);
  return {
    tzOffset: standard * 60,
    dstOffset: (start.after - start.before) * 60,
    dstStartRule: ruleOf(start, following.find((c) => c.after > c.before)),
    dstEndRule: ruleOf(end, following.find((c) => c.after < c.before)),
  };
}

/** Options of {@link toEspiXml}. */
export interface EspiOptions {
  household: string;
  /** The household's IANA time zone: LocalTimeParameters, and IntervalBlocks per local day. */
  zone: string;
  /** Feed time, Unix s (default now). */
  generatedAt?: number;
  /** Id generator (default `crypto.randomUUID`); tests pass a deterministic one. */
  uuid?: () => string;
}

/** The two ESPI flow directions: delivered to the customer (import) and received from the customer (export). */
const FLOWS = [
  { flowDirection: 1, title: 'Energy delivered (Wh)', what: 'Imported energy', value: (r: Row) => r.energyWh },
  { flowDirection: 19, title: 'Energy received (Wh)', what: 'Exported energy', value: (r: Row) => r.exportEnergyWh },
] as const;

/**
 * A Green Button (ESPI) Atom feed: one LocalTimeParameters entry for the household's zone; per meter a
 * UsagePoint (electricity) related to it; per flow direction a MeterReading with its ReadingType (delta data,
 * energy, Wh, the meter's most common period as interval length; `flowDirection` 1 = forward, delivered to the
 * customer; 19 = reverse, received from the customer — only for a meter whose export register moved) and one
 * IntervalBlock per local day whose interval starts with its first reading and ends with its last, with an
 * IntervalReading per reading (`timePeriod` start/duration, `value` Wh). Relations follow the ESPI link
 * convention (`self`/`up`/`related` hrefs under `RetailCustomer/<hh>`).
 * @example
 * ```ts
 * download('greenbutton.xml', toEspiXml(rows, { household: 'hh1', zone: 'Europe/Amsterdam' }));
 * ```
 */
export function toEspiXml(rows: readonly Row[], opts: EspiOptions): string {
  const uuid = opts.uuid ?? (() => crypto.randomUUID());
  const now = iso(opts.generatedAt ?? Math.floor(Date.now() / 1000));
  const hh = xmlEscape(opts.household);
  const base = `RetailCustomer/${hh}/UsagePoint`;
  const out: string[] = [
    '<?xml version="1.0" encoding="UTF-8"?>',
    '<feed xmlns="http://www.w3.org/2005/Atom">',
    `  <id>urn:uuid:${uuid()}</id>`,
    `  <title>Smarter Metering: readings of household ${hh}</title>`,
    `  <updated>${now}</updated>`,
    `  <link rel="self" href="${base}"/>`,
  ];
  const entry = (links: [string, string][], title: string, content: string) => {
    out.push('  <entry>', `    <id>urn:uuid:${uuid()}</id>`);
    for (const [rel, href] of links) out.push(`    <link rel="${rel}" href="${href}"/>`);
    out.push(`    <title>${title}</title>`, `    <content>${content}</content>`, `    <published>${now}</published>`, `    <updated>${now}</updated>`, '  </entry>');
  };
  const sorted = [...rows].sort(byMeterTime);
  const year = DateTime.fromSeconds(sorted[0]?.time ?? Math.floor(Date.now() / 1000), { zone: opts.zone }).year;
  const ltp = localTimeParameters(opts.zone, year);
  const ltpHref = 'LocalTimeParameters/1';
  entry(
    [['self', ltpHref], ['up', 'LocalTimeParameters']],
    `${xmlEscape(opts.zone)}`,
    `<LocalTimeParameters xmlns="${ESPI}"><dstEndRule>${ltp.dstEndRule}</dstEndRule><dstOffset>${ltp.dstOffset}</dstOffset><dstStartRule>${ltp.dstStartRule}</dstStartRule><tzOffset>${ltp.tzOffset}</tzOffset></LocalTimeParameters>`,
  );
  const meters = new Map<string, Row[]>();
  for (const r of sorted) {
    let list = meters.get(r.meter);
    if (!list) meters.set(r.meter, (list = []));
    list.push(r);
  }
  let n = 0;
  let rt = 0;
  for (const [meter, list] of meters) {
    n++;
    const up = `${base}/${n}`;
    const flows = list.some((r) => r.exportWh !== 0) ? FLOWS : FLOWS.slice(0, 1);
    entry(
      [['self', up], ['up', base], ['related', `${up}/MeterReading`], ['related', ltpHref]],
      `Meter ${xmlEscape(meter)}`,
      `<UsagePoint xmlns="${ESPI}"><ServiceCategory><kind>0</kind></ServiceCategory></UsagePoint>`,
    );
    flows.forEach((flow, f) => {
      rt++;
      const mr = `${up}/MeterReading/${f + 1}`;
      entry([['self', mr], ['up', `${up}/MeterReading`], ['related', `ReadingType/${rt}`], ['related', `${mr}/IntervalBlock`]], `${flow.what} of meter ${xmlEscape(meter)}`, `<MeterReading xmlns="${ESPI}"/>`);
      entry(
        [['self', `ReadingType/${rt}`], ['up', 'ReadingType']],
        flow.title,
        `<ReadingType xmlns="${ESPI}"><accumulationBehaviour>4</accumulationBehaviour><commodity>1</commodity><dataQualifier>12</dataQualifier><flowDirection>${flow.flowDirection}</flowDirection><intervalLength>${commonPeriod(list)}</intervalLength><kind>12</kind><phase>769</phase><powerOfTenMultiplier>0</powerOfTenMultiplier><timeAttribute>0</timeAttribute><uom>72</uom></ReadingType>`,
      );
      const days = new Map<string, Row[]>();
      for (const r of list) {
        const d = DateTime.fromSeconds(r.time, { zone: opts.zone }).toISODate()!;
        let l = days.get(d);
        if (!l) days.set(d, (l = []));
        l.push(r);
      }
      let b = 0;
      for (const [day, dayRows] of days) {
        b++;
        const first = dayRows[0]!;
        const last = dayRows[dayRows.length - 1]!;
        const readings = dayRows
          .map((r) => `<IntervalReading><timePeriod><duration>${r.period}</duration><start>${r.time}</start></timePeriod><value>${flow.value(r)}</value></IntervalReading>`)
          .join('');
        entry(
          [['self', `${mr}/IntervalBlock/${b}`], ['up', `${mr}/IntervalBlock`]],
          `${day} (${xmlEscape(opts.zone)})`,
          `<IntervalBlock xmlns="${ESPI}"><interval><duration>${last.time + last.period - first.time}</duration><start>${first.time}</start></interval>${readings}</IntervalBlock>`,
        );
      }
    });
  }
  out.push('</feed>');
  return out.join('\n') + '\n';
}

function commonPeriod(rows: readonly Row[]): number {
  const count = new Map<number, number>();
  let best = rows[0]?.period ?? 0;
  for (const r of rows) {
    const c = (count.get(r.period) ?? 0) + 1;
    count.set(r.period, c);
    if (c > (count.get(best) ?? 0)) best = r.period;
  }
  return best;
}
