/**
 * Billing: accounts (pseudonymous account number -> PES household key, tariff), each account's billing
 * periods priced, printable bills over a range, the bill run over every account, and the meter list
 * (meter id -> neighbourhood and account, nothing finer). Every view of billing data is audited before it
 * is sent.
 * @module
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Account } from '../accounts.js';
import { ACCOUNT_NUMBER } from '../accounts.js';
import type { AuditAction } from '../audit.js';
import { accountBill, billContext, pricedPeriods, tariffCodeOf, type AccountBill, type BillContext } from '../bills.js';
import { BillingError, formatKwh, formatMoney, formatScaled, minorUnitLabel, type BillLine } from '../../../lib/billing.js';
import { clientIp, HttpError, userOf } from '../context.js';
import { html, type SafeHtml } from '../html.js';
import { csrfField, flashOf, sendPage } from '../render.js';
import { documentTable, lineText, totalRow } from './issued.js';
import { can } from '../roles.js';
import { accountSchema, billSchema, errors, meterSchema, periodSchema, rangeQuery } from '../schemas.js';
import type { StoredTariff } from '../tariffs.js';
import { calendarRange, fmtTime, isoZ, latestEnd, localDate, parseRange } from '../time.js';
import { DateTime } from 'luxon';

const accountParams = {
  type: 'object',
  properties: { account: { type: 'string', pattern: ACCOUNT_NUMBER.source } },
  required: ['account'],
} as const;


/** A band's schedule in words, from the PES tariff schedule if the version has one. */
function bandHours(v: StoredTariff | undefined, band: string): string {
  const b = v?.schedule?.bands.find((x) => x.name === band);
  if (!b) return '';
  if (b.default) return 'all other times';
  const days = (d: number[]): string => {
    const names = ['Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun'];
    const s = [...d].sort((a, c) => a - c);
    const contiguous = s.every((x, i) => i === 0 || x === s[i - 1]! + 1);
    return contiguous && s.length > 2 ? `${names[s[0]! - 1]}–${names[s[s.length - 1]! - 1]}` : s.map((x) => names[x - 1]).join(', ');
  };
  const hm = (m: number): string => `${String(Math.floor(m / 60)).padStart(2, '0')}:${String(m % 60).padStart(2, '0')}`;
  return b.rules.map((r) => `${days(r.days)} ${hm(r.from)}–${hm(r.to)}`).join('; ');
}

/**
 * Registers the billing routes.
 * @example
 * ```ts
 * await app.register(billingRoutes);
 * ```
 */
export async function billingRoutes(app: FastifyInstance): Promise<void> {
  const { store, web, fleet, metrics } = app.mdms;

  const metersOf = (household: string): { meter: string; neighbourhood: string }[] =>
    fleet ? fleet.meters.filter((m) => m.household === household).map((m) => ({ meter: m.meter, neighbourhood: m.neighbourhood })) : [];

  /** Opens accounts for households that appeared since (store or fleet). */
  async function syncAccounts(): Promise<void> {
    await web.accounts.ensure([...(await store.listHouseholds()), ...(fleet?.households ?? [])]);
  }

  async function accountOr404(number: string): Promise<Account> {
    let a = await web.accounts.byNumber(number);
    if (!a) {
      await syncAccounts();
      a = await web.accounts.byNumber(number);
    }
    if (!a) throw new HttpError(404, `unknown account ${number}`);
    return a;
  }

  async function audit(req: FastifyRequest, action: AuditAction, target: string, detail: Record<string, string | number | boolean | null> = {}): Promise<void> {
    const u = userOf(req);
    await web.audit.record({ userId: u.id, username: u.username, action, target, outcome: 'ok', ip: clientIp(req), detail });
  }

  async function effectiveCode(a: Account): Promise<string | null> {
    try {
      return await tariffCodeOf(web, a);
    } catch (e) {
      if (e instanceof BillingError) return null;
      throw e;
    }
  }

  const accountJson = async (a: Account) => ({
    account: a.accountNumber,
    household: a.household,
    tariff: a.tariffCode,
    effectiveTariff: await effectiveCode(a),
    meters: metersOf(a.household).map((m) => m.meter),
  });

  /** Computes a bill, counting successes and refusals. */
  async function bill(a: Account, from: number, to: number, ctx?: BillContext): Promise<AccountBill> {
    try {
      const b = await accountBill(store, web, a, from, to, ctx);
      metrics.bills.inc({ outcome: 'ok' });
      return b;
    } catch (e) {
      metrics.bills.inc({ outcome: 'error' });
      throw e;
    }
  }

  /** The tariff zone of an account (for reading dates in bill ranges), else the display zone. */
  async function billingTz(a: Account): Promise<string> {
    const code = await effectiveCode(a);
    const versions = code ? await web.tariffs.versions(code) : [];
    return versions[versions.length - 1]?.tz ?? (await web.settings.all()).timezone;
  }

  // ---- pages
  app.get(
    '/accounts',
    { config: { access: 'billing.read' }, schema: { hide: true, querystring: { type: 'object', properties: { q: { type: 'string', maxLength: 40 } } }, response: { 200: { type: 'string' } } } },
    async (req, reply) => {
    await syncAccounts();
    const q = ((req.query as { q?: string }).q ?? '').trim().toUpperCase();
    const all = await web.accounts.list();
    // Find by account number or meter id (a clerk on the phone has one or the other).
    const accounts = q ? all.filter((a) => a.accountNumber.includes(q) || metersOf(a.household).some((m) => m.meter.toUpperCase().includes(q))) : all;
    const settings = await web.settings.all();
    await audit(req, 'view.accounts', q ? `search ${q}` : 'all accounts', { count: accounts.length });
    return sendPage(req, reply, { title: 'Accounts', active: '/accounts' }, () => html`
<h1>Billing accounts</h1>
<p class="sub">One account per household. The MDMS knows a household only by its pseudonymous PES key and this account number.</p>
<div class="card no-print"><form method="get" action="/accounts" class="row"><label>Account number or meter id <input name="q" value="${q}" maxlength="40" placeholder="SM-… or 534d52…"></label><button type="submit">Find</button>${q ? html`<a href="/accounts">Show all</a>` : ''}</form></div>
<div class="card table-wrap"><table data-testid="accounts"><thead><tr><th>Account</th><th>Tariff</th><th>Meters</th><th>Neighbourhood</th></tr></thead><tbody>
${accounts.map((a) => {
  const ms = metersOf(a.household);
  return html`<tr><td><a class="mono" href="${`/accounts/${a.accountNumber}`}">${a.accountNumber}</a></td><td>${a.tariffCode ?? html`<span class="muted">default${settings.defaultTariff ? ` (${settings.defaultTariff})` : ' — none set'}</span>`}</td><td class="mono">${ms.map((m) => m.meter).join(', ') || '–'}</td><td>${[...new Set(ms.map((m) => m.neighbourhood))].join(', ') || '–'}</td></tr>`;
})}
</tbody></table>${accounts.length === 0 ? html`<p class="muted">${q ? 'No account matches.' : 'No households yet.'}</p>` : ''}</div>`);
    },
  );

  app.get(
    '/accounts/:account',
    { config: { access: 'billing.read' }, schema: { hide: true, params: accountParams, querystring: { type: 'object', properties: { done: { type: 'string', maxLength: 20 } } }, response: { 200: { type: 'string' } } } },
    async (req, reply) => {
      const a = await accountOr404((req.params as { account: string }).account);
      const settings = await web.settings.all();
      const tz = settings.timezone;
      const priced = await pricedPeriods(store, web, a);
      const code = await effectiveCode(a);
      const codes = await web.tariffs.codes();
      const user = userOf(req);
      await audit(req, 'view.account', a.accountNumber, { periods: priced.periods.length });
      const newest = [...priced.periods].reverse();
      const btz = await billingTz(a);
      const issued = await web.bills.list({ household: a.household });
      const lastEnd = newest[0]?.end;
      const defaultMonth = lastEnd ? calendarRange('month', localDate(lastEnd - 1, btz), btz) : null;
      return sendPage(req, reply, { title: `Account ${a.accountNumber}`, active: '/accounts', flash: flashOf(req.query, { tariff: 'Tariff changed.' }) }, (csrf) => html`
<h1>Account <span class="mono" data-testid="account-number">${a.accountNumber}</span></h1>
<p class="sub">PES household key <span class="mono">${a.household}</span> · opened ${fmtTime(Math.floor(a.createdAtMs / 1000), tz, 'date')}</p>
<div class="grid">
  <div class="stat"><div class="label">Tariff</div><div class="value">${code ?? '–'}</div><div class="hint">${a.tariffCode ? 'chosen for this account' : code ? 'the default tariff' : 'no tariff: set a default in Settings'}</div></div>
  <div class="stat"><div class="label">Billing periods</div><div class="value">${priced.periods.length}</div></div>
  <div class="stat"><div class="label">Meters</div><div class="value mono">${metersOf(a.household).map((m) => m.meter).join(', ') || '–'}</div><div class="hint">${[...new Set(metersOf(a.household).map((m) => m.neighbourhood))].join(', ')}</div></div>
</div>
<div class="card no-print">
  <h2>Bill a range</h2>
  <form method="get" action="${`/accounts/${a.accountNumber}/bill`}" class="row">
    <label>From (first day) <input type="date" name="from" required value="${defaultMonth ? localDate(defaultMonth.from, btz) : ''}"></label>
    <label>To (day after the last) <input type="date" name="to" required value="${defaultMonth ? localDate(defaultMonth.to, btz) : ''}"></label>
    <button type="submit">Open bill</button>
  </form>
  <p class="legend-note">Dates are read in the tariff's time zone (${btz}). Billing periods that straddle an edge are left out and listed on the bill.</p>
  ${
    can(user.roles, 'account.write')
      ? html`<form method="post" action="${`/accounts/${a.accountNumber}/tariff`}" class="row spaced">${csrfField(csrf)}
    <label>Tariff <select name="tariff"><option value="">default${settings.defaultTariff ? ` (${settings.defaultTariff})` : ''}</option>${codes.map((c) => html`<option value="${c}"${a.tariffCode === c ? html` selected` : ''}>${c}</option>`)}</select></label>
    <button type="submit" class="secondary">Change tariff</button></form>`
      : ''
  }
</div>
<div class="card table-wrap"><h2>Billing periods</h2>
<table data-testid="periods"><thead><tr><th>Period</th><th>Bands (kWh)</th><th class="num">Energy (kWh)</th><th class="num">Fed in (kWh)</th><th class="num">Amount</th><th>Revision</th><th></th></tr></thead><tbody>
${newest.map(
  (p) => html`<tr><td>${fmtTime(p.start, tz)} – ${fmtTime(p.end, tz)}</td><td>${Object.entries(p.bands).map(([b, wh]) => html`<span class="badge">${b} ${formatKwh(wh)}</span> `)}${Object.entries(p.exportBands).map(([b, wh]) => html`<span class="badge ok">${b} fed in ${formatKwh(wh)}</span> `)}</td><td class="num">${formatKwh(p.energyWh)}</td><td class="num">${formatKwh(p.exportWh)}</td>
<td class="num">${p.totalMinor === null ? html`<span class="badge err" title="${p.error ?? ''}">not priced</span>` : html`${formatMoney(p.totalMinor, priced.currency!, priced.minorDigits)}${p.totalMinor < 0 ? html` <span class="badge ok">credit</span>` : ''}`}</td>
<td>${p.revision > 0 ? html`<span class="badge rev">r${p.revision}</span>` : html`<span class="muted">r0</span>`}</td>
<td><a href="${`/accounts/${a.accountNumber}/bill?from=${isoZ(p.start)}&to=${isoZ(p.end)}`}">Bill</a></td></tr>`,
)}
</tbody></table>${newest.length === 0 ? html`<p class="muted">No billing data yet.</p>` : ''}
${newest.find((p) => p.error) ? html`<p class="flash flash-error">Some periods cannot be priced: ${newest.find((p) => p.error)!.error}</p>` : ''}</div>
<div class="card table-wrap"><h2>Issued bills and notes</h2>${documentTable(issued, tz)}</div>`);
    },
  );

  app.post(
    '/accounts/:account/tariff',
    {
      config: { access: 'account.write' },
      schema: {
        hide: true,
        params: accountParams,
        body: { type: 'object', properties: { tariff: { type: 'string', pattern: '^([a-z0-9][a-z0-9_-]{0,31})?$' }, _csrf: { type: 'string' } }, required: ['tariff'] },
        response: { 200: { type: 'string' } },
      },
    },
    async (req, reply) => {
      const a = await accountOr404((req.params as { account: string }).account);
      const code = (req.body as { tariff: string }).tariff || null;
      await setTariff(req, a, code);
      return reply.redirect(`/accounts/${a.accountNumber}?done=tariff`, 303);
    },
  );

  async function setTariff(req: FastifyRequest, a: Account, code: string | null): Promise<Account> {
    if (code !== null && (await web.tariffs.versions(code)).length === 0) throw new BillingError(`there is no tariff "${code}"`);
    const updated = (await web.accounts.setTariff(a.accountNumber, code))!;
    await audit(req, 'account.tariff', a.accountNumber, { from: a.tariffCode, to: code });
    return updated;
  }

  function billLineText(l: BillLine, versions: StoredTariff[], currency: string): { what: SafeHtml; qty: string; rate: string } {
    const t = lineText(l, currency);
    const hours = l.kind === 'standing' ? '' : bandHours(versions.find((x) => x.id === l.tariffId), l.band);
    return { ...t, what: html`<strong>${t.what}</strong>${hours ? html`<div class="muted">${hours}</div>` : ''}` };
  }

  async function billRange(req: FastifyRequest, a: Account): Promise<{ from: number; to: number; tz: string }> {
    const q = req.query as { from?: string; to?: string };
    if (!q.from || !q.to) throw new HttpError(400, 'a bill needs from and to');
    const tz = await billingTz(a);
    const r = parseRange(q.from, q.to, tz);
    return { from: r.from!, to: r.to!, tz };
  }

  app.get(
    '/accounts/:account/bill',
    {
      config: { access: 'billing.read' },
      schema: { hide: true, params: accountParams, querystring: { type: 'object', properties: rangeQuery, required: ['from', 'to'] }, response: { 200: { type: 'string' } } },
    },
    async (req, reply) => {
      const a = await accountOr404((req.params as { account: string }).account);
      const { from, to, tz } = await billRange(req, a);
      const b = await bill(a, from, to);
      const settings = await web.settings.all();
      const { bill: x } = b;
      const money = (m: number): string => formatMoney(m, x.currency, x.minorDigits);
      await audit(req, 'view.bill', a.accountNumber, { from: isoZ(from), to: isoZ(to), periods: b.periods.length });
      const revised = b.periods.filter((p) => p.revision > 0).length;
      const fedBands = [...new Set(b.periods.flatMap((p) => Object.keys(p.exportBands)))];
      return sendPage(req, reply, { title: `Bill ${a.accountNumber}`, active: '/accounts' }, () => html`
<div class="toolbar no-print bill-tools"><a href="${`/accounts/${a.accountNumber}`}">← Account</a><button type="button" class="secondary" data-action="print">Print</button></div>
<article class="card bill" data-testid="bill">
  <div class="bill-head">
    <div><h1>${settings.utilityName}</h1><div class="muted">Bill preview: priced now from the latest data; the bills sent are the issued ones (Bills)</div></div>
    <div class="to"><div>Account <strong class="mono" data-testid="bill-account">${a.accountNumber}</strong></div><div class="muted">Priced ${fmtTime(Math.floor(app.mdms.now() / 1000), tz, 'date')}</div></div>
  </div>
  <dl>
    <dt>Reference</dt><dd class="mono" data-testid="bill-reference">${`${a.accountNumber}-${localDate(x.from, tz).replace(/-/g, '')}-${localDate(x.to, tz).replace(/-/g, '')}`}</dd>
    <dt>Billing period</dt><dd>${fmtTime(x.from, tz)} – ${fmtTime(x.to, tz)} <span class="muted">(${tz})</span></dd>
    <dt>Tariff</dt><dd>${b.versions.filter((v) => x.lines.some((l) => l.tariffId === v.id)).map((v) => `${v.name} (${v.code}, from ${v.effectiveFrom})`).join('; ')}</dd>
    <dt>Energy used</dt><dd>${formatKwh(x.energyWh)} kWh over ${x.periods} billing period${x.periods === 1 ? '' : 's'}${revised ? html` <span class="badge rev">${revised} revised</span>` : ''}</dd>
    ${x.exportWh ? html`<dt>Energy fed in</dt><dd data-testid="bill-fed-in">${formatKwh(x.exportWh)} kWh, credited at the feed-in rates</dd>` : ''}
  </dl>
  <h3>Charges</h3>
  <div class="table-wrap"><table data-testid="bill-lines"><thead><tr><th>Charge</th><th>From – to</th><th class="num">Quantity</th><th class="num">Rate</th><th class="num">Amount</th></tr></thead><tbody>
  ${x.lines.map((l) => {
    const t = billLineText(l, b.versions, x.currency);
    return html`<tr data-kind="${l.kind}"><td>${t.what}</td><td>${fmtTime(l.from, tz, 'date')} – ${fmtTime(l.to, tz, 'date')}</td><td class="num">${t.qty}</td><td class="num">${t.rate}</td><td class="num">${money(l.amountMinor)}</td></tr>`;
  })}
  <tr><td colspan="4" class="right">Subtotal</td><td class="num" data-testid="bill-subtotal">${money(x.subtotalMinor)}</td></tr>
  ${x.vat.map((v) => html`<tr><td colspan="4" class="right">VAT ${formatScaled(v.basisPoints, 2)}% on ${money(v.baseMinor)}</td><td class="num">${money(v.amountMinor)}</td></tr>`)}
  ${totalRow(x.totalMinor, money, 4, 'bill-total')}
  </tbody></table></div>
  ${x.totalMinor < 0 ? html`<p data-testid="bill-credit-note"><strong>This bill is a credit of ${money(-x.totalMinor)}</strong>: the energy fed in is worth more than the charges, so the amount is owed to the customer.</p>` : ''}
  ${b.leftOut.length ? html`<p class="flash flash-error">Not included: ${b.leftOut.length} billing period${b.leftOut.length === 1 ? '' : 's'} that straddle the edges of this range (${b.leftOut.map((p) => `${fmtTime(p.start, tz)} – ${fmtTime(p.end, tz)}`).join('; ')}).</p>` : ''}
  <h3>Billing periods included</h3>
  <div class="table-wrap"><table><thead><tr><th>Period</th>${Object.keys(b.periods[0]!.bands).map((band) => html`<th class="num">${band} (kWh)</th>`)}${fedBands.map((band) => html`<th class="num">${band} fed in (kWh)</th>`)}<th>Revision</th></tr></thead><tbody>
  ${b.periods.map((p) => html`<tr><td>${fmtTime(p.start, tz)} – ${fmtTime(p.end, tz)}</td>${Object.keys(b.periods[0]!.bands).map((band) => html`<td class="num">${p.bands[band] === undefined ? '–' : formatKwh(p.bands[band]!)}</td>`)}${fedBands.map((band) => html`<td class="num">${formatKwh(p.exportBands[band] ?? 0)}</td>`)}<td>${p.revision > 0 ? html`<span class="badge rev">r${p.revision}</span>` : 'r0'}</td></tr>`)}
  </tbody></table></div>
  <footer>${settings.billFooter}<br>Each line is rounded once to the nearest ${minorUnitLabel(x.currency)} (halves to even); energy of a period under two tariff versions is shared between them in proportion to time. Energy fed in is credited at the feed-in rate and netted before VAT.</footer>
</article>`);
    },
  );

  app.get(
    '/bills',
    {
      config: { access: 'billing.read' },
      schema: { hide: true, querystring: { type: 'object', properties: { ...rangeQuery, done: { type: 'string', maxLength: 20 } } }, response: { 200: { type: 'string' } } },
    },
    async (req, reply) => {
      const q = req.query as { from?: string; to?: string };
      const tz = (await web.settings.all()).timezone;
      let { from, to } = parseRange(q.from, q.to, tz);
      if (from === undefined || to === undefined) {
        const last = await latestEnd(async (f) => (await store.latestBilling({ from: f, limit: 1 }))[0]);
        const m = calendarRange('month', localDate(last === null ? Math.floor(app.mdms.now() / 1000) : last - 1, tz), tz);
        from ??= m.from;
        to ??= m.to;
        if (to <= from) throw new HttpError(400, 'to must be after from');
      }
      await syncAccounts();
      const accounts = await web.accounts.list();
      const ctx = await billContext(web);
      const rows = await Promise.all(
        accounts.map(async (a) => {
          try {
            const b = await bill(a, from!, to!, ctx);
            return { a, b, error: null as string | null };
          } catch (e) {
            if (!(e instanceof BillingError)) throw e;
            return { a, b: null, error: e.message };
          }
        }),
      );
      await audit(req, 'view.bill', 'bill run', { from: isoZ(from), to: isoZ(to), accounts: accounts.length });
      const totals = new Map<string, { minor: number; digits: number }>();
      for (const r of rows) if (r.b) totals.set(r.b.bill.currency, { minor: (totals.get(r.b.bill.currency)?.minor ?? 0) + r.b.bill.totalMinor, digits: r.b.bill.minorDigits });
      const month = DateTime.fromSeconds(from, { zone: tz });
      const prev = month.minus({ months: 1 }).startOf('month');
      const next = month.plus({ months: 1 }).startOf('month');
      const csv = `/api/v1/exports/billing.csv?from=${isoZ(from)}&to=${isoZ(to)}`;
      const issued = await web.bills.list({ from, to, limit: 10_000 });
      const flash = flashOf(req.query, { run: 'Bill run finished: the bills and notes it issued are listed below.', runSkipped: 'Bill run finished, but some periods could not be billed (no tariff or a band without a price): fix the tariff and run again.' });
      return sendPage(req, reply, { title: 'Bills', active: '/bills', flash }, (csrf) => html`
<h1>Bills</h1>
<div class="card table-wrap"><h2>Issued bills and notes</h2>
<p class="sub">Frozen when their billing period has ended: numbered, never edited; revised billing data gets a credit or debit note. Billing periods starting ${fmtTime(from!, tz)} – ${fmtTime(to!, tz)}.</p>
${
  can(userOf(req).roles, 'bill.issue')
    ? html`<form method="post" action="/bills/run" class="row no-print">${csrfField(csrf)}<button type="submit">Issue bills now</button><span class="muted">bills every ended period not yet billed, and a note for every billed period revised since</span></form>`
    : ''
}
<a class="button secondary no-print" href="${`/api/v1/exports/bills.csv?from=${isoZ(from)}&to=${isoZ(to)}`}" download>Issued bills CSV</a>
${documentTable(issued, tz)}</div>
<h2>Preview</h2>
<p class="sub">Every account priced over ${fmtTime(from!, tz)} – ${fmtTime(to!, tz)} (${tz}) from the latest billing data: what a bill would say now, not a bill.</p>
<div class="card no-print"><form method="get" action="/bills" class="row">
  <label>From <input type="date" name="from" value="${localDate(from, tz)}" required></label>
  <label>To (exclusive) <input type="date" name="to" value="${localDate(to, tz)}" required></label>
  <button type="submit">Show</button>
  <div class="seg"><a href="${`/bills?from=${prev.toISODate()}&to=${month.startOf('month').toISODate()}`}">← Month</a><a href="${`/bills?from=${next.toISODate()}&to=${next.plus({ months: 1 }).toISODate()}`}">Month →</a></div>
  <a class="button secondary" href="${csv}" download>Billing CSV</a>
</form></div>
<div class="grid">${[...totals].map(([c, t]) => html`<div class="stat"><div class="label">Total billed (${c})</div><div class="value">${formatMoney(t.minor, c, t.digits)}</div></div>`)}
<div class="stat"><div class="label">Accounts billed</div><div class="value">${rows.filter((r) => r.b).length} / ${rows.length}</div></div></div>
<div class="card table-wrap"><table data-testid="bill-run"><thead><tr><th>Account</th><th>Tariff</th><th class="num">Periods</th><th class="num">Energy (kWh)</th><th class="num">Fed in (kWh)</th><th class="num">Total</th><th>Status</th></tr></thead><tbody>
${rows.map((r) =>
  r.b
    ? html`<tr><td><a class="mono" href="${`/accounts/${r.a.accountNumber}/bill?from=${isoZ(from!)}&to=${isoZ(to!)}`}">${r.a.accountNumber}</a></td><td>${r.b.tariffCode}</td><td class="num">${r.b.periods.length}</td><td class="num">${formatKwh(r.b.bill.energyWh)}</td><td class="num">${formatKwh(r.b.bill.exportWh)}</td><td class="num">${formatMoney(r.b.bill.totalMinor, r.b.bill.currency, r.b.bill.minorDigits)}${r.b.bill.totalMinor < 0 ? html` <span class="badge ok">credit</span>` : ''}</td><td>${r.b.leftOut.length ? html`<span class="badge rev">${r.b.leftOut.length} left out</span>` : html`<span class="badge ok">ready</span>`}</td></tr>`
    : html`<tr><td><a class="mono" href="${`/accounts/${r.a.accountNumber}`}">${r.a.accountNumber}</a></td><td colspan="5" class="muted">${r.error}</td><td><span class="badge err">not billed</span></td></tr>`,
)}
</tbody></table></div>`);
    },
  );

  app.get('/meters', { config: { access: 'meter.read' }, schema: { hide: true, response: { 200: { type: 'string' } } } }, async (req, reply) => {
    await syncAccounts();
    const byHousehold = new Map((await web.accounts.list()).map((a) => [a.household, a.accountNumber]));
    const meters = fleet?.meters ?? [];
    const links = can(userOf(req).roles, 'billing.read');
    await audit(req, 'view.meters', 'all meters', { count: meters.length });
    return sendPage(req, reply, { title: 'Meters', active: '/meters' }, () => html`
<h1>Meters</h1>
<p class="sub">Meter ids are the meters' system titles (pseudonymous). The MDMS maps a meter to its neighbourhood and billing account — nothing finer.</p>
<div class="card table-wrap">${
      fleet
        ? html`<table data-testid="meters"><thead><tr><th>Meter</th><th>Neighbourhood</th><th>Account</th></tr></thead><tbody>
${meters.map((m) => {
  const acc = byHousehold.get(m.household);
  return html`<tr><td class="mono">${m.meter}</td><td>${m.neighbourhood}</td><td class="mono">${acc ? (links ? html`<a href="${`/accounts/${acc}`}">${acc}</a>` : acc) : '–'}</td></tr>`;
})}</tbody></table>`
        : html`<p class="muted">No fleet file loaded (start the MDMS with --keys to list meters).</p>`
    }</div>`);
  });

  // ---- API
  const tags = ['billing'];
  app.get(
    '/api/v1/accounts',
    { config: { access: 'billing.read' }, schema: { tags, summary: 'Billing accounts', description: 'Audited. Needs billing.read (billing).', response: { 200: { type: 'array', items: accountSchema }, ...errors } } },
    async (req) => {
      await syncAccounts();
      const accounts = await web.accounts.list();
      await audit(req, 'view.accounts', 'all accounts', { count: accounts.length });
      return Promise.all(accounts.map(accountJson));
    },
  );

  app.get(
    '/api/v1/accounts/:account',
    { config: { access: 'billing.read' }, schema: { tags, summary: 'One account', description: 'Audited. Needs billing.read (billing).', params: accountParams, response: { 200: accountSchema, ...errors } } },
    async (req) => {
      const a = await accountOr404((req.params as { account: string }).account);
      await audit(req, 'view.account', a.accountNumber);
      return accountJson(a);
    },
  );

  app.get(
    '/api/v1/accounts/:account/periods',
    {
      config: { access: 'billing.read' },
      schema: {
        tags,
        summary: 'Billing periods of an account, each priced',
        description: 'Latest revision of each billing period overlapping [from, to) (default: all). Audited. Needs billing.read (billing).',
        params: accountParams,
        querystring: { type: 'object', properties: rangeQuery },
        response: {
          200: { type: 'object', properties: { account: { type: 'string' }, currency: { type: ['string', 'null'] }, minorDigits: { type: 'integer' }, periods: { type: 'array', items: periodSchema } }, required: ['account', 'currency', 'minorDigits', 'periods'] },
          ...errors,
        },
      },
    },
    async (req) => {
      const a = await accountOr404((req.params as { account: string }).account);
      const q = req.query as { from?: string; to?: string };
      const r = parseRange(q.from, q.to, (await web.settings.all()).timezone);
      const priced = await pricedPeriods(store, web, a, r);
      await audit(req, 'view.account', a.accountNumber, { periods: priced.periods.length, ...(q.from ? { from: q.from } : {}), ...(q.to ? { to: q.to } : {}) });
      return { account: a.accountNumber, currency: priced.currency, minorDigits: priced.minorDigits, periods: priced.periods.map((p) => ({ ...p, start: isoZ(p.start), end: isoZ(p.end) })) };
    },
  );

  app.put(
    '/api/v1/accounts/:account/tariff',
    {
      config: { access: 'account.write' },
      schema: {
        tags,
        summary: "Change an account's tariff",
        description: 'null puts the account on the default tariff. Audited. Needs account.write (billing); needs x-csrf-token.',
        security: [{ session: [], csrf: [] }],
        params: accountParams,
        body: { type: 'object', properties: { tariff: { type: ['string', 'null'], pattern: '^[a-z0-9][a-z0-9_-]{0,31}$' } }, required: ['tariff'], additionalProperties: false },
        response: { 200: accountSchema, ...errors },
      },
    },
    async (req) => {
      const a = await accountOr404((req.params as { account: string }).account);
      return accountJson(await setTariff(req, a, (req.body as { tariff: string | null }).tariff));
    },
  );

  app.get(
    '/api/v1/accounts/:account/bill',
    {
      config: { access: 'billing.read' },
      schema: {
        tags,
        summary: 'Bill an account over a range',
        description:
          'Prices every billing period lying inside [from, to) under the account tariff: energy lines per band, feed-in lines (negative) per band with energy fed in, the standing charge; dates are read in the tariff time zone. The total is negative when the feed-in outweighs the charges (a credit). 422 when it cannot be billed (no tariff, band without a price, no data). Audited. Needs billing.read (billing).',
        params: accountParams,
        querystring: { type: 'object', properties: rangeQuery, required: ['from', 'to'] },
        response: { 200: billSchema, ...errors },
      },
    },
    async (req) => {
      const a = await accountOr404((req.params as { account: string }).account);
      const { from, to } = await billRange(req, a);
      const b = await bill(a, from, to);
      await audit(req, 'view.bill', a.accountNumber, { from: isoZ(from), to: isoZ(to), periods: b.periods.length });
      const x = b.bill;
      return {
        account: a.accountNumber,
        tariff: b.tariffCode,
        currency: x.currency,
        minorDigits: x.minorDigits,
        from: isoZ(x.from),
        to: isoZ(x.to),
        periods: b.periods.map((p) => ({ start: isoZ(p.start), end: isoZ(p.end), revision: p.revision, bands: p.bands, exportBands: p.exportBands })),
        leftOut: b.leftOut.map((p) => ({ start: isoZ(p.start), end: isoZ(p.end) })),
        energyWh: x.energyWh,
        exportWh: x.exportWh,
        lines: x.lines.map((l) => ({ ...l, from: isoZ(l.from), to: isoZ(l.to) })),
        subtotalMinor: x.subtotalMinor,
        vat: x.vat,
        vatMinor: x.vatMinor,
        totalMinor: x.totalMinor,
        total: formatMoney(x.totalMinor, x.currency, x.minorDigits),
      };
    },
  );

  app.get(
    '/api/v1/meters',
    {
      config: { access: 'meter.read' },
      schema: { tags: ['meters'], summary: 'Meters', description: 'Meter id -> neighbourhood and account. Audited. Needs meter.read (admin, billing).', response: { 200: { type: 'array', items: meterSchema }, ...errors } },
    },
    async (req) => {
      await syncAccounts();
      const byHousehold = new Map((await web.accounts.list()).map((a) => [a.household, a.accountNumber]));
      const meters = fleet?.meters ?? [];
      await audit(req, 'view.meters', 'all meters', { count: meters.length });
      return meters.map((m) => ({ meter: m.meter, neighbourhood: m.neighbourhood, account: byHousehold.get(m.household) ?? null }));
    },
  );
}

