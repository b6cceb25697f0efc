/**
 * The browser side of the MDMS web app (bundled by esbuild into /assets/app.*.js): the neighbourhood demand
 * chart (import, and export and net when anything was exported) and the forecast chart with its interval band (uPlot), print buttons, confirmations, the tariff form's "add a band" row, auto-submitting filters.
 * Everything works without it except the chart, which has a table next to it.
 * @module
 */
import uPlot from 'uplot';

/** One neighbourhood's series as the page embeds it: [start s, end s, meters, import Wh, revision, export Wh]. */
export interface ChartSeries {
  neighbourhood: string;
  color: string;
  points: [number, number, number, number, number, number][];
  /** Index in `points` of the peak interval, or null. */
  peak: number | null;
}
export interface ChartData {
  tz: string;
  from: number;
  to: number;
  series: ChartSeries[];
  /** The day-ahead forecast of a single neighbourhood's day: [start s, forecast Wh, lower Wh, upper Wh]. */
  forecast?: { level: number; points: [number, number, number, number][] } | null;
}

function chart(el: HTMLElement, data: ChartData): void {
  const fc = data.forecast?.points ?? [];
  const xs = [...new Set([...data.series.flatMap((s) => s.points.map((p) => p[0])), ...fc.map((p) => p[0])])].sort((a, b) => a - b);
  const index = new Map(xs.map((x, i) => [x, i]));
  const energy = data.series.map((s) => {
    const ys: (number | null)[] = new Array(xs.length).fill(null);
    for (const p of s.points) ys[index.get(p[0])!] = p[3] / 1000;
    return ys;
  });
  // Export and net (import - export) per series, drawn only when something was exported in the range.
  const exported = data.series.some((s) => s.points.some((p) => p[5] !== 0));
  const column = (s: ChartSeries, f: (p: ChartSeries['points'][number]) => number): (number | null)[] => {
    const ys: (number | null)[] = new Array(xs.length).fill(null);
    for (const p of s.points) ys[index.get(p[0])!] = f(p) / 1000;
    return ys;
  };
  const exports = exported ? data.series.map((s) => column(s, (p) => p[5])) : [];
  const nets = exported ? data.series.map((s) => column(s, (p) => p[3] - p[5])) : [];
  const meters = data.series.map((s) => {
    const ys: (number | null)[] = new Array(xs.length).fill(null);
    for (const p of s.points) ys[index.get(p[0])!] = p[2];
    return ys;
  });
  const forecastCols = [1, 2, 3].map((k) => {
    const ys: (number | null)[] = new Array(xs.length).fill(null);
    for (const p of fc) ys[index.get(p[0])!] = p[k]! / 1000;
    return ys;
  });
  // Indices (in xs) of revised intervals and of each series' peak.
  const revised = data.series.map((s) => s.points.filter((p) => p[4] > 0).map((p) => index.get(p[0])!));
  const peaks = data.series.map((s) => (s.peak === null ? null : index.get(s.points[s.peak]![0])!));
  const fmt = (o: Intl.DateTimeFormatOptions) => new Intl.DateTimeFormat('en-GB', { timeZone: data.tz, ...o });
  const dayFmt = fmt({ weekday: 'short', day: 'numeric', month: 'short' });
  const timeFmt = fmt({ hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
  const fullFmt = fmt({ weekday: 'short', day: 'numeric', month: 'short', year: 'numeric', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
  const series: uPlot.Series[] = [
    { value: (_u, v) => (v == null ? '–' : fullFmt.format(v * 1000)) },
    ...data.series.map(
      (s, i): uPlot.Series => ({
        label: `${s.neighbourhood} import`,
        stroke: s.color,
        width: 2,
        scale: 'kWh',
        value: (_u, v) => (v == null ? '–' : `${v.toFixed(3)} kWh`),
        points: { show: true, size: 7, width: 2, fill: '#fff', filter: () => revised[i]! },
      }),
    ),
    ...data.series.map(
      (s): uPlot.Series => ({
        label: `${s.neighbourhood} meters`,
        stroke: s.color,
        width: 1,
        dash: [4, 4],
        scale: 'meters',
        value: (_u, v) => (v == null ? '–' : String(v)),
        points: { show: false },
      }),
    ),
  ];
  const kwhValue = (_u: uPlot, v: number | null) => (v == null ? '–' : `${v.toFixed(3)} kWh`);
  if (exported) {
    series.push(
      ...data.series.map((s): uPlot.Series => ({ label: `${s.neighbourhood} export`, stroke: s.color, width: 1.5, dash: [1, 3], scale: 'kWh', value: kwhValue, points: { show: false } })),
      ...data.series.map((s): uPlot.Series => ({ label: `${s.neighbourhood} net`, stroke: s.color, width: 1, dash: [8, 3, 2, 3], scale: 'kWh', value: kwhValue, points: { show: false } })),
    );
  }
  const pct = Math.round((data.forecast?.level ?? 0.8) * 100);
  if (fc.length) {
    const value = (_u: uPlot, v: number | null) => (v == null ? '–' : `${v.toFixed(3)} kWh`);
    series.push(
      { label: 'forecast', stroke: '#2563eb', width: 1, scale: 'kWh', value, points: { show: false } },
      { label: `${pct} % low`, stroke: 'rgba(37,99,235,0.3)', width: 1, scale: 'kWh', value, points: { show: false } },
      { label: `${pct} % high`, stroke: 'rgba(37,99,235,0.3)', width: 1, scale: 'kWh', value, points: { show: false } },
    );
  }
  const nSeries = series.length;
  const opts: uPlot.Options = {
    ...(fc.length ? { bands: [{ series: [nSeries - 1, nSeries - 2] as [number, number], fill: 'rgba(37,99,235,0.12)' }] } : {}),
    width: Math.max(320, el.clientWidth),
    height: 380,
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), data.tz),
    // Net goes below zero when a neighbourhood delivers more than it takes.
    scales: { x: { time: true, range: () => [data.from, data.to] }, kWh: { range: (_u, min, max) => [Math.min(min, 0) * 1.1, Math.max(max, 0.001) * 1.1] } },
    axes: [
      {
        // 24-hour local times; the date at local midnight.
        values: (_u, splits) =>
          splits.map((ts) => {
            const t = timeFmt.format(ts * 1000);
            return t === '00:00' ? dayFmt.format(ts * 1000) : t;
          }),
      },
      { scale: 'kWh', label: 'Energy per interval (kWh)', size: 70 },
      { scale: 'meters', side: 1, label: 'Meters', grid: { show: false }, size: 60, incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000], values: (_u, splits) => splits.map((v) => String(v)) },
    ],
    series,
    legend: { live: true },
    hooks: {
      draw: [
        (u) => {
          const ctx = u.ctx;
          peaks.forEach((pi, i) => {
            if (pi === null) return;
            const v = energy[i]![pi];
            if (v == null) return;
            const x = u.valToPos(xs[pi]!, 'x', true);
            const y = u.valToPos(v, 'kWh', true);
            ctx.save();
            ctx.strokeStyle = data.series[i]!.color;
            ctx.fillStyle = data.series[i]!.color;
            ctx.lineWidth = 2 * devicePixelRatio;
            ctx.setLineDash([]);
            ctx.beginPath();
            ctx.arc(x, y, 7 * devicePixelRatio, 0, 2 * Math.PI);
            ctx.stroke();
            ctx.font = `${12 * devicePixelRatio}px system-ui, sans-serif`;
            ctx.textAlign = 'center';
            ctx.fillText(`peak ${data.series[i]!.neighbourhood}`, x, y - 12 * devicePixelRatio);
            ctx.restore();
          });
        },
      ],
    },
  };
  el.textContent = '';
  const u = new uPlot(opts, [xs, ...energy, ...meters, ...exports, ...nets, ...(fc.length ? forecastCols : [])] as uPlot.AlignedData, el);
  new ResizeObserver(() => u.setSize({ width: Math.max(320, el.clientWidth), height: 380 })).observe(el);
  el.dataset.points = String(energy.reduce((a, ys) => a + ys.filter((v) => v !== null).length, 0));
  el.dataset.series = String(series.length - 1);
  if (exported) el.dataset.minNetKwh = String(Math.min(...nets.flatMap((ys) => ys.filter((v): v is number => v !== null))));
  el.dataset.ready = '1';
}

/** The forecast page's data: points are [start s, forecast Wh, lower Wh, upper Wh, actual Wh | null]. */
export interface ForecastData {
  tz: string;
  from: number;
  to: number;
  level: number;
  points: [number, number, number, number, number | null][];
}

/** Forecast line, its prediction interval as a filled band (uPlot `bands` between two series), actual as dots. */
function forecastChart(el: HTMLElement, data: ForecastData): void {
  const kwh = (i: number) => data.points.map((p) => (p[i] === null ? null : (p[i] as number) / 1000));
  const fullFmt = new Intl.DateTimeFormat('en-GB', { timeZone: data.tz, weekday: 'short', day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
  const timeFmt = new Intl.DateTimeFormat('en-GB', { timeZone: data.tz, hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
  const value = (_u: uPlot, v: number | null) => (v == null ? '–' : `${v.toFixed(3)} kWh`);
  const pct = Math.round(data.level * 100);
  const opts: uPlot.Options = {
    width: Math.max(320, el.clientWidth),
    height: 380,
    scales: { x: { time: true, range: () => [data.from, data.to] }, y: { range: (_u, _min, max) => [0, Math.max(max, 0.001) * 1.1] } },
    axes: [{ values: (_u, splits) => splits.map((ts) => timeFmt.format(ts * 1000)) }, { label: 'Energy per interval (kWh)', size: 70 }],
    series: [
      { value: (_u, v) => (v == null ? '–' : fullFmt.format(v * 1000)) },
      { label: `${pct} % low`, stroke: 'rgba(37,99,235,0.35)', width: 1, value },
      { label: `${pct} % high`, stroke: 'rgba(37,99,235,0.35)', width: 1, value },
      { label: 'forecast', stroke: '#2563eb', width: 2, value },
      { label: 'actual', stroke: '#c2410c', width: 0, points: { show: true, size: 5, fill: '#c2410c' }, value },
    ],
    bands: [{ series: [2, 1], fill: 'rgba(37,99,235,0.15)' }],
    legend: { live: true },
  };
  el.textContent = '';
  const u = new uPlot(opts, [data.points.map((p) => p[0]), kwh(2), kwh(3), kwh(1), kwh(4)] as uPlot.AlignedData, el);
  new ResizeObserver(() => u.setSize({ width: Math.max(320, el.clientWidth), height: 380 })).observe(el);
  el.dataset.points = String(data.points.length);
  el.dataset.ready = '1';
}

function start(): void {
  const el = document.getElementById('demand-chart');
  const src = document.getElementById('chart-data');
  if (el && src?.textContent) chart(el, JSON.parse(src.textContent) as ChartData);
  const fEl = document.getElementById('forecast-chart');
  const fSrc = document.getElementById('forecast-data');
  if (fEl && fSrc?.textContent) forecastChart(fEl, JSON.parse(fSrc.textContent) as ForecastData);
  document.querySelectorAll<HTMLElement>('[data-action="print"]').forEach((b) => b.addEventListener('click', () => window.print()));
  document.querySelectorAll<HTMLFormElement>('form[data-confirm]').forEach((f) =>
    f.addEventListener('submit', (e: SubmitEvent) => {
      if (!window.confirm(f.dataset.confirm ?? 'Are you sure?')) e.preventDefault();
    }),
  );
  document.querySelectorAll<HTMLSelectElement>('select[data-autosubmit]').forEach((s) => s.addEventListener('change', () => s.form?.requestSubmit()));
  document.querySelectorAll<HTMLButtonElement>('[data-action="add-band"]').forEach((b) =>
    b.addEventListener('click', () => {
      const rows = document.querySelectorAll<HTMLElement>('.band-row');
      const last = rows[rows.length - 1];
      if (!last) return;
      const copy = last.cloneNode(true) as HTMLElement;
      copy.querySelectorAll('input').forEach((i) => (i.value = ''));
      last.after(copy);
      copy.querySelector('input')?.focus();
    }),
  );
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
else start();
