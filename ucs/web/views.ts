/**
 * The views of the household's readings, drawn from the readings stored in this browser: live power, today
 * by interval, history by day, week, month or year (imported, exported and net energy, the previous period,
 * the same period last year, cost per bucket), the bill preview of the running billing period, and what the
 * utility holds about the household. Everything is computed here from the household's own stream; missing
 * data is shown as "no data" and drawn as gaps, never as 0.
 * @module
 */
import { DateTime } from 'luxon';
import uPlot from 'uplot';
import { formatMoney, formatScaled, minorUnitLabel, type Bill, type BillingPeriod } from '../../lib/billing.js';
import { billingParts, billingPeriodsIn, billPreview, priceParts, priceRange, type HouseholdTariff, type Priced } from './bill.js';
import type { Row } from './body.js';
import { bars, drawChart } from './charts.js';
import type { Dates } from './dates.js';
import { $, fillTable, input, kwhOrNone, NO_DATA, pct, setText, setTexts } from './dom.js';
import { attributeGaps, bucketBounds, compare, cumulative, energyBetween, formatKwh, intervalBounds, lastYear, liveNow, powerSeries, shiftRange, spanRange, sumFlows, type Range, type Span } from './series.js';
import type { ReadingStore } from './store.js';

/** The household's meters and their neighbourhoods (`/api/household`). */
export interface HouseholdInfo {
  household: string;
  meters: { meter: string; label: string; neighbourhood: string }[];
  neighbourhoods: { neighbourhood: string; provisionedMeters: number }[];
}

/** What the views draw from. */
export interface ViewContext {
  store: ReadingStore;
  tariff: HouseholdTariff | null;
  info: HouseholdInfo | null;
  dates: Dates;
}

/** Totals of a span, kept while no reading in or before it arrives (past months of a year view, past billing periods). */
interface Summary {
  importWh: number | null;
  exportWh: number | null;
  /** The span's energy per band, cut at billing periods (null without a tariff). */
  parts: BillingPeriod[] | null;
  readings: number;
}
const summaries = new Map<string, { range: Range; summary: Summary }>();

/**
 * Forgets the cached totals that rows arriving now may change: those of spans ending after the oldest of them
 * (a reading changes its own span, and the gap attribution of the span after it).
 * @example
 * ```ts
 * invalidate(rows); // after storing them
 * ```
 */
export function invalidate(rows: readonly Row[]): void {
  if (rows.length === 0) return;
  const oldest = Math.min(...rows.map((r) => r.time));
  for (const [k, v] of summaries) if (v.range.end > oldest) summaries.delete(k);
}

/**
 * Forgets every cached total (logout, forgetting the device's readings).
 * @example
 * ```ts
 * resetViews();
 * ```
 */
export function resetViews(): void {
  summaries.clear();
  historyAnchor = undefined;
  for (const id of ['export-from', 'export-to']) delete input(id).dataset.auto;
}

/** Rows starting in the range, their energies attributed across gaps as the PES does. */
async function rowsIn(store: ReadingStore, range: Range): Promise<Row[]> {
  return attributeGaps(await store.between(range.start, range.end), await store.lastBefore(range.start));
}

async function summary(c: ViewContext, range: Range): Promise<Summary> {
  const key = `${range.start}:${range.end}`;
  const hit = summaries.get(key);
  if (hit) return hit.summary;
  const rows = await rowsIn(c.store, range);
  const s: Summary = {
    importWh: energyBetween(rows, range.start, range.end, 'import'),
    exportWh: energyBetween(rows, range.start, range.end, 'export'),
    parts: c.tariff ? billingParts(rows, c.tariff, range) : null,
    readings: rows.length,
  };
  summaries.set(key, { range, summary: s });
  return s;
}

/** The newest reading, or null. */
async function newest(store: ReadingStore): Promise<Row | null> {
  return (await store.newest(1))[0] ?? null;
}

/** Where the views are anchored: the end of the newest reading (so a replayed, older dataset still shows), or now. */
async function latestEnd(store: ReadingStore): Promise<number> {
  const n = await newest(store);
  return n ? n.time + n.period : Math.floor(Date.now() / 1000);
}

const money = (minor: number, bill: Pick<Bill, 'currency' | 'minorDigits'>) => formatMoney(minor, bill.currency, bill.minorDigits);
/** A priced span's total for the page: the amount, the reason it has none, or "no data" without readings. */
function costText(p: Priced | null, readings: number): string {
  if (!p) return '—';
  if (readings === 0) return NO_DATA;
  return p.bill ? money(p.bill.totalMinor, p.bill) : `— (${p.error})`;
}

/** Short x-axis labels (times of day, day and month, month), so that a phone's narrow chart can hold them. */
const axisTime = (d: Dates, span: Span | 'interval') => (_u: uPlot, splits: number[]) => splits.map((t) => (span === 'interval' || span === 'day' ? d.time(t) : d.tick(span, t)));

// --- live ------------------------------------------------------------------------------------------------------
/**
 * The live headline (every tab shows it) and, on the live tab, the power chart.
 * @example
 * ```ts
 * await drawHeadline(ctx); await drawLive(ctx);
 * ```
 */
export async function drawHeadline(c: ViewContext): Promise<void> {
  const now = liveNow(await c.store.newest(64));
  setText('live-power', now ? String(now.watts) : '—');
  setText('live-at', now ? c.dates.dateTimeSeconds(now.at) : 'none yet');
  setText('live-register', now ? formatKwh(now.registerWh) : '—');
  setText('live-export-register', now ? formatKwh(now.exportRegisterWh) : '—');
  setText('live-count', String(await c.store.count()));
  setText('zone', `Times in ${c.dates.zoneLabel(now?.at ?? Math.floor(Date.now() / 1000))}`);
}

/**
 * The live tab's power chart over the chosen window, up to the newest reading.
 * @example
 * ```ts
 * await drawLive(ctx);
 * ```
 */
export async function drawLive(c: ViewContext): Promise<void> {
  const windowS = Number(input('live-window').value);
  const end = await latestEnd(c.store);
  const { times, watts } = powerSeries(await c.store.between(end - windowS, end));
  drawChart(
    $('live-chart'),
    {
      series: [{}, { label: 'Power (W)', stroke: '#1f6f5c', width: 2, fill: 'rgba(31,111,92,.12)' }],
      axes: [{ values: axisTime(c.dates, 'interval'), space: 56 }, { label: 'W' }],
      scales: { x: { time: true } },
    },
    [times, watts],
    watts.filter((w) => w === null).length,
  );
}

// --- today ------------------------------------------------------------------------------------------------------
const IMPORT = { label: 'Imported from the grid (Wh)', stroke: '#1f6f5c', fill: 'rgba(31,111,92,.5)', paths: bars, points: { show: false } };
const EXPORT = { label: 'Returned to the grid (Wh)', stroke: '#c9a227', fill: 'rgba(201,162,39,.55)', paths: bars, points: { show: false } };
const negate = (v: (number | null)[]) => v.map((x) => (x === null ? null : -x));
/** Buckets that started before `upTo` and have no data. */
const missingBefore = (starts: readonly number[], values: readonly (number | null)[], upTo: number) => values.filter((v, i) => v === null && starts[i]! < upTo).length;

/**
 * Today (the latest day with readings) by 15 minutes, 30 minutes or hours.
 * @example
 * ```ts
 * await drawToday(ctx);
 * ```
 */
export async function drawToday(c: ViewContext): Promise<void> {
  const end = await latestEnd(c.store);
  const day = spanRange('day', end - 1, c.dates.zone);
  const now = Date.now() / 1000;
  const rows = await rowsIn(c.store, day);
  const bounds = intervalBounds(day, Number(input('today-interval').value));
  const starts = bounds.slice(0, -1);
  const flows = sumFlows(rows, bounds);
  const upTo = Math.min(day.end, end);
  const prev = shiftRange('day', day, -1, c.dates.zone);
  const ago = lastYear('day', day, c.dates.zone);
  const elapsed = upTo - day.start;
  const prevSame = await summary(c, { start: prev.start, end: Math.min(prev.end, prev.start + elapsed) });
  const agoSame = await summary(c, { start: ago.start, end: Math.min(ago.end, ago.start + elapsed) });
  const current = energyBetween(rows, day.start, upTo);
  // Everything computed first, then shown at once: the page never shows half of one draw and half of another.
  setTexts({
    'today-title': day.start <= now && now < day.end ? 'Today' : `Latest day with readings: ${c.dates.day(day.start)}`,
    'today-total': kwhOrNone(current),
    'today-export': kwhOrNone(energyBetween(rows, day.start, upTo, 'export')),
    'today-net': kwhOrNone(energyBetween(rows, day.start, upTo, 'net')),
    'today-prev': kwhOrNone(prevSame.importWh),
    'today-change': pct(changePct(current, prevSame.importWh)),
    'today-year': kwhOrNone(agoSame.importWh),
    'today-cost': c.tariff ? costText(priceRange(rows, c.tariff, { start: day.start, end: upTo }), rows.length) : 'no tariff',
  });
  drawChart(
    $('today-chart'),
    { series: [{}, IMPORT, EXPORT], axes: [{ values: axisTime(c.dates, 'interval'), space: 56 }, { label: 'Wh' }], scales: { x: { time: true } } },
    [starts, flows.importWh, negate(flows.exportWh)],
    missingBefore(starts, flows.importWh, upTo),
  );
}

const changePct = (current: number | null, before: number | null) => (current !== null && before ? Math.round(((current - before) * 1000) / before) / 10 : null);

// --- history --------------------------------------------------------------------------------------------------
let historyAnchor: number | undefined;

/**
 * Moves the history view by whole periods (the "Earlier" and "Later" buttons).
 * @example
 * ```ts
 * moveHistory(-1, 'month', zone);
 * ```
 */
export function moveHistory(by: number, span: Span, zone: string): void {
  if (historyAnchor === undefined) return;
  historyAnchor = shiftRange(span, spanRange(span, historyAnchor, zone), by, zone).start;
}

/** Energy per bucket of a period: from the rows for hours and days, from cached monthly totals for a year. */
async function bucketsOf(c: ViewContext, span: Span, range: Range, upTo: number) {
  const bounds = bucketBounds(span, range, c.dates.zone);
  const starts = bounds.slice(0, -1);
  if (span === 'year') {
    const months = await Promise.all(starts.map((s, i) => summary(c, { start: s, end: bounds[i + 1]! })));
    const importWh = months.map((m) => m.importWh);
    const exportWh = months.map((m) => m.exportWh);
    return {
      starts,
      importWh,
      exportWh,
      netWh: importWh.map((v, i) => (v === null ? null : v - exportWh[i]!)),
      cost: months.map((m) => (c.tariff && m.parts && m.readings ? costText(priceParts(m.parts, c.tariff), m.readings) : m.readings ? '—' : NO_DATA)),
      periodCost: c.tariff ? costText(priceParts(months.flatMap((m) => m.parts ?? []), c.tariff), months.reduce((a, m) => a + m.readings, 0)) : 'no tariff',
    };
  }
  const rows = await rowsIn(c.store, range);
  const flows = sumFlows(rows, bounds);
  const tariff = c.tariff;
  const price = (r: Range) => (tariff ? costText(priceRange(rows, tariff, r), rows.filter((x) => x.time >= r.start && x.time < r.end).length) : '—');
  return {
    starts,
    ...flows,
    // Hours are not billed on their own: costs per day, month and year.
    cost: starts.map((s, i) => (span === 'day' || !tariff ? '—' : flows.importWh[i] === null ? NO_DATA : price({ start: s, end: Math.min(bounds[i + 1]!, upTo) }))),
    periodCost: tariff ? price({ start: range.start, end: Math.min(range.end, upTo) }) : 'no tariff',
  };
}

/**
 * History by day (hours), week and month (days) or year (months), with the previous period and the same
 * period last year.
 * @example
 * ```ts
 * await drawHistory(ctx);
 * ```
 */
export async function drawHistory(c: ViewContext): Promise<void> {
  const span = input('history-span').value as Span;
  const zone = c.dates.zone;
  const end = await latestEnd(c.store);
  historyAnchor ??= end - 1;
  const cur = spanRange(span, historyAnchor, zone);
  const prev = shiftRange(span, cur, -1, zone);
  const ago = lastYear(span, cur, zone);
  const upTo = Math.min(Math.max(end, cur.start), cur.end);
  const b = await bucketsOf(c, span, cur, upTo);
  const before = await bucketsOf(c, span, prev, prev.end);
  const sum = (v: (number | null)[]) => v.reduce<number | null>((a, x) => (x === null ? a : (a ?? 0) + x), null);
  const total = sum(b.importWh);
  const elapsed = upTo - cur.start;
  const prevSame = await summary(c, { start: prev.start, end: Math.min(prev.end, prev.start + elapsed) });
  const agoSame = await summary(c, { start: ago.start, end: Math.min(ago.end, ago.start + elapsed) });
  const inPeriod = [...(await c.store.lastBefore(upTo)).values()].filter((r) => r.time >= cur.start);
  setTexts({
    'history-title': c.dates.period(span, cur.start),
    'history-total': kwhOrNone(total),
    'history-export': kwhOrNone(sum(b.exportWh)),
    'history-net': kwhOrNone(sum(b.netWh)),
    'history-cost': b.periodCost,
    'history-prev-same': kwhOrNone(prevSame.importWh),
    'history-change': pct(changePct(total, prevSame.importWh)),
    'history-prev-total': kwhOrNone(sum(before.importWh)),
    'history-year-same': kwhOrNone(agoSame.importWh),
    'history-year-change': pct(changePct(total, agoSame.importWh)),
    'history-register': inPeriod.length ? formatKwh(liveNow(inPeriod)!.registerWh) : NO_DATA,
  });
  fillTable(
    'history-rows',
    b.starts.map((s, i) => [c.dates.bucket(span, s), kwhOrNone(b.importWh[i]), kwhOrNone(b.exportWh[i]), kwhOrNone(b.netWh[i]), b.cost[i]!]).filter((_, i) => b.starts[i]! < upTo),
  );
  const prevLine = b.starts.map((_, i) => before.importWh[i] ?? null);
  drawChart(
    $('history-chart'),
    {
      series: [
        {},
        { ...IMPORT, scale: 'wh' },
        { ...EXPORT, scale: 'wh' },
        { label: 'Previous period, imported (Wh)', stroke: '#c07a1a', width: 2, scale: 'wh' },
        { label: 'Imported so far (kWh)', stroke: '#3558a8', width: 1, dash: [6, 4], scale: 'kwh' },
      ],
      axes: [{ values: axisTime(c.dates, span), space: 56 }, { scale: 'wh', label: 'Wh' }, { scale: 'kwh', side: 1, label: 'kWh', grid: { show: false } }],
      scales: { x: { time: true } },
    },
    [b.starts, b.importWh, negate(b.exportWh), prevLine, cumulative(b.importWh).map((v) => (v === null ? null : v / 1000))],
    missingBefore(b.starts, b.importWh, upTo),
  );
}

// --- bill -------------------------------------------------------------------------------------------------------
/** The lines of a bill as table rows: charges per band, feed-in credits per band, standing charge, VAT, total. */
function billRows(bill: Bill): string[][] {
  const unit = minorUnitLabel(bill.currency);
  const rate = (milli: number) => `${formatScaled(milli, 3)}${unit}`;
  const out: string[][] = [];
  for (const l of bill.lines) {
    if (l.kind === 'energy') out.push([`Imported, ${l.band}`, `${formatKwh(l.energyWh)} kWh × ${rate(l.priceMilliPerKwh)}/kWh`, money(l.amountMinor, bill)]);
    else if (l.kind === 'feedin') out.push([`Returned to the grid, ${l.band}`, `${formatKwh(l.energyWh)} kWh × ${rate(l.feedInMilliPerKwh)}/kWh`, money(l.amountMinor, bill)]);
    else out.push([`Standing charge`, `${l.days} days × ${rate(l.standingMilliPerDay)}/day`, money(l.amountMinor, bill)]);
  }
  out.push(['Subtotal', '', money(bill.subtotalMinor, bill)]);
  for (const v of bill.vat) out.push([`VAT ${formatScaled(v.basisPoints, 2)} %`, `on ${money(v.baseMinor, bill)}`, money(v.amountMinor, bill)]);
  out.push(['Total', '', money(bill.totalMinor, bill)]);
  return out;
}

/**
 * The bill preview: the running billing period priced up to the newest reading, line by line as the
 * utility's bill will show it.
 * @example
 * ```ts
 * await drawBill(ctx);
 * ```
 */
export async function drawBill(c: ViewContext): Promise<void> {
  const total = $('bill-total');
  if (!c.tariff) {
    setText('bill-title', 'Bill preview');
    setText('bill-note', 'This household app was not given your tariff, so it cannot price your readings. Ask your energy supplier to configure it (`ucs --tariff`).');
    fillTable('bill-lines', []);
    setText('bill-total', '—');
    delete total.dataset.minor;
    return;
  }
  const end = await latestEnd(c.store);
  const oldest = await c.store.oldest();
  const period = billingPeriodsIn(c.tariff, { start: end - 1, end })[0]!;
  const rows = await rowsIn(c.store, period);
  const p = billPreview(rows, c.tariff, end, oldest?.time ?? end);
  setText('bill-title', `Bill preview: ${c.dates.day(p.period.start)} – ${c.dates.day(p.period.end - 1)}`);
  const notes = [`${c.tariff.name}. Priced up to ${c.dates.dateTime(p.upTo)} with the same rules as the utility's bill (each line rounded once, half to even; VAT on the subtotal).`];
  if (p.upTo < p.period.end) notes.push('The period is still running: standing charge for the days begun so far.');
  if (!p.complete) notes.push(`Your readings in this browser start on ${c.dates.dateTime(oldest!.time)}, after this period began: the utility's bill also counts the readings before that.`);
  if (p.priced.error) notes.push(`Cannot price this period: ${p.priced.error}.`);
  setText('bill-note', notes.join(' '));
  fillTable('bill-lines', p.priced.bill ? billRows(p.priced.bill) : []);
  setText('bill-total', p.priced.bill ? money(p.priced.bill.totalMinor, p.priced.bill) : '—');
  if (p.priced.bill) total.dataset.minor = String(p.priced.bill.totalMinor);
  else delete total.dataset.minor;
}

// --- what the utility holds -----------------------------------------------------------------------------------
/** Billing periods shown (newest first); older ones are in the exports. */
const HELD_PERIODS = 24;

/**
 * What the utility holds about the household, recomputed here from its own readings: its billing totals per
 * period and band (imported and exported), and the neighbourhoods its meters count in.
 * @example
 * ```ts
 * await drawUtility(ctx);
 * ```
 */
export async function drawUtility(c: ViewContext): Promise<void> {
  const info = c.info;
  fillTable(
    'held-neighbourhoods',
    (info?.neighbourhoods ?? []).map((n) => [
      n.neighbourhood,
      info!.meters.filter((m) => m.neighbourhood === n.neighbourhood).map((m) => m.label).join(', '),
      String(n.provisionedMeters),
      'not published to households',
    ]),
  );
  const tariff = c.tariff;
  const oldest = await c.store.oldest();
  if (!tariff || !oldest) {
    setText('held-note', tariff ? 'No readings in this browser yet.' : 'This household app was not given your tariff, so it cannot tell which bands the utility totals your energy in.');
    $('held-head').replaceChildren();
    fillTable('held-periods', []);
    return;
  }
  const end = await latestEnd(c.store);
  const periods = billingPeriodsIn(tariff, { start: oldest.time, end }).reverse();
  const bands = tariff.schedule.bands.map((b) => b.name);
  const head = document.createElement('tr');
  for (const h of ['Billing period', ...bands.map((b) => `Imported, ${b} (kWh)`), ...bands.map((b) => `Returned, ${b} (kWh)`), 'Complete']) {
    const th = document.createElement('th');
    th.textContent = h;
    head.append(th);
  }
  $('held-head').replaceChildren(head);
  const rows: string[][] = [];
  for (const p of periods) {
    if (rows.length >= HELD_PERIODS) break;
    const s = await summary(c, p);
    const running = p.end > end;
    if (s.readings === 0 && !running) continue; // a period this browser has no readings of
    const part = s.parts ?? [];
    const sumBand = (b: string, which: 'bands' | 'exportBands') => part.reduce((a, x) => a + (x[which]?.[b] ?? 0), 0);
    rows.push([
      `${c.dates.day(p.start)} – ${c.dates.day(p.end - 1)}${running ? ' (running)' : ''}`,
      ...bands.map((b) => (s.readings ? formatKwh(sumBand(b, 'bands')) : NO_DATA)),
      ...bands.map((b) => (s.readings ? formatKwh(sumBand(b, 'exportBands')) : NO_DATA)),
      oldest.time <= p.start ? 'yes' : 'no: your readings here start later',
    ]);
  }
  fillTable('held-periods', rows);
  setText(
    'held-note',
    `The utility receives, per billing period (${tariff.billing.period.unit === 'month' ? 'a month' : tariff.billing.period.unit === 'day' ? 'a day' : `${tariff.billing.period.count} hours`}, ${tariff.billing.tz}), your energy per tariff band — nothing finer. These are the same totals, computed in this browser from your own readings (the latest ${HELD_PERIODS} periods of which it has readings).`,
  );
}

// --- export -----------------------------------------------------------------------------------------------------
/**
 * Keeps the export date range on the data: the first and last day with readings, as long as the household
 * has not chosen other dates; the pickers cannot go outside it.
 * @example
 * ```ts
 * await fillExportDates(ctx);
 * ```
 */
export async function fillExportDates(c: ViewContext): Promise<void> {
  const oldest = await c.store.oldest();
  const last = await newest(c.store);
  const iso = (t: number) => isoDay(t, c.dates.zone);
  for (const [id, row] of [['export-from', oldest], ['export-to', last]] as const) {
    const el = input(id);
    if (!row) continue;
    const value = iso(row.time);
    // Follow the data unless the household picked another date (then the picker keeps its choice).
    if (!el.value || el.value === el.dataset.auto) el.value = value;
    el.dataset.auto = value;
  }
  if (oldest && last) {
    for (const id of ['export-from', 'export-to']) {
      input(id).min = iso(oldest.time);
      input(id).max = iso(last.time);
    }
  }
}

/** The local calendar date (YYYY-MM-DD, the value of a date input) of `t`. */
const isoDay = (t: number, zone: string) => DateTime.fromSeconds(t, { zone }).toISODate()!;
