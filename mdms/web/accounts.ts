/**
 * Billing accounts: the only identity the MDMS keeps for a household is a pseudonymous account number
 * (`SM-XXXX-XXXX`, random) mapped to the PES household key. Accounts are opened automatically for every
 * household the store or the fleet knows; a billing clerk chooses the tariff (none = the default tariff).
 * @module
 */
import { randomInt } from 'node:crypto';
import type { Driver } from '../store/driver.js';
import { int, text, textOrNull } from './rows.js';

/** One billing account. */
export interface Account {
  household: string;
  accountNumber: string;
  /** Tariff code, or `null` for the default tariff (a setting). */
  tariffCode: string | null;
  createdAtMs: number;
}

export const ACCOUNT_NUMBER = /^SM-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}$/;
const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

/**
 * A fresh random account number (40 bits, Crockford base 32: no I, L, O, U).
 * @example
 * ```ts
 * newAccountNumber(); // 'SM-7K2F-9QXD'
 * ```
 */
export function newAccountNumber(): string {
  const c = (): string => CROCKFORD[randomInt(32)]!;
  return `SM-${c()}${c()}${c()}${c()}-${c()}${c()}${c()}${c()}`;
}

const row = (r: Record<string, unknown>): Account => ({
  household: text(r.household, 'household'),
  accountNumber: text(r.account_number, 'account number'),
  tariffCode: textOrNull(r.tariff_code, 'tariff code'),
  createdAtMs: int(r.created_at_ms, 'created_at_ms'),
});

/**
 * The accounts repository.
 * @example
 * ```ts
 * const accounts = new Accounts(driver);
 * await accounts.ensure(await store.listHouseholds());
 * ```
 */
export class Accounts {
  constructor(
    private readonly db: Driver,
    private readonly now: () => number = Date.now,
  ) {}

  /** Opens an account for every household that has none (idempotent, safe against a concurrent process). */
  async ensure(households: Iterable<string>): Promise<number> {
    const known = new Set((await this.db.query('SELECT household FROM web_account', [])).map((r) => text(r.household, 'household')));
    let opened = 0;
    for (const hh of new Set(households)) {
      if (known.has(hh)) continue;
      for (let attempt = 0; ; attempt++) {
        try {
          opened += await this.db.run('INSERT INTO web_account (household, account_number, tariff_code, created_at_ms) VALUES (?, ?, NULL, ?) ON CONFLICT (household) DO NOTHING', [
            hh,
            newAccountNumber(),
            this.now(),
          ]);
          break;
        } catch (e) {
          // An account-number collision (1 in 2^40 per pair): draw again.
          if (attempt >= 3) throw e;
        }
      }
    }
    return opened;
  }

  async list(): Promise<Account[]> {
    return (await this.db.query('SELECT * FROM web_account ORDER BY account_number', [])).map(row);
  }

  async byNumber(accountNumber: string): Promise<Account | null> {
    const [r] = await this.db.query('SELECT * FROM web_account WHERE account_number = ?', [accountNumber]);
    return r ? row(r) : null;
  }

  async byHousehold(household: string): Promise<Account | null> {
    const [r] = await this.db.query('SELECT * FROM web_account WHERE household = ?', [household]);
    return r ? row(r) : null;
  }

  /** Puts an account on a tariff (`null`: the default one). */
  async setTariff(accountNumber: string, code: string | null): Promise<Account | null> {
    await this.db.run('UPDATE web_account SET tariff_code = ? WHERE account_number = ?', [code, accountNumber]);
    return this.byNumber(accountNumber);
  }
}
