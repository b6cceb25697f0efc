/**
 * Pricing household billing aggregates with time-of-use tariffs — the pure core of MDMS billing, shared with
 * the household app (its bill preview prices the household's own readings with this very function, so both
 * agree to the minor unit; the MDMS web app imports it from here). Browser-safe (luxon only). No floats: every
 * quantity is an integer and every product is taken in BigInt.
 *
 * Units
 * - energy: integer Wh (what the PES releases per household x billing period x band), imported and exported;
 * - unit rate: `priceMilliPerKwh`, thousandths of a minor unit per kWh (24.567 p/kWh -> 24567);
 * - feed-in rate: `feedInMilliPerKwh`, thousandths of a minor unit per kWh paid for energy fed in (default 0);
 * - standing charge: `standingMilliPerDay`, thousandths of a minor unit per day (53.35 p/day -> 53350);
 * - VAT: basis points (500 = 5 %);
 * - amounts: integer minor units (pence, cents).
 *
 * Rounding: each bill line is computed exactly (energy line = Wh x price / 10^6, feed-in line = -(Wh fed in x
 * feed-in rate) / 10^6, standing line = days x rate / 10^3) and rounded once, half to even (banker's rounding,
 * so a long run of half-unit lines does not drift one way; it is symmetric, so a feed-in line is exactly the
 * negative of the same energy bought at the same rate); the subtotal is the sum of the rounded lines; VAT is
 * computed once per VAT rate on the subtotal of the lines at that rate, rounded half to even; total = subtotal +
 * VAT. A customer can check every line with a pocket calculator from the figures printed on it.
 *
 * Feed-in (export): a band with energy fed in gets a feed-in line, a negative amount (a credit) at the band's
 * feed-in rate, under the same tariff version and pro-rating as the energy lines. VAT: the feed-in line carries
 * its version's VAT rate, so it is netted against consumption before VAT (as under the Dutch salderingsregeling
 * until 2027: VAT is due on the net); when the credit exceeds the charges, the VAT line is negative too and the
 * total is a credit. This keeps one rule for every line; a supplier that pays feed-in without VAT (a private
 * producer is no VAT trader) would need a VAT rate per line, which the tariff does not have yet.
 *
 * Tariff versions: a tariff (`code`) has versions, each effective from local midnight of `effectiveFrom` in
 * the version's time zone until the next version takes effect.
 *
 * Tariff change in the middle of a billing period: the MDMS only holds the energy per band over the whole
 * period (nothing finer — by design), so it cannot know how much was used before the change. It does what
 * suppliers do when a price changes between two meter readings: it pro-rates. Each band's energy is split
 * between the versions in proportion to the time each was in effect (seconds, so a 23-hour DST day weighs
 * 23/24 of a day, like the energy used in it), with the largest-remainder method so that the split Wh add up
 * to the period's Wh exactly. The bill shows the split lines, each with its own rate.
 *
 * Standing charge days: the number of local midnights (in the version's zone) inside the period [start, end).
 * A period from one local midnight to another therefore counts its calendar days whatever their length (a
 * DST day is one day), and consecutive periods never count a day twice or miss one.
 * @module
 */
import { DateTime, IANAZone } from 'luxon';

/** The price of one band in one tariff version. */
export interface BandPrice {
  /** Band name as the PES tariff names it (`peak`, `offpeak`, ...). */
  band: string;
  /** Thousandths of a minor unit per kWh (may be negative: some tariffs pay for off-peak use). */
  priceMilliPerKwh: number;
  /**
   * Thousandths of a minor unit paid per kWh fed in (exported) in this band; absent = 0. May be negative (a
   * supplier that charges for feed-in).
   */
  feedInMilliPerKwh?: number;
}

/** One version of a tariff: prices in effect from local midnight of `effectiveFrom`. */
export interface TariffVersion {
  id: number;
  /** The tariff (product) this version belongs to; accounts are on a code. */
  code: string;
  name: string;
  /** ISO 4217 code, e.g. `GBP`. */
  currency: string;
  /** Digits of the minor unit (GBP 2, JPY 0). */
  minorDigits: number;
  /** IANA zone in which effective dates and standing-charge days are read. */
  tz: string;
  /** `YYYY-MM-DD`, a local date in `tz`. */
  effectiveFrom: string;
  /** Thousandths of a minor unit per day. */
  standingMilliPerDay: number;
  /** VAT in basis points (0..10000). */
  vatBasisPoints: number;
  bands: BandPrice[];
}

/** One billing aggregate: a household's energy per band over [start, end) (unix s), imported and exported. */
export interface BillingPeriod {
  start: number;
  end: number;
  /** Imported Wh per band. */
  bands: Record<string, number>;
  /** Exported (fed-in) Wh per band; absent or a band missing = nothing fed in. */
  exportBands?: Record<string, number>;
}

interface LineBase {
  tariffId: number;
  tariffName: string;
  /** Part of the bill this line covers (unix s): earliest start, latest end of its segments. */
  from: number;
  to: number;
  vatBasisPoints: number;
  amountMinor: number;
}
/** Energy of one band priced under one tariff version. */
export interface EnergyLine extends LineBase {
  kind: 'energy';
  band: string;
  energyWh: number;
  priceMilliPerKwh: number;
}
/** Energy fed in (exported) in one band under one tariff version: a negative amount. */
export interface FeedInLine extends LineBase {
  kind: 'feedin';
  band: string;
  /** Wh fed in (positive). */
  energyWh: number;
  feedInMilliPerKwh: number;
}
/** Standing charge under one tariff version. */
export interface StandingLine extends LineBase {
  kind: 'standing';
  days: number;
  standingMilliPerDay: number;
}
export type BillLine = EnergyLine | FeedInLine | StandingLine;

/** A priced bill over one or more billing periods. */
export interface Bill {
  currency: string;
  minorDigits: number;
  from: number;
  to: number;
  /** Billing periods covered. */
  periods: number;
  /** Energy imported over all bands and periods. */
  energyWh: number;
  /** Energy fed in over all bands and periods. */
  exportWh: number;
  lines: BillLine[];
  subtotalMinor: number;
  vat: { basisPoints: number; baseMinor: number; amountMinor: number }[];
  vatMinor: number;
  totalMinor: number;
}

/**
 * A bill that cannot be computed (no tariff in effect, a band without a price, ...): a 4xx, not a 500.
 * @example
 * ```ts
 * throw new BillingError('no tariff version is in effect');
 * ```
 */
export class BillingError extends Error {
  override name = 'BillingError';
}

/**
 * Memoises a pure function of strings. Luxon's zone arithmetic costs tens to hundreds of microseconds per
 * call, and a bill run asks the same questions (the same periods, the same effective dates) for every
 * account. Bounded: cleared when it grows past 10 000 entries.
 */
function memo<T>(cache: Map<string, T>, key: string, f: () => T): T {
  let v = cache.get(key);
  if (v === undefined) {
    if (cache.size >= 10_000) cache.clear();
    v = f();
    cache.set(key, v);
  }
  return v;
}
const zoneValid = new Map<string, boolean>();
const startCache = new Map<string, number>();
const daysCache = new Map<string, number>();

const CURRENCY = /^[A-Z]{3}$/;
const DATE = /^\d{4}-\d{2}-\d{2}$/;
const BAND = /^[A-Za-z0-9_.-]{1,32}$/;
/** Largest magnitude accepted for a rate (10^6 minor units per kWh or per day): keeps every product far from 2^53. */
export const MAX_RATE_MILLI = 1_000_000_000;

/**
 * Checks a tariff version; throws {@link BillingError} naming the first problem.
 * @example
 * ```ts
 * checkTariffVersion({ id: 1, code: 'tou', name: 'TOU', currency: 'GBP', minorDigits: 2, tz: 'Europe/London',
 *   effectiveFrom: '2024-04-01', standingMilliPerDay: 53350, vatBasisPoints: 500,
 *   bands: [{ band: 'peak', priceMilliPerKwh: 30000 }, { band: 'offpeak', priceMilliPerKwh: 15000 }] });
 * ```
 */
export function checkTariffVersion(v: TariffVersion): TariffVersion {
  const bad = (m: string): never => {
    throw new BillingError(`tariff: ${m}`);
  };
  if (!CURRENCY.test(v.currency)) bad('currency must be an ISO 4217 code such as GBP');
  if (!Number.isInteger(v.minorDigits) || v.minorDigits < 0 || v.minorDigits > 4) bad('minor-unit digits must be 0..4');
  if (typeof v.tz !== 'string' || !memo(zoneValid, v.tz, () => IANAZone.isValidZone(v.tz))) bad(`time zone ${JSON.stringify(v.tz)} is not an IANA zone`);
  if (typeof v.effectiveFrom !== 'string' || !DATE.test(v.effectiveFrom) || Number.isNaN(effectiveStartOrNaN(v))) bad('effective date must be a valid YYYY-MM-DD date');
  if (!Number.isSafeInteger(v.standingMilliPerDay) || v.standingMilliPerDay < 0 || v.standingMilliPerDay > MAX_RATE_MILLI) {
    bad(`standing charge must be an integer 0..${MAX_RATE_MILLI} thousandths of a minor unit per day`);
  }
  if (!Number.isInteger(v.vatBasisPoints) || v.vatBasisPoints < 0 || v.vatBasisPoints > 10_000) bad('VAT must be 0..10000 basis points');
  if (!Array.isArray(v.bands) || v.bands.length === 0 || v.bands.length > 64) bad('a tariff needs 1..64 band prices');
  const seen = new Set<string>();
  for (const b of v.bands) {
    if (!BAND.test(b.band)) bad(`band names must match ${BAND.source}`);
    if (seen.has(b.band)) bad(`band "${b.band}" is priced twice`);
    seen.add(b.band);
    if (!Number.isSafeInteger(b.priceMilliPerKwh) || Math.abs(b.priceMilliPerKwh) > MAX_RATE_MILLI) {
      bad(`price of band "${b.band}" must be an integer of at most ${MAX_RATE_MILLI} thousandths of a minor unit per kWh`);
    }
    if (b.feedInMilliPerKwh !== undefined && (!Number.isSafeInteger(b.feedInMilliPerKwh) || Math.abs(b.feedInMilliPerKwh) > MAX_RATE_MILLI)) {
      bad(`feed-in price of band "${b.band}" must be an integer of at most ${MAX_RATE_MILLI} thousandths of a minor unit per kWh`);
    }
  }
  return v;
}

/**
 * Unix time (s) at which a version takes effect: local midnight of `effectiveFrom` in its zone.
 * @example
 * ```ts
 * effectiveStart({ ...v, tz: 'Europe/London', effectiveFrom: '2024-07-01' }); // 1719788400 (23:00Z the day before)
 * ```
 */
export function effectiveStart(v: Pick<TariffVersion, 'tz' | 'effectiveFrom'>): number {
  const s = effectiveStartOrNaN(v);
  if (Number.isNaN(s)) throw new BillingError(`invalid effective date ${v.effectiveFrom}`);
  return s;
}

function effectiveStartOrNaN(v: Pick<TariffVersion, 'tz' | 'effectiveFrom'>): number {
  return memo(startCache, `${v.tz}\u0000${v.effectiveFrom}`, () => {
    const d = DateTime.fromISO(v.effectiveFrom, { zone: v.tz }).startOf('day');
    return d.isValid ? Math.floor(d.toSeconds()) : NaN;
  });
}

/**
 * Rounds the exact fraction `num / den` (den > 0) to the nearest integer, halves to even.
 * @example
 * ```ts
 * roundHalfEven(5n, 2n); // 2n   (2.5 -> 2)
 * roundHalfEven(7n, 2n); // 4n   (3.5 -> 4)
 * roundHalfEven(-5n, 2n); // -2n
 * ```
 */
export function roundHalfEven(num: bigint, den: bigint): bigint {
  if (den <= 0n) throw new RangeError('denominator must be positive');
  let q = num / den; // truncates toward zero
  let r = num % den;
  if (r < 0n) {
    q -= 1n; // floor
    r += den;
  }
  const twice = 2n * r;
  if (twice > den || (twice === den && q % 2n !== 0n)) q += 1n;
  return q;
}

/**
 * Splits integer `total` in proportion to positive integer `weights` so that the parts add up to `total`
 * exactly (largest remainder; ties go to the earlier part). Negative totals split symmetrically.
 * @example
 * ```ts
 * apportion(10, [1, 1, 1]); // [4, 3, 3]
 * ```
 */
export function apportion(total: number, weights: readonly number[]): number[] {
  if (!Number.isSafeInteger(total)) throw new TypeError('total must be a safe integer');
  if (weights.length === 0 || weights.some((w) => !Number.isSafeInteger(w) || w <= 0)) throw new TypeError('weights must be positive integers');
  if (weights.length === 1) return [total];
  const sign = total < 0 ? -1n : 1n;
  const t = BigInt(total) * sign;
  const sum = weights.reduce((a, w) => a + BigInt(w), 0n);
  const parts = weights.map((w) => (t * BigInt(w)) / sum);
  const rems = weights.map((w, i) => ({ i, r: (t * BigInt(w)) % sum }));
  let left = t - parts.reduce((a, p) => a + p, 0n);
  rems.sort((a, b) => (a.r === b.r ? a.i - b.i : a.r > b.r ? -1 : 1));
  for (const { i } of rems) {
    if (left === 0n) break;
    parts[i]! += 1n;
    left -= 1n;
  }
  return parts.map((p) => Number(p * sign));
}

/**
 * Number of local midnights in [start, end) in `tz`: the standing-charge days of that span.
 * @example
 * ```ts
 * localDays(Date.UTC(2024, 2, 31) / 1000, Date.UTC(2024, 2, 31, 23) / 1000, 'Europe/London'); // 1 (the 23-hour DST day)
 * ```
 */
export function localDays(start: number, end: number, tz: string): number {
  if (end <= start) return 0;
  return memo(daysCache, `${tz}\u0000${start}\u0000${end}`, () => countMidnights(start, end, tz));
}

function countMidnights(start: number, end: number, tz: string): number {
  let d = DateTime.fromSeconds(start, { zone: tz }).startOf('day');
  if (d.toSeconds() < start) d = d.plus({ days: 1 }).startOf('day');
  let n = 0;
  while (d.toSeconds() < end) {
    n++;
    d = d.plus({ days: 1 }).startOf('day');
  }
  return n;
}

/**
 * The versions of one tariff in effect over [start, end): (version, segment start, segment end), in time order.
 * @example
 * ```ts
 * tariffSegments(start, end, versions); // [{ version, from, to }, ...]
 * ```
 */
export function tariffSegments(
  start: number,
  end: number,
  versions: readonly TariffVersion[],
): { version: TariffVersion; from: number; to: number }[] {
  return segmentsOf(start, end, sortVersions(versions));
}

function segmentsOf(start: number, end: number, sorted: readonly TariffVersion[]): { version: TariffVersion; from: number; to: number }[] {
  const out: { version: TariffVersion; from: number; to: number }[] = [];
  for (let i = 0; i < sorted.length; i++) {
    const from = Math.max(start, effectiveStart(sorted[i]!));
    const to = Math.min(end, i + 1 < sorted.length ? effectiveStart(sorted[i + 1]!) : Number.MAX_SAFE_INTEGER);
    if (from < to) out.push({ version: sorted[i]!, from, to });
  }
  if (out.length === 0 || out[0]!.from > start) {
    throw new BillingError(`no tariff version is in effect at ${new Date(start * 1000).toISOString()} (the first one takes effect ${sorted[0]?.effectiveFrom ?? 'never'})`);
  }
  return out;
}

function sortVersions(versions: readonly TariffVersion[]): TariffVersion[] {
  if (versions.length === 0) throw new BillingError('no tariff version to bill with');
  for (const v of versions) checkTariffVersion(v);
  const sorted = [...versions].sort((a, b) => effectiveStart(a) - effectiveStart(b));
  for (let i = 1; i < sorted.length; i++) {
    if (effectiveStart(sorted[i]!) === effectiveStart(sorted[i - 1]!)) throw new BillingError(`two versions of tariff ${sorted[i]!.code} take effect on ${sorted[i]!.effectiveFrom}`);
  }
  const c = sorted[0]!;
  for (const v of sorted) {
    if (v.currency !== c.currency || v.minorDigits !== c.minorDigits) throw new BillingError('every version of a tariff must use the same currency');
  }
  return sorted;
}

const toNumber = (v: bigint, what: string): number => {
  if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) throw new BillingError(`${what} is too large to represent`);
  return Number(v);
};

/**
 * Prices billing periods under the versions of one tariff: an energy line per band imported, a feed-in line
 * (negative) per band with energy fed in, a standing charge per version. Throws {@link BillingError} when a
 * period lies (partly) before the first version, when a band has no price, or when periods overlap.
 * @example
 * ```ts
 * const bill = priceBill([{ start, end, bands: { peak: 4200, offpeak: 6100 }, exportBands: { peak: 2500 } }], versions);
 * bill.totalMinor; // integer pence (negative: a credit)
 * ```
 */
export function priceBill(periods: readonly BillingPeriod[], versions: readonly TariffVersion[]): Bill {
  if (periods.length === 0) throw new BillingError('no billing periods to bill');
  const sorted = sortVersions(versions);
  const ps = [...periods].sort((a, b) => a.start - b.start);
  for (let i = 0; i < ps.length; i++) {
    const p = ps[i]!;
    if (!Number.isSafeInteger(p.start) || !Number.isSafeInteger(p.end) || p.end <= p.start) throw new BillingError('a billing period must end after it starts');
    if (i > 0 && p.start < ps[i - 1]!.end) throw new BillingError('billing periods overlap');
  }
  const order = new Map(sorted.map((v, i) => [v.id, i]));
  type Part = { v: TariffVersion; band: string; wh: bigint; from: number; to: number };
  const energy = new Map<string, Part>();
  const feedIn = new Map<string, Part>();
  const standing = new Map<number, { v: TariffVersion; days: number; from: number; to: number }>();
  let totalWh = 0n;
  let totalExportWh = 0n;
  for (const p of ps) {
    const segs = segmentsOf(p.start, p.end, sorted);
    const weights = segs.map((s) => s.to - s.from);
    /** Splits one band's Wh between the versions in effect and adds the parts to `into`. */
    const add = (into: Map<string, Part>, band: string, wh: number, what: string): void => {
      if (!Number.isSafeInteger(wh)) throw new BillingError(`${what} of band "${band}" must be an integer number of Wh`);
      const split = apportion(wh, weights);
      segs.forEach((s, i) => {
        if (!s.version.bands.some((b) => b.band === band)) {
          throw new BillingError(`tariff "${s.version.name}" (effective ${s.version.effectiveFrom}) has no price for band "${band}"${into === feedIn ? ' (energy fed in)' : ''}`);
        }
        const k = `${s.version.id}\u0000${band}`;
        const e = into.get(k) ?? { v: s.version, band, wh: 0n, from: s.from, to: s.to };
        e.wh += BigInt(split[i]!);
        e.from = Math.min(e.from, s.from);
        e.to = Math.max(e.to, s.to);
        into.set(k, e);
      });
    };
    for (const [band, wh] of Object.entries(p.bands)) {
      add(energy, band, wh, 'energy');
      totalWh += BigInt(wh);
    }
    // A band with nothing fed in gets no feed-in line (most bands of most households).
    for (const [band, wh] of Object.entries(p.exportBands ?? {})) {
      if (wh === 0) continue;
      add(feedIn, band, wh, 'energy fed in');
      totalExportWh += BigInt(wh);
    }
    for (const s of segs) {
      const st = standing.get(s.version.id) ?? { v: s.version, days: 0, from: s.from, to: s.to };
      st.days += localDays(s.from, s.to, s.version.tz);
      st.from = Math.min(st.from, s.from);
      st.to = Math.max(st.to, s.to);
      standing.set(s.version.id, st);
    }
  }
  const lines: BillLine[] = [];
  const bandRank = (v: TariffVersion, band: string): number => v.bands.findIndex((b) => b.band === band);
  const byBand = (a: Part, b: Part): number => order.get(a.v.id)! - order.get(b.v.id)! || bandRank(a.v, a.band) - bandRank(b.v, b.band);
  const energyLines = [...energy.values()].sort(byBand);
  const feedInLines = [...feedIn.values()].sort(byBand);
  for (const v of sorted) {
    for (const e of energyLines.filter((x) => x.v.id === v.id)) {
      const price = v.bands.find((b) => b.band === e.band)!.priceMilliPerKwh;
      lines.push({
        kind: 'energy',
        tariffId: v.id,
        tariffName: v.name,
        band: e.band,
        from: e.from,
        to: e.to,
        energyWh: toNumber(e.wh, 'energy'),
        priceMilliPerKwh: price,
        vatBasisPoints: v.vatBasisPoints,
        amountMinor: toNumber(roundHalfEven(e.wh * BigInt(price), 1_000_000n), 'a line amount'),
      });
    }
    for (const e of feedInLines.filter((x) => x.v.id === v.id)) {
      const rate = v.bands.find((b) => b.band === e.band)!.feedInMilliPerKwh ?? 0;
      lines.push({
        kind: 'feedin',
        tariffId: v.id,
        tariffName: v.name,
        band: e.band,
        from: e.from,
        to: e.to,
        energyWh: toNumber(e.wh, 'energy fed in'),
        feedInMilliPerKwh: rate,
        vatBasisPoints: v.vatBasisPoints,
        amountMinor: toNumber(roundHalfEven(-e.wh * BigInt(rate), 1_000_000n), 'a line amount'),
      });
    }
    const st = standing.get(v.id);
    if (st) {
      lines.push({
        kind: 'standing',
        tariffId: v.id,
        tariffName: v.name,
        from: st.from,
        to: st.to,
        days: st.days,
        standingMilliPerDay: v.standingMilliPerDay,
        vatBasisPoints: v.vatBasisPoints,
        amountMinor: toNumber(roundHalfEven(BigInt(st.days) * BigInt(v.standingMilliPerDay), 1000n), 'a line amount'),
      });
    }
  }
  const byRate = new Map<number, bigint>();
  let subtotal = 0n;
  for (const l of lines) {
    subtotal += BigInt(l.amountMinor);
    byRate.set(l.vatBasisPoints, (byRate.get(l.vatBasisPoints) ?? 0n) + BigInt(l.amountMinor));
  }
  const vat = [...byRate.entries()]
    .sort(([a], [b]) => a - b)
    .map(([bp, base]) => ({ basisPoints: bp, baseMinor: toNumber(base, 'VAT base'), amountMinor: toNumber(roundHalfEven(base * BigInt(bp), 10_000n), 'VAT') }));
  const vatMinor = vat.reduce((a, v) => a + BigInt(v.amountMinor), 0n);
  return {
    currency: sorted[0]!.currency,
    minorDigits: sorted[0]!.minorDigits,
    from: ps[0]!.start,
    to: ps[ps.length - 1]!.end,
    periods: ps.length,
    energyWh: toNumber(totalWh, 'energy'),
    exportWh: toNumber(totalExportWh, 'energy fed in'),
    lines,
    subtotalMinor: toNumber(subtotal, 'subtotal'),
    vat,
    vatMinor: toNumber(vatMinor, 'VAT'),
    totalMinor: toNumber(subtotal + vatMinor, 'total'),
  };
}

/**
 * Writes the integer `scaled` with `digits` implied decimals, exactly (`formatScaled(-1234, 2)` = `-12.34`).
 * @example
 * ```ts
 * formatScaled(24567, 3); // '24.567'
 * ```
 */
export function formatScaled(scaled: number | bigint, digits: number): string {
  const v = BigInt(scaled);
  const neg = v < 0n;
  const s = (neg ? -v : v).toString().padStart(digits + 1, '0');
  const body = digits === 0 ? s : `${s.slice(0, -digits)}.${s.slice(-digits)}`;
  return neg ? `-${body}` : body;
}

/**
 * Reads a decimal string into an integer with `digits` implied decimals, without floats; `null` if it is not
 * a plain decimal with at most `digits` decimals or exceeds `max` in magnitude.
 * @example
 * ```ts
 * parseScaled('24.567', 3); // 24567
 * parseScaled('0.5', 3); // 500
 * parseScaled('1.2345', 3); // null
 * ```
 */
export function parseScaled(text: string, digits: number, max = MAX_RATE_MILLI): number | null {
  const m = /^\s*(-?)(\d{1,12})(?:\.(\d+))?\s*$/.exec(text);
  if (!m || (m[3] !== undefined && m[3].length > digits)) return null;
  const v = BigInt(m[2]! + (m[3] ?? '').padEnd(digits, '0')) * (m[1] ? -1n : 1n);
  if (v > BigInt(max) || v < -BigInt(max)) return null;
  return Number(v);
}

const SYMBOLS: Record<string, string> = { GBP: '£', EUR: '€', USD: '$' };

/**
 * Money for people: `£12.34`, `-€0.50`, `1234 JPY`.
 * @example
 * ```ts
 * formatMoney(1234, 'GBP', 2); // '£12.34'
 * ```
 */
export function formatMoney(minor: number, currency: string, minorDigits: number): string {
  const s = formatScaled(minor, minorDigits);
  const sym = SYMBOLS[currency];
  if (!sym) return `${s} ${currency}`;
  return s.startsWith('-') ? `-${sym}${s.slice(1)}` : `${sym}${s}`;
}

/**
 * Integer Wh as kWh with three decimals, exactly.
 * @example
 * ```ts
 * formatKwh(12345); // '12.345'
 * ```
 */
export function formatKwh(wh: number): string {
  return formatScaled(wh, 3);
}

/**
 * The minor unit of a currency as printed after a rate (24.567p/kWh).
 * @example
 * ```ts
 * minorUnitLabel('GBP'); // 'p'
 * ```
 */
export function minorUnitLabel(currency: string): string {
  return ({ GBP: 'p', EUR: 'c', USD: '¢' } as Record<string, string>)[currency] ?? `${currency}/100`;
}
