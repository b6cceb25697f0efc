/**
 * The web app's repositories over one {@link Driver}, after migrating the web tables.
 * @module
 */
import type { Driver } from '../store/driver.js';
import { Accounts } from './accounts.js';
import { AuditLog, type AuditEvent } from './audit.js';
import { IssuedBills } from './issued.js';
import { migrateWeb } from './migrations.js';
import { QualityFindings } from './quality.js';
import { Settings } from './settings.js';
import { Tariffs } from './tariffs.js';
import { DEFAULT_SESSION_POLICY, Users, type SessionPolicy } from './users.js';

/** Every web repository. */
export interface WebDb {
  driver: Driver;
  users: Users;
  tariffs: Tariffs;
  accounts: Accounts;
  audit: AuditLog;
  settings: Settings;
  /** Issued bills and credit/debit notes (insert-only). */
  bills: IssuedBills;
  /** Data-quality findings and gap estimates (apart from the aggregates). */
  quality: QualityFindings;
}

/** Options of {@link openWebDb}. */
export interface WebDbOptions {
  /** Clock (tests). Default `Date.now`. */
  now?: () => number;
  sessions?: SessionPolicy;
  /** Called after each audit entry is committed (metrics). */
  onAudit?: (e: AuditEvent) => void;
}

/**
 * Migrates the web tables and returns the repositories.
 * @example
 * ```ts
 * const web = await openWebDb(openSqlite('mdms.sqlite'));
 * await web.users.count();
 * ```
 */
export async function openWebDb(driver: Driver, opts: WebDbOptions = {}): Promise<WebDb> {
  const now = opts.now ?? Date.now;
  await migrateWeb(driver, now);
  return {
    driver,
    users: new Users(driver, now, opts.sessions ?? DEFAULT_SESSION_POLICY),
    tariffs: new Tariffs(driver, now),
    accounts: new Accounts(driver, now),
    audit: new AuditLog(driver, now, opts.onAudit),
    settings: new Settings(driver),
    bills: new IssuedBills(driver, now),
    quality: new QualityFindings(driver, now),
  };
}
