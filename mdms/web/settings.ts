/**
 * Settings an administrator can change (name on the bills, display time zone, default tariff), plus the
 * app's own secrets (the CSRF HMAC key), kept in the database so that they survive restarts and are shared
 * by every MDMS process on the same database. Secrets are never returned by {@link Settings.all}.
 * @module
 */
import { randomBytes } from 'node:crypto';
import { IANAZone } from 'luxon';
import type { Driver } from '../store/driver.js';
import { text } from './rows.js';

/** What an administrator sets. */
export interface SettingValues {
  /** Shown in the header and on every bill. */
  utilityName: string;
  /** Printed at the bottom of bills (address, contact, regulator). */
  billFooter: string;
  /** IANA zone in which pages show times and read dates. */
  timezone: string;
  /** Tariff code of accounts without their own; empty = none. */
  defaultTariff: string;
}

export const DEFAULT_SETTINGS: Readonly<SettingValues> = Object.freeze({
  utilityName: 'Smarter Metering Utility',
  billFooter: 'Amounts are computed from the energy released by the Privacy Enhancing System for each billing period and band.',
  timezone: 'UTC',
  defaultTariff: '',
});

const KEYS = Object.keys(DEFAULT_SETTINGS) as (keyof SettingValues)[];

/**
 * Checks a partial settings change; throws a `TypeError` naming the field.
 * @example
 * ```ts
 * checkSettings({ timezone: 'Europe/London' });
 * ```
 */
export function checkSettings(s: Partial<SettingValues>): Partial<SettingValues> {
  if (s.utilityName !== undefined && (s.utilityName.trim().length === 0 || s.utilityName.length > 80)) throw new TypeError('utility name must have 1..80 characters');
  if (s.billFooter !== undefined && s.billFooter.length > 500) throw new TypeError('bill footer may have at most 500 characters');
  if (s.timezone !== undefined && !IANAZone.isValidZone(s.timezone)) throw new TypeError(`time zone ${JSON.stringify(s.timezone.slice(0, 40))} is not an IANA zone`);
  if (s.defaultTariff !== undefined && s.defaultTariff !== '' && !/^[a-z0-9][a-z0-9_-]{0,31}$/.test(s.defaultTariff)) throw new TypeError('default tariff must be a tariff code');
  return s;
}

/**
 * The settings repository.
 * @example
 * ```ts
 * const settings = new Settings(driver);
 * (await settings.all()).timezone;
 * ```
 */
export class Settings {
  constructor(private readonly db: Driver) {}

  async all(): Promise<SettingValues> {
    const out: SettingValues = { ...DEFAULT_SETTINGS };
    for (const r of await this.db.query("SELECT name, value FROM web_setting WHERE name NOT LIKE 'secret.%'", [])) {
      const k = text(r.name, 'setting') as keyof SettingValues;
      if (KEYS.includes(k)) out[k] = text(r.value, 'setting value');
    }
    return out;
  }

  /** Stores a (checked) partial change; returns the new values. */
  async set(change: Partial<SettingValues>): Promise<SettingValues> {
    checkSettings(change);
    await this.db.transaction(async (tx) => {
      for (const k of KEYS) {
        const v = change[k];
        if (v === undefined) continue;
        await tx.run('INSERT INTO web_setting (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value', [k, v]);
      }
    });
    return this.all();
  }

  /** A random secret created on first use and kept (`secret.<name>`); 32 bytes, base64url. */
  async secret(name: string): Promise<string> {
    const key = `secret.${name}`;
    await this.db.run('INSERT INTO web_setting (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING', [key, randomBytes(32).toString('base64url')]);
    const [r] = await this.db.query('SELECT value FROM web_setting WHERE name = ?', [key]);
    return text(r?.value, 'secret');
  }
}
