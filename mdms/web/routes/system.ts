/**
 * Assets, probes and documents: /assets/*, /healthz, /metrics, /openapi.json, /api/docs, and the overview
 * page at /.
 * @module
 */
import { timingSafeEqual } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import type { Asset } from '../assets.js';
import { HttpError, userOf } from '../context.js';
import { html } from '../html.js';
import { sendPage } from '../render.js';
import { can, PERMISSIONS, ROLES } from '../roles.js';
import { errors } from '../schemas.js';
import { WEB_SCHEMA_VERSION } from '../migrations.js';
import { fmtTime, latestEnd } from '../time.js';

const isLoopback = (a: string | undefined): boolean => !!a && (a === '::1' || a.startsWith('127.') || a.startsWith('::ffff:127.'));

function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/**
 * Registers the system routes.
 * @example
 * ```ts
 * await app.register(systemRoutes, { assets: await assets() });
 * ```
 */
export async function systemRoutes(app: FastifyInstance, opts: { assets: Asset[] }): Promise<void> {
  const { store, web, metrics, fleet } = app.mdms;
  const byPath = new Map(opts.assets.map((a) => [a.path, a]));

  app.get(
    '/assets/:name',
    { config: { access: 'public' }, schema: { hide: true, params: { type: 'object', properties: { name: { type: 'string', pattern: '^[a-z]+\\.[0-9a-f]{12}\\.(js|css)$' } }, required: ['name'] } } },
    async (req, reply) => {
      const a = byPath.get(`/assets/${(req.params as { name: string }).name}`);
      if (!a) throw new HttpError(404, 'no such asset (the app was updated: reload the page)');
      reply.header('cache-control', 'public, max-age=31536000, immutable').header('etag', a.etag).type(a.type);
      if (req.headers['if-none-match'] === a.etag) return reply.code(304).send();
      return reply.send(a.body);
    },
  );

  app.get('/favicon.ico', { config: { access: 'public' }, schema: { hide: true } }, async (_req, reply) => reply.code(204).send());

  app.get(
    '/healthz',
    {
      config: { access: 'public' },
      schema: {
        tags: ['system'],
        summary: 'Liveness and database reachability',
        description: 'Public; tells nothing about the data.',
        security: [],
        response: {
          200: { type: 'object', properties: { status: { type: 'string' }, store: { type: 'string' } }, required: ['status', 'store'] },
          ...errors,
        },
      },
    },
    async (_req, reply) => {
      try {
        await web.settings.all();
        await store.listNeighbourhoods();
        return { status: 'ok', store: store.dialect };
      } catch {
        throw new HttpError(503, 'database unreachable');
      }
    },
  );

  app.get(
    '/metrics',
    {
      config: { access: 'public' },
      schema: {
        tags: ['system'],
        summary: 'Prometheus metrics',
        description: 'Counters and durations only (no energy, money or account numbers). Needs `Authorization: Bearer <token>` when the server has a metrics token; otherwise loopback clients only.',
        security: [],
        response: { 200: { type: 'string' }, ...errors },
      },
    },
    async (req, reply) => {
      const token = app.mdms.metricsToken;
      if (token) {
        const got = /^Bearer (.+)$/.exec(String(req.headers.authorization ?? ''))?.[1] ?? '';
        if (!sameSecret(got, token)) throw new HttpError(401, 'metrics need the bearer token');
      } else if (!isLoopback(req.socket.remoteAddress)) {
        throw new HttpError(403, 'metrics are served to loopback clients only (configure a metrics token to scrape remotely)');
      }
      return reply.type(metrics.registry.contentType).send(await metrics.registry.metrics());
    },
  );

  app.get(
    '/openapi.json',
    {
      config: { access: 'public' },
      schema: { tags: ['system'], summary: 'This document', security: [], response: { 200: { type: 'object', additionalProperties: true } } },
    },
    async () => app.swagger(),
  );

  app.get('/api/docs', { config: { access: 'user' }, schema: { hide: true, response: { 200: { type: 'string' } } } }, async (req, reply) => {
    const doc = app.swagger() as { paths?: Record<string, Record<string, { summary?: string; description?: string; tags?: string[] }>> };
    const ops = Object.entries(doc.paths ?? {}).flatMap(([path, ms]) => Object.entries(ms).map(([m, op]) => ({ path, method: m.toUpperCase(), ...op })));
    return sendPage(req, reply, { title: 'API', active: '/api/docs' }, () =>
      html`<h1>REST API</h1><p class="sub">OpenAPI 3.1 document: <a href="/openapi.json">/openapi.json</a>. Sign in with <code>POST /api/v1/session</code>; send the returned <code>csrfToken</code> as <code>x-csrf-token</code> on POST, PUT, PATCH and DELETE.</p>
<div class="card table-wrap"><table><thead><tr><th>Method</th><th>Path</th><th>What</th><th>Who</th></tr></thead><tbody>
${ops.map((o) => html`<tr><td><span class="badge">${o.method}</span></td><td class="mono">${o.path}</td><td>${o.summary ?? ''}</td><td class="muted">${o.description ?? ''}</td></tr>`)}
</tbody></table></div>
<div class="card"><h2>Roles</h2><div class="table-wrap"><table><thead><tr><th>Permission</th>${ROLES.map((r) => html`<th>${r}</th>`)}</tr></thead><tbody>
${Object.entries(PERMISSIONS).map(([p, rs]) => html`<tr><td class="mono">${p}</td>${ROLES.map((r) => html`<td>${(rs as readonly string[]).includes(r) ? '✓' : ''}</td>`)}</tr>`)}
</tbody></table></div></div>`,
    );
  });

  app.get('/', { config: { access: 'user' }, schema: { hide: true, response: { 200: { type: 'string' } } } }, async (req, reply) => {
    const u = userOf(req);
    const settings = await web.settings.all();
    const tz = settings.timezone;
    const stats: { label: string; value: string; hint?: string; href?: string }[] = [];
    if (can(u.roles, 'neighbourhood.read')) {
      const nbs = await store.listNeighbourhoods();
      const last = await latestEnd(async (from) => (await store.latestNeighbourhood({ from, limit: 1 }))[0]);
      stats.push({ label: 'Neighbourhoods with data', value: String(nbs.length), href: '/neighbourhoods' });
      stats.push({ label: 'Latest interval ends', value: last === null ? '–' : fmtTime(last, tz), hint: tz });
    }
    if (can(u.roles, 'billing.read')) {
      const hh = await store.listHouseholds();
      const last = await latestEnd(async (from) => (await store.latestBilling({ from, limit: 1 }))[0]);
      stats.push({ label: 'Households with billing data', value: String(hh.length), href: '/accounts' });
      stats.push({ label: 'Latest billing period ends', value: last === null ? '–' : fmtTime(last, tz), hint: tz, href: '/bills' });
    }
    if (can(u.roles, 'meter.read')) stats.push({ label: 'Meters in the fleet', value: fleet ? String(fleet.meters.length) : '–', hint: fleet ? undefined : 'no fleet file loaded', href: '/meters' });
    if (can(u.roles, 'user.admin')) {
      stats.push({ label: 'Users', value: String(await web.users.count()), href: '/admin/users' });
      stats.push({ label: 'Tariff versions', value: String((await web.tariffs.list()).length), href: '/tariffs' });
      stats.push({ label: 'Database', value: store.dialect === 'sqlite' ? 'SQLite' : 'PostgreSQL', hint: `web schema v${WEB_SCHEMA_VERSION}, store v${await store.schemaVersion()}` });
    }
    const nbs = can(u.roles, 'neighbourhood.read') ? await store.listNeighbourhoods() : [];
    const recent = can(u.roles, 'audit.read') ? await web.audit.list({ limit: 8 }) : [];
    return sendPage(req, reply, { title: 'Overview', active: '/' }, () =>
      html`<h1>Good to see you, ${u.username}</h1><p class="sub">${settings.utilityName} · meter data management. The MDMS holds neighbourhood aggregates of several meters and each household's energy per billing period and band — nothing finer.</p>
<div class="grid">${stats.map(
        (s) =>
          html`<div class="stat"><div class="label">${s.label}</div><div class="value">${s.href ? html`<a href="${s.href}">${s.value}</a>` : s.value}</div>${s.hint ? html`<div class="hint">${s.hint}</div>` : ''}</div>`,
      )}</div>
${
  nbs.length
    ? html`<div class="card"><h2>Neighbourhoods</h2><div class="checks">${nbs.map((nb) => html`<a class="button secondary" href="${`/neighbourhoods?nb=${encodeURIComponent(nb)}`}">${nb}</a>`)}
<a class="button" href="${`/neighbourhoods?${nbs.slice(0, 6).map((nb) => `nb=${encodeURIComponent(nb)}`).join('&')}&range=week`}">Compare this week</a></div></div>`
    : ''
}
${
  can(u.roles, 'billing.read')
    ? html`<div class="card"><h2>Billing</h2><div class="checks"><a class="button" href="/bills">Open the bill run</a><a class="button secondary" href="/accounts">Find an account</a><a class="button secondary" href="/api/v1/exports/billing.csv" download>Billing CSV</a></div></div>`
    : ''
}
${
  recent.length
    ? html`<div class="card table-wrap"><h2>Recent activity</h2><table><thead><tr><th>When</th><th>Who</th><th>Action</th><th>What</th><th>Outcome</th></tr></thead><tbody>
${recent.map((e) => html`<tr><td>${fmtTime(Math.floor(e.atMs / 1000), tz)}</td><td>${e.username}</td><td class="mono">${e.action}</td><td class="mono">${e.target}</td><td>${e.outcome === 'ok' ? html`<span class="badge ok">ok</span>` : html`<span class="badge err">${e.outcome}</span>`}</td></tr>`)}
</tbody></table><p><a href="/admin/audit">The whole audit log →</a></p></div>`
    : ''
}`,
    );
  });
}
