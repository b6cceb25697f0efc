/**
 * The Privacy page (issue 13, "Where it shows"): the MDMS's and the PES's k, the PES's guards and counters from
 * its latest policy statement, the DP budget per neighbourhood from the stored ledgers, the MDMS's refusals, and
 * the privacy report (summary.json figures; report.html served read-only in a sandbox). Roles: privacy and admin.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { renderReport, type PrivacySummary } from '../../../privacy/report.js';
import { auditRefusals } from '../../../mdms/refusal-audit.js';
import { policyWarnings, readPrivacyReport, reportFigures } from '../../../mdms/web/privacy.js';
import { REPORT_CSP } from '../../../mdms/web/routes/privacy.js';
import { buildMdmsWeb } from '../../../mdms/web/server.js';
import { fixture, PASSWORDS, testFleet, WEEK_START, type Fixture } from './fixture.js';

/** A summary.json as `smartermeter privacy-report` writes it (the type is the report's own). */
const SUMMARY: PrivacySummary = {
  households: 12,
  attacks: [
    { attack: 'events', data: 'raw', f1: 0.8123, chance_f1: 0.0412 },
    { attack: 'events', data: 'released', f1: 0.0587, chance_f1: 0.0409 },
    { attack: 'occupancy', data: 'raw', accuracy: 0.914, chance: 0.5 },
    { attack: 'occupancy', data: 'released', accuracy: 0.532, chance: 0.5 },
    { attack: 'differencing', guard: false, mae_wh: 3.25, baseline_mae_wh: 61.5, intervals: 14, subtracted: 14, membership_held: 0, released: 96, errors_wh: [1, 2] },
    { attack: 'differencing', guard: true, mae_wh: 58.75, baseline_mae_wh: 61.5, intervals: 14, subtracted: 0, membership_held: 14, released: 82, errors_wh: [50, 60] },
  ],
  dp: [
    { epsilon: 0.1, aggregate_mape: 0.4567, events_f1: 0.031 },
    { epsilon: 1, aggregate_mape: 0.0456, events_f1: 0.045 },
  ],
  method: { data_from: '2024-01-01T00:00:00.000Z', data_to: '2024-01-08T00:00:00.000Z', interval_s: 900 },
  per_household: [],
};

let fx: Fixture;
let app: FastifyInstance;
let reportDir: string;
const cookies: Record<string, string> = {};

async function login(a: FastifyInstance, username: string, password: string): Promise<string> {
  const r = await a.inject({ method: 'POST', url: '/api/v1/session', payload: { username, password } });
  expect(r.statusCode, r.body).toBe(200);
  return r.cookies.map((c) => `${c.name}=${c.value}`).join('; ');
}

beforeAll(async () => {
  fx = await fixture('sqlite', 1);
  reportDir = mkdtempSync(join(tmpdir(), 'mdms-privacy-report-'));
  writeFileSync(join(reportDir, 'summary.json'), JSON.stringify(SUMMARY, null, 1));
  writeFileSync(join(reportDir, 'report.html'), renderReport(SUMMARY, []));
  // What the ingest records and receives: its own policy, a PES statement, noised releases, two refusals.
  await fx.store.recordIngestPolicy({ k: 5, minBillingPeriodS: 28 * 86_400, fleetChecked: true });
  await fx.store.insertPolicy({ kind: 'policy', key: 'pes-north', at: WEEK_START + 3600, k: 20, revisionK: 5, membershipGuard: true, dpEpsilon: 0.25, counters: { suppressed: 4, revisionHeld: 7, membershipHeld: 13, dpReleases: 200, gatewaysSeen: 3 } });
  let spent = 0;
  for (let i = 0; i < 8; i++) {
    spent += 0.25;
    await fx.store.insertNeighbourhood({ kind: 'neighbourhood', key: 'nb-dp', start: WEEK_START + i * 900, end: WEEK_START + (i + 1) * 900, revision: 0, meters: 25, energyWh: 1000, exportWh: 300, dp: { epsilon: 0.25, spent } });
  }
  const refused = auditRefusals(fx.web.audit);
  await refused({ topic: 'sm/v1/agg/neighbourhood/nb-dp', kind: 'neighbourhood', key: 'nb-dp', start: WEEK_START, revision: 0, rule: 'privacy', reason: 'neighbourhood aggregate covers fewer than k = 5 meters' });
  await refused({ topic: 'sm/v1/agg/billing/hh01', kind: 'billing', key: 'hh01', start: WEEK_START, revision: 0, rule: 'negative', reason: 'negative energy' });
  await fx.web.users.create({ username: 'officer', roles: ['privacy'], password: 'officer-password-1' });
  app = await buildMdmsWeb({ store: fx.store, web: fx.web, fleet: testFleet(), privacyReport: reportDir, loginRateLimit: { max: 1000, timeWindowMs: 60_000 } });
  cookies.officer = await login(app, 'officer', 'officer-password-1');
  for (const who of ['admin', 'analyst', 'billing']) cookies[who] = await login(app, who, PASSWORDS[who]!);
}, 120_000);

afterAll(async () => {
  await app?.close();
  await fx?.close();
  rmSync(reportDir, { recursive: true, force: true });
});

describe('the Privacy page', () => {
  it("shows both k's, the PES's guards with their counters and time, the DP budget and the report's figures", async () => {
    const r = await app.inject({ url: '/privacy', headers: { cookie: cookies.officer! } });
    expect(r.statusCode, r.body).toBe(200);
    const b = r.body;
    expect(b).toMatch(/data-testid="mdms-k">5</);
    expect(b).toMatch(/data-testid="pes-k-pes-north">20</);
    expect(b).toMatch(/data-testid="membership-pes-north">on</);
    expect(b).toContain('statement of 3 Jun 2024 01:00:00'); // the statement's `at` (00:00Z) in the display zone
    const counters = /data-testid="counters-pes-north">([^]*?)<\/table>/.exec(b)![1]!;
    for (const [name, n] of [['suppressed', 4], ['revisionHeld', 7], ['membershipHeld', 13], ['dpReleases', 200], ['gatewaysSeen', 3]] as const) {
      expect(counters).toMatch(new RegExp(`${name}</td><td class="num">${n}<`));
    }
    expect(counters).toContain('held by the differencing guard');
    // k differs between the MDMS and the PES: said plainly.
    expect(b).toMatch(/data-testid="privacy-warnings"[^]*set the MDMS&#39;s --k to 20/);
    // DP budget: 8 releases of 0.25, all within the last day; 2 spent.
    expect(b).toMatch(/data-testid="budget-nb-dp"><td>nb-dp<\/td><td class="num">0.25<\/td><td class="num">8<\/td><td class="num">2.000<\/td><td class="num">2.000<\/td><td class="num">8<\/td>/);
    // Refusals by rule, from the audit log.
    expect(b).toMatch(/<td>negative<\/td><td class="num">1<\/td>/);
    expect(b).toMatch(/<td>privacy<\/td><td class="num">1<\/td>/);
    // The report's figures and its link.
    expect(b).toContain('12 households');
    expect(b).toContain('0.812'); // events on raw data
    expect(b).toContain('0.059'); // events on what the MDMS holds
    expect(b).toContain('58.8'); // differencing error with the guard
    expect(b).toMatch(/data-testid="report-dp"[^]*0\.457/);
    expect(b).toMatch(/<a href="\/privacy\/report"[^>]*data-testid="report-link">/);
    // Nothing of a household's energy: the seeded billing values appear nowhere.
    for (const p of fx.seeded.billing) expect(b).not.toContain(`>${p.bands.peak}<`);
    expect((await fx.web.audit.list({ action: 'view.privacy', username: 'officer' }))[0]).toMatchObject({ target: 'privacy page', outcome: 'ok' });
  });

  it('the API says the same, and the report link serves report.html as written, sandboxed', async () => {
    const api = await app.inject({ url: '/api/v1/privacy', headers: { cookie: cookies.admin! } });
    expect(api.statusCode, api.body).toBe(200);
    const j = api.json();
    expect(j.mdms).toMatchObject({ k: 5, minBillingPeriodS: 28 * 86_400, fleetChecked: true });
    expect(j.statements).toEqual([
      expect.objectContaining({ pes: 'pes-north', at: '2024-06-03T00:00:00Z', k: 20, revisionK: 5, membershipGuard: true, dpEpsilon: 0.25, counters: { dpReleases: 200, gatewaysSeen: 3, membershipHeld: 13, revisionHeld: 7, suppressed: 4 } }),
    ]);
    expect(j.budgets).toEqual([{ neighbourhood: 'nb-dp', spent: 2, epsilon: 0.25, releases: 8, lastEnd: new Date((WEEK_START + 8 * 900) * 1000).toISOString().replace('.000', ''), releasesLastDay: 8, epsilonLastDay: 2 }]);
    expect(j.refusals).toEqual({ negative: 1, privacy: 1 });
    expect(j.warnings.some((w: string) => w.includes('--k to 20'))).toBe(true);
    expect(j.report).toMatchObject({ ok: true, html: true, figures: { households: 12, dp: [{ epsilon: 0.1 }, { epsilon: 1 }] } });
    expect(j.report.figures.differencing).toEqual([
      { guard: false, maeWh: 3.25, baselineMaeWh: 61.5, intervals: 14, membershipHeld: 0 },
      { guard: true, maeWh: 58.75, baselineMaeWh: 61.5, intervals: 14, membershipHeld: 14 },
    ]);

    const page = await app.inject({ url: '/privacy/report', headers: { cookie: cookies.officer! } });
    expect(page.statusCode).toBe(200);
    expect(page.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(page.body).toBe(renderReport(SUMMARY, []));
    expect(page.headers['content-security-policy']).toBe(REPORT_CSP);
    expect(page.headers['content-security-policy']).toMatch(/sandbox$/);
    expect(page.headers['cache-control']).toBe('no-store');
    expect((await fx.web.audit.list({ action: 'view.privacy', username: 'officer', target: 'privacy report' })).length).toBe(1);
  });

  it('only the privacy officer and administrators get in; the privacy role reads no energy', async () => {
    for (const url of ['/privacy', '/privacy/report', '/api/v1/privacy']) {
      for (const who of ['analyst', 'billing']) expect((await app.inject({ url, headers: { cookie: cookies[who]! } })).statusCode, `${who} ${url}`).toBe(403);
      const anon = await app.inject({ url });
      expect(anon.statusCode).toBe(url.startsWith('/api/') ? 401 : 303);
      expect((await app.inject({ url, headers: { cookie: cookies.admin! } })).statusCode, `admin ${url}`).toBe(200);
    }
    for (const url of ['/api/v1/neighbourhoods/nb-dp/series', '/api/v1/accounts', '/api/v1/exports/billing.csv', '/api/v1/exports/neighbourhood.csv', '/neighbourhoods']) {
      expect((await app.inject({ url, headers: { cookie: cookies.officer! } })).statusCode, url).toBe(403);
    }
    // The navigation offers the page to those who may open it.
    expect((await app.inject({ url: '/', headers: { cookie: cookies.officer! } })).body).toContain('href="/privacy"');
    expect((await app.inject({ url: '/', headers: { cookie: cookies.analyst! } })).body).not.toContain('href="/privacy"');
  });

  it('a broken or missing report is an error on the page and a counter, never a 500', async () => {
    writeFileSync(join(reportDir, 'summary.json'), '{"households": 3, "attacks": [{"attack": "events", "data": "raw", "f1": "high"}]}');
    const r = await app.inject({ url: '/privacy', headers: { cookie: cookies.officer! } });
    expect(r.statusCode).toBe(200);
    expect(r.body).toMatch(/data-testid="report-error">summary.json attacks\[0\] lacks a numeric f1: run smartermeter privacy-report --out again</);
    writeFileSync(join(reportDir, 'summary.json'), '{not json');
    expect((await app.inject({ url: '/api/v1/privacy', headers: { cookie: cookies.officer! } })).json().report).toEqual({ ok: false, html: true, error: 'summary.json is not valid JSON: run smartermeter privacy-report --out again' });
    rmSync(join(reportDir, 'report.html'));
    const gone = await app.inject({ url: '/privacy/report', headers: { cookie: cookies.officer! } });
    expect(gone.statusCode).toBe(404);
    expect(gone.body).toContain('no report.html in the privacy report directory');
    const metrics = await app.inject({ url: '/metrics' });
    expect(Number(/mdms_web_privacy_report_errors_total (\d+)/.exec(metrics.body)![1])).toBe(3);
    // Without --privacy-report the page says how to get one, and the report route is a clear 404.
    const bare = await buildMdmsWeb({ store: fx.store, web: fx.web, loginRateLimit: { max: 1000, timeWindowMs: 60_000 } });
    try {
      const c = await login(bare, 'officer', 'officer-password-1');
      expect((await bare.inject({ url: '/privacy', headers: { cookie: c } })).body).toContain('start the web app with <code>--privacy-report DIR</code>');
      const none = await bare.inject({ url: '/privacy/report', headers: { cookie: c } });
      expect(none.statusCode).toBe(404);
      expect(none.body).toContain('no privacy report configured');
    } finally {
      await bare.close();
    }
  });
});

describe('privacy report and policy checks (pure)', () => {
  it('reads the figures of a summary.json, skipping attack kinds it does not know', () => {
    const f = reportFigures({ ...SUMMARY, attacks: [...SUMMARY.attacks, { attack: 'reidentification', score: 0.2 }] });
    expect(f.attacks).toEqual([
      { attack: 'events', data: 'raw', score: 0.8123, chance: 0.0412 },
      { attack: 'events', data: 'released', score: 0.0587, chance: 0.0409 },
      { attack: 'occupancy', data: 'raw', score: 0.914, chance: 0.5 },
      { attack: 'occupancy', data: 'released', score: 0.532, chance: 0.5 },
    ]);
    expect(f).toMatchObject({ households: 12, dataFrom: '2024-01-01T00:00:00.000Z', dataTo: '2024-01-08T00:00:00.000Z' });
    for (const [bad, why] of [
      [null, /not an object/],
      [[], /not an object/],
      [{ attacks: [] }, /numeric households/],
      [{ households: 1.5, attacks: [] }, /households must be a count/],
      [{ households: 1 }, /attacks list/],
      [{ households: 1, attacks: [{ attack: 'occupancy', data: 'sometimes', accuracy: 1, chance: 1 }] }, /data must be raw or released/],
      [{ households: 1, attacks: [{ attack: 'differencing', guard: 'yes' }] }, /guard must be true or false/],
      [{ households: 1, attacks: [], dp: [{ epsilon: 1, aggregate_mape: Infinity, events_f1: 0 }] }, /dp\[0\] lacks a numeric aggregate_mape/],
    ] as const) {
      expect(() => reportFigures(bad), JSON.stringify(bad)).toThrow(why);
    }
  });

  it('reads a directory without throwing, whatever is in it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mdms-privacy-dir-'));
    try {
      expect(await readPrivacyReport(join(dir, 'absent'))).toEqual({ ok: false, html: false, error: 'no summary.json in the privacy report directory (run smartermeter privacy-report --out DIR)' });
      writeFileSync(join(dir, 'summary.json'), Buffer.alloc(4 * 1024 * 1024 + 1, 0x20));
      expect(await readPrivacyReport(dir)).toMatchObject({ ok: false, error: 'summary.json is larger than 4194304 bytes' });
      rmSync(join(dir, 'summary.json'));
      mkdtempSync(join(dir, 'summary.json'));
      expect((await readPrivacyReport(dir)).ok).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('warns where the MDMS and the PES disagree, or a guard is off', () => {
    const pes = { pes: 'p', at: 0, k: 20, revisionK: 5, membershipGuard: true, counters: {}, receivedAtMs: 0 };
    const mdms = { k: 20, minBillingPeriodS: 86_400, fleetChecked: true, recordedAtMs: 0 };
    expect(policyWarnings(mdms, [pes])).toEqual([]);
    expect(policyWarnings({ ...mdms, k: 25 }, [pes])[0]).toMatch(/refuses neighbourhood aggregates of fewer than 25 meters, but PES p releases them from 20/);
    expect(policyWarnings(mdms, [{ ...pes, membershipGuard: false }])[0]).toMatch(/without the differencing/);
    expect(policyWarnings(null, [])).toHaveLength(2);
    expect(policyWarnings({ ...mdms, fleetChecked: false }, [pes])[0]).toMatch(/without the fleet/);
  });
});
