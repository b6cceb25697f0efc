/**
 * Read-only looks into the state files of running components (SQLite in WAL mode allows a reader beside
 * the writer), and the parsing of what they hand over at the end. Nothing here reads a reading in clear:
 * the PES counters, the MDMS row counts and the meter's sample count are all the harness needs.
 * @module
 */
import { existsSync, readFileSync } from 'node:fs';
import { connect } from 'node:net';
import Database from 'better-sqlite3';
import type pg from 'pg';
import { cborDecode } from '../../../protocol/cbor.js';

/** The PES counters and outbox as committed to its state file (what survives a kill). */
export interface PesProbe {
  counters: Record<string, number>;
  /** Sealed messages committed but not yet acknowledged by the broker. */
  outbox: number;
}

function readonly<T>(file: string, fn: (db: Database.Database) => T): T | undefined {
  if (!existsSync(file)) return undefined;
  let db: Database.Database | undefined;
  try {
    db = new Database(file, { readonly: true, fileMustExist: true });
    db.pragma('busy_timeout = 2000');
    return fn(db);
  } catch (e) {
    // A file being created, or a table not there yet: nothing to report now.
    if (/no such table|SQLITE_BUSY|database is locked|unable to open/i.test((e as Error).message)) return undefined;
    throw e;
  } finally {
    db?.close();
  }
}

/**
 * The PES's committed counters and outbox size, or `undefined` before its first commit.
 * @example
 * ```ts
 * probePes('run/pes.sqlite')?.counters.readings;
 * ```
 */
export function probePes(file: string): PesProbe | undefined {
  return readonly(file, (db) => {
    const row = db.prepare("SELECT v FROM meta WHERE k = 'counters'").get() as { v: string } | undefined;
    if (!row) return undefined;
    const outbox = (db.prepare('SELECT count(*) AS n FROM outbox').get() as { n: number }).n;
    return { counters: JSON.parse(String(row.v)) as Record<string, number>, outbox };
  });
}

/**
 * Rows stored by the MDMS: neighbourhood aggregates and billing aggregates, every revision (one row per
 * band), or `undefined` before the schema exists.
 * @example
 * ```ts
 * probeMdms('run/mdms.sqlite')?.rows;
 * ```
 */
export function probeMdms(file: string): { neighbourhood: number; billing: number; rows: number } | undefined {
  return readonly(file, (db) => {
    const n = (t: string) => (db.prepare(`SELECT count(*) AS n FROM ${t}`).get() as { n: number }).n;
    const neighbourhood = n('neighbourhood_aggregate');
    const billing = n('billing_aggregate');
    return { neighbourhood, billing, rows: neighbourhood + billing };
  });
}

/**
 * End-to-end mode: halves (PES releases, guardian partials) the MDMS keeps waiting for their counterpart.
 * @example
 * ```ts
 * probeMdmsWaiting('run/mdms.sqlite'); // 0 when every release paired
 * ```
 */
export function probeMdmsWaiting(file: string): number {
  return readonly(file, (db) => (db.prepare("SELECT count(*) AS n FROM e2e_pending WHERE half <> 'combined'").get() as { n: number }).n) ?? 0;
}

/**
 * Frames a gateway holds in its on-disk queue (received, not yet acknowledged by the broker).
 * @example
 * ```ts
 * probeGatewayQueue('run/gw-nb1.queue.sqlite'); // 0 when idle
 * ```
 */
export function probeGatewayQueue(file: string): number {
  return readonly(file, (db) => (db.prepare('SELECT count(*) AS n FROM frames').get() as { n: number }).n) ?? 0;
}

/**
 * What the embedded broker's state file holds: messages queued or in flight to persistent sessions (all, and
 * for one client id), and journaled publishes.
 * @example
 * ```ts
 * probeBroker('run/broker.sqlite', 'pes').queuedFor; // uplinks the PES has not acknowledged
 * ```
 */
export function probeBroker(file: string, clientId: string): { queued: number; queuedFor: number; journal: number } {
  return (
    readonly(file, (db) => ({
      queued: (db.prepare('SELECT count(*) AS n FROM outgoing').get() as { n: number }).n,
      queuedFor: (db.prepare('SELECT count(*) AS n FROM outgoing WHERE client_id = ?').get(clientId) as { n: number }).n,
      journal: (db.prepare('SELECT count(*) AS n FROM journal').get() as { n: number }).n,
    })) ?? { queued: 0, queuedFor: 0, journal: 0 }
  );
}

/**
 * Frames a meter holds unacknowledged in its NV store (its ring).
 * @example
 * ```ts
 * meterRing('run/nv/534d520000000001.cbor'); // 0 once everything is acknowledged
 * ```
 */
export function meterRing(nvFile: string): number {
  if (!existsSync(nvFile)) return 0;
  try {
    const r = cborDecode(readFileSync(nvFile)) as { ring?: unknown };
    return Array.isArray(r.ring) ? r.ring.length : 0;
  } catch {
    return 0; // replaced while being read
  }
}

/**
 * Samples a meter has framed since its NV store was created (field `n` of its NV record).
 * @example
 * ```ts
 * meterSamples('run/nv/534d520000000001.cbor'); // 2880 after two days
 * ```
 */
export function meterSamples(nvFile: string): number {
  if (!existsSync(nvFile)) return 0;
  const r = cborDecode(readFileSync(nvFile)) as { n?: unknown };
  return typeof r.n === 'number' ? r.n : 0;
}

/** Whether something accepts TCP connections at host:port within `timeoutMs`. */
export function reachable(host: string, port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host, port, timeout: timeoutMs }, () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
    s.on('timeout', () => {
      s.destroy();
      resolve(false);
    });
  });
}

/**
 * Parses `mdms export` CSV into key -> start (Unix s) -> Wh (billing: summed over bands).
 * @example
 * ```ts
 * parseExport(csv, 'billing').get('hh1')?.get(1704067200);
 * ```
 */
export function parseExport(csv: string, what: 'neighbourhood' | 'billing'): Map<string, Map<number, number>> {
  const lines = csv.split('\n').filter((l) => l.length > 0);
  const header = what === 'neighbourhood' ? 'neighbourhood,start,end,meters,energy_wh' : 'household,start,end,band,energy_wh';
  // Columns are only ever appended (mdms/export.ts): version 1's come first, whatever follows.
  if (lines[0] !== header && !lines[0]?.startsWith(`${header},`)) throw new Error(`unexpected ${what} export header: ${lines[0]}`);
  const out = new Map<string, Map<number, number>>();
  for (const l of lines.slice(1)) {
    const f = l.split(',');
    const key = f[0]!;
    const start = Date.parse(f[1]!) / 1000;
    const wh = Number(f[4]);
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(wh)) throw new Error(`bad ${what} export line: ${l}`);
    let m = out.get(key);
    if (!m) out.set(key, (m = new Map()));
    m.set(start, (m.get(start) ?? 0) + wh);
  }
  return out;
}

/**
 * The last pino JSON line of a log file whose `msg` matches, parsed (for counters logged at a clean stop).
 * @example
 * ```ts
 * lastLogLine('run/logs/mdms.log', /ingest stopped/)?.counters;
 * ```
 */
export function lastLogLine(file: string, msg: RegExp): Record<string, unknown> | undefined {
  if (!existsSync(file)) return undefined;
  const lines = readFileSync(file, 'utf8').split('\n').reverse();
  for (const l of lines) {
    if (!l.startsWith('{')) continue;
    try {
      const o = JSON.parse(l) as Record<string, unknown>;
      if (typeof o.msg === 'string' && msg.test(o.msg)) return o;
    } catch {
      // a line cut by a kill -9
    }
  }
  return undefined;
}

/** A PostgreSQL schema name the probes put into SQL (checked: it cannot be a bind parameter). */
const PG_SCHEMA = /^[a-z_][a-z0-9_]{0,62}$/;

/** Runs `sql` in `schema`; `undefined` while the schema's tables do not exist yet (42P01, 3F000). */
async function pgRows(db: pg.Pool, schema: string, sql: string, params: unknown[]): Promise<Record<string, unknown>[] | undefined> {
  if (!PG_SCHEMA.test(schema)) throw new TypeError(`schema must match ${PG_SCHEMA.source}`);
  try {
    return (await db.query(sql.replaceAll('$schema', schema), params)).rows as Record<string, unknown>[];
  } catch (e) {
    if (['42P01', '3F000'].includes((e as { code?: string }).code ?? '')) return undefined;
    throw e;
  }
}

/**
 * The PES's committed counters and outbox size for one partition of a PostgreSQL state (pes/pg-state.ts), or
 * `undefined` before its first commit: what {@link probePes} reads from a SQLite state file.
 * @example
 * ```ts
 * (await probePesPg(pool, 'pes_crash_x', 'p1'))?.counters.readings;
 * ```
 */
export async function probePesPg(db: pg.Pool, schema: string, partition: string): Promise<PesProbe | undefined> {
  const meta = await pgRows(db, schema, "SELECT v FROM $schema.pes_meta WHERE part = $1 AND k = 'counters'", [partition]);
  if (!meta?.[0]) return undefined;
  const outbox = await pgRows(db, schema, 'SELECT count(*)::int AS n FROM $schema.pes_outbox WHERE part = $1', [partition]);
  return { counters: JSON.parse((meta[0].v as Buffer).toString('utf8')) as Record<string, number>, outbox: Number(outbox?.[0]?.n ?? 0) };
}

/**
 * Rows an MDMS store in a PostgreSQL schema holds (as {@link probeMdms} for SQLite), or `undefined` before the
 * schema exists.
 * @example
 * ```ts
 * (await probeMdmsPg(pool, 'mdms_crash_x'))?.rows;
 * ```
 */
export async function probeMdmsPg(db: pg.Pool, schema: string): Promise<{ neighbourhood: number; billing: number; rows: number } | undefined> {
  const r = await pgRows(db, schema, 'SELECT (SELECT count(*) FROM $schema.neighbourhood_aggregate)::int AS n, (SELECT count(*) FROM $schema.billing_aggregate)::int AS b', []);
  if (!r?.[0]) return undefined;
  const neighbourhood = Number(r[0].n);
  const billing = Number(r[0].b);
  return { neighbourhood, billing, rows: neighbourhood + billing };
}
