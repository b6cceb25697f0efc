/**
 * Aggregate bodies (PES -> MDMS): what a sealed aggregate's body is, as the PES builds it and the MDMS (or any
 * subscriber) validates it. Browser-safe.
 *
 * Bodies (CBOR maps inside the aggregate seal; docs/protocol.md §11.1):
 * - `{kind:'neighbourhood', key, start, end, revision, meters, energyWh}` on `sm/v1/agg/neighbourhood/<key>`
 * - `{kind:'billing', key, start, end, revision, bands: {<band>: Wh, ...}}` on `sm/v1/agg/billing/<key>`
 *
 * Validation is strict: every field is required, no other field is allowed, integers must be safe integers,
 * and `key` must equal the topic's last level (the seal binds the topic, so this ties the body to it).
 * @module
 */
import { parseTopic } from './topics.js';

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

/**
 * Splits an aggregate topic into its kind and key; throws {@link MalformedAggregateError} for anything else.
 * @example
 * ```ts
 * aggregateTopic('sm/v1/agg/billing/hh7'); // { kind: 'billing', key: 'hh7' }
 * ```
 */
export function aggregateTopic(topic: string): { kind: Aggregate['kind']; key: string } {
  const t = parseTopic.aggregate(topic);
  if (!t) throw new MalformedAggregateError(`not an aggregate topic: ${String(topic).slice(0, 120)}`);
  return t;
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

