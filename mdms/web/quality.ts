/**
 * Data-quality findings and gap estimates, stored apart from the aggregates (web migration 3), and the checks
 * that produce them from the store: {@link checkNeighbourhood} (every rule of one neighbourhood) and
 * {@link checkPeers} (neighbourhoods against each other, on whole days). A finding is a flag on a window with its evidence, recorded once per
 * (neighbourhood, window start, rule); an estimate fills a missing window for planning views only, is marked
 * with its method, and is never read by billing (bills come from billing aggregates alone).
 * @module
 */
import { dailyEnergy, peerOutliers } from '../analytics/anomaly.js';
import { DEFAULT_RULES, validateWindows, type Finding, type QualityRule, type QualityRules } from '../analytics/quality.js';
import type { Driver } from '../store/driver.js';
import type { Store } from '../store/types.js';
import { int, text } from './rows.js';

/** A stored finding. */
export interface StoredFinding extends Finding {
  detectedAtMs: number;
}

/** A stored estimate. */
export interface StoredEstimate {
  neighbourhood: string;
  start: number;
  end: number;
  energyWh: number;
  method: string;
  estimated: true;
}

/** Filters of {@link QualityFindings.list}. */
export interface FindingQuery {
  neighbourhood?: string;
  rule?: QualityRule;
  from?: number;
  to?: number;
  limit?: number;
}

/** What one check did. */
export interface CheckResult {
  neighbourhood: string;
  from: number;
  to: number;
  windows: number;
  /** Findings not recorded before, by rule. */
  newByRule: Partial<Record<QualityRule, number>>;
  newFindings: Finding[];
  newEstimates: number;
}

/**
 * The findings and estimates repository.
 * @example
 * ```ts
 * const q = new QualityFindings(driver);
 * await q.list({ neighbourhood: 'nb1', rule: 'gap' });
 * ```
 */
export class QualityFindings {
  constructor(
    private readonly db: Driver,
    private readonly now: () => number = Date.now,
  ) {}

  /** Records findings and estimates (idempotent); returns those that are new. */
  async record(findings: readonly Finding[], estimates: readonly Omit<StoredEstimate, 'estimated'>[]): Promise<{ findings: Finding[]; estimates: number }> {
    const at = this.now();
    return this.db.transaction(async (tx) => {
      const fresh: Finding[] = [];
      for (const f of findings) {
        const n = await tx.run(
          'INSERT INTO web_quality_finding (neighbourhood, start_s, end_s, rule, evidence_json, detected_at_ms) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (neighbourhood, start_s, rule) DO NOTHING',
          [f.neighbourhood, f.start, f.end, f.rule, JSON.stringify(f.evidence), at],
        );
        if (n > 0) fresh.push(f);
      }
      let added = 0;
      for (const e of estimates) {
        added += await tx.run(
          'INSERT INTO web_estimate (neighbourhood, start_s, end_s, energy_wh, method, created_at_ms) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (neighbourhood, start_s) DO NOTHING',
          [e.neighbourhood, e.start, e.end, e.energyWh, e.method, at],
        );
      }
      return { findings: fresh, estimates: added };
    });
  }

  /** Findings matching `q`, by window start then rule (at most `limit`, default 1000). */
  async list(q: FindingQuery = {}): Promise<StoredFinding[]> {
    const where: string[] = [];
    const params: (string | number)[] = [];
    if (q.neighbourhood !== undefined) (where.push('neighbourhood = ?'), params.push(q.neighbourhood));
    if (q.rule !== undefined) (where.push('rule = ?'), params.push(q.rule));
    if (q.from !== undefined) (where.push('end_s > ?'), params.push(q.from));
    if (q.to !== undefined) (where.push('start_s < ?'), params.push(q.to));
    const rows = await this.db.query(
      `SELECT * FROM web_quality_finding ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY start_s, neighbourhood, rule LIMIT ?`,
      [...params, q.limit ?? 1000],
    );
    return rows.map((r) => ({
      neighbourhood: text(r.neighbourhood, 'neighbourhood'),
      start: int(r.start_s, 'start_s'),
      end: int(r.end_s, 'end_s'),
      rule: text(r.rule, 'rule') as QualityRule,
      evidence: JSON.parse(text(r.evidence_json, 'evidence_json')) as Finding['evidence'],
      detectedAtMs: int(r.detected_at_ms, 'detected_at_ms'),
    }));
  }

  /** Number of findings per rule (optionally of one neighbourhood). */
  async countByRule(neighbourhood?: string): Promise<Partial<Record<QualityRule, number>>> {
    const rows = await this.db.query(
      `SELECT rule, COUNT(*) AS n FROM web_quality_finding ${neighbourhood === undefined ? '' : 'WHERE neighbourhood = ?'} GROUP BY rule ORDER BY rule`,
      neighbourhood === undefined ? [] : [neighbourhood],
    );
    return Object.fromEntries(rows.map((r) => [text(r.rule, 'rule'), int(r.n, 'count')]));
  }

  /** Estimates of one neighbourhood overlapping [from, to), marked `estimated`. */
  async estimates(neighbourhood: string, from = 0, to = Number.MAX_SAFE_INTEGER): Promise<StoredEstimate[]> {
    const rows = await this.db.query('SELECT * FROM web_estimate WHERE neighbourhood = ? AND end_s > ? AND start_s < ? ORDER BY start_s LIMIT 5000', [neighbourhood, from, to]);
    return rows.map((r) => ({
      neighbourhood: text(r.neighbourhood, 'neighbourhood'),
      start: int(r.start_s, 'start_s'),
      end: int(r.end_s, 'end_s'),
      energyWh: int(r.energy_wh, 'energy_wh'),
      method: text(r.method, 'method'),
      estimated: true as const,
    }));
  }
}

/** Longest range one check reads, seconds (the rules need the days before a window; 60 days is plenty). */
export const MAX_CHECK_S = 60 * 86_400;

/**
 * Validates one neighbourhood's latest windows over [from, to) (default: the 28 days before its latest stored
 * interval's end), plus the week before `from` as the rules' reference, and records what is new.
 * @example
 * ```ts
 * const r = await checkNeighbourhood(store, web.quality, 'nb1', { fleetMeters: 20 });
 * r.newByRule.gap; // windows newly flagged as missing
 * ```
 */
export async function checkNeighbourhood(
  store: Store,
  quality: QualityFindings,
  neighbourhood: string,
  opts: { from?: number; to?: number; fleetMeters?: number | null; rules?: Partial<QualityRules> } = {},
): Promise<CheckResult> {
  let to = opts.to;
  if (to === undefined) {
    const last = await store.latestNeighbourhood({ neighbourhood });
    to = last.length ? Math.max(...last.map((r) => r.end)) : 0;
  }
  const from = opts.from ?? to - 28 * 86_400;
  const context = from - 7 * 86_400;
  const rows = (await store.latestNeighbourhood({ neighbourhood, from: context, to })).filter((r) => r.start >= context && r.end <= to);
  const first = rows[0]?.start;
  if (first === undefined) return { neighbourhood, from, to, windows: 0, newByRule: {}, newFindings: [], newEstimates: 0 };
  const { findings, estimates } = validateWindows(neighbourhood, rows, { from: first, to, fleetMeters: opts.fleetMeters ?? null, rules: { ...DEFAULT_RULES, ...opts.rules } });
  const inRange = <T extends { start: number }>(x: T) => x.start >= from;
  const saved = await quality.record(findings.filter(inRange), estimates.filter(inRange));
  const newByRule: CheckResult['newByRule'] = {};
  for (const f of saved.findings) newByRule[f.rule] = (newByRule[f.rule] ?? 0) + 1;
  return { neighbourhood, from, to, windows: rows.filter(inRange).length, newByRule, newFindings: saved.findings, newEstimates: saved.estimates };
}

/** What one peer check did. */
export interface PeerCheckResult {
  /** The days judged: [from, to), whole days ending at `to`. */
  from: number;
  to: number;
  /** Neighbourhoods with at least one judged day. */
  neighbourhoods: number;
  daysJudged: number;
  /** Peer outliers not recorded before (of the target neighbourhoods only). */
  newFindings: Finding[];
  /** Why nothing could be judged (too few neighbourhoods or days), if so. */
  skipped?: string;
}

const DAY = 86_400;

/**
 * Compares neighbourhoods with each other over the whole days ending at `to` (default: the last UTC midnight
 * before the latest stored window) from `from` (default 28 days before), plus a week before as each one's
 * reference level, and records the peer outliers of `targets` (default: all) that are new.
 * @example
 * ```ts
 * const r = await checkPeers(store, web.quality, { targets: ['nb1'] });
 * r.newFindings; // days where nb1 departed from the other neighbourhoods
 * ```
 */
export async function checkPeers(
  store: Store,
  quality: QualityFindings,
  opts: { neighbourhoods?: readonly string[]; targets?: readonly string[]; from?: number; to?: number; rules?: Partial<QualityRules> } = {},
): Promise<PeerCheckResult> {
  const rules = { ...DEFAULT_RULES, ...opts.rules };
  const names = opts.neighbourhoods ?? (await store.listNeighbourhoods());
  let to = opts.to;
  if (to === undefined) {
    let latest = 0;
    for (const n of names) for (const r of await store.latestNeighbourhood({ neighbourhood: n })) latest = Math.max(latest, r.end);
    to = Math.floor(latest / DAY) * DAY;
  }
  const days = Math.max(1, Math.ceil((to - (opts.from ?? to - 28 * DAY)) / DAY));
  const from = to - days * DAY;
  const gridStart = from - 7 * DAY;
  const total = days + 7;
  const input: { neighbourhood: string; daily: (number | null)[] }[] = [];
  for (const neighbourhood of names) {
    const rows = (await store.latestNeighbourhood({ neighbourhood, from: gridStart, to })).filter((r) => r.start >= gridStart && r.end <= to);
    const daily = dailyEnergy(rows, gridStart, total, rules.dayCoverage);
    if (daily.some((x) => x !== null)) input.push({ neighbourhood, daily });
  }
  const result = peerOutliers(input, gridStart, rules);
  const targets = new Set(opts.targets ?? names);
  const saved = await quality.record(result.findings.filter((f) => f.start >= from && targets.has(f.neighbourhood)), []);
  return { from, to, neighbourhoods: input.length, daysJudged: result.daysJudged, newFindings: saved.findings, ...(result.skipped ? { skipped: result.skipped } : {}) };
}
