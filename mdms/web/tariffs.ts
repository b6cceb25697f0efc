/**
 * Tariff versions: append-only. A price change is a new version with a later effective date; a version can
 * be withdrawn only while it has not taken effect (so every bill ever shown can be reproduced).
 *
 * A version may carry the band schedule (the PES tariff file, `pes/tariff.ts` format) for people to read on
 * the bill; when it does, it must price exactly the bands the schedule defines. Each band has a unit rate and a
 * feed-in rate (`feedInMilliPerKwh`, paid for energy exported in that band; 0 when not given).
 * @module
 */
import type { Driver } from '../store/driver.js';
import { parseTariff, type Tariff } from '../../lib/tariff.js';
import { BillingError, checkTariffVersion, effectiveStart, type BandPrice, type TariffVersion } from '../../lib/billing.js';
import { int, text, textOrNull } from './rows.js';

/** A stored version with its schedule and provenance. */
export interface StoredTariff extends TariffVersion {
  schedule: Tariff | null;
  createdAtMs: number;
  createdBy: string;
}

/** What a new version needs. */
export type NewTariff = Omit<TariffVersion, 'id'> & { schedule?: unknown };

export const TARIFF_CODE = /^[a-z0-9][a-z0-9_-]{0,31}$/;

const row = (r: Record<string, unknown>): StoredTariff => ({
  id: int(r.id, 'tariff id'),
  code: text(r.code, 'code'),
  name: text(r.name, 'name'),
  currency: text(r.currency, 'currency'),
  minorDigits: int(r.minor_digits, 'minor_digits'),
  tz: text(r.tz, 'tz'),
  effectiveFrom: text(r.effective_from, 'effective_from'),
  standingMilliPerDay: int(r.standing_milli_per_day, 'standing charge'),
  vatBasisPoints: int(r.vat_basis_points, 'vat'),
  // Versions stored before feed-in prices existed pay nothing for feed-in.
  bands: (JSON.parse(text(r.bands_json, 'bands')) as BandPrice[]).map((b) => ({ band: b.band, priceMilliPerKwh: b.priceMilliPerKwh, feedInMilliPerKwh: b.feedInMilliPerKwh ?? 0 })),
  schedule: ((s) => (s === null ? null : parseTariff(JSON.parse(s))))(textOrNull(r.schedule_json, 'schedule')),
  createdAtMs: int(r.created_at_ms, 'created_at_ms'),
  createdBy: text(r.created_by, 'created_by'),
});

/**
 * The tariff repository.
 * @example
 * ```ts
 * const tariffs = new Tariffs(driver);
 * await tariffs.create({ code: 'tou', name: 'TOU', currency: 'GBP', minorDigits: 2, tz: 'Europe/London',
 *   effectiveFrom: '2024-01-01', standingMilliPerDay: 53350, vatBasisPoints: 500,
 *   bands: [{ band: 'peak', priceMilliPerKwh: 30000 }, { band: 'offpeak', priceMilliPerKwh: 15000 }] }, 'admin');
 * ```
 */
export class Tariffs {
  constructor(
    private readonly db: Driver,
    private readonly now: () => number = Date.now,
  ) {}

  /** Adds a version; throws {@link BillingError} for an invalid one or a clash with the code's other versions. */
  async create(t: NewTariff, createdBy: string): Promise<StoredTariff> {
    if (typeof t.code !== 'string' || !TARIFF_CODE.test(t.code)) throw new BillingError('tariff: code must be 1..32 lower-case letters, digits, - or _');
    if (typeof t.name !== 'string' || t.name.trim().length === 0 || t.name.length > 80) throw new BillingError('tariff: name must have 1..80 characters');
    checkTariffVersion({ ...t, id: 0 });
    let schedule: Tariff | null = null;
    if (t.schedule !== undefined && t.schedule !== null) {
      try {
        schedule = parseTariff(t.schedule);
      } catch (e) {
        throw new BillingError(`tariff schedule: ${(e as Error).message}`);
      }
      const priced = new Set(t.bands.map((b) => b.band));
      const defined = new Set(schedule.bands.map((b) => b.name));
      if (priced.size !== defined.size || [...defined].some((b) => !priced.has(b))) {
        throw new BillingError(`tariff: the prices (${[...priced].join(', ')}) must cover exactly the schedule's bands (${[...defined].join(', ')})`);
      }
    }
    return this.db.transaction(async (tx) => {
      await tx.lock(`web_tariff:${t.code}`);
      const others = (await tx.query('SELECT * FROM web_tariff WHERE code = ?', [t.code])).map(row);
      for (const o of others) {
        if (o.effectiveFrom === t.effectiveFrom) throw new BillingError(`tariff ${t.code} already has a version effective ${t.effectiveFrom}`);
        if (o.currency !== t.currency || o.minorDigits !== t.minorDigits) throw new BillingError(`tariff ${t.code} is priced in ${o.currency}; every version must use it`);
      }
      const [r] = await tx.query(
        `INSERT INTO web_tariff (code, name, currency, minor_digits, tz, effective_from, standing_milli_per_day, vat_basis_points, bands_json, schedule_json, created_at_ms, created_by)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING *`,
        [
          t.code,
          t.name.trim(),
          t.currency,
          t.minorDigits,
          t.tz,
          t.effectiveFrom,
          t.standingMilliPerDay,
          t.vatBasisPoints,
          JSON.stringify(t.bands.map((b) => ({ band: b.band, priceMilliPerKwh: b.priceMilliPerKwh, feedInMilliPerKwh: b.feedInMilliPerKwh ?? 0 }))),
          schedule ? JSON.stringify(t.schedule) : null,
          this.now(),
          createdBy,
        ],
      );
      return row(r!);
    });
  }

  async list(): Promise<StoredTariff[]> {
    return (await this.db.query('SELECT * FROM web_tariff ORDER BY code, effective_from', [])).map(row);
  }

  async get(id: number): Promise<StoredTariff | null> {
    const [r] = await this.db.query('SELECT * FROM web_tariff WHERE id = ?', [id]);
    return r ? row(r) : null;
  }

  /** Every version of one tariff, oldest first. */
  async versions(code: string): Promise<StoredTariff[]> {
    return (await this.db.query('SELECT * FROM web_tariff WHERE code = ? ORDER BY effective_from', [code])).map(row);
  }

  /** Distinct tariff codes. */
  async codes(): Promise<string[]> {
    return (await this.db.query('SELECT DISTINCT code FROM web_tariff ORDER BY code', [])).map((r) => text(r.code, 'code'));
  }

  /** Withdraws a version that has not yet taken effect; throws {@link BillingError} otherwise. */
  async withdraw(id: number): Promise<StoredTariff> {
    return this.db.transaction(async (tx) => {
      const [r] = await tx.query('SELECT * FROM web_tariff WHERE id = ?', [id]);
      if (!r) throw new BillingError(`no tariff version ${id}`);
      const t = row(r);
      if (effectiveStart(t) <= Math.floor(this.now() / 1000)) {
        throw new BillingError(`tariff version ${id} took effect on ${t.effectiveFrom}; bills depend on it, so it cannot be withdrawn (add a new version instead)`);
      }
      await tx.run('DELETE FROM web_tariff WHERE id = ?', [id]);
      return t;
    });
  }
}
