/**
 * Data quality (VEE) for the data-quality team: the page lists the findings on neighbourhood windows (gaps,
 * silent meters, spikes, flat lines, late revisions, change points, days departing from the other
 * neighbourhoods) with their evidence and the estimates for missing windows, marked as estimated; a check of
 * a neighbourhood (or all) runs its rules and compares it with the other neighbourhoods, and records what is
 * new, once per window and rule: in the audit log (`quality.run` with counts, and one `quality.anomaly` per
 * change point or peer outlier with its window and scores, never energies), in
 * `mdms_web_quality_findings_total` and `mdms_web_peer_checks_total`.
 * Analysts only (neighbourhood.read): findings are made from the aggregates they already see.
 * @module
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { QUALITY_RULES, type QualityRule } from '../../analytics/quality.js';
import { formatKwh } from '../../../lib/billing.js';
import { clientIp, HttpError, userOf } from '../context.js';
import { html } from '../html.js';
import { csrfField, sendPage } from '../render.js';
import { errors, NAME_PATTERN } from '../schemas.js';
import { checkNeighbourhood, checkPeers, MAX_CHECK_S, type CheckResult, type StoredFinding } from '../quality.js';
import { fmtTime, isoZ, parseRange, TIME_PATTERN } from '../time.js';

const iso = { type: 'string', format: 'date-time', description: 'ISO 8601, UTC' } as const;

const findingSchema = {
  type: 'object',
  properties: {
    neighbourhood: { type: 'string' },
    start: iso,
    end: iso,
    rule: { type: 'string', enum: QUALITY_RULES },
    evidence: { type: 'object', additionalProperties: { type: ['number', 'string'] }, description: 'the figures that triggered the rule' },
    detectedAt: iso,
  },
  required: ['neighbourhood', 'start', 'end', 'rule', 'evidence', 'detectedAt'],
} as const;

const checkSchema = {
  type: 'object',
  properties: {
    neighbourhood: { type: 'string' },
    from: iso,
    to: iso,
    windows: { type: 'integer', description: 'stored windows checked' },
    newFindings: { type: 'object', additionalProperties: { type: 'integer' }, description: 'findings recorded by this check, by rule' },
    newEstimates: { type: 'integer' },
  },
  required: ['neighbourhood', 'from', 'to', 'windows', 'newFindings', 'newEstimates'],
} as const;

const findingJson = (f: StoredFinding) => ({ neighbourhood: f.neighbourhood, start: isoZ(f.start), end: isoZ(f.end), rule: f.rule, evidence: f.evidence, detectedAt: isoZ(Math.floor(f.detectedAtMs / 1000)) });
const checkJson = (c: CheckResult) => ({ neighbourhood: c.neighbourhood, from: isoZ(c.from), to: isoZ(c.to), windows: c.windows, newFindings: c.newByRule, newEstimates: c.newEstimates });

const RULE_TEXT: Record<QualityRule, string> = {
  gap: 'window missing or suppressed',
  'meter-drop': 'fewer meters than expected (a silent meter)',
  spike: 'isolated excursion',
  flat: 'identical values in a row',
  'late-revision': 'revised long after the window',
  changepoint: 'daily energy changed regime (its own history)',
  'peer-outlier': 'departs from the other neighbourhoods on the same days',
};

/**
 * Registers the data-quality page, the check and the API.
 * @example
 * ```ts
 * await app.register(qualityRoutes);
 * ```
 */
export async function qualityRoutes(app: FastifyInstance): Promise<void> {
  const { store, web, fleet, metrics } = app.mdms;

  async function check(req: FastifyRequest, nb: string | undefined, from?: string, to?: string): Promise<CheckResult[]> {
    const known = await store.listNeighbourhoods();
    if (nb !== undefined && !known.includes(nb)) throw new HttpError(404, `no stored aggregate of neighbourhood "${nb}"`);
    const tz = (await web.settings.all()).timezone;
    const range = parseRange(from, to, tz, MAX_CHECK_S);
    const results: CheckResult[] = [];
    for (const n of nb === undefined ? known : [nb]) {
      const fleetMeters = fleet ? fleet.meters.filter((m) => m.neighbourhood === n).length || null : null;
      results.push(await checkNeighbourhood(store, web.quality, n, { ...range, fleetMeters }));
    }
    // Neighbourhoods against each other, over whole days up to the last midnight of the checked windows.
    const peerTo = range.to ?? Math.floor(Math.max(0, ...results.map((r) => r.to)) / 86_400) * 86_400;
    const peers = await checkPeers(store, web.quality, { neighbourhoods: known, targets: results.map((r) => r.neighbourhood), ...range, to: peerTo });
    metrics.peerChecks.inc({ outcome: peers.skipped ? 'skipped' : 'ok' });
    for (const f of peers.newFindings) {
      const r = results.find((x) => x.neighbourhood === f.neighbourhood)!;
      r.newFindings.push(f);
      r.newByRule[f.rule] = (r.newByRule[f.rule] ?? 0) + 1;
    }
    const u = userOf(req);
    const who = { userId: u.id, username: u.username, ip: clientIp(req) };
    for (const r of results) {
      for (const [rule, n] of Object.entries(r.newByRule)) metrics.qualityFindings.inc({ rule }, n);
      await web.audit.record({
        ...who,
        action: 'quality.run',
        target: r.neighbourhood,
        outcome: 'ok',
        detail: { from: isoZ(r.from), to: isoZ(r.to), windows: r.windows, estimates: r.newEstimates, peerDays: peers.daysJudged, ...(peers.skipped ? { peerSkipped: peers.skipped } : {}), ...r.newByRule },
      });
      // Each anomaly with its window and scores (never an energy: evidence in Wh stays out of the log).
      for (const f of r.newFindings.filter((x) => x.rule === 'changepoint' || x.rule === 'peer-outlier')) {
        const evidence = Object.fromEntries(Object.entries(f.evidence).filter(([k]) => !k.endsWith('Wh')));
        await web.audit.record({ ...who, action: 'quality.anomaly', target: r.neighbourhood, outcome: 'ok', detail: { rule: f.rule, start: isoZ(f.start), end: isoZ(f.end), ...evidence } });
      }
    }
    return results;
  }

  app.get(
    '/quality',
    {
      config: { access: 'neighbourhood.read' },
      schema: {
        hide: true,
        querystring: {
          type: 'object',
          properties: { nb: { type: 'string', pattern: NAME_PATTERN }, rule: { type: 'string', enum: QUALITY_RULES }, checked: { type: 'integer', minimum: 0 } },
        },
        response: { 200: { type: 'string' } },
      },
    },
    async (req, reply) => {
      const q = req.query as { nb?: string; rule?: QualityRule; checked?: number };
      const tz = (await web.settings.all()).timezone;
      const all = await store.listNeighbourhoods();
      if (q.nb !== undefined && !all.includes(q.nb)) throw new HttpError(404, `no stored aggregate of neighbourhood "${q.nb}"`);
      const findings = await web.quality.list({ ...(q.nb ? { neighbourhood: q.nb } : {}), ...(q.rule ? { rule: q.rule } : {}), limit: 500 });
      const counts = await web.quality.countByRule(q.nb);
      const estimates = q.nb ? await web.quality.estimates(q.nb) : [];
      const flash = q.checked !== undefined ? { kind: 'ok' as const, text: `Check done: ${q.checked} new findings recorded.` } : null;
      const link = (rule?: string) => `/quality?${new URLSearchParams({ ...(q.nb ? { nb: q.nb } : {}), ...(rule ? { rule } : {}) })}`;
      return sendPage(req, reply, { title: 'Data quality', active: '/quality', flash }, (csrf) => html`
<h1>Data quality</h1>
<p class="sub">Validation of every stored neighbourhood window against the rules below. A finding flags a window and never changes it; estimates for missing windows are kept apart, marked as estimated, and never used in a bill. Times in ${tz}.</p>
<div class="card no-print">
  <form method="post" action="/quality/check" class="row" data-testid="quality-check">${csrfField(csrf)}
    <label>Neighbourhood <select name="nb"><option value="">all</option>${all.map((n) => html`<option value="${n}"${n === q.nb ? html` selected` : ''}>${n}</option>`)}</select></label>
    <label>From <input type="date" name="from"></label>
    <label>To <input type="date" name="to"></label>
    <button type="submit">Check now</button>
  </form>
  <p class="muted">Without dates: the 28 days before the latest stored window.</p>
</div>
<div class="card table-wrap"><h2>Findings by rule${q.nb ? ` · ${q.nb}` : ''}</h2><table data-testid="quality-counts"><thead><tr><th>Rule</th><th>Meaning</th><th class="num">Windows</th></tr></thead><tbody>
${QUALITY_RULES.map((r) => html`<tr><td><a href="${link(r)}">${r}</a></td><td>${RULE_TEXT[r]}</td><td class="num">${counts[r] ?? 0}</td></tr>`)}
</tbody></table></div>
<div class="card table-wrap"><h2>Findings${q.rule ? ` · ${q.rule}` : ''}</h2>
${findings.length === 0 ? html`<p class="muted" data-testid="no-findings">No finding recorded.</p>` : html`<table data-testid="quality-findings"><thead><tr><th>Neighbourhood</th><th>Window</th><th>Rule</th><th>Evidence</th><th>Detected</th></tr></thead><tbody>
${findings.map((f) => html`<tr><td>${f.neighbourhood}</td><td>${fmtTime(f.start, tz)}–${fmtTime(f.end, tz, f.end - f.start < 86_400 ? 'time' : 'datetime')}</td><td><span class="badge">${f.rule}</span></td><td>${Object.entries(f.evidence).map(([k, v]) => `${k} ${v}`).join(', ')}</td><td>${fmtTime(Math.floor(f.detectedAtMs / 1000), tz)}</td></tr>`)}
</tbody></table>`}
</div>
${
  q.nb
    ? html`<div class="card table-wrap"><h2>Estimates · ${q.nb}</h2>${
        estimates.length === 0
          ? html`<p class="muted">No estimate.</p>`
          : html`<table data-testid="quality-estimates"><thead><tr><th>Window</th><th class="num">Estimated (kWh)</th><th>Method</th></tr></thead><tbody>
${estimates.map((e) => html`<tr><td>${fmtTime(e.start, tz)}–${fmtTime(e.end, tz, 'time')}</td><td class="num">${formatKwh(e.energyWh)} <span class="badge">estimated</span></td><td>${e.method}</td></tr>`)}
</tbody></table>`
      }</div>`
    : ''
}`);
    },
  );

  app.post(
    '/quality/check',
    {
      config: { access: 'neighbourhood.read' },
      schema: {
        hide: true,
        body: {
          type: 'object',
          properties: { nb: { type: 'string', pattern: `(${NAME_PATTERN})|^$` }, from: { type: 'string', pattern: `(${TIME_PATTERN})|^$` }, to: { type: 'string', pattern: `(${TIME_PATTERN})|^$` }, _csrf: { type: 'string' } },
        },
        response: { 200: { type: 'string' } },
      },
    },
    async (req, reply) => {
      const b = req.body as { nb?: string; from?: string; to?: string };
      const results = await check(req, b.nb || undefined, b.from || undefined, b.to || undefined);
      const n = results.reduce((s, r) => s + r.newFindings.length, 0);
      return reply.redirect(`/quality?${new URLSearchParams({ ...(b.nb ? { nb: b.nb } : {}), checked: String(n) })}`, 303);
    },
  );

  // ---- API
  const tags = ['quality'];
  app.get(
    '/api/v1/quality/findings',
    {
      config: { access: 'neighbourhood.read' },
      schema: {
        tags,
        summary: 'Data-quality findings',
        description: 'Flags on neighbourhood windows with their evidence, by window start (at most `limit`). Needs neighbourhood.read (analyst).',
        querystring: {
          type: 'object',
          properties: {
            nb: { type: 'string', pattern: NAME_PATTERN },
            rule: { type: 'string', enum: QUALITY_RULES },
            from: { type: 'string', pattern: TIME_PATTERN },
            to: { type: 'string', pattern: TIME_PATTERN },
            limit: { type: 'integer', minimum: 1, maximum: 5000, default: 1000 },
          },
        },
        response: { 200: { type: 'array', items: findingSchema }, ...errors },
      },
    },
    async (req) => {
      const q = req.query as { nb?: string; rule?: QualityRule; from?: string; to?: string; limit: number };
      const tz = (await web.settings.all()).timezone;
      const range = parseRange(q.from, q.to, tz);
      return (await web.quality.list({ ...(q.nb ? { neighbourhood: q.nb } : {}), ...(q.rule ? { rule: q.rule } : {}), ...range, limit: q.limit })).map(findingJson);
    },
  );

  app.get(
    '/api/v1/quality/estimates',
    {
      config: { access: 'neighbourhood.read' },
      schema: {
        tags,
        summary: 'Estimates for missing windows',
        description: 'Kept apart from the aggregates, each marked estimated, never used in a bill. Needs neighbourhood.read (analyst).',
        querystring: { type: 'object', properties: { nb: { type: 'string', pattern: NAME_PATTERN } }, required: ['nb'] },
        response: {
          200: {
            type: 'array',
            items: {
              type: 'object',
              properties: { start: iso, end: iso, energyWh: { type: 'integer' }, method: { type: 'string' }, estimated: { type: 'boolean', const: true } },
              required: ['start', 'end', 'energyWh', 'method', 'estimated'],
            },
          },
          ...errors,
        },
      },
    },
    async (req) => {
      const { nb } = req.query as { nb: string };
      return (await web.quality.estimates(nb)).map((e) => ({ start: isoZ(e.start), end: isoZ(e.end), energyWh: e.energyWh, method: e.method, estimated: e.estimated }));
    },
  );

  app.post(
    '/api/v1/quality/check',
    {
      config: { access: 'neighbourhood.read' },
      schema: {
        tags,
        summary: 'Validate stored windows now',
        description:
          'Runs every rule over one neighbourhood (or all) in [from, to) (default: the 28 days before its latest window; at most 60 days), compares it with the other neighbourhoods over the whole days of that range (peer-outlier; needs 3 neighbourhoods), and records the new findings and estimates; audited. Needs neighbourhood.read (analyst).',
        body: {
          type: 'object',
          properties: { neighbourhood: { type: 'string', pattern: NAME_PATTERN }, from: { type: 'string', pattern: TIME_PATTERN }, to: { type: 'string', pattern: TIME_PATTERN } },
          additionalProperties: false,
        },
        response: { 200: { type: 'array', items: checkSchema }, ...errors },
      },
    },
    async (req) => {
      const b = (req.body ?? {}) as { neighbourhood?: string; from?: string; to?: string };
      return (await check(req, b.neighbourhood, b.from, b.to)).map(checkJson);
    },
  );
}
