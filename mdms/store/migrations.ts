/**
 * Versioned schema migrations, one entry per version, never edited once released (add a new version instead).
 * The applied version is recorded in `schema_version`; {@link migrate} applies what is missing in one
 * transaction (PostgreSQL takes an advisory lock so two MDMS processes starting together do not race).
 *
 * Column names carry their unit (`start_s`, `end_s`, `energy_wh`, `received_at_ms`); `end` is also a reserved
 * word in SQL, which is one more reason not to name a column after it. Keys sort byte-wise in both back ends
 * (`COLLATE "C"` in PostgreSQL, SQLite's default BINARY), so exports are identical whichever store wrote them.
 * @module
 */
import type { Driver } from './driver.js';

/** One schema version: the DDL for each dialect. */
export interface Migration {
  version: number;
  description: string;
  sqlite: string;
  postgres: string;
}

const table = (d: 'sqlite' | 'postgres'): string => {
  const int = d === 'sqlite' ? 'INTEGER' : 'BIGINT';
  const key = d === 'sqlite' ? 'TEXT' : 'TEXT COLLATE "C"';
  const strict = d === 'sqlite' ? ' STRICT' : '';
  return `
CREATE TABLE neighbourhood_aggregate (
  neighbourhood ${key} NOT NULL,
  start_s ${int} NOT NULL,
  end_s ${int} NOT NULL,
  revision ${int} NOT NULL CHECK (revision >= 0),
  meters ${int} NOT NULL CHECK (meters >= 0),
  energy_wh ${int} NOT NULL,
  received_at_ms ${int} NOT NULL,
  PRIMARY KEY (neighbourhood, start_s, revision),
  CHECK (end_s > start_s)
)${strict};
CREATE INDEX neighbourhood_aggregate_start ON neighbourhood_aggregate (start_s);
CREATE TABLE billing_aggregate (
  household ${key} NOT NULL,
  start_s ${int} NOT NULL,
  end_s ${int} NOT NULL,
  band ${key} NOT NULL,
  revision ${int} NOT NULL CHECK (revision >= 0),
  energy_wh ${int} NOT NULL,
  received_at_ms ${int} NOT NULL,
  PRIMARY KEY (household, start_s, band, revision),
  CHECK (end_s > start_s)
)${strict};
CREATE INDEX billing_aggregate_period ON billing_aggregate (household, start_s, revision);
CREATE INDEX billing_aggregate_start ON billing_aggregate (start_s);
`;
};

/**
 * Version 2 (protocol v2): the export register and the DP ledger on the aggregates, the PES's policy statements
 * and what the ingest itself enforces. Rows stored before keep export 0 and no ledger.
 */
const v2 = (d: 'sqlite' | 'postgres'): string => {
  const int = d === 'sqlite' ? 'INTEGER' : 'BIGINT';
  const real = d === 'sqlite' ? 'REAL' : 'DOUBLE PRECISION';
  const key = d === 'sqlite' ? 'TEXT' : 'TEXT COLLATE "C"';
  const strict = d === 'sqlite' ? ' STRICT' : '';
  // SQLite adds a column with its constraints; PostgreSQL wants a table constraint for the pair.
  const pair = '(dp_epsilon IS NULL) = (dp_spent IS NULL) AND (dp_epsilon IS NULL OR (dp_epsilon > 0 AND dp_spent >= dp_epsilon))';
  return `
ALTER TABLE neighbourhood_aggregate ADD COLUMN export_wh ${int} NOT NULL DEFAULT 0;
ALTER TABLE neighbourhood_aggregate ADD COLUMN dp_epsilon ${real};
${d === 'sqlite' ? `ALTER TABLE neighbourhood_aggregate ADD COLUMN dp_spent ${real} CHECK (${pair});` : `ALTER TABLE neighbourhood_aggregate ADD COLUMN dp_spent ${real};
ALTER TABLE neighbourhood_aggregate ADD CONSTRAINT neighbourhood_aggregate_dp CHECK (${pair});`}
ALTER TABLE billing_aggregate ADD COLUMN export_wh ${int} NOT NULL DEFAULT 0;
CREATE TABLE pes_policy (
  pes ${key} PRIMARY KEY,
  at_s ${int} NOT NULL,
  k ${int} NOT NULL,
  revision_k ${int} NOT NULL,
  membership_guard ${int} NOT NULL CHECK (membership_guard IN (0, 1)),
  dp_epsilon ${real},
  counters_json TEXT NOT NULL,
  received_at_ms ${int} NOT NULL
)${strict};
CREATE TABLE ingest_policy (
  id ${int} PRIMARY KEY CHECK (id = 1),
  k ${int} NOT NULL,
  min_billing_period_s ${int} NOT NULL,
  fleet_checked ${int} NOT NULL CHECK (fleet_checked IN (0, 1)),
  recorded_at_ms ${int} NOT NULL
)${strict};
`;
};

/**
 * Version 3 (end-to-end mode): the halves of an aggregate waiting for their counterpart (the PES's release or
 * the guardian's partial decryption, as they arrived: sealed to the MDMS, base64), so that one acknowledged
 * before its counterpart arrived survives an MDMS crash, and a marker per combined pair (`combined`, no payload),
 * so that a copy of a half published again after a crash is known as a duplicate (mdms/e2e-ingest.ts).
 */
const v3 = (d: 'sqlite' | 'postgres'): string => {
  const int = d === 'sqlite' ? 'INTEGER' : 'BIGINT';
  const strict = d === 'sqlite' ? ' STRICT' : '';
  return `
CREATE TABLE e2e_pending (
  ciphertext_id TEXT NOT NULL,
  half TEXT NOT NULL CHECK (half IN ('release', 'partial', 'combined')),
  topic TEXT NOT NULL,
  payload_b64 TEXT NOT NULL,
  received_at_ms ${int} NOT NULL,
  PRIMARY KEY (ciphertext_id, half)
)${strict};
`;
};

/**
 * Version 4: an index on when each waiting half or combined marker arrived, so that pruning them past the
 * retention (mdms/e2e-ingest.ts, `Store.pruneHalves`) does not scan the table.
 */
const v4 = 'CREATE INDEX e2e_pending_received ON e2e_pending (received_at_ms);';

/** Every migration, in order. */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: 'neighbourhood and billing aggregates, every revision kept',
    sqlite: table('sqlite'),
    postgres: table('postgres'),
  },
  {
    version: 2,
    description: 'export per neighbourhood window and per billing band, the DP ledger, PES policy statements, the ingest policy',
    sqlite: v2('sqlite'),
    postgres: v2('postgres'),
  },
  {
    version: 3,
    description: 'end-to-end mode: releases and partials waiting for their counterpart',
    sqlite: v3('sqlite'),
    postgres: v3('postgres'),
  },
  {
    version: 4,
    description: 'end-to-end mode: index the waiting halves and combined markers by arrival, for pruning',
    sqlite: v4,
    postgres: v4,
  },
];

/** The schema version this code expects. */
export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]!.version;

/** A list of migrations and the table that records which of them a database has. */
export interface MigrationSet {
  /** Version table name (a constant identifier: never from input). */
  table: 'schema_version' | 'web_schema_version';
  /** What the set covers, for the "newer than this MDMS" error. */
  what: string;
  migrations: readonly Migration[];
}

/**
 * Brings a database to the last version of `set` in one transaction (PostgreSQL takes an advisory lock on the
 * table name, so two MDMS processes starting together do not race); refuses a database newer than this code.
 * The one runner of the MDMS: the store's aggregates and the web app's tables each have their own set.
 * @example
 * ```ts
 * const version = await runMigrations(driver, { table: 'schema_version', what: 'database schema', migrations: MIGRATIONS }, Date.now);
 * ```
 */
export async function runMigrations(driver: Driver, set: MigrationSet, now: () => number): Promise<number> {
  const latest = set.migrations[set.migrations.length - 1]!.version;
  const int = driver.dialect === 'sqlite' ? 'INTEGER' : 'BIGINT';
  return driver.transaction(async (tx) => {
    await tx.lock(set.table);
    await tx.exec(`CREATE TABLE IF NOT EXISTS ${set.table} (version ${int} PRIMARY KEY, description TEXT NOT NULL, applied_at_ms ${int} NOT NULL)`);
    const [row] = await tx.query(`SELECT max(version) AS v FROM ${set.table}`, []);
    const current = row?.v == null ? 0 : Number(row.v);
    if (current > latest) throw new Error(`${set.what} version ${current} is newer than this MDMS understands (${latest}); upgrade the MDMS`);
    for (const m of set.migrations) {
      if (m.version <= current) continue;
      await tx.exec(m[driver.dialect]);
      await tx.run(`INSERT INTO ${set.table} (version, description, applied_at_ms) VALUES (?, ?, ?)`, [m.version, m.description, now()]);
    }
    return latest;
  });
}

/**
 * Brings the store's tables to {@link SCHEMA_VERSION}; refuses a database newer than this code.
 * @example
 * ```ts
 * const version = await migrate(driver, Date.now);
 * ```
 */
export function migrate(driver: Driver, now: () => number): Promise<number> {
  return runMigrations(driver, { table: 'schema_version', what: 'database schema', migrations: MIGRATIONS }, now);
}
