/**
 * The PES state on PostgreSQL (`pes --state postgres://…`): the same content as the SQLite state file
 * (pes/store.ts: windows' Paillier ciphertexts, meters' sealed records, household keys, outbox, DP ledger,
 * meta), so that any PES instance can take a partition over. One schema per deployment (`--state-schema`,
 * default `pes`); every table is keyed by partition, and every write transaction is fenced by the partition's
 * lease (pes/lease.ts): a write from an instance that lost the lease is refused with `LeaseLostError` and
 * nothing of it is stored.
 *
 * Nothing here is a reading in clear: meters' records are sealed with the state key (AES-256-GCM), which is
 * stored per partition wrapped with RSA-OAEP to the PES's own key, and window ciphertexts are re-randomised by
 * the core before every write. The PES acknowledges an MQTT message only after the transaction that holds its
 * effect committed (`synchronous_commit` is the server's; keep it `on`).
 *
 * Schema migrations: versioned, applied in one transaction under an advisory lock (two instances starting
 * together do not race), a database newer than this code is refused — as the MDMS does
 * (mdms/store/migrations.ts).
 * @module
 */
import { createPublicKey, randomBytes, type KeyObject } from 'node:crypto';
import pg from 'pg';
import { unwrapKey, wrapKey } from '../protocol/seal.js';
import { cborEncode as cborEncodeValue } from '../protocol/cbor.js';
import type { Checkpoint, MeterRecord, NeighbourhoodClock, Snapshot, WindowRecord, WindowRef } from './core/pes.js';
import type { PesCounters } from './core/counters.js';
import { inTransaction as tx } from '../lib/pg-transaction.js';
import { LEASE_DDL, type Lease } from './lease.js';
import { CLOCK_PREFIX, FORMAT, StateMismatchError, clockFromMeta, fingerprint, releasedFromRow, sealMeterRecord, unsealMeterRecord, windowFromRow, type StoredOutMessage } from './store.js';

/** One schema version; never edited once released. */
export interface PesMigration {
  version: number;
  description: string;
  sql: string;
}

/** The PES state's schema versions. */
export const PES_MIGRATIONS: readonly PesMigration[] = [
  {
    version: 1,
    description: 'PES state per partition (windows, meters, households, outbox, DP ledger, meta) and the partition lease',
    sql: `
CREATE TABLE pes_meta (part TEXT COLLATE "C" NOT NULL, k TEXT COLLATE "C" NOT NULL, v BYTEA NOT NULL, PRIMARY KEY (part, k));
CREATE TABLE pes_windows (
  part TEXT COLLATE "C" NOT NULL, kind TEXT COLLATE "C" NOT NULL, key TEXT COLLATE "C" NOT NULL,
  start_s BIGINT NOT NULL, end_s BIGINT NOT NULL, revision BIGINT NOT NULL, closed BOOLEAN NOT NULL, suppressed BOOLEAN NOT NULL,
  acc BYTEA NOT NULL, meters BYTEA NOT NULL, changed BYTEA NOT NULL, released BYTEA,
  PRIMARY KEY (part, kind, key, start_s));
CREATE TABLE pes_meters (part TEXT COLLATE "C" NOT NULL, meter TEXT COLLATE "C" NOT NULL, sealed BYTEA NOT NULL, PRIMARY KEY (part, meter));
CREATE TABLE pes_households (part TEXT COLLATE "C" NOT NULL, household TEXT COLLATE "C" NOT NULL, spki BYTEA, PRIMARY KEY (part, household));
CREATE TABLE pes_outbox (id BIGSERIAL PRIMARY KEY, part TEXT COLLATE "C" NOT NULL, kind TEXT NOT NULL, topic TEXT NOT NULL, payload BYTEA NOT NULL);
CREATE INDEX pes_outbox_part ON pes_outbox (part, id);
CREATE TABLE pes_dp (part TEXT COLLATE "C" NOT NULL, neighbourhood TEXT COLLATE "C" NOT NULL, day BIGINT NOT NULL, spent DOUBLE PRECISION NOT NULL, PRIMARY KEY (part, neighbourhood, day));
${LEASE_DDL}`,
  },
];

const SCHEMA = /^[a-z_][a-z0-9_]{0,62}$/;
const WINDOW_COLUMNS = 'kind, key, start_s AS start, end_s AS end, revision, closed, suppressed, acc, meters, changed, released';
const ALL_TIME = -1;

/**
 * Whether `--state` names a PostgreSQL database rather than a SQLite file.
 * @example
 * ```ts
 * isPostgresUrl('postgres://pes@db/pes'); // true
 * isPostgresUrl('pes-state.sqlite');      // false
 * ```
 */
export function isPostgresUrl(s: string): boolean {
  return /^postgres(ql)?:\/\//.test(s);
}

/**
 * Opens a pool on `url` with `search_path` set to `schema` (created if missing). `idleInTransactionMs` (give
 * the lease ttl) makes the server end a session that sits inside a transaction longer than that: a PES paused
 * in the middle of a commit holds the lease row's lock, which would otherwise block every takeover until it
 * resumes; the server rolls its transaction back instead, and the standby takes over.
 * @example
 * ```ts
 * const pool = await pgPool('postgres://postgres@127.0.0.1:5432/test', 'pes', { idleInTransactionMs: 10_000 });
 * ```
 */
export async function pgPool(url: string, schema: string, o: { max?: number; idleInTransactionMs?: number } = {}): Promise<pg.Pool> {
  if (!SCHEMA.test(schema)) throw new TypeError(`--state-schema must match ${SCHEMA.source}, got "${schema}"`);
  const setup = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
  try {
    await setup.connect();
    await setup.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
  } finally {
    await setup.end().catch(() => undefined);
  }
  const idle = o.idleInTransactionMs !== undefined ? ` -c idle_in_transaction_session_timeout=${Math.max(1, Math.floor(o.idleInTransactionMs))}` : '';
  const pool = new pg.Pool({ connectionString: url, max: o.max ?? 3, connectionTimeoutMillis: 5000, options: `-c search_path=${schema}${idle}` });
  pool.on('error', () => undefined); // idle clients dropped by the server; the next query reconnects
  return pool;
}

/**
 * Applies the missing {@link PES_MIGRATIONS} in one transaction under an advisory lock; returns the version.
 * @example
 * ```ts
 * await migratePesState(pool); // 1
 * ```
 */
export async function migratePesState(pool: pg.Pool): Promise<number> {
  return tx(pool, async (c) => {
    await c.query("SELECT pg_advisory_xact_lock(hashtextextended('pes_schema_version', 0))");
    await c.query('CREATE TABLE IF NOT EXISTS pes_schema_version (version BIGINT PRIMARY KEY, description TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())');
    const have = Number((await c.query('SELECT COALESCE(MAX(version), 0) AS v FROM pes_schema_version')).rows[0].v);
    const last = PES_MIGRATIONS[PES_MIGRATIONS.length - 1]!.version;
    if (have > last) throw new StateMismatchError(`the PES state schema is at version ${have}, newer than this PES (${last}); upgrade the PES`);
    for (const m of PES_MIGRATIONS.filter((x) => x.version > have)) {
      await c.query(m.sql);
      await c.query('INSERT INTO pes_schema_version (version, description) VALUES ($1, $2)', [m.version, m.description]);
    }
    return last;
  });
}


/** Options of {@link PgPesState.open}. */
export interface PgStateOptions {
  /** The PES RSA private key: wraps/unwraps the partition's state key. */
  rsa: KeyObject;
  paillierKeyId: string;
  /** Settings that shape windows: must not change under a state. */
  config: Record<string, unknown>;
  /** The held lease of this partition: fences every write. */
  lease: Lease;
}

/**
 * One partition's state in PostgreSQL, written only while `lease` is held.
 * @example
 * ```ts
 * const pool = await pgPool(url, 'pes');
 * await migratePesState(pool);
 * const lease = new Lease(pool, 'north');
 * await lease.acquire();
 * const state = await PgPesState.open(pool, { rsa, paillierKeyId, config, lease });
 * core.restore(await state.load());
 * const out = await state.commit(core.checkpoint(), []);
 * ```
 */
export class PgPesState {
  private constructor(
    private readonly pool: pg.Pool,
    private readonly part: string,
    private stateKey: Buffer,
    private readonly lease: Lease,
  ) {}

  /** Reads (or, fenced, creates) the partition's meta; throws {@link StateMismatchError} for other keys or settings. */
  static async open(pool: pg.Pool, o: PgStateOptions): Promise<PgPesState> {
    const part = o.lease.partition;
    const where = `partition ${part}`;
    const config = fingerprint(o.config);
    const stateKey = await tx(pool, async (c) => {
      const rows = (await c.query('SELECT k, v FROM pes_meta WHERE part = $1', [part])).rows as { k: string; v: Buffer }[];
      const meta = new Map(rows.map((r) => [r.k, r.v]));
      if (!meta.has('format')) {
        await o.lease.fence(c);
        const key = randomBytes(32);
        const put = (k: string, v: string | Buffer) => c.query('INSERT INTO pes_meta (part, k, v) VALUES ($1, $2, $3)', [part, k, typeof v === 'string' ? Buffer.from(v) : v]);
        await put('format', FORMAT);
        await put('paillier', o.paillierKeyId);
        await put('config', config);
        await put('configText', JSON.stringify(o.config));
        await put('stateKey', wrapKey(createPublicKey(o.rsa), key));
        return key;
      }
      const text = (k: string) => meta.get(k)?.toString() ?? '';
      if (text('format') !== FORMAT) throw new StateMismatchError(`${where}: unsupported state format ${text('format')}`);
      if (text('paillier') !== o.paillierKeyId) throw new StateMismatchError(`${where} was written with another Paillier key; use another --state-schema`);
      if (text('config') !== config) throw new StateMismatchError(`${where} was written with other window settings (${text('configText')}); use another --state-schema or the same settings`);
      try {
        return unwrapKey(o.rsa, meta.get('stateKey')!);
      } catch {
        throw new StateMismatchError(`${where}: the state key does not open with this PES RSA key`);
      }
    });
    return new PgPesState(pool, part, stateKey, o.lease);
  }

  /** Reads the partition's whole state, and the messages still waiting for a broker acknowledgement. */
  async load(): Promise<Snapshot & { outbox: StoredOutMessage[] }> {
    const q = async (sql: string) => (await this.pool.query(sql, [this.part])).rows as Record<string, unknown>[];
    const meta = new Map((await q('SELECT k, v FROM pes_meta WHERE part = $1')).map((r) => [r.k as string, (r.v as Buffer).toString()]));
    const wm = meta.get('watermark');
    const windows = (await q(`SELECT ${WINDOW_COLUMNS} FROM pes_windows WHERE part = $1 AND NOT closed`)).map(windowFromRow);
    const released = (
      await q("SELECT key, start_s / 86400 AS day, released, COUNT(*) AS n FROM pes_windows WHERE part = $1 AND kind = 'neighbourhood' AND closed AND released IS NOT NULL GROUP BY key, start_s / 86400, released")
    ).map(releasedFromRow);
    const clocks: [string, NeighbourhoodClock][] = [];
    for (const [k, v] of meta) {
      const c = k.startsWith(CLOCK_PREFIX) ? clockFromMeta(v) : null;
      if (c) clocks.push([k.slice(CLOCK_PREFIX.length), c]);
    }
    const meters = new Map<string, MeterRecord>();
    for (const r of await q('SELECT meter, sealed FROM pes_meters WHERE part = $1')) meters.set(r.meter as string, unsealMeterRecord(this.stateKey, r.meter as string, r.sealed as Buffer));
    const households = new Map<string, Uint8Array | null>();
    for (const r of await q('SELECT household, spki FROM pes_households WHERE part = $1')) households.set(r.household as string, (r.spki as Buffer | null) ?? null);
    const outbox = (await q('SELECT id, kind, topic, payload FROM pes_outbox WHERE part = $1 ORDER BY id')).map((r) => ({ id: Number(r.id), kind: r.kind, topic: r.topic, payload: r.payload }) as StoredOutMessage);
    const dp = (await q('SELECT neighbourhood, day, spent FROM pes_dp WHERE part = $1')).map((r) => ({ neighbourhood: r.neighbourhood as string, day: Number(r.day) === ALL_TIME ? null : Number(r.day), spent: Number(r.spent) }));
    return { windows, released, ...(clocks.length ? { clocks } : {}), meters, households, watermark: wm === undefined ? null : Number(wm), counters: JSON.parse(meta.get('counters') ?? '{}') as Partial<PesCounters>, outbox, dp };
  }

  /** The stored rows of the given windows (those that exist): what a late reading for a closed window folds into. */
  async loadWindows(refs: WindowRef[]): Promise<WindowRecord[]> {
    if (!refs.length) return [];
    const rows = await this.pool.query(
      `SELECT ${WINDOW_COLUMNS} FROM pes_windows WHERE part = $1 AND (kind, key, start_s) IN (SELECT * FROM unnest($2::text[], $3::text[], $4::bigint[]))`,
      [this.part, refs.map((r) => r.kind), refs.map((r) => r.key), refs.map((r) => r.start)],
    );
    return (rows.rows as Record<string, unknown>[]).map(windowFromRow);
  }

  /**
   * Writes a checkpoint and deletes acknowledged outbox rows in one fenced transaction; returns the
   * checkpoint's outbox messages with their ids. Rejects with `LeaseLostError` (nothing written) once another
   * instance holds the partition.
   */
  async commit(cp: Checkpoint, confirmed: Iterable<number> = []): Promise<StoredOutMessage[]> {
    const part = this.part;
    return tx(this.pool, async (c) => {
      await this.lease.fence(c);
      for (const w of cp.windows) {
        await c.query(
          `INSERT INTO pes_windows (part, kind, key, start_s, end_s, revision, closed, suppressed, acc, meters, changed, released) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
           ON CONFLICT (part, kind, key, start_s) DO UPDATE SET end_s = EXCLUDED.end_s, revision = EXCLUDED.revision, closed = EXCLUDED.closed, suppressed = EXCLUDED.suppressed,
             acc = EXCLUDED.acc, meters = EXCLUDED.meters, changed = EXCLUDED.changed, released = EXCLUDED.released`,
          [part, w.kind, w.key, w.start, w.end, w.revision, w.closed, w.suppressed, cborBuf(w.acc), cborBuf(w.meters), cborBuf(w.changed), w.released ? cborBuf(w.released) : null],
        );
      }
      for (const h of cp.horizons) {
        await c.query("DELETE FROM pes_windows WHERE part = $1 AND kind = 'neighbourhood' AND key = $2 AND closed AND end_s < $3", [part, h.neighbourhood, h.before]);
        if (h.households.length) await c.query("DELETE FROM pes_windows WHERE part = $1 AND kind = 'billing' AND key = ANY($2::text[]) AND closed AND end_s < $3", [part, h.households, h.before]);
      }
      await upsertMany(c, 'pes_meters (part, meter, sealed)', '(part, meter)', 'sealed = EXCLUDED.sealed', [...cp.meters].map(([id, m]) => [part, id, sealMeterRecord(this.stateKey, id, m)]));
      await upsertMany(c, 'pes_households (part, household, spki)', '(part, household)', 'spki = EXCLUDED.spki', [...cp.households].map(([hh, spki]) => [part, hh, spki === null ? null : Buffer.from(spki)]));
      for (const r of cp.dp) await c.query('INSERT INTO pes_dp (part, neighbourhood, day, spent) VALUES ($1, $2, $3, $4) ON CONFLICT (part, neighbourhood, day) DO UPDATE SET spent = EXCLUDED.spent', [part, r.neighbourhood, r.day ?? ALL_TIME, r.spent]);
      for (const r of cp.dpEvicted) await c.query('DELETE FROM pes_dp WHERE part = $1 AND neighbourhood = $2 AND day = $3', [part, r.neighbourhood, r.day]);
      const ids = [...confirmed];
      if (ids.length) await c.query('DELETE FROM pes_outbox WHERE part = $1 AND id = ANY($2::bigint[])', [part, ids]);
      const out: StoredOutMessage[] = [];
      for (const m of cp.outbox) {
        const r = await c.query('INSERT INTO pes_outbox (part, kind, topic, payload) VALUES ($1, $2, $3, $4) RETURNING id', [part, m.kind, m.topic, Buffer.from(m.payload)]);
        out.push({ ...m, id: Number(r.rows[0].id) });
      }
      const meta = (k: string, v: string) => c.query('INSERT INTO pes_meta (part, k, v) VALUES ($1, $2, $3) ON CONFLICT (part, k) DO UPDATE SET v = EXCLUDED.v', [part, k, Buffer.from(v)]);
      for (const [nb, clock] of cp.clocks) await meta(CLOCK_PREFIX + nb, JSON.stringify(clock));
      if (cp.watermark !== null) await meta('watermark', String(cp.watermark));
      await meta('counters', JSON.stringify(cp.counters));
      return out;
    });
  }

  /** Deletes acknowledged outbox rows (fenced). */
  async confirm(ids: Iterable<number>): Promise<void> {
    const list = [...ids];
    if (!list.length) return;
    await tx(this.pool, async (c) => {
      await this.lease.fence(c);
      await c.query('DELETE FROM pes_outbox WHERE part = $1 AND id = ANY($2::bigint[])', [this.part, list]);
    });
  }

  /** Forgets the state key; the pool belongs to the caller. */
  async close(): Promise<void> {
    this.stateKey.fill(0);
  }
}

function cborBuf(x: unknown): Buffer {
  return Buffer.from(cborEncodeValue(x));
}

/** Multi-row upsert in chunks (one statement per 500 rows instead of one per row). */
async function upsertMany(c: pg.PoolClient, into: string, conflict: string, set: string, rows: unknown[][]): Promise<void> {
  for (let i = 0; i < rows.length; i += 500) {
    const chunk = rows.slice(i, i + 500);
    const width = chunk[0]!.length;
    const values = chunk.map((_, r) => `(${Array.from({ length: width }, (_, j) => `$${r * width + j + 1}`).join(', ')})`).join(', ');
    await c.query(`INSERT INTO ${into} VALUES ${values} ON CONFLICT ${conflict} DO UPDATE SET ${set}`, chunk.flat());
  }
}
