/**
 * Test databases for the web app: a temp SQLite file, and PostgreSQL at 127.0.0.1:5432/test in a schema of
 * its own (FAILS when CI=true and PostgreSQL is unreachable; skipped otherwise).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openPostgres } from '../../../mdms/store/postgres.js';
import { openSqlite } from '../../../mdms/store/sqlite.js';
import type { Driver } from '../../../mdms/store/driver.js';

export const PG_URL = process.env.SM_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/** Whether PostgreSQL answers; throws under CI when it does not. */
export async function postgresReachable(): Promise<boolean> {
  const d = openPostgres(PG_URL, { connectTimeoutMs: 2000, max: 1 });
  try {
    await d.query('SELECT 1 AS x', []);
    return true;
  } catch (e) {
    if (process.env.CI === 'true') throw new Error(`PostgreSQL is required under CI and unreachable at ${PG_URL}: ${(e as Error).message}`);
    return false;
  } finally {
    await d.close();
  }
}

/** A fresh, empty test database; `cleanup` drops it. */
export interface TestDb {
  kind: 'sqlite' | 'postgres';
  /** What `openStore` takes. */
  url: string;
  schema?: string;
  driver: Driver;
  cleanup(): Promise<void>;
}

export function sqliteDb(): TestDb {
  const dir = mkdtempSync(join(tmpdir(), 'mdms-web-'));
  const url = join(dir, 'mdms.sqlite');
  const driver = openSqlite(url);
  return {
    kind: 'sqlite',
    url,
    driver,
    cleanup: async () => {
      await driver.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export function postgresDb(): TestDb {
  const schema = `web_${process.pid}_${Date.now().toString(36)}_${Math.floor(Math.random() * 1e6)}`;
  const driver = openPostgres(PG_URL, { schema });
  return {
    kind: 'postgres',
    url: PG_URL,
    schema,
    driver,
    cleanup: async () => {
      await driver.exec(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      await driver.close();
    },
  };
}
