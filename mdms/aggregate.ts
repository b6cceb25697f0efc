/**
 * The MDMS's pure core: what a sealed aggregate's body must look like, and the privacy policy the MDMS
 * enforces on its own (defence in depth; the PES is the first line).
 *
 * Bodies (CBOR maps, after `openAggregate`; docs/protocol.md "Aggregates"):
 * - `{kind:'neighbourhood', key, start, end, revision, meters, energyWh}` on `sm/v1/agg/neighbourhood/<key>`
 * - `{kind:'billing', key, start, end, revision, bands: {<band>: Wh, ...}}` on `sm/v1/agg/billing/<key>`
 *
 * Validation is strict: every field is required, no other field is allowed, integers must be safe integers,
 * and `key` must equal the topic's last level (the seal binds the topic, so this ties the body to it).
 * @module
 */
import { topicId } from '../protocol/topics.js';

/** The latest instant the MDMS accepts (9999-12-31T23:59:59Z), so every time formats as ISO 8601 with a 4-digit year. */
export const MAX_TIME_S = 253_402_300_799;
/** Largest revision, meter count and band count accepted. */
export const MAX_REVISION = 2 ** 31 - 1;
export const MAX_METERS = 2 ** 31 - 1;
export const MAX_BANDS = 64;
/** Band names: the same alphabet as topic ids, shorter (they end up in CSV and in tariff tables). */
export const BAND = /^[A-Za-z0-9_.-]{1,32}$/;

/** A neighbourhood x interval aggregate: total energy of `meters` meters over [start, end). Times in unix s. */
export interface NeighbourhoodAggregate {
  kind: 'neighbourhood';
  key: string;
  start: number;
  end: number;
  revision: number;
  meters: number;
  energyWh: number;
}

/** A household's energy per tariff band over one billing period [start, end). */
export interface BillingAggregate {
  kind: 'billing';
  key: string;
  start: number;
  end: number;
  revision: number;
  bands: Record<string, number>;
}

export type Aggregate = NeighbourhoodAggregate | BillingAggregate;

/**
 * Thrown for a body or topic that can never be stored (a poison message).
 * @example
 * ```ts
 * if (e instanceof MalformedAggregateError) counters.malformed++;
 * ```
 */
export class MalformedAggregateError extends TypeError {
  override name = 'MalformedAggregateError';
}

const TOPIC = /^sm\/v1\/agg\/(neighbourhood|billing)\/([^/]+)$/;

/**
 * Splits an aggregate topic into its kind and key; throws {@link MalformedAggregateError} for anything else.
 * @example
 * ```ts
 * aggregateTopic('sm/v1/agg/billing/hh7'); // { kind: 'billing', key: 'hh7' }
 * ```
 */
export function aggregateTopic(topic: string): { kind: Aggregate['kind']; key: string } {
  const m = TOPIC.exec(topic);
  if (!m) throw new MalformedAggregateError(`not an aggregate topic: ${topic.slice(0, 120)}`);
  try {
    return { kind: m[1] as Aggregate['kind'], key: topicId(m[2]!, m[1]!) };
  } catch (e) {
    throw new MalformedAggregateError((e as Error).message);
  }
}

function bad(msg: string): never {
  throw new MalformedAggregateError(msg);
}

function uint(v: unknown, name: string, max: number): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0 || v > max) bad(`${name} must be an unsigned integer <= ${max}`);
  return v;
}

function wh(v: unknown, name: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v)) bad(`${name} must be an integer number of Wh`);
  return v;
}

function plainObject(v: unknown, name: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v) || v instanceof Uint8Array || v instanceof Map) bad(`${name} must be a map`);
  const proto = Object.getPrototypeOf(v) as unknown;
  if (proto !== Object.prototype && proto !== null) bad(`${name} must be a map`);
  return v as Record<string, unknown>;
}

function exactFields(o: Record<string, unknown>, fields: readonly string[], what: string): void {
  const extra = Object.keys(o).filter((k) => !fields.includes(k));
  if (extra.length) bad(`${what} has unexpected field(s) ${extra.slice(0, 5).join(', ')}`);
  for (const f of fields) if (!Object.prototype.hasOwnProperty.call(o, f)) bad(`${what} lacks field ${f}`);
}

function period(o: Record<string, unknown>): { start: number; end: number; revision: number } {
  const start = uint(o.start, 'start', MAX_TIME_S);
  const end = uint(o.end, 'end', MAX_TIME_S);
  if (end <= start) bad('end must be after start');
  return { start, end, revision: uint(o.revision, 'revision', MAX_REVISION) };
}

const NB_FIELDS = ['kind', 'key', 'start', 'end', 'revision', 'meters', 'energyWh'] as const;
const BILLING_FIELDS = ['kind', 'key', 'start', 'end', 'revision', 'bands'] as const;

/**
 * Validates an unsealed body against the topic it arrived on. Throws {@link MalformedAggregateError}
 * (naming the field, never quoting a value) for anything that is not exactly one of the two body shapes.
 * @example
 * ```ts
 * const agg = parseAggregate(topic, openAggregate(mdmsKey, topic, payload));
 * ```
 */
export function parseAggregate(topic: string, body: unknown): Aggregate {
  const t = aggregateTopic(topic);
  const o = plainObject(body, 'aggregate body');
  if (o.kind !== t.kind) bad(`kind must be '${t.kind}' on this topic`);
  if (o.key !== t.key) bad("key must equal the topic's last level");
  if (t.kind === 'neighbourhood') {
    exactFields(o, NB_FIELDS, 'neighbourhood aggregate');
    return { kind: 'neighbourhood', key: t.key, ...period(o), meters: uint(o.meters, 'meters', MAX_METERS), energyWh: wh(o.energyWh, 'energyWh') };
  }
  exactFields(o, BILLING_FIELDS, 'billing aggregate');
  const p = period(o);
  const raw = plainObject(o.bands, 'bands');
  const names = Object.keys(raw);
  if (names.length === 0 || names.length > MAX_BANDS) bad(`bands must have 1..${MAX_BANDS} entries`);
  const bands = names.map((name): [string, number] => {
    if (!BAND.test(name)) bad(`band names must match ${BAND.source}`);
    return [name, wh(raw[name], 'band energy')];
  });
  // fromEntries defines own properties, so even a band named `__proto__` stays a band.
  return { kind: 'billing', key: t.key, ...p, bands: Object.fromEntries(bands) };
}

/** What the MDMS itself refuses to store, whatever the PES sends. */
export interface PrivacyPolicy {
  /** Shortest billing period accepted, in seconds (production: 28 days). */
  minBillingPeriodS: number;
  /** Fewest meters a neighbourhood aggregate may cover. */
  k: number;
}

/** Defaults of `smartermeter mdms`: one-day billing periods (demo data is short), k = 1 (the PES enforces the real k). */
export const DEFAULT_POLICY: Readonly<PrivacyPolicy> = { minBillingPeriodS: 86_400, k: 1 };

/**
 * Returns why an aggregate must not be stored under `policy`, or `null` if it may be. The reason names the
 * rule and the policy figure, never a reading value.
 * @example
 * ```ts
 * privacyViolation(agg, { minBillingPeriodS: 28 * 86400, k: 20 }); // 'billing period 900 s is shorter than ...'
 * ```
 */
export function privacyViolation(agg: Aggregate, policy: PrivacyPolicy): string | null {
  if (agg.kind === 'billing') {
    const span = agg.end - agg.start;
    return span < policy.minBillingPeriodS ? `billing period ${span} s is shorter than the minimum ${policy.minBillingPeriodS} s` : null;
  }
  return agg.meters < policy.k ? `neighbourhood aggregate covers fewer than k = ${policy.k} meters` : null;
}
