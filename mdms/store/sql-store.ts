/**
 * The {@link Store} over either SQL back end: the same statements (written with `?` placeholders and SQL both
 * SQLite and PostgreSQL accept) and the same insert logic for both, so they cannot drift apart.
 *
 * Inserts run in one transaction that first serialises on the (key, start) being written, then:
 * if this (key, start, revision) is already stored, compares it — same content is a `duplicate`, different
 * content a `conflict` (nothing is written either way); otherwise inserts (one row per band for billing).
 * @module
 */
import type { BillingAggregate, DpLedger, NeighbourhoodAggregate, PolicyStatement } from '../../protocol/aggregate.js';
import type { Driver, Param, Querier } from './driver.js';
import { migrate } from './migrations.js';
import type {
  BillingQuery,
  BillingRow,
  DpBudgetRow,
  IngestPolicyRow,
  InsertOutcome,
  NeighbourhoodQuery,
  NeighbourhoodRow,
  PolicyOutcome,
  PolicyRow,
  PendingHalf,
  RevisionsQuery,
  Store,
  StoreOptions,
} from './types.js';

const MAX_LIMIT = 1_000_000;

const num = (v: unknown): number => {
  if (typeof v !== 'number' || !Number.isSafeInteger(v)) throw new TypeError(`database returned a non-integer where an integer was expected`);
  return v;
};
const str = (v: unknown): string => {
  if (typeof v !== 'string') throw new TypeError('database returned a non-text key');
  return v;
};
/** A REAL / DOUBLE PRECISION column: a finite number or NULL. */
const real = (v: unknown): number | null => {
  if (v === null || v === undefined) return null;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new TypeError('database returned a non-number where a number was expected');
  return v;
};

function ledgerOf(r: Record<string, unknown>): DpLedger | null {
  const epsilon = real(r.dp_epsilon);
  const spent = real(r.dp_spent);
  return epsilon === null || spent === null ? null : { epsilon, spent };
}

const nbRow = (r: Record<string, unknown>): NeighbourhoodRow => ({
  neighbourhood: str(r.neighbourhood),
  start: num(r.start_s),
  end: num(r.end_s),
  revision: num(r.revision),
  meters: num(r.meters),
  energyWh: num(r.energy_wh),
  exportWh: num(r.export_wh),
  dp: ledgerOf(r),
  receivedAtMs: num(r.received_at_ms),
});

const billingRow = (r: Record<string, unknown>): BillingRow => ({
  household: str(r.household),
  start: num(r.start_s),
  end: num(r.end_s),
  band: str(r.band),
  revision: num(r.revision),
  energyWh: num(r.energy_wh),
  exportWh: num(r.export_wh),
  receivedAtMs: num(r.received_at_ms),
});

const policyRow = (r: Record<string, unknown>): PolicyRow => {
  const counters = JSON.parse(str(r.counters_json)) as unknown;
  if (typeof counters !== 'object' || counters === null || Array.isArray(counters)) throw new TypeError('database returned counters that are not a map');
  const p: PolicyRow = {
    pes: str(r.pes),
    at: num(r.at_s),
    k: num(r.k),
    revisionK: num(r.revision_k),
    membershipGuard: num(r.membership_guard) === 1,
    counters: Object.fromEntries(Object.entries(counters).map(([k, v]) => [k, num(v)])),
    receivedAtMs: num(r.received_at_ms),
  };
  const eps = real(r.dp_epsilon);
  if (eps !== null) p.dpEpsilon = eps;
  return p;
};

/** Counters as stored: sorted by name, so that the same counters are the same text. */
const countersJson = (c: Record<string, number>): string => JSON.stringify(Object.fromEntries(Object.entries(c).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))));

/**
 * A billing aggregate as rows: one per band named in `bands` or `exportBands` (byte order), with its import and
 * export Wh (0 where the body names the band in only one of them). The store keeps the energies, not the body's
 * spelling: an absent `exportBands` and one of zeros are the same content.
 */
function billingBands(agg: BillingAggregate): [band: string, importWh: number, exportWh: number][] {
  const names = [...new Set([...Object.keys(agg.bands), ...Object.keys(agg.exportBands ?? {})])].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const own = (o: Record<string, number> | undefined, k: string): number => (o && Object.prototype.hasOwnProperty.call(o, k) ? o[k]! : 0);
  return names.map((b) => [b, own(agg.bands, b), own(agg.exportBands, b)]);
}

/** Builds a WHERE clause from optional conditions. */
class Where {
  readonly parts: string[] = [];
  readonly params: Param[] = [];
  add(sql: string, ...params: Param[]): this {
    this.parts.push(sql);
    this.params.push(...params);
    return this;
  }
  toString(): string {
    return this.parts.length ? `WHERE ${this.parts.join(' AND ')}` : '';
  }
}

function checkText(v: unknown, name: string): string {
  if (typeof v !== 'string' || v.length === 0 || v.length > 64) throw new TypeError(`${name} must be a non-empty string of at most 64 characters`);
  return v;
}
function checkInt(v: unknown, name: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v)) throw new TypeError(`${name} must be an integer`);
  return v;
}
function checkLimit(v: unknown): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > MAX_LIMIT) throw new TypeError(`limit must be an integer in 1..${MAX_LIMIT}`);
  return v;
}

/** Filters shared by both kinds: key, overlap with [from, to), keyset position. `a` is the row alias. */
function filters(w: Where, a: string, keyCol: string, q: { key?: unknown; from?: unknown; to?: unknown; after?: { key: unknown; start: unknown } }): Where {
  if (q.key !== undefined) w.add(`${a}.${keyCol} = ?`, checkText(q.key, keyCol));
  if (q.from !== undefined) w.add(`${a}.end_s > ?`, checkInt(q.from, 'from'));
  if (q.to !== undefined) w.add(`${a}.start_s < ?`, checkInt(q.to, 'to'));
  if (q.after !== undefined) {
    const k = checkText(q.after.key, `after.${keyCol}`);
    const s = checkInt(q.after.start, 'after.start');
    w.add(`(${a}.${keyCol} > ? OR (${a}.${keyCol} = ? AND ${a}.start_s > ?))`, k, k, s);
  }
  return w;
}

function checkAggregateInts(...vs: number[]): void {
  for (const v of vs) if (!Number.isSafeInteger(v)) throw new TypeError('aggregate fields must be safe integers');
}

function checkLedger(dp: DpLedger | undefined): void {
  if (dp === undefined) return;
  const ok = (v: unknown): boolean => typeof v === 'number' && Number.isFinite(v) && v > 0;
  if (!ok(dp.epsilon) || !ok(dp.spent) || dp.spent < dp.epsilon) throw new TypeError('a DP ledger needs finite epsilon > 0 and spent >= epsilon');
}

/**
 * The shared store. Construct through `openStore`, which also migrates.
 * @example
 * ```ts
 * const store = await new SqlStore(openSqlite('mdms.sqlite')).init();
 * ```
 */
export class SqlStore implements Store {
  readonly dialect: 'sqlite' | 'postgres';
  readonly location: string;
  private readonly now: () => number;

  constructor(
    private readonly db: Driver,
    opts: StoreOptions = {},
  ) {
    this.dialect = db.dialect;
    this.location = db.location;
    this.now = opts.now ?? Date.now;
  }

  /** Applies pending migrations; called by `openStore`. */
  async init(): Promise<this> {
    await migrate(this.db, this.now);
    return this;
  }

  async schemaVersion(): Promise<number> {
    const [r] = await this.db.query('SELECT max(version) AS v FROM schema_version', []);
    return num(r?.v);
  }

  async insertNeighbourhood(agg: NeighbourhoodAggregate): Promise<InsertOutcome> {
    const exportWh = agg.exportWh ?? 0;
    checkAggregateInts(agg.start, agg.end, agg.revision, agg.meters, agg.energyWh, exportWh);
    checkLedger(agg.dp);
    const key = checkText(agg.key, 'neighbourhood');
    const dp = agg.dp ?? null;
    return this.db.transaction(async (tx) => {
      await tx.lock(`nb:${key}:${agg.start}`);
      const [old] = await tx.query(
        'SELECT end_s, meters, energy_wh, export_wh, dp_epsilon, dp_spent FROM neighbourhood_aggregate WHERE neighbourhood = ? AND start_s = ? AND revision = ?',
        [key, agg.start, agg.revision],
      );
      if (old) {
        const was = ledgerOf(old);
        const same =
          num(old.end_s) === agg.end &&
          num(old.meters) === agg.meters &&
          num(old.energy_wh) === agg.energyWh &&
          num(old.export_wh) === exportWh &&
          (was === null ? dp === null : dp !== null && was.epsilon === dp.epsilon && was.spent === dp.spent);
        return same ? 'duplicate' : 'conflict';
      }
      await tx.run(
        'INSERT INTO neighbourhood_aggregate (neighbourhood, start_s, end_s, revision, meters, energy_wh, export_wh, dp_epsilon, dp_spent, received_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
        [key, agg.start, agg.end, agg.revision, agg.meters, agg.energyWh, exportWh, dp?.epsilon ?? null, dp?.spent ?? null, this.now()],
      );
      return (await otherRevisions(tx, 'neighbourhood_aggregate', 'neighbourhood', key, agg.start, agg.revision)) ? 'revision' : 'stored';
    });
  }

  async insertBilling(agg: BillingAggregate): Promise<InsertOutcome> {
    checkAggregateInts(agg.start, agg.end, agg.revision, ...Object.values(agg.bands), ...Object.values(agg.exportBands ?? {}));
    const key = checkText(agg.key, 'household');
    if (Object.keys(agg.bands).length === 0) throw new TypeError('a billing aggregate needs at least one band');
    const bands = billingBands(agg);
    return this.db.transaction(async (tx) => {
      await tx.lock(`billing:${key}:${agg.start}`);
      const old = await tx.query(
        'SELECT band, end_s, energy_wh, export_wh FROM billing_aggregate WHERE household = ? AND start_s = ? AND revision = ? ORDER BY band',
        [key, agg.start, agg.revision],
      );
      if (old.length) {
        const same =
          old.length === bands.length &&
          old.every((r, i) => r.band === bands[i]![0] && num(r.end_s) === agg.end && num(r.energy_wh) === bands[i]![1] && num(r.export_wh) === bands[i]![2]);
        return same ? 'duplicate' : 'conflict';
      }
      const at = this.now();
      for (const [band, wh, exportWh] of bands) {
        await tx.run(
          'INSERT INTO billing_aggregate (household, start_s, end_s, band, revision, energy_wh, export_wh, received_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
          [key, agg.start, agg.end, band, agg.revision, wh, exportWh, at],
        );
      }
      return (await otherRevisions(tx, 'billing_aggregate', 'household', key, agg.start, agg.revision)) ? 'revision' : 'stored';
    });
  }

  async latestNeighbourhood(q: NeighbourhoodQuery = {}): Promise<NeighbourhoodRow[]> {
    const w = filters(new Where(), 'n', 'neighbourhood', {
      key: q.neighbourhood,
      from: q.from,
      to: q.to,
      after: q.after && { key: q.after.neighbourhood, start: q.after.start },
    });
    w.add('n.revision = (SELECT max(m.revision) FROM neighbourhood_aggregate m WHERE m.neighbourhood = n.neighbourhood AND m.start_s = n.start_s)');
    const limit = checkLimit(q.limit);
    const rows = await this.db.query(
      `SELECT n.* FROM neighbourhood_aggregate n ${w} ORDER BY n.neighbourhood, n.start_s${limit ? ' LIMIT ?' : ''}`,
      limit ? [...w.params, limit] : w.params,
    );
    return rows.map(nbRow);
  }

  async latestBilling(q: BillingQuery = {}): Promise<BillingRow[]> {
    const w = filters(new Where(), 'b', 'household', {
      key: q.household,
      from: q.from,
      to: q.to,
      after: q.after && { key: q.after.household, start: q.after.start },
    });
    w.add('b.revision = (SELECT max(m.revision) FROM billing_aggregate m WHERE m.household = b.household AND m.start_s = b.start_s)');
    const limit = checkLimit(q.limit);
    // Periods first (so `limit` counts periods, not band rows), then their band rows.
    const rows = await this.db.query(
      `WITH periods AS (SELECT DISTINCT b.household, b.start_s, b.revision FROM billing_aggregate b ${w}
         ORDER BY b.household, b.start_s${limit ? ' LIMIT ?' : ''})
       SELECT r.* FROM billing_aggregate r JOIN periods p
         ON r.household = p.household AND r.start_s = p.start_s AND r.revision = p.revision
       ORDER BY r.household, r.start_s, r.band`,
      limit ? [...w.params, limit] : w.params,
    );
    return rows.map(billingRow);
  }

  revisions(q: { kind: 'neighbourhood'; neighbourhood: string; start: number }): Promise<NeighbourhoodRow[]>;
  revisions(q: { kind: 'billing'; household: string; start: number }): Promise<BillingRow[]>;
  async revisions(q: RevisionsQuery): Promise<NeighbourhoodRow[] | BillingRow[]> {
    if (q.kind === 'neighbourhood') {
      const rows = await this.db.query('SELECT * FROM neighbourhood_aggregate WHERE neighbourhood = ? AND start_s = ? ORDER BY revision', [
        checkText(q.neighbourhood, 'neighbourhood'),
        checkInt(q.start, 'start'),
      ]);
      return rows.map(nbRow);
    }
    if (q.kind !== 'billing') throw new TypeError("kind must be 'neighbourhood' or 'billing'");
    const rows = await this.db.query('SELECT * FROM billing_aggregate WHERE household = ? AND start_s = ? ORDER BY revision, band', [
      checkText(q.household, 'household'),
      checkInt(q.start, 'start'),
    ]);
    return rows.map(billingRow);
  }

  async insertPolicy(p: PolicyStatement): Promise<PolicyOutcome> {
    const pes = checkText(p.key, 'pes');
    checkAggregateInts(p.at, p.k, p.revisionK, ...Object.values(p.counters));
    if (typeof p.membershipGuard !== 'boolean') throw new TypeError('membershipGuard must be a boolean');
    if (p.dpEpsilon !== undefined && !(Number.isFinite(p.dpEpsilon) && p.dpEpsilon > 0)) throw new TypeError('dpEpsilon must be a finite number > 0');
    const counters = countersJson(p.counters);
    const eps = p.dpEpsilon ?? null;
    const values: Param[] = [p.at, p.k, p.revisionK, p.membershipGuard ? 1 : 0, eps, counters, this.now()];
    return this.db.transaction(async (tx) => {
      await tx.lock(`policy:${pes}`);
      const [old] = await tx.query('SELECT * FROM pes_policy WHERE pes = ?', [pes]);
      if (!old) {
        await tx.run('INSERT INTO pes_policy (at_s, k, revision_k, membership_guard, dp_epsilon, counters_json, received_at_ms, pes) VALUES (?, ?, ?, ?, ?, ?, ?, ?)', [...values, pes]);
        return 'stored';
      }
      const at = num(old.at_s);
      if (p.at < at) return 'stale';
      if (p.at === at) {
        const same = num(old.k) === p.k && num(old.revision_k) === p.revisionK && num(old.membership_guard) === (p.membershipGuard ? 1 : 0) && real(old.dp_epsilon) === eps && old.counters_json === counters;
        return same ? 'duplicate' : 'conflict';
      }
      await tx.run('UPDATE pes_policy SET at_s = ?, k = ?, revision_k = ?, membership_guard = ?, dp_epsilon = ?, counters_json = ?, received_at_ms = ? WHERE pes = ?', [...values, pes]);
      return 'stored';
    });
  }

  async policies(): Promise<PolicyRow[]> {
    return (await this.db.query('SELECT * FROM pes_policy ORDER BY pes', [])).map(policyRow);
  }

  async recordIngestPolicy(p: Omit<IngestPolicyRow, 'recordedAtMs'>): Promise<void> {
    checkAggregateInts(p.k, p.minBillingPeriodS);
    await this.db.transaction(async (tx) => {
      await tx.lock('ingest_policy');
      await tx.run('DELETE FROM ingest_policy', []);
      await tx.run('INSERT INTO ingest_policy (id, k, min_billing_period_s, fleet_checked, recorded_at_ms) VALUES (1, ?, ?, ?, ?)', [p.k, p.minBillingPeriodS, p.fleetChecked ? 1 : 0, this.now()]);
    });
  }

  async ingestPolicy(): Promise<IngestPolicyRow | null> {
    const [r] = await this.db.query('SELECT * FROM ingest_policy WHERE id = 1', []);
    return r ? { k: num(r.k), minBillingPeriodS: num(r.min_billing_period_s), fleetChecked: num(r.fleet_checked) === 1, recordedAtMs: num(r.recorded_at_ms) } : null;
  }

  async dpBudgets(): Promise<DpBudgetRow[]> {
    const heads = await this.db.query(
      'SELECT neighbourhood, max(dp_spent) AS spent, max(end_s) AS last_end, count(*) AS releases FROM neighbourhood_aggregate WHERE dp_spent IS NOT NULL GROUP BY neighbourhood ORDER BY neighbourhood',
      [],
    );
    const out: DpBudgetRow[] = [];
    for (const h of heads) {
      const neighbourhood = str(h.neighbourhood);
      const lastEnd = num(h.last_end);
      const [top] = await this.db.query(
        'SELECT dp_epsilon FROM neighbourhood_aggregate WHERE neighbourhood = ? AND dp_spent IS NOT NULL ORDER BY dp_spent DESC, start_s DESC, revision DESC LIMIT 1',
        [neighbourhood],
      );
      const [day] = await this.db.query(
        'SELECT count(*) AS n, sum(dp_epsilon) AS eps FROM neighbourhood_aggregate WHERE neighbourhood = ? AND dp_spent IS NOT NULL AND start_s >= ?',
        [neighbourhood, lastEnd - 86_400],
      );
      out.push({
        neighbourhood,
        spent: real(h.spent)!,
        epsilon: real(top?.dp_epsilon)!,
        releases: Number(h.releases),
        lastEnd,
        releasesLastDay: Number(day?.n ?? 0),
        epsilonLastDay: real(day?.eps) ?? 0,
      });
    }
    return out;
  }

  async holdHalf(h: PendingHalf): Promise<void> {
    if (!/^[0-9a-f]{2,128}$/.test(h.ciphertextId)) throw new TypeError('ciphertextId must be hex');
    if (h.half !== 'release' && h.half !== 'partial' && h.half !== 'combined') throw new TypeError('half must be release, partial or combined');
    if (typeof h.topic !== 'string' || h.topic.length === 0 || h.topic.length > 512) throw new TypeError('topic must be a non-empty string of at most 512 characters');
    await this.db.run(
      'INSERT INTO e2e_pending (ciphertext_id, half, topic, payload_b64, received_at_ms) VALUES (?, ?, ?, ?, ?) ON CONFLICT (ciphertext_id, half) DO NOTHING',
      [h.ciphertextId, h.half, h.topic, Buffer.from(h.payload).toString('base64'), this.now()],
    );
  }

  async pendingHalves(): Promise<PendingHalf[]> {
    const rows = await this.db.query('SELECT ciphertext_id, half, topic, payload_b64 FROM e2e_pending ORDER BY received_at_ms, ciphertext_id, half', []);
    return rows.map((r) => ({ ciphertextId: str(r.ciphertext_id), half: str(r.half) as PendingHalf['half'], topic: str(r.topic), payload: Buffer.from(str(r.payload_b64), 'base64') }));
  }

  async dropHalf(ciphertextId: string, half: PendingHalf['half']): Promise<void> {
    await this.db.run('DELETE FROM e2e_pending WHERE ciphertext_id = ? AND half = ?', [ciphertextId, half]);
  }

  async pruneHalves(olderThanMs: number): Promise<Pick<PendingHalf, 'ciphertextId' | 'half' | 'topic'>[]> {
    if (!Number.isSafeInteger(olderThanMs) || olderThanMs < 0) throw new RangeError('olderThanMs must be a whole number of milliseconds, not negative');
    const rows = await this.db.query('DELETE FROM e2e_pending WHERE received_at_ms < ? RETURNING ciphertext_id, half, topic', [this.now() - olderThanMs]);
    return rows.map((r) => ({ ciphertextId: str(r.ciphertext_id), half: str(r.half) as PendingHalf['half'], topic: str(r.topic) }));
  }

  async listNeighbourhoods(): Promise<string[]> {
    return (await this.db.query('SELECT DISTINCT neighbourhood FROM neighbourhood_aggregate ORDER BY neighbourhood', [])).map((r) => str(r.neighbourhood));
  }

  async listHouseholds(): Promise<string[]> {
    return (await this.db.query('SELECT DISTINCT household FROM billing_aggregate ORDER BY household', [])).map((r) => str(r.household));
  }

  async dump(): Promise<Record<string, Record<string, unknown>[]>> {
    const tables =
      this.dialect === 'sqlite'
        ? await this.db.query("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name", [])
        : await this.db.query('SELECT table_name AS name FROM information_schema.tables WHERE table_schema = current_schema() ORDER BY table_name', []);
    const out: Record<string, Record<string, unknown>[]> = {};
    for (const t of tables) {
      const name = str(t.name);
      out[name] = await this.db.query(`SELECT * FROM "${name.replace(/"/g, '""')}"`, []);
    }
    return out;
  }

  close(): Promise<void> {
    return this.db.close();
  }
}

async function otherRevisions(tx: Querier, table: string, keyCol: string, key: string, start: number, revision: number): Promise<boolean> {
  const rows = await tx.query(`SELECT 1 AS x FROM ${table} WHERE ${keyCol} = ? AND start_s = ? AND revision <> ? LIMIT 1`, [key, start, revision]);
  return rows.length > 0;
}
