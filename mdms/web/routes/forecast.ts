/**
 * Demand forecasts for grid planning: the forecast page (a neighbourhood's next day, or any past day forecast
 * from the data before it, against the actual values, with the 80 % interval as a band) and the API
 * (forecast, back-test). Analysts only (neighbourhood.read), like the demand they are made from.
 *
 * A forecast fits MSTL + ETS eight times (see mdms/analytics/forecast.ts): about half a second of CPU for
 * four weeks of 15-minute intervals, computed per request.
 * @module
 */
import type { FastifyInstance } from 'fastify';
import { DEFAULT_LEVEL, ForecastError } from '../../analytics/forecast.js';
import { backtestNeighbourhood, forecastNeighbourhood, MAX_HORIZON_S, type NeighbourhoodForecast } from '../../analytics/neighbourhood.js';
import { formatKwh } from '../../../lib/billing.js';
import { HttpError } from '../context.js';
import { html, jsonScript } from '../html.js';
import { sendPage } from '../render.js';
import { errors, NAME_PATTERN } from '../schemas.js';
import { DATE_PATTERN, fmtTime, isoZ, localDate, parseTime, TIME_PATTERN } from '../time.js';
import { parseDuration } from '../../../lib/flags.js';

const iso = { type: 'string', format: 'date-time', description: 'ISO 8601, UTC' } as const;
const num = { type: 'number' } as const;
const nullableNum = { type: ['number', 'null'] } as const;

const forecastSchema = {
  type: 'object',
  properties: {
    neighbourhood: { type: 'string' },
    until: { ...iso, description: 'cut-off: the model saw only data before this time' },
    model: { type: 'string' },
    periods: { type: 'array', items: { type: 'integer' }, description: 'seasonal periods, in intervals' },
    level: num,
    interval: { type: 'string', enum: ['calibrated', 'model'] },
    filled: { type: 'integer', description: 'missing history intervals filled before fitting' },
    points: {
      type: 'array',
      items: {
        type: 'object',
        properties: { start: iso, end: iso, energyWh: { type: 'integer' }, lowerWh: { type: 'integer' }, upperWh: { type: 'integer' }, actualWh: { type: ['integer', 'null'] } },
        required: ['start', 'end', 'energyWh', 'lowerWh', 'upperWh', 'actualWh'],
      },
    },
  },
  required: ['neighbourhood', 'until', 'model', 'periods', 'level', 'interval', 'filled', 'points'],
} as const;

const accuracySchema = { type: 'object', properties: { maeWh: num, mape: nullableNum, mase: nullableNum, points: { type: 'integer' } }, required: ['maeWh', 'mape', 'mase', 'points'] } as const;

const backtestSchema = {
  type: 'object',
  properties: {
    neighbourhood: { type: 'string' },
    until: iso,
    days: { type: 'integer' },
    model: { type: 'object', properties: { ...accuracySchema.properties, coverage: num, level: num }, required: [...accuracySchema.required, 'coverage', 'level'] },
    naiveDay: accuracySchema,
    naiveWeek: { anyOf: [accuracySchema, { type: 'null' }] },
  },
  required: ['neighbourhood', 'until', 'days', 'model', 'naiveDay', 'naiveWeek'],
} as const;

const finite = (x: number) => (Number.isFinite(x) ? x : null);
const accuracyJson = (a: { maeWh: number; mape: number; mase: number; points: number }) => ({ maeWh: a.maeWh, mape: finite(a.mape), mase: finite(a.mase), points: a.points });

function forecastJson(f: NeighbourhoodForecast) {
  return {
    neighbourhood: f.neighbourhood,
    until: isoZ(f.until),
    model: f.model,
    periods: f.periods,
    level: f.level,
    interval: f.interval,
    filled: f.filled,
    points: f.points.map((p, i) => ({ start: isoZ(p.start), end: isoZ(p.end), energyWh: p.energyWh, lowerWh: p.lowerWh, upperWh: p.upperWh, actualWh: f.actualWh[i] ?? null })),
  };
}

/** A forecast error (too little history...) is the client's problem to fix: 422 with the reason. */
async function orUnprocessable<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof ForecastError) throw new HttpError(422, e.message);
    throw e;
  }
}

/**
 * Registers the forecast page and API.
 * @example
 * ```ts
 * await app.register(forecastRoutes);
 * ```
 */
export async function forecastRoutes(app: FastifyInstance): Promise<void> {
  const { store, web, metrics } = app.mdms;
  async function checkKnown(nb: string): Promise<void> {
    if (!(await store.listNeighbourhoods()).includes(nb)) throw new HttpError(404, `no stored aggregate of neighbourhood "${nb}"`);
  }
  async function run(nb: string, opts: { horizonS: number; until?: number; level?: number }): Promise<NeighbourhoodForecast> {
    await checkKnown(nb);
    try {
      const f = await orUnprocessable(() => forecastNeighbourhood(store, nb, opts));
      metrics.forecasts.inc({ outcome: 'ok' });
      return f;
    } catch (e) {
      metrics.forecasts.inc({ outcome: 'refused' });
      throw e;
    }
  }

  app.get(
    '/forecast',
    {
      config: { access: 'neighbourhood.read' },
      schema: {
        hide: true,
        querystring: { type: 'object', properties: { nb: { type: 'string', pattern: NAME_PATTERN }, date: { type: 'string', pattern: DATE_PATTERN } } },
        response: { 200: { type: 'string' } },
      },
    },
    async (req, reply) => {
      const q = req.query as { nb?: string; date?: string };
      const tz = (await web.settings.all()).timezone;
      const all = await store.listNeighbourhoods();
      const nb = q.nb ?? all[0];
      if (nb !== undefined && !all.includes(nb)) throw new HttpError(404, `no stored aggregate of neighbourhood "${nb}"`);
      let f: NeighbourhoodForecast | null = null;
      let problem: string | null = null;
      if (nb !== undefined) {
        try {
          f = await run(nb, { horizonS: 86_400, ...(q.date ? { until: parseTime(q.date, tz, 'date') } : {}) });
        } catch (e) {
          if (!(e instanceof HttpError && e.statusCode === 422)) throw e;
          problem = e.message;
        }
      }
      const date = f ? localDate(f.until, tz) : (q.date ?? '');
      const known = f ? f.points.map((p, i) => ({ p, a: f!.actualWh[i] ?? null })).filter((x) => x.a !== null) : [];
      const mae = known.length ? known.reduce((s, x) => s + Math.abs(x.p.energyWh - x.a!), 0) / known.length : null;
      const inside = known.filter((x) => x.a! >= x.p.lowerWh && x.a! <= x.p.upperWh).length;
      const chartData = f && {
        tz,
        from: f.points[0]!.start,
        to: f.points[f.points.length - 1]!.end,
        level: f.level,
        points: f.points.map((p, i) => [p.start, p.energyWh, p.lowerWh, p.upperWh, f!.actualWh[i] ?? null]),
      };
      return sendPage(req, reply, { title: 'Demand forecast', active: '/forecast' }, () => html`
<h1>Demand forecast</h1>
<p class="sub">Day-ahead forecast of a neighbourhood's energy per interval from its released aggregates only (MSTL with daily and weekly seasonality, ETS trend), with its ${Math.round(DEFAULT_LEVEL * 100)} % prediction interval. Pick a past day to see the forecast made from the data before it beside what happened. Times in ${tz}.</p>
<div class="card no-print">
  <form method="get" action="/forecast" class="row">
    <label>Neighbourhood <select name="nb">${all.map((n) => html`<option value="${n}"${n === nb ? html` selected` : ''}>${n}</option>`)}</select></label>
    <label>Day <input type="date" name="date" value="${date}"></label>
    <button type="submit">Forecast</button>
  </form>
</div>
${problem ? html`<div class="card"><p data-testid="forecast-problem">${problem}</p></div>` : ''}
${
  f && chartData
    ? html`<div class="card">
  <h2>${f.neighbourhood} · ${fmtTime(f.points[0]!.start, tz, 'date')}</h2>
  <div id="forecast-chart" class="chart" role="img" aria-label="Forecast and actual energy per interval" data-testid="forecast-chart"><p class="muted">The chart needs JavaScript; the table below has the same figures.</p></div>
  <script type="application/json" id="forecast-data">${jsonScript(chartData)}</script>
  <p class="legend-note">Line: forecast. Band: ${Math.round(f.level * 100)} % prediction interval (${f.interval === 'calibrated' ? "calibrated on the model's own errors over the previous week" : 'from the model; too little history to calibrate'}). Dots: actual energy, where already stored.</p>
  <p data-testid="forecast-summary">${known.length ? `${known.length} intervals with actuals: mean absolute error ${formatKwh(Math.round(mae!))} kWh, ${inside} of ${known.length} inside the interval.` : 'No actual value stored yet for these intervals.'}${f.filled ? ` ${f.filled} missing history intervals were filled before fitting.` : ''}</p>
</div>
<div class="card table-wrap"><h2>Intervals</h2><table data-testid="forecast-table"><thead><tr><th>Interval</th><th class="num">Forecast (kWh)</th><th class="num">Low (kWh)</th><th class="num">High (kWh)</th><th class="num">Actual (kWh)</th></tr></thead><tbody>
${f.points.map((p, i) => {
  const a = f!.actualWh[i] ?? null;
  return html`<tr class="${a !== null && (a < p.lowerWh || a > p.upperWh) ? 'peak' : ''}"><td>${fmtTime(p.start, tz, 'time')}–${fmtTime(p.end, tz, 'time')}</td><td class="num">${formatKwh(p.energyWh)}</td><td class="num">${formatKwh(p.lowerWh)}</td><td class="num">${formatKwh(p.upperWh)}</td><td class="num">${a === null ? '–' : formatKwh(a)}</td></tr>`;
})}</tbody></table></div>`
    : ''
}`);
    },
  );

  // ---- API
  const tags = ['neighbourhoods'];
  const nbParams = { type: 'object', properties: { nb: { type: 'string', pattern: NAME_PATTERN } }, required: ['nb'] } as const;
  app.get(
    '/api/v1/neighbourhoods/:nb/forecast',
    {
      config: { access: 'neighbourhood.read' },
      schema: {
        tags,
        summary: 'Demand forecast of one neighbourhood',
        description:
          'MSTL (daily and weekly seasonality) + ETS on the latest revisions of the four weeks before `until` (default: the end of the latest stored interval), with a prediction interval at `level`. ' +
          'Each point carries the stored actual when there is one (back-testing). 422 when the history is too short. Needs neighbourhood.read (analyst).',
        params: nbParams,
        querystring: {
          type: 'object',
          properties: {
            horizon: { type: 'string', pattern: '^\\d{1,6}(s|m|h|d|w)$', default: '24h', description: 'how far ahead, e.g. 24h or 7d (at most 14d)' },
            until: { type: 'string', pattern: TIME_PATTERN, description: 'cut-off, ISO 8601 (a date is local midnight)' },
            level: { type: 'number', exclusiveMinimum: 0, exclusiveMaximum: 1, default: DEFAULT_LEVEL },
          },
        },
        response: { 200: forecastSchema, ...errors },
      },
    },
    async (req) => {
      const { nb } = req.params as { nb: string };
      const q = req.query as { horizon: string; until?: string; level: number };
      let horizonS: number;
      try {
        horizonS = parseDuration(q.horizon, 'horizon');
      } catch (e) {
        throw new HttpError(400, (e as Error).message);
      }
      if (horizonS > MAX_HORIZON_S) throw new HttpError(400, `horizon may be at most ${MAX_HORIZON_S / 86_400}d`);
      const tz = (await web.settings.all()).timezone;
      const until = q.until === undefined ? {} : { until: parseTime(q.until, tz, 'until') };
      return forecastJson(await run(nb, { horizonS, level: q.level, ...until }));
    },
  );

  app.get(
    '/api/v1/neighbourhoods/:nb/backtest',
    {
      config: { access: 'neighbourhood.read' },
      schema: {
        tags,
        summary: 'Back-test of the day-ahead forecast',
        description:
          'One origin at the start of each of the last `days` days before `until`: MAE (Wh), MAPE (%), MASE (scaled by the in-sample MAE of same-interval-yesterday) and the interval coverage of the model, beside seasonal naive (same interval yesterday, same interval last week). Needs neighbourhood.read (analyst).',
        params: nbParams,
        querystring: {
          type: 'object',
          properties: { days: { type: 'integer', minimum: 1, maximum: 28, default: 7 }, until: { type: 'string', pattern: TIME_PATTERN } },
        },
        response: { 200: backtestSchema, ...errors },
      },
    },
    async (req) => {
      const { nb } = req.params as { nb: string };
      const q = req.query as { days: number; until?: string };
      await checkKnown(nb);
      const tz = (await web.settings.all()).timezone;
      const until = q.until === undefined ? {} : { until: parseTime(q.until, tz, 'until') };
      const b = await orUnprocessable(() => backtestNeighbourhood(store, nb, { days: q.days, ...until }));
      return {
        neighbourhood: nb,
        until: isoZ(b.until),
        days: b.days,
        model: { ...accuracyJson(b.model), coverage: b.model.coverage, level: b.model.level },
        naiveDay: accuracyJson(b.naiveDay),
        naiveWeek: b.naiveWeek && accuracyJson(b.naiveWeek),
      };
    },
  );
}
