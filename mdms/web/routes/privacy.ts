/**
 * The Privacy page (issue 13, "Where it shows"), for the privacy officer (`privacy`) and administrators: the k
 * the MDMS enforces beside the PES's, the PES's revision and membership guards with their counters (its latest
 * policy statement, with its time), the differential-privacy budget per neighbourhood from the ledgers of the
 * stored releases, the MDMS's own refusals by rule, and the privacy report (`--privacy-report DIR`: its
 * report.html served read-only, its summary.json figures shown). Nothing on it is a household's energy.
 * @module
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { join } from 'node:path';
import { Counter } from 'prom-client';
import type { DpBudgetRow, IngestPolicyRow, PolicyRow } from '../../store/types.js';
import { clientIp, HttpError, userOf } from '../context.js';
import { html } from '../html.js';
import { COUNTER_MEANING, MAX_REPORT_BYTES, policyWarnings, readBounded, readPrivacyReport, type PrivacyReport } from '../privacy.js';
import { sendPage } from '../render.js';
import { errors, privacySchema } from '../schemas.js';
import { fmtTime, isoZ } from '../time.js';

/** Refusals counted on the page: the latest this many `ingest.refused` audit entries. */
export const REFUSALS_SCANNED = 1000;

/** The report page's own policy: its inline styles and SVG only; no script, no request, no form, sandboxed. */
export const REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; sandbox";

const fixed = (v: number, d = 3): string => (Number.isFinite(v) ? v.toFixed(d) : '–');

function durationText(s: number): string {
  return s % 86_400 === 0 ? `${s / 86_400} day${s === 86_400 ? '' : 's'}` : s % 3600 === 0 ? `${s / 3600} h` : `${s} s`;
}

/**
 * Registers the Privacy page, its API and the report.
 * @example
 * ```ts
 * await app.register(privacyRoutes);
 * ```
 */
export async function privacyRoutes(app: FastifyInstance): Promise<void> {
  const { store, web, metrics, privacyReport: reportDir } = app.mdms;
  const reportErrors = new Counter({
    name: 'mdms_web_privacy_report_errors_total',
    help: 'Privacy report reads that failed (summary.json or report.html missing, too large or malformed)',
    registers: [metrics.registry],
  });

  async function audit(req: FastifyRequest, target: string, detail: Record<string, string | number | boolean | null> = {}): Promise<void> {
    const u = userOf(req);
    await web.audit.record({ userId: u.id, username: u.username, action: 'view.privacy', target, outcome: 'ok', ip: clientIp(req), detail });
  }

  /** Everything the page and the API show. */
  async function gather(): Promise<{ mdms: IngestPolicyRow | null; statements: PolicyRow[]; budgets: DpBudgetRow[]; refusals: Record<string, number>; report: PrivacyReport | null }> {
    const [mdms, statements, budgets, refused] = await Promise.all([store.ingestPolicy(), store.policies(), store.dpBudgets(), web.audit.list({ action: 'ingest.refused', limit: REFUSALS_SCANNED })]);
    const refusals: Record<string, number> = {};
    for (const e of refused) {
      const rule = typeof e.detail.rule === 'string' ? e.detail.rule : 'other';
      refusals[rule] = (refusals[rule] ?? 0) + 1;
    }
    const report = reportDir === null ? null : await readPrivacyReport(reportDir);
    if (report && !report.ok) reportErrors.inc();
    return { mdms, statements, budgets, refusals, report };
  }

  app.get('/privacy', { config: { access: 'privacy.read' }, schema: { hide: true, response: { 200: { type: 'string' } } } }, async (req, reply) => {
    const tz = (await web.settings.all()).timezone;
    const { mdms, statements, budgets, refusals, report } = await gather();
    const warnings = policyWarnings(mdms, statements);
    await audit(req, 'privacy page', { statements: statements.length, budgets: budgets.length });
    return sendPage(req, reply, { title: 'Privacy', active: '/privacy' }, () => html`
<h1>Privacy</h1>
<p class="sub">What keeps each household's data out of the utility's hands, and how often it acted: the smallest group the PES releases and the MDMS stores (k), the PES's guards against revisions and differencing, the differential-privacy budget, and the latest privacy report. Nothing here is a household's energy. Times in ${tz}.</p>
${warnings.length ? html`<div class="flash flash-error" role="alert" data-testid="privacy-warnings"><ul>${warnings.map((w) => html`<li>${w}</li>`)}</ul></div>` : ''}
<div class="card" data-testid="mdms-policy"><h2>What the MDMS enforces</h2>
${
  mdms
    ? html`<div class="grid">
  <div class="stat"><div class="label">k (MDMS)</div><div class="value" data-testid="mdms-k">${mdms.k}</div><div class="hint">fewest meters in a stored neighbourhood aggregate</div></div>
  <div class="stat"><div class="label">Shortest billing period</div><div class="value">${durationText(mdms.minBillingPeriodS)}</div><div class="hint">nothing finer is stored for a household</div></div>
  <div class="stat"><div class="label">Fleet check</div><div class="value">${mdms.fleetChecked ? 'on' : 'off'}</div><div class="hint">aggregates for unknown households and neighbourhoods refused</div></div>
</div>
<p class="legend-note">Recorded by the ingest when it started, ${fmtTime(Math.floor(mdms.recordedAtMs / 1000), tz, 'full')}. Import and export are held to the same rules.</p>`
    : html`<p class="muted">No MDMS ingest has recorded its policy in this database yet.</p>`
}
<h3>Refused by the MDMS</h3>
${
  Object.keys(refusals).length
    ? html`<table data-testid="refusals"><thead><tr><th>Rule</th><th class="num">Aggregates refused</th></tr></thead><tbody>${Object.entries(refusals)
        .sort(([a], [b]) => (a < b ? -1 : 1))
        .map(([rule, n]) => html`<tr><td>${rule}</td><td class="num">${n}</td></tr>`)}</tbody></table><p class="legend-note">Of the latest ${REFUSALS_SCANNED} refusals in the audit log (privacy: fewer than k meters or a period shorter than billing; negative; unknown; gap: a revision out of order).</p>`
    : html`<p class="muted" data-testid="no-refusals">No aggregate has been refused.</p>`
}
</div>
<div class="card table-wrap" data-testid="pes-policy"><h2>What the PES enforces</h2>
${
  statements.length
    ? statements.map(
        (s) => html`<h3>PES <span class="mono">${s.pes}</span> <span class="muted">· statement of ${fmtTime(s.at, tz, 'full')}, received ${fmtTime(Math.floor(s.receivedAtMs / 1000), tz, 'full')}</span></h3>
<div class="grid">
  <div class="stat"><div class="label">k (PES)</div><div class="value" data-testid="${`pes-k-${s.pes}`}">${s.k}</div><div class="hint">fewest meters in a released window</div></div>
  <div class="stat"><div class="label">Revision guard</div><div class="value">${s.revisionK}</div><div class="hint">meters that must have changed before a revision is released</div></div>
  <div class="stat"><div class="label">Membership guard</div><div class="value" data-testid="${`membership-${s.pes}`}">${s.membershipGuard ? 'on' : 'off'}</div><div class="hint">holds releases whose membership differs by too few meters (differencing)</div></div>
  <div class="stat"><div class="label">Epsilon per release</div><div class="value">${s.dpEpsilon === undefined ? 'no noise' : String(s.dpEpsilon)}</div><div class="hint">differential privacy on neighbourhood releases</div></div>
</div>
<table data-testid="${`counters-${s.pes}`}"><thead><tr><th>Counter</th><th class="num">Since the PES's state began</th><th>Meaning</th></tr></thead><tbody>
${Object.entries(s.counters).map(([name, n]) => html`<tr><td class="mono">${name}</td><td class="num">${n}</td><td class="muted">${COUNTER_MEANING[name] ?? ''}</td></tr>`)}
</tbody></table>`,
      )
    : html`<p class="muted">No policy statement received yet.</p>`
}
</div>
<div class="card table-wrap" data-testid="dp-budget"><h2>Differential-privacy budget</h2>
${
  budgets.length
    ? html`<table><thead><tr><th>Neighbourhood</th><th class="num">Epsilon per release</th><th class="num">Releases, last day</th><th class="num">Epsilon, last day</th><th class="num">Spent so far</th><th class="num">Releases</th><th>Latest window ends</th></tr></thead><tbody>
${budgets.map((b) => html`<tr data-testid="${`budget-${b.neighbourhood}`}"><td>${b.neighbourhood}</td><td class="num">${b.epsilon}</td><td class="num">${b.releasesLastDay}</td><td class="num">${fixed(b.epsilonLastDay)}</td><td class="num">${fixed(b.spent)}</td><td class="num">${b.releases}</td><td>${fmtTime(b.lastEnd, tz)}</td></tr>`)}
</tbody></table>
<p class="legend-note">From the ledger each noised release carries: "spent so far" is the PES's running total for the neighbourhood (every revision spends epsilon again); the last day counts releases of windows starting in the 24 h before the latest window's end.</p>`
    : html`<p class="muted">No noised release is stored: the PES adds no differential-privacy noise.</p>`
}
</div>
<div class="card" data-testid="privacy-report"><h2>Privacy report</h2>
${
  report === null
    ? html`<p class="muted">No report configured: run <code>smartermeter privacy-report --out DIR</code> and start the web app with <code>--privacy-report DIR</code>.</p>`
    : !report.ok
      ? html`<p class="flash flash-error" data-testid="report-error">${report.error}</p>${report.html ? html`<p><a href="/privacy/report" target="_blank" rel="noopener">Open the report page</a></p>` : ''}`
      : html`<p>Written ${fmtTime(Math.floor(report.writtenAtMs / 1000), tz, 'full')}; ${report.figures.households} household${report.figures.households === 1 ? '' : 's'}${report.figures.dataFrom ? `, data ${report.figures.dataFrom.slice(0, 10)} to ${report.figures.dataTo?.slice(0, 10) ?? '?'}` : ''}. ${report.html ? html`<a href="/privacy/report" target="_blank" rel="noopener" data-testid="report-link">Open the full report</a>` : html`<span class="muted">(report.html is missing)</span>`}</p>
<div class="table-wrap"><table data-testid="report-attacks"><thead><tr><th>Attack</th><th>On</th><th class="num">Score</th><th class="num">By chance</th></tr></thead><tbody>
${report.figures.attacks.map((a) => html`<tr><td>${a.attack === 'events' ? 'appliance events (F1)' : 'occupancy (accuracy)'}</td><td>${a.data === 'raw' ? 'raw readings' : 'what the MDMS holds'}</td><td class="num">${fixed(a.score)}</td><td class="num">${fixed(a.chance)}</td></tr>`)}
${report.figures.differencing.map((d) => html`<tr><td>differencing (error, Wh)</td><td>${d.guard ? 'with the membership guard' : 'without the guard'}</td><td class="num">${fixed(d.maeWh, 1)}</td><td class="num">${fixed(d.baselineMaeWh, 1)} <span class="muted">(bill only)</span></td></tr>`)}
</tbody></table></div>
${
  report.figures.dp.length
    ? html`<div class="table-wrap"><table data-testid="report-dp"><thead><tr><th class="num">Epsilon</th><th class="num">Aggregate error (MAPE)</th><th class="num">Appliance events (F1)</th></tr></thead><tbody>${report.figures.dp.map((p) => html`<tr><td class="num">${p.epsilon}</td><td class="num">${fixed(p.aggregateMape)}</td><td class="num">${fixed(p.eventsF1)}</td></tr>`)}</tbody></table></div>`
    : ''
}`
}
</div>`);
  });

  app.get('/privacy/report', { config: { access: 'privacy.read' }, schema: { hide: true, response: { 200: { type: 'string' } } } }, async (req, reply: FastifyReply) => {
    if (reportDir === null) throw new HttpError(404, 'no privacy report configured: start the web app with --privacy-report DIR');
    let body: Buffer;
    try {
      ({ body } = await readBounded(join(reportDir, 'report.html'), MAX_REPORT_BYTES));
    } catch (e) {
      reportErrors.inc();
      throw new HttpError(404, (e as Error).message);
    }
    await audit(req, 'privacy report', { bytes: body.length });
    // Served as written, read-only, in a sandbox: the page runs no script and reaches nothing of this site.
    return reply.type('text/html; charset=utf-8').header('content-security-policy', REPORT_CSP).send(body);
  });

  app.get(
    '/api/v1/privacy',
    {
      config: { access: 'privacy.read' },
      schema: {
        tags: ['privacy'],
        summary: 'The privacy guards, their counters and the DP budget',
        description:
          "What the MDMS enforces (as its ingest recorded it), each PES's latest policy statement (k, revision and membership guards, epsilon, counters), the differential-privacy budget per neighbourhood, the MDMS's refusals by rule and the privacy report's figures. No energy. Audited. Needs privacy.read (privacy, admin).",
        response: { 200: privacySchema, ...errors },
      },
    },
    async (req) => {
      const { mdms, statements, budgets, refusals, report } = await gather();
      await audit(req, 'privacy api', { statements: statements.length, budgets: budgets.length });
      return {
        mdms: mdms && { k: mdms.k, minBillingPeriodS: mdms.minBillingPeriodS, fleetChecked: mdms.fleetChecked, recordedAt: isoZ(Math.floor(mdms.recordedAtMs / 1000)) },
        statements: statements.map((s) => ({ pes: s.pes, at: isoZ(s.at), receivedAt: isoZ(Math.floor(s.receivedAtMs / 1000)), k: s.k, revisionK: s.revisionK, membershipGuard: s.membershipGuard, dpEpsilon: s.dpEpsilon ?? null, counters: s.counters })),
        budgets: budgets.map((b) => ({ ...b, lastEnd: isoZ(b.lastEnd) })),
        refusals,
        warnings: policyWarnings(mdms, statements),
        report: report === null ? null : report.ok ? { ok: true, html: report.html, writtenAt: isoZ(Math.floor(report.writtenAtMs / 1000)), figures: report.figures } : { ok: false, html: report.html, error: report.error },
      };
    },
  );
}
