/**
 * Where a reading goes: its neighbourhood interval (aligned to the Unix epoch), its billing period (aligned
 * to local midnight / the 1st of the month / local hours in the billing time zone) and its tariff band (by
 * local start time in the tariff's zone). A reading's window is the one containing its START time.
 * @module
 */
import { DateTime } from 'luxon';
import type { BillingPeriod } from './billing-period.js';
import { bandOfLocal, type Tariff } from './tariff.js';

export interface BillingSlot {
  /** Billing period start and end, Unix seconds. */
  start: number;
  end: number;
  band: string;
}

const CACHE_MAX = 200_000;

/**
 * Window arithmetic for one PES configuration. `Nh` billing periods are aligned to the Unix epoch (UTC).
 * Billing slots are cached per UTC minute: every real time zone
 * offset since 1970 is a whole number of minutes and rules are `HH:MM`, so all seconds of one UTC minute
 * share their period and band.
 * @example
 * ```ts
 * const cal = new Calendar(900, { unit: 'day', count: 1 }, 'Europe/London', tariff);
 * cal.intervalStart(1700000123); // 1699999200
 * cal.billing(1700000123);       // { start, end, band: 'peak' }
 * ```
 */
export class Calendar {
  private readonly cache = new Map<number, BillingSlot>();

  constructor(
    readonly intervalS: number,
    readonly period: BillingPeriod,
    readonly billingTz: string,
    readonly tariff: Tariff,
  ) {
    if (!Number.isInteger(intervalS) || intervalS < 60 || intervalS > 86400 || 86400 % intervalS !== 0) {
      throw new RangeError('interval must be 1 minute .. 1 day and divide a day');
    }
    if (!DateTime.local({ zone: billingTz }).isValid) throw new RangeError(`unknown time zone ${billingTz}`);
  }

  /** Start of the neighbourhood interval containing `t`. */
  intervalStart(t: number): number {
    return t - (t % this.intervalS);
  }

  /** Billing period and band of time `t`. */
  billing(t: number): BillingSlot {
    const minute = Math.floor(t / 60);
    let slot = this.cache.get(minute);
    if (!slot) {
      if (this.cache.size >= CACHE_MAX) this.cache.clear();
      slot = this.compute(minute * 60);
      this.cache.set(minute, slot);
    }
    return slot;
  }

  /** End of the billing period that starts at `start`. */
  billingEnd(start: number): number {
    return this.billing(start).end;
  }

  private compute(t: number): BillingSlot {
    const local = DateTime.fromSeconds(t, { zone: this.billingTz });
    let s: DateTime;
    let e: DateTime;
    if (this.period.unit === 'month') {
      s = local.startOf('month');
      e = s.plus({ months: 1 });
    } else if (this.period.unit === 'day') {
      s = local.startOf('day');
      e = s.plus({ days: 1 });
    } else {
      // Nh periods are a demo convenience: aligned to the Unix epoch (UTC), so DST never bends them.
      const len = this.period.count * 3600;
      const start = t - (t % len);
      s = DateTime.fromSeconds(start, { zone: 'UTC' });
      e = DateTime.fromSeconds(start + len, { zone: 'UTC' });
    }
    const bl = this.tariff.tz === this.billingTz ? local : DateTime.fromSeconds(t, { zone: this.tariff.tz });
    return { start: s.toSeconds(), end: e.toSeconds(), band: bandOfLocal(this.tariff, bl.weekday, bl.hour * 60 + bl.minute) };
  }
}
