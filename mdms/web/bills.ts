/**
 * Bills from what the store holds: the latest revision of each billing period of an account's household,
 * priced under the account's tariff (or the default one). A bill over [from, to) covers the periods that lie
 * entirely inside it; a period that straddles an edge cannot be cut (the MDMS has nothing finer) and is
 * listed as left out, so the clerk widens the range rather than getting a silently partial bill.
 * @module
 */
import type { BillingRow, Store } from '../store/types.js';
import type { Account } from './accounts.js';
import { BillingError, priceBill, type Bill, type BillingPeriod } from '../../lib/billing.js';
import type { WebDb } from './db.js';
import type { StoredTariff } from './tariffs.js';

/** One stored billing period (latest revision) of a household. */
export interface StoredPeriod extends BillingPeriod {
  /** Wh fed in per band, bands with some only. */
  exportBands: Record<string, number>;
  revision: number;
  receivedAtMs: number;
}

/** A bill with what it was made from. */
export interface AccountBill {
  account: Account;
  tariffCode: string;
  versions: StoredTariff[];
  /** Periods inside [from, to), oldest first. */
  periods: StoredPeriod[];
  /** Periods overlapping an edge of [from, to), not billed. */
  leftOut: StoredPeriod[];
  bill: Bill;
}

/**
 * Groups band rows into periods (rows come sorted by household, start, band). `exportBands` holds the bands
 * with energy fed in (none: empty).
 * @example
 * ```ts
 * periodsOf(await store.latestBilling({ household: 'hh1' }));
 * ```
 */
export function periodsOf(rows: readonly BillingRow[]): StoredPeriod[] {
  const out: StoredPeriod[] = [];
  for (const r of rows) {
    let p = out[out.length - 1];
    if (!p || p.start !== r.start) {
      p = { start: r.start, end: r.end, revision: r.revision, receivedAtMs: r.receivedAtMs, bands: {}, exportBands: {} };
      out.push(p);
    }
    p.bands[r.band] = r.energyWh;
    if (r.exportWh !== 0) p.exportBands[r.band] = r.exportWh;
  }
  return out;
}

/**
 * What a run of bills can share: the default tariff and each tariff's versions, read once (a bill run over
 * every account would otherwise read them once per account).
 */
export interface BillContext {
  defaultTariff: string;
  versions: Map<string, StoredTariff[]>;
}

/**
 * Reads the shared context of a bill run.
 * @example
 * ```ts
 * const ctx = await billContext(web);
 * for (const a of accounts) await accountBill(store, web, a, from, to, ctx);
 * ```
 */
export async function billContext(web: WebDb): Promise<BillContext> {
  const versions = new Map<string, StoredTariff[]>();
  for (const v of await web.tariffs.list()) versions.set(v.code, [...(versions.get(v.code) ?? []), v]);
  return { defaultTariff: (await web.settings.all()).defaultTariff, versions };
}

/**
 * The tariff code an account is billed on; throws {@link BillingError} when there is none.
 * @example
 * ```ts
 * const code = await tariffCodeOf(web, account); // 'tou'
 * ```
 */
export async function tariffCodeOf(web: WebDb, account: Account, ctx?: BillContext): Promise<string> {
  const code = account.tariffCode ?? (ctx ? ctx.defaultTariff : (await web.settings.all()).defaultTariff);
  if (!code) throw new BillingError(`account ${account.accountNumber} has no tariff and no default tariff is set (Settings)`);
  return code;
}

/**
 * Bills an account over [from, to) (unix s). Throws {@link BillingError} when there is nothing to bill or no
 * tariff applies.
 * @example
 * ```ts
 * const { bill } = await accountBill(store, web, account, from, to);
 * ```
 */
export async function accountBill(store: Store, web: WebDb, account: Account, from: number, to: number, ctx?: BillContext): Promise<AccountBill> {
  const code = await tariffCodeOf(web, account, ctx);
  const versions = ctx ? (ctx.versions.get(code) ?? []) : await web.tariffs.versions(code);
  if (versions.length === 0) throw new BillingError(`tariff "${code}" has no versions`);
  const all = periodsOf(await store.latestBilling({ household: account.household, from, to }));
  const periods = all.filter((p) => p.start >= from && p.end <= to);
  const leftOut = all.filter((p) => p.start < from || p.end > to);
  if (periods.length === 0) {
    throw new BillingError(
      leftOut.length
        ? `no billing period lies entirely inside this range (${leftOut.length} straddle its edges: widen it)`
        : 'no billing data for this account in this range',
    );
  }
  return { account, tariffCode: code, versions, periods, leftOut, bill: priceBill(periods, versions) };
}

/** A period with its own price (or why it cannot be priced). */
export interface PricedPeriod extends StoredPeriod {
  totalMinor: number | null;
  energyWh: number;
  /** Energy fed in over every band. */
  exportWh: number;
  error: string | null;
}

/**
 * Each stored period of an account priced on its own (the account page's list of bills).
 * @example
 * ```ts
 * const rows = await pricedPeriods(store, web, account, { limit: 50 });
 * ```
 */
export async function pricedPeriods(
  store: Store,
  web: WebDb,
  account: Account,
  q: { from?: number; to?: number; limit?: number } = {},
): Promise<{ currency: string | null; minorDigits: number; periods: PricedPeriod[] }> {
  const periods = periodsOf(await store.latestBilling({ household: account.household, ...q }));
  let versions: StoredTariff[] = [];
  let tariffError: string | null = null;
  try {
    versions = await web.tariffs.versions(await tariffCodeOf(web, account));
    if (versions.length === 0) tariffError = 'the tariff has no versions';
  } catch (e) {
    if (!(e instanceof BillingError)) throw e;
    tariffError = e.message;
  }
  const priced = periods.map((p): PricedPeriod => {
    const energyWh = Object.values(p.bands).reduce((a, b) => a + b, 0);
    const exportWh = Object.values(p.exportBands).reduce((a, b) => a + b, 0);
    if (tariffError) return { ...p, energyWh, exportWh, totalMinor: null, error: tariffError };
    try {
      return { ...p, energyWh, exportWh, totalMinor: priceBill([p], versions).totalMinor, error: null };
    } catch (e) {
      if (!(e instanceof BillingError)) throw e;
      return { ...p, energyWh, exportWh, totalMinor: null, error: e.message };
    }
  });
  return { currency: versions[0]?.currency ?? null, minorDigits: versions[0]?.minorDigits ?? 2, periods: priced };
}
