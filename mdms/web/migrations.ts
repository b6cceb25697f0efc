/**
 * The web application's own tables (users, sessions, tariffs, billing accounts, audit log, settings), next
 * to the store's aggregates in the same database, through the same {@link Driver}. They have their own
 * migration list and their own version table (`web_schema_version`), so they never collide with the store's
 * `schema_version`. Migrations are append-only: never edit a released one, add a version.
 *
 * Nothing here holds a reading or anything finer than the store's billing periods: the web app only adds
 * who may look, what they looked at, the prices, and what it derived from the aggregates (data-quality
 * findings and estimates, kept in tables of their own so the received aggregates stay as the PES sent them).
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

/**
 * Issued bills and credit/debit notes, and their number series. Immutable in the database itself: UPDATE and
 * DELETE of a document fail (a correction is a note); a series counter only moves forward one at a time and is
 * never deleted; a document must carry its series' current number (so numbers have no gaps and no reuse).
 */
function v2(d: 'sqlite' | 'postgres'): string {
  const int = d === 'sqlite' ? 'INTEGER' : 'BIGINT';
  const id = d === 'sqlite' ? 'INTEGER PRIMARY KEY AUTOINCREMENT' : 'BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY';
  const key = d === 'sqlite' ? 'TEXT' : 'TEXT COLLATE "C"';
  const strict = d === 'sqlite' ? ' STRICT' : '';
  const tables = `
CREATE TABLE web_bill_series (
  series ${key} PRIMARY KEY,
  last_seq ${int} NOT NULL CHECK (last_seq > 0)
)${strict};
CREATE TABLE web_bill (
  id ${id},
  number ${key} NOT NULL UNIQUE,
  kind ${key} NOT NULL CHECK (kind IN ('bill', 'credit', 'debit')),
  series ${key} NOT NULL REFERENCES web_bill_series (series),
  seq ${int} NOT NULL,
  refers_to ${int} REFERENCES web_bill (id),
  account_number ${key} NOT NULL,
  household ${key} NOT NULL,
  period_start ${int} NOT NULL,
  period_end ${int} NOT NULL,
  revision ${int} NOT NULL,
  tariff_code ${key} NOT NULL,
  tariff_ids TEXT NOT NULL,
  currency TEXT NOT NULL,
  minor_digits ${int} NOT NULL,
  bands_json TEXT NOT NULL,
  lines_json TEXT NOT NULL,
  vat_json TEXT NOT NULL,
  subtotal_minor ${int} NOT NULL,
  vat_minor ${int} NOT NULL,
  total_minor ${int} NOT NULL,
  issued_at_ms ${int} NOT NULL,
  issued_by TEXT NOT NULL,
  UNIQUE (series, seq),
  UNIQUE (household, period_start, revision),
  CHECK ((kind = 'bill') = (refers_to IS NULL))
)${strict};
CREATE UNIQUE INDEX web_bill_one_per_period ON web_bill (household, period_start) WHERE kind = 'bill';
CREATE INDEX web_bill_period ON web_bill (period_start);
`;
  if (d === 'sqlite') {
    return `${tables}
CREATE TRIGGER web_bill_no_update BEFORE UPDATE ON web_bill BEGIN SELECT RAISE(ABORT, 'issued bills and notes are immutable: issue a credit or debit note'); END;
CREATE TRIGGER web_bill_no_delete BEFORE DELETE ON web_bill BEGIN SELECT RAISE(ABORT, 'issued bills and notes are immutable: issue a credit or debit note'); END;
CREATE TRIGGER web_bill_numbered BEFORE INSERT ON web_bill
  WHEN NEW.seq IS NOT (SELECT last_seq FROM web_bill_series WHERE series = NEW.series)
  BEGIN SELECT RAISE(ABORT, 'a bill number must be the next of its series'); END;
CREATE TRIGGER web_bill_series_forward BEFORE UPDATE ON web_bill_series
  WHEN NEW.series IS NOT OLD.series OR NEW.last_seq IS NOT OLD.last_seq + 1
  BEGIN SELECT RAISE(ABORT, 'bill numbers only move forward, one at a time'); END;
CREATE TRIGGER web_bill_series_no_delete BEFORE DELETE ON web_bill_series BEGIN SELECT RAISE(ABORT, 'bill numbers are never reused'); END;
`;
  }
  return `${tables}
CREATE FUNCTION web_bill_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'issued bills and notes are immutable: issue a credit or debit note'; END $$;
CREATE TRIGGER web_bill_no_change BEFORE UPDATE OR DELETE ON web_bill FOR EACH ROW EXECUTE FUNCTION web_bill_immutable();
CREATE TRIGGER web_bill_no_truncate BEFORE TRUNCATE ON web_bill FOR EACH STATEMENT EXECUTE FUNCTION web_bill_immutable();
CREATE FUNCTION web_bill_numbered() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.seq IS DISTINCT FROM (SELECT last_seq FROM web_bill_series WHERE series = NEW.series) THEN
    RAISE EXCEPTION 'a bill number must be the next of its series';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER web_bill_numbered BEFORE INSERT ON web_bill FOR EACH ROW EXECUTE FUNCTION web_bill_numbered();
CREATE FUNCTION web_bill_series_forward() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP <> 'UPDATE' OR NEW.series IS DISTINCT FROM OLD.series OR NEW.last_seq IS DISTINCT FROM OLD.last_seq + 1 THEN
    RAISE EXCEPTION 'bill numbers only move forward, one at a time, and are never reused';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER web_bill_series_forward BEFORE UPDATE OR DELETE ON web_bill_series FOR EACH ROW EXECUTE FUNCTION web_bill_series_forward();
CREATE TRIGGER web_bill_series_no_truncate BEFORE TRUNCATE ON web_bill_series FOR EACH STATEMENT EXECUTE FUNCTION web_bill_immutable();
`;
}

function v3(d: 'sqlite' | 'postgres'): string {
  const int = d === 'sqlite' ? 'INTEGER' : 'BIGINT';
  const key = d === 'sqlite' ? 'TEXT' : 'TEXT COLLATE "C"';
  const strict = d === 'sqlite' ? ' STRICT' : '';
  return `
CREATE TABLE web_quality_finding (
  neighbourhood ${key} NOT NULL,
  start_s ${int} NOT NULL,
  end_s ${int} NOT NULL,
  rule ${key} NOT NULL,
  evidence_json TEXT NOT NULL,
  detected_at_ms ${int} NOT NULL,
  PRIMARY KEY (neighbourhood, start_s, rule)
)${strict};
CREATE INDEX web_quality_finding_rule ON web_quality_finding (rule, start_s);
CREATE TABLE web_estimate (
  neighbourhood ${key} NOT NULL,
  start_s ${int} NOT NULL,
  end_s ${int} NOT NULL,
  energy_wh ${int} NOT NULL CHECK (energy_wh >= 0),
  method TEXT NOT NULL,
  created_at_ms ${int} NOT NULL,
  PRIMARY KEY (neighbourhood, start_s)
)${strict};
`;
}

/** Issued documents record the energy fed in per band they billed (NULL for documents issued before: none). */
const v4 = 'ALTER TABLE web_bill ADD COLUMN export_bands_json TEXT;';

/** Every web migration, in order. */
export const WEB_MIGRATIONS: readonly Migration[] = [
  { version: 1, description: 'users, sessions, tariffs, billing accounts, audit log, settings', sqlite: v1('sqlite'), postgres: v1('postgres') },
  { version: 2, description: 'issued bills and credit/debit notes (immutable), bill number series', sqlite: v2('sqlite'), postgres: v2('postgres') },
  {
    version: 3,
    description: 'data-quality findings on neighbourhood windows, and estimates for missing windows (apart from the aggregates, never billed)',
    sqlite: v3('sqlite'),
    postgres: v3('postgres'),
  },
  { version: 4, description: 'issued bills and notes record the energy fed in per band', sqlite: v4, postgres: v4 },
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
