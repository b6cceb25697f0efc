/**
 * Issued bills and credit/debit notes: the bill run that freezes them (billing role), each document as a
 * printable page, as JSON and as CSV, and the list. Every run, every document issued and every view or export
 * is audited.
 * @module
 */
import { Readable } from 'node:stream';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { ACCOUNT_NUMBER } from '../accounts.js';
import type { AuditAction } from '../audit.js';
import { formatKwh, formatMoney, formatScaled, minorUnitLabel, type BillLine } from '../../../lib/billing.js';
import { clientIp, HttpError, userOf } from '../context.js';
import { html, type SafeHtml } from '../html.js';
import { DOCUMENT_NUMBER, DOCUMENTS_CSV_HEADER, documentCsvRows, runBills, type BillRun, type IssuedDocument } from '../issued.js';
import { sendPage } from '../render.js';
import { documentSchema, errors, rangeQuery } from '../schemas.js';
import { fmtTime, isoZ, parseRange } from '../time.js';
import { csvLine } from './exports.js';

const numberParams = { type: 'object', properties: { number: { type: 'string', pattern: DOCUMENT_NUMBER.source } }, required: ['number'] } as const;
const listQuery = { type: 'object', properties: { account: { type: 'string', pattern: ACCOUNT_NUMBER.source }, ...rangeQuery }, additionalProperties: false } as const;

/** What a document is called on paper. */
export const DOCUMENT_TITLE = { bill: 'Bill', credit: 'Credit note', debit: 'Debit note' } as const;

/**
 * The total row of a bill or note, said plainly when it is a credit (a note that gives money back, or a bill
 * whose feed-in is worth more than its charges): the label says who owes whom, the amount keeps its sign.
 * @example
 * ```ts
 * html`<table>…${totalRow(-252, (m) => formatMoney(m, 'GBP', 2), 4, 'bill-total')}</table>`;
 * ```
 */
export function totalRow(totalMinor: number, money: (m: number) => string, colspan: number, testid: string, kind: keyof typeof DOCUMENT_TITLE = 'bill'): SafeHtml {
  const credit = totalMinor < 0;
  const label = kind === 'credit' ? 'Total credited' : credit ? 'Total: a credit to the customer' : 'Total';
  return html`<tr class="total"><td colspan="${colspan}" class="right">${label}</td><td class="num total-due" data-testid="${testid}" data-minor="${totalMinor}">${money(totalMinor)}${credit ? html` <span class="badge ok" data-testid="${`${testid}-credit`}">credit</span>` : ''}</td></tr>`;
}

/**
 * A bill line's description and quantity for people (energy, energy fed in, standing charge).
 * @example
 * ```ts
 * lineText(line, 'GBP').what; // 'Peak energy fed in'
 * ```
 */
export function lineText(l: BillLine, currency: string): { what: string; qty: string; rate: string } {
  const unit = minorUnitLabel(currency);
  const band = (b: string): string => b[0]!.toUpperCase() + b.slice(1);
  if (l.kind === 'energy') return { what: `${band(l.band)} energy`, qty: `${formatKwh(l.energyWh)} kWh`, rate: `${formatScaled(l.priceMilliPerKwh, 3)}${unit}/kWh` };
  if (l.kind === 'feedin') return { what: `${band(l.band)} energy fed in`, qty: `${formatKwh(l.energyWh)} kWh`, rate: `${formatScaled(l.feedInMilliPerKwh, 3)}${unit}/kWh` };
  return { what: 'Standing charge', qty: `${l.days} day${Math.abs(l.days) === 1 ? '' : 's'}`, rate: `${formatScaled(l.standingMilliPerDay, 3)}${unit}/day` };
}

/**
 * A document as the API shows it.
 * @example
 * ```ts
 * reply.send(documentJson(doc));
 * ```
 */
export function documentJson(d: IssuedDocument): Record<string, unknown> {
  return {
    number: d.number,
    kind: d.kind,
    refersTo: d.refersTo?.number ?? null,
    account: d.accountNumber,
    periodStart: isoZ(d.periodStart),
    periodEnd: isoZ(d.periodEnd),
    revision: d.revision,
    bands: d.bands,
    exportBands: d.exportBands,
    tariff: d.tariffCode,
    tariffVersions: d.tariffIds,
    currency: d.currency,
    minorDigits: d.minorDigits,
    lines: d.lines.map((l) => ({ ...l, from: isoZ(l.from), to: isoZ(l.to) })),
    vat: d.vat,
    subtotalMinor: d.subtotalMinor,
    vatMinor: d.vatMinor,
    totalMinor: d.totalMinor,
    total: formatMoney(d.totalMinor, d.currency, d.minorDigits),
    issuedAt: isoZ(Math.floor(d.issuedAtMs / 1000)),
    issuedBy: d.issuedBy,
  };
}

/**
 * A table of documents (the bills page, the account page).
 * @example
 * ```ts
 * html`<div class="card">${documentTable(docs, tz)}</div>`;
 * ```
 */
export function documentTable(docs: readonly IssuedDocument[], tz: string): SafeHtml {
  if (docs.length === 0) return html`<p class="muted">No bills issued yet.</p>`;
  return html`<table data-testid="issued"><thead><tr><th>Number</th><th>Kind</th><th>Account</th><th>Period</th><th>Revision</th><th>Issued</th><th class="num">Total</th></tr></thead><tbody>
${docs.map(
  (d) => html`<tr><td><a class="mono" href="${`/bills/${d.number}`}">${d.number}</a></td><td>${DOCUMENT_TITLE[d.kind]}${d.refersTo ? html` <span class="muted">for ${d.refersTo.number}</span>` : ''}</td><td class="mono">${d.accountNumber}</td>
<td>${fmtTime(d.periodStart, tz)} – ${fmtTime(d.periodEnd, tz)}</td><td>r${d.revision}</td><td>${fmtTime(Math.floor(d.issuedAtMs / 1000), tz, 'date')}</td><td class="num">${formatMoney(d.totalMinor, d.currency, d.minorDigits)}</td></tr>`,
)}</tbody></table>`;
}

/**
 * Registers the issued-bill routes.
 * @example
 * ```ts
 * await app.register(issuedRoutes);
 * ```
 */
export async function issuedRoutes(app: FastifyInstance): Promise<void> {
  const { store, web, fleet, metrics } = app.mdms;

  async function audit(req: FastifyRequest, action: AuditAction, target: string, detail: Record<string, string | number | boolean | null> = {}): Promise<void> {
    const u = userOf(req);
    await web.audit.record({ userId: u.id, username: u.username, action, target, outcome: 'ok', ip: clientIp(req), detail });
  }

  async function documentOr404(number: string): Promise<IssuedDocument> {
    const d = await web.bills.byNumber(number);
    if (!d) throw new HttpError(404, `no bill or note ${number}`);
    return d;
  }

  /** Runs the bills: each document commits with its audit entry; then the run is audited. */
  async function run(req: FastifyRequest): Promise<BillRun> {
    await web.accounts.ensure([...(await store.listHouseholds()), ...(fleet?.households ?? [])]);
    const u = userOf(req);
    const r = await runBills(store, web, { by: u.username, audit: { userId: u.id, ip: clientIp(req) }, nowMs: app.mdms.now(), tz: (await web.settings.all()).timezone });
    await audit(req, 'bill.run', 'all accounts', { issued: r.issued.length, notes: r.issued.filter((d) => d.kind !== 'bill').length, skipped: r.skipped.length, unchanged: r.unchanged });
    return r;
  }

  /** Documents of [from, to) (period start), optionally of one account. */
  async function listed(q: { account?: string; from?: string; to?: string }): Promise<IssuedDocument[]> {
    const { from, to } = parseRange(q.from, q.to, (await web.settings.all()).timezone, Number.MAX_SAFE_INTEGER);
    let household: string | undefined;
    if (q.account) {
      const a = await web.accounts.byNumber(q.account);
      if (!a) throw new HttpError(404, `unknown account ${q.account}`);
      household = a.household;
    }
    return web.bills.list({ household, from, to, limit: 10_000 });
  }

  // ---- pages
  app.post(
    '/bills/run',
    { config: { access: 'bill.issue' }, schema: { hide: true, body: { type: 'object', properties: { _csrf: { type: 'string' } } }, response: { 200: { type: 'string' } } } },
    async (req, reply) => {
      const r = await run(req);
      return reply.redirect(`/bills?done=${r.skipped.length ? 'runSkipped' : 'run'}`, 303);
    },
  );

  app.get(
    '/bills/:number',
    { config: { access: 'billing.read' }, schema: { hide: true, params: numberParams, response: { 200: { type: 'string' } } } },
    async (req, reply) => {
      const d = await documentOr404((req.params as { number: string }).number);
      const settings = await web.settings.all();
      const tz = settings.timezone;
      const versions = (await Promise.all(d.tariffIds.map((id) => web.tariffs.get(id)))).filter((v) => v !== null);
      const money = (m: number): string => formatMoney(m, d.currency, d.minorDigits);
      const title = DOCUMENT_TITLE[d.kind];
      await audit(req, 'view.bill', d.number, { format: 'html', account: d.accountNumber });
      return sendPage(req, reply, { title: `${title} ${d.number}`, active: '/bills' }, () => html`
<div class="toolbar no-print bill-tools"><a href="/bills">← Bills</a><a href="${`/api/v1/exports/bills.csv?number=${d.number}`}" download>CSV</a><button type="button" class="secondary" data-action="print">Print</button></div>
<article class="card bill" data-testid="document" data-kind="${d.kind}">
  <div class="bill-head">
    <div><h1>${settings.utilityName}</h1><div class="muted">${d.kind === 'bill' ? 'Electricity bill' : title}</div></div>
    <div class="to"><div>Account <strong class="mono">${d.accountNumber}</strong></div><div class="muted">Issued ${fmtTime(Math.floor(d.issuedAtMs / 1000), tz, 'date')}</div></div>
  </div>
  <dl>
    <dt>Number</dt><dd class="mono" data-testid="document-number">${d.number}</dd>
    ${d.refersTo ? html`<dt>Corrects bill</dt><dd class="mono"><a href="${`/bills/${d.refersTo.number}`}" data-testid="document-refers">${d.refersTo.number}</a></dd>` : ''}
    <dt>Billing period</dt><dd>${fmtTime(d.periodStart, tz)} – ${fmtTime(d.periodEnd, tz)} <span class="muted">(${tz})</span></dd>
    <dt>Tariff</dt><dd>${versions.map((v) => `${v.name} (${v.code}, version ${v.id}, from ${v.effectiveFrom})`).join('; ')}</dd>
    <dt>Energy</dt><dd>${Object.entries(d.bands).map(([b, wh]) => html`<span class="badge">${b} ${formatKwh(wh)} kWh</span> `)}<span class="muted">billing data revision ${d.revision}</span></dd>
    ${Object.keys(d.exportBands).length ? html`<dt>Fed in</dt><dd data-testid="document-fed-in">${Object.entries(d.exportBands).map(([b, wh]) => html`<span class="badge">${b} ${formatKwh(wh)} kWh</span> `)}</dd>` : ''}
  </dl>
  <h3>${d.kind === 'bill' ? 'Charges' : 'Changes to the charges'}</h3>
  <div class="table-wrap"><table data-testid="document-lines"><thead><tr><th>Charge</th><th class="num">Quantity</th><th class="num">Rate</th><th class="num">Amount</th></tr></thead><tbody>
  ${d.lines.map((l) => {
    const t = lineText(l, d.currency);
    return html`<tr data-kind="${l.kind}"><td><strong>${t.what}</strong></td><td class="num">${t.qty}</td><td class="num">${t.rate}</td><td class="num">${money(l.amountMinor)}</td></tr>`;
  })}
  <tr><td colspan="3" class="right">Subtotal</td><td class="num">${money(d.subtotalMinor)}</td></tr>
  ${d.vat.map((v) => html`<tr><td colspan="3" class="right">VAT ${formatScaled(v.basisPoints, 2)}% on ${money(v.baseMinor)}</td><td class="num">${money(v.amountMinor)}</td></tr>`)}
  ${totalRow(d.totalMinor, money, 3, 'document-total', d.kind)}
  </tbody></table></div>
  <footer>${settings.billFooter}<br>${
    d.kind === 'bill'
      ? 'Rates are in thousandths of a minor unit shown to three places; each line is rounded once (halves to even). Energy fed in is credited at the feed-in rate before VAT.'
      : `This ${title.toLowerCase()} settles revised billing data (revision ${d.revision}) for the period of bill ${d.refersTo?.number ?? ''}: each line is the change from what was billed, priced under the same tariff.`
  }</footer>
</article>`);
    },
  );

  // ---- API
  const tags = ['bills'];
  app.get(
    '/api/v1/bills',
    {
      config: { access: 'billing.read' },
      schema: {
        tags,
        summary: 'Issued bills and notes',
        description: 'Documents whose billing period starts in [from, to), optionally of one account, oldest period first. Audited. Needs billing.read (billing).',
        querystring: listQuery,
        response: { 200: { type: 'array', items: documentSchema }, ...errors },
      },
    },
    async (req) => {
      const q = req.query as { account?: string; from?: string; to?: string };
      const docs = await listed(q);
      await audit(req, 'view.bill', q.account ?? 'issued bills', { format: 'json', count: docs.length, from: q.from ?? null, to: q.to ?? null });
      return docs.map(documentJson);
    },
  );

  app.get(
    '/api/v1/bills/:number',
    { config: { access: 'billing.read' }, schema: { tags, summary: 'One issued bill or note', description: 'Audited. Needs billing.read (billing).', params: numberParams, response: { 200: documentSchema, ...errors } } },
    async (req) => {
      const d = await documentOr404((req.params as { number: string }).number);
      await audit(req, 'view.bill', d.number, { format: 'json', account: d.accountNumber });
      return documentJson(d);
    },
  );

  app.post(
    '/api/v1/bills/run',
    {
      config: { access: 'bill.issue' },
      schema: {
        tags,
        summary: 'Run the bills',
        description:
          'Freezes a bill for every ended billing period that has none, and a credit or debit note for every billed period whose billing data was revised since. Idempotent: a second run issues nothing new. Audited (the run and each document). Needs bill.issue (billing); needs x-csrf-token.',
        security: [{ session: [], csrf: [] }],
        body: { type: 'object', properties: {}, additionalProperties: false },
        response: {
          200: {
            type: 'object',
            properties: {
              issued: { type: 'array', items: documentSchema },
              skipped: { type: 'array', items: { type: 'object', properties: { account: { type: 'string' }, start: { type: 'string', format: 'date-time' }, end: { type: 'string', format: 'date-time' }, reason: { type: 'string' } }, required: ['account', 'start', 'end', 'reason'] } },
              unchanged: { type: 'integer', description: 'revised periods whose billed amounts do not change' },
            },
            required: ['issued', 'skipped', 'unchanged'],
          },
          ...errors,
        },
      },
    },
    async (req) => {
      const r = await run(req);
      return { issued: r.issued.map(documentJson), skipped: r.skipped.map((s) => ({ ...s, start: isoZ(s.start), end: isoZ(s.end) })), unchanged: r.unchanged };
    },
  );

  app.get(
    '/api/v1/exports/bills.csv',
    {
      config: { access: 'billing.export' },
      schema: {
        tags: ['exports'],
        summary: 'Issued bills and notes as CSV',
        description: `Columns ${DOCUMENTS_CSV_HEADER}: a row per line item, per VAT rate and a total row per document (amounts in minor units). One document (number) or a list (account, [from, to) of period start). Audited. Needs billing.export (billing).`,
        querystring: { type: 'object', properties: { ...listQuery.properties, number: { type: 'string', pattern: DOCUMENT_NUMBER.source } }, additionalProperties: false },
        response: { 200: { type: 'string', description: 'text/csv' }, ...errors },
      },
    },
    async (req, reply) => {
      const q = req.query as { account?: string; from?: string; to?: string; number?: string };
      const docs = q.number ? [await documentOr404(q.number)] : await listed(q);
      await audit(req, 'export.bills', q.number ?? q.account ?? 'issued bills', { count: docs.length, from: q.from ?? null, to: q.to ?? null });
      metrics.exports.inc({ what: 'bills' });
      const lines = [DOCUMENTS_CSV_HEADER + '\n', ...docs.map((d) => documentCsvRows(d).map((r) => csvLine(...r)).join(''))];
      return reply
        .type('text/csv; charset=utf-8')
        .header('content-disposition', `attachment; filename="${(q.number ?? 'bills').replace(/[^A-Za-z0-9_.-]/g, '_')}.csv"`)
        .send(Readable.from(lines));
    },
  );
}
