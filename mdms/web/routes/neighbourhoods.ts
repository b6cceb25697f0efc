/**
 * Neighbourhood demand: the chart page (day / week / month, several neighbourhoods compared, peak interval
 * highlighted, revised intervals marked, the number of contributing meters on a second axis), an interval's
 * revision history, and the same data over the API. Analysts only.
 * @module
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { NeighbourhoodRow } from '../../store/types.js';
import { ForecastError } from '../../analytics/forecast.js';
import { forecastNeighbourhood } from '../../analytics/neighbourhood.js';
import { formatKwh } from '../../../lib/billing.js';
import { HttpError } from '../context.js';
import { html, jsonScript } from '../html.js';
import { sendPage } from '../render.js';
import { errors, NAME_PATTERN, rangeQuery, revisionSchema, seriesSchema } from '../schemas.js';
import { calendarRange, DATE_PATTERN, fmtTime, isoZ, latestEnd, localDate, parseRange, parseTime, RANGE_KINDS, TIME_PATTERN, type RangeKind } from '../time.js';

const COLORS = ['#0f766e', '#2563eb', '#c2410c', '#7c3aed', '#be123c', '#4d7c0f'];
export const MAX_COMPARE = 6;

/** Summary figures of one neighbourhood's rows. */
export interface SeriesSummary {
  /** Imported over the rows. */
  energyWh: number;
  /** Exported over the rows. */
  exportWh: number;
  peak: NeighbourhoodRow | null;
  peakIndex: number | null;
  revised: number;
  minMeters: number | null;
  maxMeters: number | null;
}

/**
 * Totals (import, export), peak (highest import; the earliest of equals), revised count and meter range of a series.
 * @example
 * ```ts
 * summarise(await store.latestNeighbourhood({ neighbourhood: 'nb1', from, to })).peak;
 * ```
 */
export function summarise(rows: readonly NeighbourhoodRow[]): SeriesSummary {
  let energyWh = 0;
  let exportWh = 0;
  let peakIndex: number | null = null;
  let revised = 0;
  let minMeters: number | null = null;
  let maxMeters: number | null = null;
  rows.forEach((r, i) => {
    energyWh += r.energyWh;
    exportWh += r.exportWh;
    if (peakIndex === null || r.energyWh > rows[peakIndex]!.energyWh) peakIndex = i;
    if (r.revision > 0) revised++;
    minMeters = minMeters === null ? r.meters : Math.min(minMeters, r.meters);
    maxMeters = maxMeters === null ? r.meters : Math.max(maxMeters, r.meters);
  });
  return { energyWh, exportWh, peak: peakIndex === null ? null : rows[peakIndex]!, peakIndex, revised, minMeters, maxMeters };
}

const pointJson = (r: NeighbourhoodRow) => ({
  start: isoZ(r.start),
  end: isoZ(r.end),
  meters: r.meters,
  energyWh: r.energyWh,
  exportWh: r.exportWh,
  netWh: r.energyWh - r.exportWh,
  revision: r.revision,
  dp: r.dp,
});

/** Average net power over an interval (import minus export), in kW with one decimal, from integer Wh (display only). */
function kw(r: NeighbourhoodRow): string {
  const w10 = Math.round(((r.energyWh - r.exportWh) * 3600 * 10) / (r.end - r.start) / 1000);
  return (w10 / 10).toFixed(1);
}

/**
 * Registers the neighbourhood routes.
 * @example
 * ```ts
 * await app.register(neighbourhoodRoutes);
 * ```
 */
export async function neighbourhoodRoutes(app: FastifyInstance): Promise<void> {
  const { store, web, fleet } = app.mdms;

  const fleetMeters = (nb: string): number | null => (fleet ? fleet.meters.filter((m) => m.neighbourhood === nb).length : null);
  async function known(): Promise<string[]> {
    return [...new Set([...(await store.listNeighbourhoods()), ...(fleet?.neighbourhoods ?? [])])].sort();
  }
  async function checkKnown(nb: string): Promise<void> {
    if (!(await known()).includes(nb)) throw new HttpError(404, `unknown neighbourhood "${nb}"`);
  }
  const latestOf = (nb: string) => latestEnd(async (from) => (await store.latestNeighbourhood({ neighbourhood: nb, from, limit: 1 }))[0]);

  app.get(
    '/neighbourhoods',
    {
      config: { access: 'neighbourhood.read' },
      schema: {
        hide: true,
        querystring: {
          type: 'object',
          properties: {
            nb: { type: 'array', items: { type: 'string', pattern: NAME_PATTERN }, maxItems: MAX_COMPARE },
            range: { type: 'string', enum: RANGE_KINDS },
            date: { type: 'string', pattern: DATE_PATTERN },
          },
        },
        response: { 200: { type: 'string' } },
      },
    },
    async (req, reply) => {
      const q = req.query as { nb?: string[]; range?: RangeKind; date?: string };
      const tz = (await web.settings.all()).timezone;
      const all = await known();
      const selected = q.nb?.length ? [...new Set(q.nb)] : all.slice(0, 1);
      for (const nb of selected) if (!all.includes(nb)) throw new HttpError(404, `unknown neighbourhood "${nb}"`);
      const kind = q.range ?? 'day';
      let date = q.date;
      if (!date) {
        const ends = (await Promise.all(selected.map(latestOf))).filter((e): e is number => e !== null);
        date = localDate(ends.length ? Math.max(...ends) - 1 : Math.floor(app.mdms.now() / 1000), tz);
      }
      const range = calendarRange(kind, date, tz);
      const series = await Promise.all(
        selected.map(async (nb, i) => {
          const rows = await store.latestNeighbourhood({ neighbourhood: nb, from: range.from, to: range.to });
          return { nb, idx: i % COLORS.length, rows, color: COLORS[i % COLORS.length]!, ...summarise(rows) };
        }),
      );
      const link = (over: { range?: RangeKind; date?: string }): string => {
        const p = new URLSearchParams();
        for (const nb of selected) p.append('nb', nb);
        p.set('range', over.range ?? kind);
        p.set('date', over.date ?? date!);
        return `/neighbourhoods?${p}`;
      };
      const csv = (() => {
        const p = new URLSearchParams();
        for (const nb of selected) p.append('nb', nb);
        p.set('from', isoZ(range.from));
        p.set('to', isoZ(range.to));
        return `/api/v1/exports/neighbourhood.csv?${p}`;
      })();
      // One neighbourhood over a day: its day-ahead forecast from the data before the day, against the actuals.
      let forecast: { level: number; points: number[][] } | null = null;
      if (series.length === 1 && kind === 'day') {
        try {
          const f = await forecastNeighbourhood(store, series[0]!.nb, { horizonS: range.to - range.from, until: range.from });
          forecast = { level: f.level, points: f.points.map((p) => [p.start, p.energyWh, p.lowerWh, p.upperWh]) };
          app.mdms.metrics.forecasts.inc({ outcome: 'ok' });
        } catch (e) {
          if (!(e instanceof ForecastError)) throw e;
          app.mdms.metrics.forecasts.inc({ outcome: 'refused' });
        }
      }
      const chartData = {
        tz,
        from: range.from,
        to: range.to,
        series: series.map((s) => ({ neighbourhood: s.nb, color: s.color, peak: s.peakIndex, points: s.rows.map((r) => [r.start, r.end, r.meters, r.energyWh, r.revision, r.exportWh]) })),
        forecast,
      };
      const exported = series.some((s) => s.exportWh !== 0);
      const points = series.reduce((a, s) => a + s.rows.length, 0);
      const one = series.length === 1 ? series[0]! : null;
      return sendPage(req, reply, { title: 'Neighbourhood demand', active: '/neighbourhoods' }, () => html`
<h1>Neighbourhood demand</h1>
<p class="sub">Energy per interval released by the PES for groups of meters, latest revision of each interval: imported from the grid, exported to it, and the net (import − export, negative when the neighbourhood delivers). Times in ${tz}.</p>
<div class="card no-print">
  <form method="get" action="/neighbourhoods" class="row" id="demand-form">
    <fieldset><legend>Neighbourhoods (compare up to ${MAX_COMPARE})</legend><div class="checks">
      ${all.map((nb) => html`<label><input type="checkbox" name="nb" value="${nb}"${selected.includes(nb) ? html` checked` : ''}> ${nb}</label>`)}
    </div></fieldset>
    <label>Range <select name="range" data-autosubmit>${RANGE_KINDS.map((k) => html`<option value="${k}"${k === kind ? html` selected` : ''}>${k}</option>`)}</select></label>
    <label>Date <input type="date" name="date" value="${date}"></label>
    <button type="submit">Show</button>
  </form>
  <div class="toolbar spaced">
    <div class="seg">${RANGE_KINDS.map((k) => html`<a href="${link({ range: k })}" class="${k === kind ? 'on' : ''}">${k[0]!.toUpperCase() + k.slice(1)}</a>`)}</div>
    <div class="seg"><a href="${link({ date: range.prev })}" rel="prev">← Previous</a><a href="${link({ date: range.next })}" rel="next">Next →</a></div>
    <a class="button secondary" href="${csv}" download>Download CSV</a>
  </div>
</div>
<div class="card">
  <h2>${range.label} <span class="muted">· ${selected.join(', ')}</span></h2>
  ${points === 0 ? html`<p class="muted" data-testid="no-data">No data for this range.</p>` : ''}
  <div id="demand-chart" class="chart" role="img" aria-label="Energy per interval chart" data-testid="demand-chart"><p class="muted">The chart needs JavaScript; the table below has the same figures.</p></div>
  <script type="application/json" id="chart-data">${jsonScript(chartData)}</script>
  <p class="legend-note" data-testid="chart-legend">Solid line: energy imported per interval (left axis). ${exported ? html`<span data-testid="export-note">Dotted: energy exported. Dash-dot: net (import − export; below zero the neighbourhood delivers).</span> ` : html`<span class="muted">Nothing was exported in this range.</span> `}Dashed: contributing meters (right axis). Circled: peak import interval. Dots: intervals revised by the PES.${forecast ? html` <span data-testid="forecast-note">Thin blue line and band: the day-ahead forecast made from the data before this day, with its ${Math.round(forecast.level * 100)} % interval (<a href="${`/forecast?nb=${encodeURIComponent(series[0]!.nb)}&date=${date}`}">details</a>).</span>` : ''}</p>
</div>
<div class="card table-wrap">
  <h2>Summary</h2>
  <table data-testid="summary"><thead><tr><th>Neighbourhood</th><th class="num">Intervals</th><th class="num">Import (kWh)</th><th class="num">Export (kWh)</th><th class="num">Net (kWh)</th><th>Peak interval</th><th class="num">Peak (kWh)</th><th class="num">Meters</th><th class="num">Revised</th></tr></thead><tbody>
  ${series.map(
    (s) => html`<tr><td><span class="${`swatch sw-${s.idx}`}">●</span> <a href="${`/neighbourhoods?nb=${encodeURIComponent(s.nb)}&range=${kind}&date=${date}`}">${s.nb}</a></td><td class="num">${s.rows.length}</td><td class="num">${formatKwh(s.energyWh)}</td><td class="num" data-testid="${`export-${s.nb}`}">${formatKwh(s.exportWh)}</td><td class="num" data-testid="${`net-${s.nb}`}">${formatKwh(s.energyWh - s.exportWh)}</td>
      <td data-testid="peak-${s.nb}">${s.peak ? `${fmtTime(s.peak.start, tz)}–${fmtTime(s.peak.end, tz, 'time')}` : '–'}</td><td class="num">${s.peak ? formatKwh(s.peak.energyWh) : '–'}</td>
      <td class="num">${s.minMeters === null ? '–' : s.minMeters === s.maxMeters ? s.minMeters : `${s.minMeters}–${s.maxMeters}`}</td><td class="num">${s.revised ? html`<span class="badge rev">${s.revised}</span>` : '0'}</td></tr>`,
  )}
  </tbody></table>
</div>
${
  one && kind === 'day' && one.rows.length
    ? html`<div class="card table-wrap"><h2>Intervals · ${one.nb}</h2><table data-testid="intervals"><thead><tr><th>Interval</th><th class="num">Meters</th><th class="num">Import (kWh)</th><th class="num">Export (kWh)</th><th class="num">Net (kWh)</th><th class="num">Average net (kW)</th><th>Revision</th></tr></thead><tbody>
${one.rows.map(
  (r, i) => html`<tr class="${i === one.peakIndex ? 'peak' : ''}"><td>${fmtTime(r.start, tz, 'time')}–${fmtTime(r.end, tz, 'time')}${i === one.peakIndex ? html` <span class="badge">peak</span>` : ''}</td><td class="num">${r.meters}</td><td class="num">${formatKwh(r.energyWh)}</td><td class="num">${formatKwh(r.exportWh)}</td><td class="num">${formatKwh(r.energyWh - r.exportWh)}</td><td class="num">${kw(r)}</td>
<td>${r.revision > 0 ? html`<a class="badge rev" href="${`/neighbourhoods/${encodeURIComponent(one.nb)}/intervals/${isoZ(r.start)}`}">revised (r${r.revision})</a>` : html`<span class="muted">r0</span>`}</td></tr>`,
)}</tbody></table></div>`
    : ''
}`);
    },
  );

  app.get(
    '/neighbourhoods/:nb/intervals/:start',
    {
      config: { access: 'neighbourhood.read' },
      schema: {
        hide: true,
        params: { type: 'object', properties: { nb: { type: 'string', pattern: NAME_PATTERN }, start: { type: 'string', pattern: TIME_PATTERN } }, required: ['nb', 'start'] },
        response: { 200: { type: 'string' } },
      },
    },
    async (req, reply) => {
      const p = req.params as { nb: string; start: string };
      await checkKnown(p.nb);
      const tz = (await web.settings.all()).timezone;
      const start = parseTime(p.start, 'UTC', 'start');
      const revs = await store.revisions({ kind: 'neighbourhood', neighbourhood: p.nb, start });
      if (revs.length === 0) throw new HttpError(404, `no interval of ${p.nb} starts at ${isoZ(start)}`);
      return sendPage(req, reply, { title: 'Interval revisions', active: '/neighbourhoods' }, () => html`
<h1>${p.nb} · ${fmtTime(start, tz)}–${fmtTime(revs[0]!.end, tz, 'time')}</h1>
<p class="sub">Every revision the PES released for this interval; the highest is the one shown and exported. <a href="${`/neighbourhoods?nb=${encodeURIComponent(p.nb)}&range=day&date=${localDate(start, tz)}`}">Back to the day</a></p>
<div class="card table-wrap"><table><thead><tr><th>Revision</th><th class="num">Meters</th><th class="num">Import (kWh)</th><th class="num">Export (kWh)</th><th>Received</th></tr></thead><tbody>
${revs.map((r, i) => html`<tr class="${i === revs.length - 1 ? 'peak' : ''}"><td>r${r.revision}${i === revs.length - 1 ? html` <span class="badge ok">latest</span>` : ''}</td><td class="num">${r.meters}</td><td class="num">${formatKwh(r.energyWh)}</td><td class="num">${formatKwh(r.exportWh)}</td><td>${fmtTime(Math.floor(r.receivedAtMs / 1000), tz, 'full')}</td></tr>`)}
</tbody></table></div>`);
    },
  );

  // ---- API
  const tags = ['neighbourhoods'];
  app.get(
    '/api/v1/neighbourhoods',
    {
      config: { access: 'neighbourhood.read' },
      schema: {
        tags,
        summary: 'Neighbourhoods',
        description: 'Every neighbourhood with data or in the fleet. Needs neighbourhood.read (analyst).',
        response: {
          200: {
            type: 'array',
            items: { type: 'object', properties: { neighbourhood: { type: 'string' }, fleetMeters: { type: ['integer', 'null'] }, hasData: { type: 'boolean' } }, required: ['neighbourhood', 'fleetMeters', 'hasData'] },
          },
          ...errors,
        },
      },
    },
    async () => {
      const withData = new Set(await store.listNeighbourhoods());
      return (await known()).map((nb) => ({ neighbourhood: nb, fleetMeters: fleetMeters(nb), hasData: withData.has(nb) }));
    },
  );

  app.get(
    '/api/v1/neighbourhoods/:nb/series',
    {
      config: { access: 'neighbourhood.read' },
      schema: {
        tags,
        summary: 'Energy per interval of one neighbourhood',
        description:
          'Latest revision of each interval overlapping [from, to) (at most 400 days; default: the day of the latest data): energy imported, exported and net, the DP ledger of noised releases, the peak import interval and the number of revised intervals. Needs neighbourhood.read (analyst).',
        params: { type: 'object', properties: { nb: { type: 'string', pattern: NAME_PATTERN } }, required: ['nb'] },
        querystring: { type: 'object', properties: rangeQuery },
        response: { 200: seriesSchema, ...errors },
      },
    },
    async (req: FastifyRequest) => {
      const { nb } = req.params as { nb: string };
      const q = req.query as { from?: string; to?: string };
      await checkKnown(nb);
      const tz = (await web.settings.all()).timezone;
      let { from, to } = parseRange(q.from, q.to, tz);
      if (from === undefined && to === undefined) {
        const last = await latestOf(nb);
        ({ from, to } = calendarRange('day', localDate(last === null ? Math.floor(app.mdms.now() / 1000) : last - 1, tz), tz));
      }
      from ??= to! - 86_400;
      to ??= from + 86_400;
      const rows = await store.latestNeighbourhood({ neighbourhood: nb, from, to });
      const s = summarise(rows);
      return {
        neighbourhood: nb,
        from: isoZ(from),
        to: isoZ(to),
        points: rows.map(pointJson),
        peak: s.peak ? pointJson(s.peak) : null,
        energyWh: s.energyWh,
        exportWh: s.exportWh,
        netWh: s.energyWh - s.exportWh,
        revised: s.revised,
      };
    },
  );

  app.get(
    '/api/v1/neighbourhoods/:nb/intervals/:start/revisions',
    {
      config: { access: 'neighbourhood.read' },
      schema: {
        tags,
        summary: 'Every revision of one interval',
        description: 'Oldest first. `start` is the interval start as ISO 8601 (UTC unless an offset is given). Needs neighbourhood.read (analyst).',
        params: { type: 'object', properties: { nb: { type: 'string', pattern: NAME_PATTERN }, start: { type: 'string', pattern: TIME_PATTERN } }, required: ['nb', 'start'] },
        response: { 200: { type: 'array', items: revisionSchema }, ...errors },
      },
    },
    async (req) => {
      const p = req.params as { nb: string; start: string };
      await checkKnown(p.nb);
      const start = parseTime(p.start, 'UTC', 'start');
      const revs = await store.revisions({ kind: 'neighbourhood', neighbourhood: p.nb, start });
      if (revs.length === 0) throw new HttpError(404, `no interval of ${p.nb} starts at ${isoZ(start)}`);
      return revs.map((r) => ({ revision: r.revision, meters: r.meters, energyWh: r.energyWh, exportWh: r.exportWh, dp: r.dp, receivedAt: isoZ(Math.floor(r.receivedAtMs / 1000)) }));
    },
  );
}
