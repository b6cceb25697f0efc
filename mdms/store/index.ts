/**
 * Opens the MDMS store: PostgreSQL for `postgres://` / `postgresql://` URLs, otherwise an SQLite file.
 * @module
 */
import { openPostgres, redactUrl, type PostgresOptions } from './postgres.js';
import { SqlStore } from './sql-store.js';
import { openSqlite, type SqliteOptions } from './sqlite.js';
import type { Driver } from './driver.js';
import type { Store, StoreOptions } from './types.js';

export type * from './types.js';
export { SCHEMA_VERSION, MIGRATIONS } from './migrations.js';

/** Options of {@link openStore}: common ones plus each back end's. */
export type OpenStoreOptions = StoreOptions & SqliteOptions & PostgresOptions;

/**
 * True for a PostgreSQL connection URL.
 * @example
 * ```ts
 * isPostgresUrl('postgresql://127.0.0.1/mdms'); // true
 * ```
 */
export function isPostgresUrl(db: string): boolean {
  return /^postgres(ql)?:\/\//i.test(db);
}

/**
 * Opens and migrates the store. Throws a clear error (password redacted) if the database cannot be reached
 * or is newer than this code.
 * @example
 * ```ts
 * const store = await openStore('mdms.sqlite');
 * const pg = await openStore('postgres://postgres@127.0.0.1:5432/test', { schema: 'mdms' });
 * ```
 */
export async function openStore(db: string, opts: OpenStoreOptions = {}): Promise<Store> {
  if (typeof db !== 'string' || db.trim() === '') throw new TypeError('--db must be an SQLite file path or a postgres:// URL');
  const driver = isPostgresUrl(db) ? openPostgres(db, opts) : openSqlite(db, opts);
  const store = new SqlStore(driver, opts);
  try {
    return await store.init();
  } catch (e) {
    await driver.close().catch(() => undefined);
    const where = isPostgresUrl(db) ? redactUrl(db) : db;
    throw new Error(`cannot open the MDMS database ${where}: ${(e as Error).message || (e as NodeJS.ErrnoException).code || String(e)}`);
  }
}

/**
 * Opens and migrates the store on a driver the caller already has, so that other tables of the same database
 * (the web app's) share one connection: with SQLite that keeps every transaction of the process in one queue.
 * The store's `close()` closes the driver.
 * @example
 * ```ts
 * const driver = openSqlite('mdms.sqlite');
 * const store = await openStoreOn(driver);
 * const web = await openWebDb(driver);
 * ```
 */
export function openStoreOn(driver: Driver, opts: StoreOptions = {}): Promise<Store> {
  return new SqlStore(driver, opts).init();
}
