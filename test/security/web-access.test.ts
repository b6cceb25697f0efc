/**
 * Web apps: unauthenticated and cross-role access, swept over every route each app has.
 *
 * MDMS web app: the route list comes from the app (onRoute); who may use each route comes from the table
 * below, written from the privacy model (ARCHITECTURE.md: the utility's analysts see neighbourhood
 * aggregates, billing staff household totals, administrators people, prices and the audit log, nobody
 * everything) and matched on the URL — not from the routes' own `access` labels, so a route labelled with
 * the wrong permission fails here. A route the table does not classify fails too (new routes need a
 * decision). test/mdms/web/api.test.ts checks the answers themselves.
 *
 * Household app (UCS server): every protected route refuses a request without a session, and a signed-in
 * household gets its own key and archive whatever household another parameter names.
 */
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appOf, fixture, PASSWORDS, type Fixture } from '../mdms/web/fixture.js';
import { NodeHousehold, startStack, type Stack } from '../ucs/helpers.js';

type Who = 'anonymous' | 'admin' | 'analyst' | 'billing' | 'privacy';
const ROLES = ['admin', 'analyst', 'billing', 'privacy'] as const;

/** Who may use a route, by `METHOD /path` pattern; first match wins. 'public': anyone; 'user': any signed-in role. */
const MDMS_POLICY: [RegExp, 'public' | 'user' | (typeof ROLES)[number][]][] = [
  [/^(GET|POST) \/login$/, 'public'],
  [/^POST \/api\/v1\/session$/, 'public'], // sign in
  [/^GET \/(healthz|favicon\.ico|openapi\.json|assets\/:name)$/, 'public'],
  [/^GET \/metrics$/, 'public'], // loopback or bearer token, checked inside; counters only
  [/^(GET \/|GET \/api\/docs|POST \/logout|(GET|POST) \/account\/password|(GET|DELETE) \/api\/v1\/session|POST \/api\/v1\/session\/password)$/, 'user'],
  [/^\w+ (\/api\/v1)?\/neighbourhoods(\/|$)/, ['analyst']],
  [/^\w+ (\/api\/v1)?\/(forecast|quality)(\/|$)/, ['analyst']], // demand forecasts and data-quality findings, made from aggregates
  [/^GET \/api\/v1\/exports\/neighbourhood\.csv$/, ['analyst']],
  [/^\w+ (\/api\/v1)?\/(accounts|bills)(\/|$)/, ['billing']],
  [/^GET \/api\/v1\/exports\/billing\.csv$/, ['billing']],
  [/^GET \/api\/v1\/exports\/bills\.csv$/, ['billing']], // issued bills and notes
  [/^GET (\/api\/v1)?\/meters$/, ['admin', 'billing']],
  [/^GET (\/api\/v1)?\/tariffs$/, ['admin', 'billing']],
  [/^\w+ (\/api\/v1)?\/tariffs(\/|$)/, ['admin']], // new, create, withdraw, delete
  [/^\w+ \/admin\//, ['admin']],
  [/^\w+ \/api\/v1\/(users|settings|audit)(\/|$)/, ['admin']],
  [/^GET (\/api\/v1)?\/privacy(\/|$)/, ['admin', 'privacy']], // k, guards, counters, DP budget, privacy report: no energy
];

function policyOf(route: string): 'public' | 'user' | (typeof ROLES)[number][] | undefined {
  return MDMS_POLICY.find(([re]) => re.test(route))?.[1];
}

describe('MDMS web app: every route, anonymous and each role', () => {
  let fx: Fixture;
  let app: FastifyInstance;
  const routes: { method: string; url: string }[] = [];
  const auth: Partial<Record<Who, { cookie: string; csrf: string }>> = {};
  let account = '';
  let spareUser = 0;

  beforeAll(async () => {
    fx = await fixture();
    app = await appOf(fx, { onRoute: (r) => routes.push({ method: r.method, url: r.url }) });
    await app.ready();
    for (const who of ROLES) {
      const r = await app.inject({ method: 'POST', url: '/api/v1/session', payload: { username: who, password: PASSWORDS[who]! } });
      expect(r.statusCode, r.body).toBe(200);
      auth[who] = { cookie: r.cookies.map((c) => `${c.name}=${c.value}`).join('; '), csrf: (r.json() as { csrfToken: string }).csrfToken };
    }
    account = (await fx.web.accounts.byHousehold('hh01'))!.accountNumber;
    // The sweep posts to every route: user routes get a spare user (not one whose session the sweep uses).
    spareUser = (await fx.web.users.create({ username: 'sweep-spare', roles: ['analyst'], password: 'sweep-spare-password-1' })).id;
  }, 120_000);
  afterAll(async () => {
    await app?.close();
    await fx?.close();
  });

  const swept = () => routes.filter((r) => r.method !== 'HEAD' && !/^(POST \/login|POST \/api\/v1\/session|DELETE \/api\/v1\/session|POST \/logout)$/.test(`${r.method} ${r.url}`));

  it('the policy table classifies every route the app has', () => {
    expect(routes.length).toBeGreaterThan(40);
    expect(routes.filter((r) => r.method !== 'HEAD' && !policyOf(`${r.method} ${r.url}`)).map((r) => `${r.method} ${r.url}`)).toEqual([]);
  });

  it('anonymous requests to every non-public route are refused (401, or a redirect to the sign-in page), and nothing leaks', async () => {
    const bad: string[] = [];
    for (const r of swept()) {
      const policy = policyOf(`${r.method} ${r.url}`)!;
      if (policy === 'public') continue;
      const res = await send(r, 'anonymous');
      const redirect = res.statusCode === 303 && /^\/login\?next=/.test(String(res.headers.location));
      if (!(res.statusCode === 401 || redirect)) bad.push(`${r.method} ${r.url}: ${res.statusCode} ${res.body.slice(0, 120)}`);
      if (/hh0\d|nb-(east|north|west)/.test(res.body)) bad.push(`${r.method} ${r.url}: a refusal names a household or neighbourhood`);
    }
    expect(bad).toEqual([]);
  }, 120_000);

  it('each role is refused (403) exactly on the routes the policy does not give it', async () => {
    const bad: string[] = [];
    for (const r of swept()) {
      const policy = policyOf(`${r.method} ${r.url}`)!;
      if (policy === 'public') continue;
      for (const who of ROLES) {
        const allowed = policy === 'user' || policy.includes(who);
        const res = await send(r, who);
        const refused = res.statusCode === 401 || res.statusCode === 403;
        if (allowed && refused) bad.push(`${who} refused ${r.method} ${r.url} (${res.statusCode})`);
        if (!allowed && res.statusCode !== 403) bad.push(`${who} got ${res.statusCode} from ${r.method} ${r.url}: ${res.body.slice(0, 120)}`);
        if (res.statusCode >= 500) bad.push(`${who} ${r.method} ${r.url}: ${res.statusCode}`);
      }
    }
    expect(bad).toEqual([]);
  }, 180_000);

  async function send(r: { method: string; url: string }, who: Who): Promise<LightMyRequestResponse> {
    const url = r.url
      .replace(':account', account)
      .replace(':nb', 'nb-east')
      .replace(':start', String(fx.seeded.intervals[0]!.start))
      .replace(':id', /\/users\//.test(r.url) ? String(spareUser) : '999999')
      .replace(':name', 'main.000000000000.js');
    const a = who === 'anonymous' ? undefined : auth[who];
    const write = r.method !== 'GET';
    const api = url.startsWith('/api/');
    return app.inject({
      method: r.method as 'GET',
      url,
      headers: { ...(a ? { cookie: a.cookie, 'x-csrf-token': a.csrf } : {}), ...(write ? { 'content-type': api ? 'application/json' : 'application/x-www-form-urlencoded' } : {}) },
      ...(write ? { payload: api ? '{}' : a ? `_csrf=${encodeURIComponent(a.csrf)}` : '' } : {}),
    });
  }
});

describe('household app (UCS server): sessions and households', () => {
  let stack: Stack;
  const root = resolve(import.meta.dirname, '../..');
  /** Every route the server declares, read from its route plugins' source (it does not expose its route list). */
  const sources = readdirSync(join(root, 'ucs/server')).filter((f) => f.endsWith('.ts')).map((f) => readFileSync(join(root, 'ucs/server', f), 'utf8'));
  const declared = sources.flatMap((src) => [...src.matchAll(/app\.(get|post|put|patch|delete)\('(\/api\/[^']+)'/g)].map((m) => `${m[1]!.toUpperCase()} ${m[2]}`));
  /** Routes a household uses before it has a session (registration, login); the rest need one. */
  const PUBLIC = ['GET /api/activation', 'POST /api/register/begin', 'POST /api/register/finish', 'GET /api/kdf', 'POST /api/login', 'POST /api/logout', 'GET /api/pes-key'];
  let hh1: NodeHousehold;
  const spki: Record<string, string> = {};

  beforeAll(async () => {
    stack = await startStack();
    for (const hh of ['hh1', 'hh2']) {
      const h = new NodeHousehold(stack.ucs.url, hh);
      const r = await h.register(stack.set.code(hh), 'a long enough passphrase');
      expect(r.status).toBe(200);
      spki[hh] = Buffer.from(r.spki!).toString('base64url');
      if (hh === 'hh1') hh1 = h;
    }
  }, 120_000);
  afterAll(async () => {
    await stack?.close();
  });

  it('declares the routes this sweep knows', () => {
    expect(declared.length).toBeGreaterThanOrEqual(12);
  });

  it('every route that is not part of registration or login refuses a request without a session (401)', async () => {
    const anon = new NodeHousehold(stack.ucs.url, 'hh1');
    const bad: string[] = [];
    for (const route of declared.filter((r) => !PUBLIC.includes(r))) {
      const [method, path] = route.split(' ') as ['GET' | 'POST', string];
      const r = await anon.call(method, path, method === 'POST' ? {} : undefined);
      if (r.status !== 401) bad.push(`${route}: ${r.status} ${JSON.stringify(r.json).slice(0, 100)}`);
    }
    expect(bad).toEqual([]);
  });

  it("a signed-in household gets its own key and archive, whatever household a parameter names", async () => {
    for (const q of ['', '?household=hh2', '?hh=hh2']) {
      const key = await hh1.call('GET', `/api/key${q}`);
      expect(key.status).toBe(200);
      const text = JSON.stringify(key.json).replace(/\+/g, '-').replace(/\//g, '_');
      expect(text).toContain(spki.hh1!.slice(100, 160)); // its own key (past the common SPKI header)
      expect(text).not.toContain(spki.hh2!.slice(100, 160));
      expect(JSON.stringify(key.json)).not.toContain('"hh2"');
      const archive = await hh1.call('GET', `/api/archive${q}`);
      expect(archive.status).toBe(200);
      expect(JSON.stringify(archive.json)).not.toContain('hh2');
    }
  });
});
