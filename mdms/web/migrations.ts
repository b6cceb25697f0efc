/**
 * The web application's own tables (users, sessions, tariffs, billing accounts, audit log, settings), next
 * to the store's aggregates in the same database, through the same {@link Driver}. They have their own
 * migration list and their own version table (`web_schema_version`), so they never collide with the store's
 * `schema_version`. Migrations are append-only: never edit a released one, add a version.
 *
 * Nothing here holds a reading or anything finer than the store's billing periods: the web app only adds
 * who may look, what they looked at, and the prices.
 * @module
 */
import type { Driver } from '../store/driver.js';
import { runMigrations, type Migration } from '../store/migrations.js';

function v1(d: 'sqlite' | 'postgres'): string {
  const int = d === 'sqlite' ? 'INTEGER' : 'BIGINT';
  const id = d === 'sqlite' ? 'INTEGER PRIMARY KEY AUTOINCREMENT' : 'BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY';
  const key = d === 'sqlite' ? 'TEXT' : 'TEXT COLLATE "C"';
  const strict = d === 'sqlite' ? ' STRICT' : '';
  return `
CREATE TABLE web_user (
  id ${id},
  username ${key} NOT NULL UNIQUE,
  roles TEXT NOT NULL,
  password_hash TEXT NOT NULL,
  disabled ${int} NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
  created_at_ms ${int} NOT NULL,
  password_changed_at_ms ${int} NOT NULL
)${strict};
CREATE TABLE web_session (
  token_hash ${key} PRIMARY KEY,
  user_id ${int} NOT NULL REFERENCES web_user (id),
  created_at_ms ${int} NOT NULL,
  last_seen_ms ${int} NOT NULL,
  expires_at_ms ${int} NOT NULL,
  ip TEXT NOT NULL,
  user_agent TEXT NOT NULL
)${strict};
CREATE INDEX web_session_user ON web_session (user_id);
CREATE TABLE web_tariff (
  id ${id},
  code ${key} NOT NULL,
  name TEXT NOT NULL,
  currency TEXT NOT NULL,
  minor_digits ${int} NOT NULL,
  tz TEXT NOT NULL,
  effective_from ${key} NOT NULL,
  standing_milli_per_day ${int} NOT NULL,
  vat_basis_points ${int} NOT NULL,
  bands_json TEXT NOT NULL,
  schedule_json TEXT,
  created_at_ms ${int} NOT NULL,
  created_by TEXT NOT NULL,
  UNIQUE (code, effective_from)
)${strict};
CREATE TABLE web_account (
  household ${key} PRIMARY KEY,
  account_number ${key} NOT NULL UNIQUE,
  tariff_code ${key},
  created_at_ms ${int} NOT NULL
)${strict};
CREATE TABLE web_audit (
  id ${id},
  at_ms ${int} NOT NULL,
  user_id ${int},
  username TEXT NOT NULL,
  action ${key} NOT NULL,
  target TEXT NOT NULL,
  outcome TEXT NOT NULL,
  ip TEXT NOT NULL,
  detail TEXT NOT NULL,
  prev_hash TEXT NOT NULL,
  hash TEXT NOT NULL
)${strict};
CREATE INDEX web_audit_at ON web_audit (at_ms);
CREATE TABLE web_setting (
  name ${key} PRIMARY KEY,
  value TEXT NOT NULL
)${strict};
`;
}

/** Every web migration, in order. */
export const WEB_MIGRATIONS: readonly Migration[] = [
  { version: 1, description: 'users, sessions, tariffs, billing accounts, audit log, settings', sqlite: v1('sqlite'), postgres: v1('postgres') },
];

/** The web schema version this code expects. */
export const WEB_SCHEMA_VERSION = WEB_MIGRATIONS[WEB_MIGRATIONS.length - 1]!.version;

/**
 * Brings the web tables to {@link WEB_SCHEMA_VERSION} (mdms/store/migrations.ts's runner, with the
 * `web_schema_version` table); refuses a database newer than this code.
 * @example
 * ```ts
 * await migrateWeb(openSqlite('mdms.sqlite'));
 * ```
 */
export function migrateWeb(driver: Driver, now: () => number = Date.now): Promise<number> {
  return runMigrations(driver, { table: 'web_schema_version', what: 'web schema', migrations: WEB_MIGRATIONS }, now);
}
