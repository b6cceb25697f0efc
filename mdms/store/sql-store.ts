/**
 * The {@link Store} over either SQL back end: the same statements (written with `?` placeholders and SQL both
 * SQLite and PostgreSQL accept) and the same insert logic for both, so they cannot drift apart.
 *
 * Inserts run in one transaction that first serialises on the (key, start) being written, then:
 * if this (key, start, revision) is already stored, compares it — same content is a `duplicate`, different
 * content a `conflict` (nothing is written either way); otherwise inserts (one row per band for billing).
 * @module
 */
import type { BillingAggregate, NeighbourhoodAggregate } from '../../protocol/aggregate.js';
import type { Driver, Param, Querier } from './driver.js';
import { migrate } from './migrations.js';
import type {
  BillingQuery,
  BillingRow,
  InsertOutcome,
  NeighbourhoodQuery,
  NeighbourhoodRow,
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

const nbRow = (r: Record<string, unknown>): NeighbourhoodRow => ({
  neighbourhood: str(r.neighbourhood),
  start: num(r.start_s),
  end: num(r.end_s),
  revision: num(r.revision),
  meters: num(r.meters),
  energyWh: num(r.energy_wh),
  receivedAtMs: num(r.received_at_ms),
});

const billingRow = (r: Record<string, unknown>): BillingRow => ({
  household: str(r.household),
  start: num(r.start_s),
  end: num(r.end_s),
  band: str(r.band),
  revision: num(r.revision),
  energyWh: num(r.energy_wh),
  receivedAtMs: num(r.received_at_ms),
});

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
    checkAggregateInts(agg.start, agg.end, agg.revision, agg.meters, agg.energyWh);
    const key = checkText(agg.key, 'neighbourhood');
    return this.db.transaction(async (tx) => {
      await tx.lock(`nb:${key}:${agg.start}`);
      const [old] = await tx.query(
        'SELECT end_s, meters, energy_wh FROM neighbourhood_aggregate WHERE neighbourhood = ? AND start_s = ? AND revision = ?',
        [key, agg.start, agg.revision],
      );
      if (old) return num(old.end_s) === agg.end && num(old.meters) === agg.meters && num(old.energy_wh) === agg.energyWh ? 'duplicate' : 'conflict';
      await tx.run(
        'INSERT INTO neighbourhood_aggregate (neighbourhood, start_s, end_s, revision, meters, energy_wh, received_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?)',
        [key, agg.start, agg.end, agg.revision, agg.meters, agg.energyWh, this.now()],
      );
      return (await otherRevisions(tx, 'neighbourhood_aggregate', 'neighbourhood', key, agg.start, agg.revision)) ? 'revision' : 'stored';
    });
  }

  async insertBilling(agg: BillingAggregate): Promise<InsertOutcome> {
    checkAggregateInts(agg.start, agg.end, agg.revision, ...Object.values(agg.bands));
    const key = checkText(agg.key, 'household');
    const bands = Object.entries(agg.bands).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    if (bands.length === 0) throw new TypeError('a billing aggregate needs at least one band');
    return this.db.transaction(async (tx) => {
      await tx.lock(`billing:${key}:${agg.start}`);
      const old = await tx.query(
        'SELECT band, end_s, energy_wh FROM billing_aggregate WHERE household = ? AND start_s = ? AND revision = ? ORDER BY band',
        [key, agg.start, agg.revision],
      );
      if (old.length) {
        const same =
          old.length === bands.length &&
          old.every((r, i) => r.band === bands[i]![0] && num(r.end_s) === agg.end && num(r.energy_wh) === bands[i]![1]);
        return same ? 'duplicate' : 'conflict';
      }
      const at = this.now();
      for (const [band, wh] of bands) {
        await tx.run(
          'INSERT INTO billing_aggregate (household, start_s, end_s, band, revision, energy_wh, received_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?)',
          [key, agg.start, agg.end, band, agg.revision, wh, at],
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
