/**
 * CSV exports with the same columns, formats and order as `smartermeter mdms export` (mdms/export.ts):
 * neighbourhood `neighbourhood,start,end,meters,energy_wh,export_wh`, billing `household,start,end,band,energy_wh,export_wh`,
 * optionally filtered by key and by [from, to). Streamed page by page; each export is audited before the
 * first byte leaves.
 * @module
 */
import { Readable } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { billingFields, CSV_HEADERS, csvLines, neighbourhoodFields, type ExportWhat } from '../../export.js';
import type { Store } from '../../store/types.js';
import { ACCOUNT_NUMBER } from '../accounts.js';
import { clientIp, HttpError, userOf } from '../context.js';
import { errors, NAME_PATTERN, rangeQuery } from '../schemas.js';
import { isoZ, parseRange } from '../time.js';
import { MAX_COMPARE } from './neighbourhoods.js';

const PAGE = 5000;

function field(v: string | number): string {
  const s = String(v);
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}
/**
 * One CSV line (RFC 4180 quoting where needed).
 * @example
 * ```ts
 * csvLine('a', 1, 'b,c'); // 'a,1,"b,c"\n'
 * ```
 */
export const csvLine = (...fields: (string | number)[]): string => fields.map(field).join(',') + '\n';

/**
 * Neighbourhood CSV lines (header first) for some neighbourhoods over [from, to).
 * @example
 * ```ts
 * for await (const l of neighbourhoodCsv(store, ['nb1'], from, to)) out.write(l);
 * ```
 */
export async function* neighbourhoodCsv(store: Store, nbs: readonly string[], from?: number, to?: number): AsyncGenerator<string> {
  yield CSV_HEADERS.neighbourhood + '\n';
  for (const nb of [...nbs].sort()) {
    let after: { neighbourhood: string; start: number } | undefined;
    for (;;) {
      const rows = await store.latestNeighbourhood({ neighbourhood: nb, from, to, after, limit: PAGE });
      if (rows.length === 0) break;
      yield rows.map((r) => csvLine(...neighbourhoodFields(r))).join('');
      const last = rows[rows.length - 1]!;
      after = { neighbourhood: last.neighbourhood, start: last.start };
    }
  }
}

/**
 * Billing CSV lines (header first), optionally for one household, over [from, to).
 * @example
 * ```ts
 * for await (const l of billingCsv(store, 'hh1', from, to)) out.write(l);
 * ```
 */
export async function* billingCsv(store: Store, household?: string, from?: number, to?: number): AsyncGenerator<string> {
  yield CSV_HEADERS.billing + '\n';
  let after: { household: string; start: number } | undefined;
  for (;;) {
    const rows = await store.latestBilling({ household, from, to, after, limit: PAGE });
    if (rows.length === 0) return;
    yield rows.map((r) => csvLine(...billingFields(r))).join('');
    const last = rows[rows.length - 1]!;
    after = { household: last.household, start: last.start };
  }
}

/**
 * Registers the export routes.
 * @example
 * ```ts
 * await app.register(exportRoutes);
 * ```
 */
export async function exportRoutes(app: FastifyInstance): Promise<void> {
  const { store, web, metrics } = app.mdms;
  const csvResponse = { 200: { type: 'string', description: 'text/csv' }, ...errors } as const;

  async function send(req: FastifyRequest, reply: FastifyReply, what: ExportWhat, target: string, detail: Record<string, string | number | null>, lines: AsyncGenerator<string>): Promise<FastifyReply> {
    const u = userOf(req);
    await web.audit.record({ userId: u.id, username: u.username, action: `export.${what}`, target, outcome: 'ok', ip: clientIp(req), detail });
    metrics.exports.inc({ what });
    const name = `${what}${detail.from ? `-${String(detail.from).slice(0, 10)}` : ''}${detail.to ? `-${String(detail.to).slice(0, 10)}` : ''}.csv`;
    return reply
      .type('text/csv; charset=utf-8')
      .header('content-disposition', `attachment; filename="${name.replace(/[^A-Za-z0-9_.-]/g, '_')}"`)
      .header('cache-control', 'no-store')
      .send(Readable.from(lines));
  }

  app.get(
    '/api/v1/exports/neighbourhood.csv',
    {
      config: { access: 'neighbourhood.export' },
      schema: {
        tags: ['exports'],
        summary: 'Neighbourhood series as CSV',
        description: `Columns ${CSV_HEADERS.neighbourhood} (as smartermeter mdms export). Filter by nb (up to ${MAX_COMPARE}, repeatable) and [from, to); no filter = everything. Audited. Needs neighbourhood.export (analyst).`,
        querystring: { type: 'object', properties: { nb: { type: 'array', items: { type: 'string', pattern: NAME_PATTERN }, maxItems: MAX_COMPARE }, ...rangeQuery } },
        response: csvResponse,
      },
    },
    async (req, reply) => {
      const q = req.query as { nb?: string[]; from?: string; to?: string };
      const tz = (await web.settings.all()).timezone;
      const { from, to } = parseRange(q.from, q.to, tz, Number.MAX_SAFE_INTEGER);
      const nbs = q.nb?.length ? [...new Set(q.nb)] : null;
      if (nbs) {
        const known = new Set(await store.listNeighbourhoods());
        for (const nb of nbs) if (!known.has(nb)) throw new HttpError(404, `no data for neighbourhood "${nb}"`);
      }
      const detail = { neighbourhoods: nbs ? nbs.join(',') : 'all', from: from === undefined ? null : isoZ(from), to: to === undefined ? null : isoZ(to) };
      const lines = !nbs && from === undefined && to === undefined ? csvLines(store, 'neighbourhood') : neighbourhoodCsv(store, nbs ?? (await store.listNeighbourhoods()), from, to);
      return send(req, reply, 'neighbourhood', nbs ? nbs.join(',') : 'all neighbourhoods', detail, lines);
    },
  );

  app.get(
    '/api/v1/exports/billing.csv',
    {
      config: { access: 'billing.export' },
      schema: {
        tags: ['exports'],
        summary: 'Billing aggregates as CSV',
        description: `Columns ${CSV_HEADERS.billing} (as smartermeter mdms export): each household's energy per billing period and band, imported (energy_wh) and exported (export_wh). Filter by account and [from, to). Audited. Needs billing.export (billing).`,
        querystring: { type: 'object', properties: { account: { type: 'string', pattern: ACCOUNT_NUMBER.source }, ...rangeQuery } },
        response: csvResponse,
      },
    },
    async (req, reply) => {
      const q = req.query as { account?: string; from?: string; to?: string };
      const tz = (await web.settings.all()).timezone;
      const { from, to } = parseRange(q.from, q.to, tz, Number.MAX_SAFE_INTEGER);
      let household: string | undefined;
      if (q.account) {
        const a = await web.accounts.byNumber(q.account);
        if (!a) throw new HttpError(404, `unknown account ${q.account}`);
        household = a.household;
      }
      const detail = { account: q.account ?? 'all', from: from === undefined ? null : isoZ(from), to: to === undefined ? null : isoZ(to) };
      const lines = household === undefined && from === undefined && to === undefined ? csvLines(store, 'billing') : billingCsv(store, household, from, to);
      return send(req, reply, 'billing', q.account ?? 'all accounts', detail, lines);
    },
  );
}
