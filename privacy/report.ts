/**
 * The privacy report's outputs: `summary.json` (the shape of issue 13, plus detail) and a self-contained
 * `report.html` (inline CSS and SVG, no script, nothing fetched), readable offline.
 * @module
 */

/** One attack's score, as in summary.json. */
export type AttackResult =
  | { attack: 'events'; data: 'raw'; f1: number; chance_f1: number }
  | { attack: 'events'; data: 'released'; f1: number; chance_f1: number }
  | { attack: 'occupancy'; data: 'raw' | 'released'; accuracy: number; chance: number }
  | {
      attack: 'differencing';
      guard: boolean;
      mae_wh: number;
      /** The fallback's MAE on the same intervals (billed energy per day spread evenly): the attack without subtraction. */
      baseline_mae_wh: number;
      intervals: number;
      subtracted: number;
      membership_held: number;
      /** Neighbourhood windows of the target's neighbourhood the MDMS holds after the run. */
      released: number;
      /** Error per attacked interval, Wh, in order. */
      errors_wh: number[];
    };

/** One point of the differential-privacy sweep. */
export interface DpPoint {
  epsilon: number;
  aggregate_mape: number;
  events_f1: number;
}

/** summary.json. */
export interface PrivacySummary {
  households: number;
  attacks: AttackResult[];
  dp: DpPoint[];
  /** How every figure was made (thresholds, tolerances, seeds, data range): enough to reproduce it. */
  method: Record<string, string | number | boolean | null>;
  /** Per household: the attack scores behind the means above. */
  per_household: Record<string, number | string | null>[];
}

/** What the charts show for one household over one day. */
export interface DayView {
  household: string;
  day: number;
  /** Raw power per minute, W (NaN: no sample). */
  rawW: ArrayLike<number>;
  /** The neighbourhood aggregate's mean power per interval, W (NaN: not released), and its meter count. */
  releasedW: number[];
  releasedMeters: number;
  /** The household's billed energy that day, Wh (null if none). */
  billedWh: number | null;
  intervalS: number;
}

const esc = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const fmt = (v: number, d = 3) => (Number.isFinite(v) ? v.toFixed(d) : '–');

/** A step/line chart of one or more series over a day, as an SVG string. */
function lineChart(series: { values: ArrayLike<number>; stepS: number; colour: string; label: string }[], title: string): string {
  const W = 720;
  const H = 220;
  const pad = 56;
  let max = 1;
  for (const s of series) for (let i = 0; i < s.values.length; i++) if (Number.isFinite(s.values[i]!)) max = Math.max(max, s.values[i]!);
  const x = (t: number) => pad + (t / 86400) * (W - 2 * pad);
  const y = (v: number) => H - pad - (v / max) * (H - 2 * pad);
  const paths = series.map((s) => {
    let d = '';
    let pen = false;
    for (let i = 0; i < s.values.length; i++) {
      const v = s.values[i]!;
      if (!Number.isFinite(v)) {
        pen = false;
        continue;
      }
      d += `${pen ? 'L' : 'M'}${x(i * s.stepS).toFixed(1)},${y(v).toFixed(1)}H${x((i + 1) * s.stepS).toFixed(1)}`;
      pen = true;
    }
    return `<path d="${d}" fill="none" stroke="${s.colour}" stroke-width="1.2"/>`;
  });
  const ticks = [0, 6, 12, 18, 24].map((h) => `<text x="${x(h * 3600)}" y="${H - pad + 14}" text-anchor="middle">${h}:00</text>`);
  const legend = series.map((s, i) => `<text x="${pad + 4}" y="${pad - 22 + i * 12}" fill="${s.colour}">${esc(s.label)}</text>`);
  return `<figure><svg viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${esc(title)}" font-size="10">
<rect x="${pad}" y="${pad}" width="${W - 2 * pad}" height="${H - 2 * pad}" fill="#fafafa" stroke="#ccc"/>
${paths.join('\n')}${ticks.join('')}${legend.join('')}
<text x="${pad - 4}" y="${pad + 4}" text-anchor="end">${Math.round(max)} W</text><text x="${pad - 4}" y="${H - pad}" text-anchor="end">0</text>
</svg><figcaption>${esc(title)}</figcaption></figure>`;
}

/** Horizontal bars (score beside its baseline), as an SVG string. */
function barChart(rows: { label: string; value: number; baseline?: number }[], max: number, unit: string, title: string, baselineName = 'chance'): string {
  const W = 720;
  const rowH = 22;
  const left = 220;
  const H = rows.length * rowH + 20;
  const sx = (v: number) => ((W - left - 190) * Math.min(v, max)) / max;
  const bars = rows.map((r, i) => {
    const yy = 10 + i * rowH;
    const base = r.baseline === undefined ? '' : `<rect x="${left}" y="${yy + 12}" width="${sx(r.baseline).toFixed(1)}" height="5" fill="#999"/>`;
    return `<text x="${left - 6}" y="${yy + 11}" text-anchor="end">${esc(r.label)}</text><rect x="${left}" y="${yy}" width="${sx(r.value).toFixed(1)}" height="11" fill="#3465a4"/>${base}<text x="${left + sx(r.value) + 4}" y="${yy + 10}">${fmt(r.value, unit === 'Wh' ? 1 : 3)}${unit === 'Wh' ? ' Wh' : ''}${r.baseline === undefined ? '' : ` (${baselineName} ${fmt(r.baseline, unit === 'Wh' ? 1 : 3)})`}</text>`;
  });
  return `<figure><svg viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${esc(title)}" font-size="11">${bars.join('\n')}</svg><figcaption>${esc(title)}</figcaption></figure>`;
}

/**
 * Renders the report page.
 * @example
 * ```ts
 * writeFileSync('out/report.html', renderReport(summary, [dayView]));
 * ```
 */
export function renderReport(s: PrivacySummary, days: DayView[]): string {
  const a = s.attacks;
  const score = (x: AttackResult) => ('f1' in x ? x.f1 : 'accuracy' in x ? x.accuracy : x.mae_wh);
  const scoreRows = a
    .filter((x) => x.attack !== 'differencing')
    .map((x) => ({ label: `${x.attack} (${'data' in x ? x.data : ''})`, value: score(x), baseline: 'chance_f1' in x ? x.chance_f1 : 'chance' in x ? x.chance : undefined }));
  const diff = a.filter((x): x is Extract<AttackResult, { attack: 'differencing' }> => x.attack === 'differencing');
  const diffMax = Math.max(1, ...diff.map((x) => Math.max(x.mae_wh, x.baseline_mae_wh)));
  const rows = a
    .map((x) => {
      const what = x.attack === 'differencing' ? `guard ${x.guard ? 'on' : 'off'}` : x.data;
      const v = x.attack === 'events' ? `F1 ${fmt(x.f1)}` : x.attack === 'occupancy' ? `accuracy ${fmt(x.accuracy)}` : `MAE ${fmt(x.mae_wh, 1)} Wh over ${x.intervals} intervals (${x.subtracted} subtracted, ${x.membership_held} releases held; billing-only guess ${fmt(x.baseline_mae_wh, 1)} Wh)`;
      const c = x.attack === 'events' ? fmt(x.chance_f1) : x.attack === 'occupancy' ? fmt(x.chance) : '–';
      return `<tr><td>${x.attack}</td><td>${what}</td><td>${v}</td><td>${c}</td></tr>`;
    })
    .join('\n');
  const dp = s.dp.length
    ? `<table><tr><th>epsilon</th><th>aggregate MAPE</th><th>events F1 (released)</th></tr>${s.dp.map((p) => `<tr><td>${p.epsilon}</td><td>${fmt(p.aggregate_mape)}</td><td>${fmt(p.events_f1)}</td></tr>`).join('')}</table>
${barChart(s.dp.map((p) => ({ label: `epsilon ${p.epsilon}: aggregate MAPE`, value: p.aggregate_mape })), 1, '', 'Error of the neighbourhood aggregates against the noise-free ones (MAPE; bars end at 1 = 100 %)')}
${barChart(s.dp.map((p) => ({ label: `epsilon ${p.epsilon}: events F1`, value: p.events_f1 })), 1, '', 'Appliance-event attack on the noisy aggregates (F1) against epsilon')}`
    : '<p>No differential-privacy runs in this report.</p>';
  const method = Object.entries(s.method)
    .map(([k, v]) => `<tr><td>${esc(k)}</td><td>${esc(String(v))}</td></tr>`)
    .join('\n');
  const charts = days
    .map((d) =>
      lineChart(
        [
          { values: d.rawW, stepS: 60, colour: '#cc0000', label: `raw: ${d.household}'s power per minute (what the meter measures; the utility never receives it)` },
          { values: d.releasedW, stepS: d.intervalS, colour: '#3465a4', label: `released: the neighbourhood's mean power per ${d.intervalS / 60} min (${d.releasedMeters} meters)` },
          ...(d.billedWh === null ? [] : [{ values: [d.billedWh / 24], stepS: 86400, colour: '#4e9a06', label: `released: ${d.household}'s bill for the day (${d.billedWh} Wh) as a mean power` }]),
        ],
        `${d.household}, ${new Date(d.day * 1000).toISOString().slice(0, 10)} (UTC): raw series beside what the MDMS holds`,
      ),
    )
    .join('\n');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Smarter Metering privacy report</title>
<style>body{font:14px/1.45 system-ui,sans-serif;max-width:780px;margin:2em auto;color:#222}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}figure{margin:1em 0}figcaption{font-size:12px;color:#555}</style></head>
<body>
<h1>Privacy report</h1>
<p>${s.households} households. Each attack is run on the raw one-minute series (what a classic smart meter would send) and on
what the utility's MDMS actually holds (neighbourhood aggregates of at least k meters, household totals per billing period).
An attack is only evidence if it works on raw data: compare each score with its chance baseline.</p>
<h2>Scores</h2>
<table><tr><th>attack</th><th>data</th><th>score</th><th>chance</th></tr>
${rows}
</table>
${barChart(scoreRows, 1, '', 'Attack scores (blue) beside their chance baselines (grey): F1 for events, accuracy for occupancy')}
${diff.length ? barChart(diff.map((x) => ({ label: `differencing, guard ${x.guard ? 'on' : 'off'}`, value: x.mae_wh, baseline: x.baseline_mae_wh })), diffMax, 'Wh', 'Differencing: mean absolute error of the recovered household energy per interval (blue), beside a guess from the bill alone (grey); with the guard on the attacker has only the bill', 'bill only') : ''}
<h2>What each attack follows</h2>
<ul>
<li><b>Appliance events</b>: the edge-detection stage of Hart's NILM (Proc. IEEE 1992): a step of at least the threshold between two samples is a switch.
Strong on one-minute data (large loads are seen reliably); on aggregates the attacker attributes every step in its neighbourhood to the household.
F1 against the ground truth's on/off edges of loads at or above the threshold, matched one to one within the tolerance; chance: as many guesses at random times.</li>
<li><b>Occupancy</b>: training-free activity detection (Molina-Markham et al. 2010; Kleiminger et al. report 83-94 % on real homes): a slot clearly above the base load is "home",
a quiet slot is "asleep" at night and "away" by day. Baseline: always guessing the commonest state.</li>
<li><b>Differencing</b>: the household's meter is made silent for some intervals; the attacker subtracts the release without it from the one before with it.
The PES's membership guard (docs/privacy.md) holds releases whose membership differs from a released one by fewer than k meters.</li>
</ul>
<h2>Differential privacy</h2>
${dp}
<h2>One day, raw and released</h2>
${charts}
<h2>Method and seeds</h2>
<table>${method}</table>
</body></html>
`;
}
