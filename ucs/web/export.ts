/**
 * Exports of the household's own readings, made in the browser: CSV and Green Button (NAESB ESPI REQ.21)
 * XML. Both carry exactly the decrypted rows; nothing is rounded (energy in integer Wh, ESPI `uom` 72 = Wh
 * with `powerOfTenMultiplier` 0).
 * @module
 */
import type { Row } from './body.js';

const iso = (t: number) => new Date(t * 1000).toISOString().replace('.000Z', 'Z');
const byMeterTime = (a: Row, b: Row) => (a.meter < b.meter ? -1 : a.meter > b.meter ? 1 : a.time - b.time);

/** Header of {@link toCsv}. */
export const CSV_HEADER = 'meter,start,end,period_s,import_register_wh,energy_wh,power_w,status';

/**
 * CSV (RFC 4180, CRLF) of the rows, ordered by meter then time; times in ISO 8601 UTC. Columns: meter id,
 * period start, period end, period length (s), import register at the end (Wh), energy of the period (Wh),
 * average power (W), status flags (protocol/reading.ts `Status`).
 * @example
 * ```ts
 * download('readings.csv', toCsv(rows));
 * ```
 */
export function toCsv(rows: readonly Row[]): string {
  const lines = [CSV_HEADER];
  for (const r of [...rows].sort(byMeterTime)) {
    lines.push([r.meter, iso(r.time), iso(r.time + r.period), r.period, r.importWh, r.energyWh, r.powerW, r.status].join(','));
  }
  return lines.join('\r\n') + '\r\n';
}

const xmlEscape = (s: string) => s.replace(/[<>&'"]/g, (c) => `&#${c.charCodeAt(0)};`);
const ESPI = 'http://naesb.org/espi';

/** Options of {@link toEspiXml}. */
export interface EspiOptions {
  household: string;
  /** Feed time, Unix s (default now). */
  generatedAt?: number;
  /** Id generator (default `crypto.randomUUID`); tests pass a deterministic one. */
  uuid?: () => string;
}

/**
 * A Green Button (ESPI) Atom feed: per meter a UsagePoint (electricity), a MeterReading, its ReadingType
 * (delta data, energy, forward flow, Wh, the meter's most common period as interval length) and one
 * IntervalBlock per UTC day with an IntervalReading per reading (`timePeriod` start/duration, `value` Wh).
 * Relations follow the ESPI link convention (`self`/`up`/`related` hrefs under `RetailCustomer/<hh>`).
 * @example
 * ```ts
 * download('greenbutton.xml', toEspiXml(rows, { household: 'hh1' }));
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
  const meters = new Map<string, Row[]>();
  for (const r of [...rows].sort(byMeterTime)) {
    let list = meters.get(r.meter);
    if (!list) meters.set(r.meter, (list = []));
    list.push(r);
  }
  let n = 0;
  for (const [meter, list] of meters) {
    n++;
    const up = `${base}/${n}`;
    const mr = `${up}/MeterReading/1`;
    entry([['self', up], ['up', base], ['related', `${up}/MeterReading`]], `Meter ${xmlEscape(meter)}`, `<UsagePoint xmlns="${ESPI}"><ServiceCategory><kind>0</kind></ServiceCategory></UsagePoint>`);
    entry([['self', mr], ['up', `${up}/MeterReading`], ['related', `ReadingType/${n}`], ['related', `${mr}/IntervalBlock`]], `Import energy of meter ${xmlEscape(meter)}`, `<MeterReading xmlns="${ESPI}"/>`);
    entry(
      [['self', `ReadingType/${n}`], ['up', 'ReadingType']],
      'Energy delivered (Wh)',
      `<ReadingType xmlns="${ESPI}"><accumulationBehaviour>4</accumulationBehaviour><commodity>1</commodity><dataQualifier>12</dataQualifier><flowDirection>1</flowDirection><intervalLength>${commonPeriod(list)}</intervalLength><kind>12</kind><phase>769</phase><powerOfTenMultiplier>0</powerOfTenMultiplier><timeAttribute>0</timeAttribute><uom>72</uom></ReadingType>`,
    );
    const days = new Map<number, Row[]>();
    for (const r of list) {
      const d = Math.floor(r.time / 86400) * 86400;
      let l = days.get(d);
      if (!l) days.set(d, (l = []));
      l.push(r);
    }
    let b = 0;
    for (const [day, dayRows] of days) {
      b++;
      const readings = dayRows
        .map((r) => `<IntervalReading><timePeriod><duration>${r.period}</duration><start>${r.time}</start></timePeriod><value>${r.energyWh}</value></IntervalReading>`)
        .join('');
      entry(
        [['self', `${mr}/IntervalBlock/${b}`], ['up', `${mr}/IntervalBlock`]],
        `${new Date(day * 1000).toISOString().slice(0, 10)} (UTC)`,
        `<IntervalBlock xmlns="${ESPI}"><interval><duration>86400</duration><start>${day}</start></interval>${readings}</IntervalBlock>`,
      );
    }
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
