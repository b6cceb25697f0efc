/**
 * Aggregate bodies (PES -> MDMS): what a sealed aggregate's body is, as the PES builds it and the MDMS (or any
 * subscriber) validates it. Browser-safe.
 *
 * Bodies (CBOR maps inside the aggregate seal; docs/protocol.md §11.1):
 * - `{kind:'neighbourhood', key, start, end, revision, meters, energyWh[, exportWh][, dp]}` on
 *   `sm/v1/agg/neighbourhood/<key>`: `energyWh` imported, `exportWh` delivered to the grid (absent = 0), `dp`
 *   the differential-privacy ledger `{epsilon, spent}` when the PES adds noise;
 * - `{kind:'billing', key, start, end, revision, bands: {<band>: Wh, ...}[, exportBands: {<band>: Wh, ...}]}`
 *   on `sm/v1/agg/billing/<key>`: imported energy per band, and exported (fed-in) energy per band (absent = none).
 *
 * Validation is strict: every field not marked optional is required, no other field is allowed, integers must
 * be safe integers, and `key` must equal the topic's last level (the seal binds the topic, so this ties the body
 * to it).
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

/** Largest epsilon accepted for one release (a release with more is no privacy at all, but still reported). */
export const MAX_EPSILON = 1e6;
/** Largest running total a DP ledger may report (years of releases at any accepted epsilon). */
export const MAX_EPSILON_SPENT = 1e15;

/**
 * The differential-privacy ledger of a noised neighbourhood release: `epsilon` spent by this release, `spent`
 * the total epsilon the PES has spent on this neighbourhood's releases so far, this one included (basic
 * sequential composition; docs/privacy.md).
 */
export interface DpLedger {
  epsilon: number;
  spent: number;
}

/**
 * A neighbourhood x interval aggregate: total imported energy (`energyWh`) and exported energy (`exportWh`,
 * absent = 0) of `meters` meters over [start, end). Times in unix s.
 */
export interface NeighbourhoodAggregate {
  kind: 'neighbourhood';
  key: string;
  start: number;
  end: number;
  revision: number;
  meters: number;
  energyWh: number;
  exportWh?: number;
  dp?: DpLedger;
}

/** A household's imported energy per tariff band over one billing period [start, end), and its exported energy per band. */
export interface BillingAggregate {
  kind: 'billing';
  key: string;
  start: number;
  end: number;
  revision: number;
  bands: Record<string, number>;
  exportBands?: Record<string, number>;
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

function exactFields(o: Record<string, unknown>, fields: readonly string[], optional: readonly string[], what: string): void {
  const extra = Object.keys(o).filter((k) => !fields.includes(k) && !optional.includes(k));
  if (extra.length) bad(`${what} has unexpected field(s) ${extra.slice(0, 5).join(', ')}`);
  for (const f of fields) if (!Object.prototype.hasOwnProperty.call(o, f)) bad(`${what} lacks field ${f}`);
}

const has = (o: Record<string, unknown>, f: string): boolean => Object.prototype.hasOwnProperty.call(o, f);

function epsilon(v: unknown, name: string, max = MAX_EPSILON): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0 || v > max) bad(`${name} must be a number in (0, ${max}]`);
  return v;
}

function ledger(v: unknown): DpLedger {
  const o = plainObject(v, 'dp');
  exactFields(o, ['epsilon', 'spent'], [], 'dp ledger');
  const dp = { epsilon: epsilon(o.epsilon, 'dp.epsilon'), spent: epsilon(o.spent, 'dp.spent', MAX_EPSILON_SPENT) };
  if (dp.spent < dp.epsilon) bad('dp.spent must be at least dp.epsilon');
  return dp;
}

/**
 * Validates a DP ledger `{epsilon, spent}` from outside (the classic body's `dp`, and the end-to-end release's,
 * protocol/e2e.ts).
 * @example
 * ```ts
 * parseDpLedger({ epsilon: 1, spent: 3 }); // { epsilon: 1, spent: 3 }
 * ```
 */
export function parseDpLedger(v: unknown): DpLedger {
  return ledger(v);
}

function bandMap(v: unknown, name: string, min: number): Record<string, number> {
  const raw = plainObject(v, name);
  const names = Object.keys(raw);
  if (names.length < min || names.length > MAX_BANDS) bad(`${name} must have ${min}..${MAX_BANDS} entries`);
  const bands = names.map((band): [string, number] => {
    if (!BAND.test(band)) bad(`band names must match ${BAND.source}`);
    return [band, wh(raw[band], 'band energy')];
  });
  // fromEntries defines own properties, so even a band named `__proto__` stays a band.
  return Object.fromEntries(bands);
}

function period(o: Record<string, unknown>): { start: number; end: number; revision: number } {
  const start = uint(o.start, 'start', MAX_TIME_S);
  const end = uint(o.end, 'end', MAX_TIME_S);
  if (end <= start) bad('end must be after start');
  return { start, end, revision: uint(o.revision, 'revision', MAX_REVISION) };
}

const NB_FIELDS = ['kind', 'key', 'start', 'end', 'revision', 'meters', 'energyWh'] as const;
const BILLING_FIELDS = ['kind', 'key', 'start', 'end', 'revision', 'bands'] as const;
const NB_OPTIONAL = ['exportWh', 'dp'] as const;
const BILLING_OPTIONAL = ['exportBands'] as const;

/**
 * Validates an unsealed body against the topic it arrived on. Throws {@link MalformedAggregateError}
 * (naming the field, never quoting a value) for anything that is not exactly one of the two body shapes.
 * Negative energies parse (the MDMS's policy refuses them and counts them); optional fields absent stay absent.
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
    exactFields(o, NB_FIELDS, NB_OPTIONAL, 'neighbourhood aggregate');
    const agg: NeighbourhoodAggregate = { kind: 'neighbourhood', key: t.key, ...period(o), meters: uint(o.meters, 'meters', MAX_METERS), energyWh: wh(o.energyWh, 'energyWh') };
    if (has(o, 'exportWh')) agg.exportWh = wh(o.exportWh, 'exportWh');
    if (has(o, 'dp')) agg.dp = ledger(o.dp);
    return agg;
  }
  exactFields(o, BILLING_FIELDS, BILLING_OPTIONAL, 'billing aggregate');
  const agg: BillingAggregate = { kind: 'billing', key: t.key, ...period(o), bands: bandMap(o.bands, 'bands', 1) };
  if (has(o, 'exportBands')) agg.exportBands = bandMap(o.exportBands, 'exportBands', 0);
  return agg;
}


/** Largest number of counters in a policy statement. */
export const MAX_COUNTERS = 64;
/** Counter names: lower camel case, as the PES's counters are named. */
export const COUNTER = /^[a-z][A-Za-z0-9]{0,47}$/;

/**
 * The PES's policy statement (docs/protocol.md §11.3): what it enforces and how often each guard acted, so the
 * utility's privacy officer sees the guards at work without access to the PES. Sealed and signed like an
 * aggregate, on `sm/v1/agg/policy/<pes>`; a newer `at` replaces an older one.
 */
export interface PolicyStatement {
  kind: 'policy';
  /** The PES's id (the topic's last level). */
  key: string;
  /** When the PES made the statement, Unix s. */
  at: number;
  /** Fewest distinct meters in a released neighbourhood window. */
  k: number;
  /** Fewest meters that must have changed before a revision is released. */
  revisionK: number;
  /** Whether the differencing (membership) guard is on. */
  membershipGuard: boolean;
  /** Epsilon per neighbourhood release when differential privacy is on. */
  dpEpsilon?: number;
  /** Counters since the PES's state began (e.g. revisionHeld, membershipHeld, suppressed, dpReleases). */
  counters: Record<string, number>;
}

const POLICY_FIELDS = ['kind', 'key', 'at', 'k', 'revisionK', 'membershipGuard', 'counters'] as const;

/**
 * Validates an unsealed policy statement against its topic; throws {@link MalformedAggregateError} naming the field.
 * @example
 * ```ts
 * const p = parsePolicyStatement(topic, openAggregate(mdmsKey, topic, payload, pesVerifyKey));
 * p.counters.membershipHeld; // how many releases the differencing guard held
 * ```
 */
export function parsePolicyStatement(topic: string, body: unknown): PolicyStatement {
  const key = parseTopic.policy(topic);
  if (key === null) bad(`not a policy topic: ${String(topic).slice(0, 120)}`);
  const o = plainObject(body, 'policy statement');
  if (o.kind !== 'policy') bad("kind must be 'policy' on this topic");
  if (o.key !== key) bad("key must equal the topic's last level");
  exactFields(o, POLICY_FIELDS, ['dpEpsilon'], 'policy statement');
  if (typeof o.membershipGuard !== 'boolean') bad('membershipGuard must be a boolean');
  const raw = plainObject(o.counters, 'counters');
  const names = Object.keys(raw);
  if (names.length > MAX_COUNTERS) bad(`counters must have at most ${MAX_COUNTERS} entries`);
  const counters = Object.fromEntries(
    names.map((name): [string, number] => {
      if (!COUNTER.test(name)) bad(`counter names must match ${COUNTER.source}`);
      return [name, uint(raw[name], 'counter value', Number.MAX_SAFE_INTEGER)];
    }),
  );
  const p: PolicyStatement = {
    kind: 'policy',
    key,
    at: uint(o.at, 'at', MAX_TIME_S),
    k: uint(o.k, 'k', MAX_METERS),
    revisionK: uint(o.revisionK, 'revisionK', MAX_METERS),
    membershipGuard: o.membershipGuard,
    counters,
  };
  if (has(o, 'dpEpsilon')) p.dpEpsilon = epsilon(o.dpEpsilon, 'dpEpsilon');
  return p;
}
