/**
 * SQLite adapter (better-sqlite3): one connection, WAL journal, `synchronous = FULL` so that a committed
 * aggregate survives a power cut before it is acknowledged to the broker (durability chain step 4).
 *
 * better-sqlite3 is synchronous; this adapter queues every operation behind the transaction that runs, so an
 * async caller (the web app reading while the ingest writes) never sees a half-done transaction. A database
 * locked by another process waits `busyTimeoutMs` (blocking the event loop meanwhile, which is why the
 * default is short) and then fails with SQLITE_BUSY, which the ingest treats like an unreachable database.
 * @module
 */
import { privateFile } from '../../lib/private-file.js';
import Database from 'better-sqlite3';
import type { Driver, Param, Querier } from './driver.js';

/** SQLite options. */
export interface SqliteOptions {
  /** How long a write waits for another process's lock before failing with SQLITE_BUSY. Default 2000 ms. */
  busyTimeoutMs?: number;
}

/**
 * Opens (creating with mode 0600 if needed: it holds household billing data) an SQLite database file.
 * @example
 * ```ts
 * const driver = openSqlite('/var/lib/mdms/mdms.sqlite');
 * ```
 */
export function openSqlite(path: string, opts: SqliteOptions = {}): Driver {
  if (typeof path !== 'string' || path.length === 0) throw new TypeError('SQLite path must be a non-empty string');
  const busy = opts.busyTimeoutMs ?? 2000;
  if (!Number.isInteger(busy) || busy < 0) throw new TypeError('busyTimeoutMs must be a non-negative integer');
  if (path !== ':memory:') {
    try {
      privateFile(path);
    } catch (e) {
      throw new Error(`cannot create SQLite database ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
  }
  let db: Database.Database;
  try {
    db = new Database(path, { timeout: busy });
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
  } catch (e) {
    throw new Error(`cannot open SQLite database ${path}: ${(e as Error).message}`);
  }
  const statements = new Map<string, Database.Statement>();
  const prepare = (sql: string): Database.Statement => {
    let s = statements.get(sql);
    if (!s) {
      s = db.prepare(sql);
      statements.set(sql, s);
    }
    return s;
  };
  const direct: Querier = {
    query: async (sql, params) => prepare(sql).all(...(params as Param[])) as Record<string, unknown>[],
    run: async (sql, params) => prepare(sql).run(...(params as Param[])).changes,
    exec: async (sql) => void db.exec(sql),
    lock: async () => undefined,
  };
  // Every operation waits for the one before it (a transaction counts as one operation).
  let tail: Promise<unknown> = Promise.resolve();
  const serial = <T>(op: () => Promise<T>): Promise<T> => {
    const result = tail.then(op, op);
    tail = result.catch(() => undefined);
    return result;
  };
  let closed = false;
  return {
    dialect: 'sqlite',
    location: path,
    query: (sql, params) => serial(() => direct.query(sql, params)),
    run: (sql, params) => serial(() => direct.run(sql, params)),
    exec: (sql) => serial(() => direct.exec(sql)),
    lock: async () => undefined,
    transaction: (fn) =>
      serial(async () => {
        db.exec('BEGIN IMMEDIATE');
        try {
          const r = await fn(direct);
          db.exec('COMMIT');
          return r;
        } catch (e) {
          if (db.inTransaction) db.exec('ROLLBACK');
          throw e;
        }
      }),
    close: () =>
      serial(async () => {
        if (closed) return;
        closed = true;
        db.close();
      }),
  };
}
