/**
 * The end-to-end mode's wire contract (docs/protocol.md §5.3, docs/paillier.md): what a meter puts inside its
 * AES-GCM frame instead of a reading batch, and what the PES and the guardian send the MDMS per released
 * aggregate.
 *
 * The meter keeps, per tariff band, a cumulative import and a cumulative export register (Wh of the readings
 * that START in that band, counted since the meter's e2e epoch began) and, at every aggregation-interval
 * boundary, encrypts all of them under the fleet's Paillier public key as ONE packed ciphertext
 * ({@link registerLayout}): a "snapshot". The frame plaintext carries each reading's timing and status (no
 * energy) and the snapshots taken while its readings were measured:
 *
 *   `[1, [[time, period, status], ...], [[at, snapshot], ...]]` or, with the household stream,
 *   `[1, [[time, period, status], ...], [[at, snapshot], ...], stream]`
 *
 * - `time`, `period`, `status`: as in the classic batch (§5), 1..60 readings, in time order;
 * - `at`: Unix seconds, increasing, at most the end of the frame's last reading; the snapshot counts every
 *   reading that starts before `at`. The meter's first snapshot, its baseline, has `at` = its first reading's
 *   time (nothing counted yet); every other one is an interval boundary, taken when a reading reaches it (or,
 *   after a stretch without readings, before the first reading past it, so `at` may precede the frame);
 * - `snapshot`: the packed ciphertext, big-endian, exactly `2 |n| / 8` bytes, a unit of Z*_{n^2}.
 * - `stream` (optional): the frame's readings as the household's stream message, sealed by the meter under the
 *   household's stream key (protocol/meter-seal.ts, docs/protocol.md §11.5), which the PES forwards unopened.
 *
 * With differential privacy (docs/privacy.md) a snapshot is `[at, snapshot, noisy]`: `noisy` is a second
 * ciphertext of the same length, of the meter's total import and export each plus its cumulative share of
 * distributed discrete Laplace noise ({@link packNoisy}); neighbourhood windows sum `noisy`, bills `snapshot`.
 *
 * A receiver learns an interval's energy only as the homomorphic difference of two snapshots of one meter
 * (Enc(R_t) / Enc(R_prev)), under a key no single party can decrypt; a snapshot lost for good makes the next
 * difference cover its interval too, so energy shifts forward and is never lost (as in the classic mode).
 * @module
 */
import { asArray, asBytes, asUint, cborDecode, cborEncode } from './cbor.js';
import { parseMeterStream } from './envelope.js';
import { ciphertextFromBytes, ciphertextLength, ciphertextToBytes } from './paillier/codec.js';
import { Packing } from './paillier/packing.js';
import { decodePartial, encodePartial, type PartialDecryption } from './paillier/threshold.js';
import type { PublicKey } from './paillier/keys.js';
import { MAX_READINGS_PER_BATCH } from './reading.js';
import { BAND, MAX_BANDS, MAX_METERS, MAX_REVISION, MAX_TIME_S, parseDpLedger, type DpLedger } from './aggregate.js';
import { decodeSigned, encodeSigned } from './paillier/signed.js';
import { topicId } from './topics.js';

/** Format number of the e2e frame plaintext (its first element). */
export const E2E_FORMAT = 1;
/** A register slot holds up to 2^48 Wh (as the classic batch's registers, §5). */
export const REGISTER_BITS = 48;
/** Most snapshot differences one window may sum (the packing's headroom: 20 bits above each register). */
export const MAX_WINDOW_TERMS = 2 ** 20;
/** Most snapshots in one frame (one per reading is already more than any interval allows). */
export const MAX_SNAPSHOTS = MAX_READINGS_PER_BATCH + 1;
/** Largest meter-sealed stream message in a frame (60 long-form readings seal to about 2.3 kB). */
export const MAX_STREAM_BYTES = 4096;
const MAX_STATUS = 0xff;

/** A reading's timing and status, without its energy. */
export interface E2eTiming {
  time: number;
  period: number;
  status: number;
}

/** A packed ciphertext of every band register, counting the readings that start before `at`. */
export interface E2eSnapshot {
  at: number;
  ciphertext: bigint;
  /** With differential privacy: {@link packNoisy} of the noised totals at `at`. */
  noisy?: bigint;
}

/** The plaintext inside an e2e frame. */
export interface E2ePayload {
  readings: E2eTiming[];
  snapshots: E2eSnapshot[];
  /** The household's stream message for these readings, sealed by the meter (§11.5); opaque here. */
  stream?: Uint8Array;
}

/**
 * The packing of one snapshot under `pub`: slots 0..bands-1 are the import registers per band (tariff order),
 * slots bands..2 bands-1 the export registers; each slot 48 bits plus 20 bits of headroom, so a window may sum
 * up to 2^20 differences without a carry. Refuses a tariff whose slots do not fit in one plaintext.
 * @example
 * ```ts
 * const layout = registerLayout(pub, 2); // 4 slots of 68 bits
 * pub.encrypt(layout.pack([peakWh, offPeakWh, 0n, 0n]));
 * ```
 */
export function registerLayout(pub: PublicKey, bands: number): Packing {
  if (!Number.isInteger(bands) || bands < 1 || bands > MAX_BANDS) throw new RangeError(`bands must be 1..${MAX_BANDS}`);
  return new Packing(pub.n, { valueBits: REGISTER_BITS, terms: MAX_WINDOW_TERMS, slots: 2 * bands });
}

/** Bits of a signed slot of {@link packNoisy}: |value| < 2^48 per snapshot, sums of 2^20 differences < 2^69. */
export const NOISY_SLOT_BITS = REGISTER_BITS + 22;
const NOISY_HALF = 1n << BigInt(NOISY_SLOT_BITS - 1);

/**
 * The plaintext of a snapshot's `noisy` ciphertext: the meter's total import and total export, each plus its
 * cumulative noise share (signed), as two signed 70-bit slots (slot 0 import, slot 1 export) of one signed
 * plaintext (protocol/paillier/signed.ts: a negative whole is n - |v|). A difference or sum of such
 * plaintexts is again one, as long as each slot stays below 2^69 in magnitude ({@link unpackNoisy} checks).
 * Each value must be below 2^48 in magnitude.
 * @example
 * ```ts
 * pub.encrypt(packNoisy(pub, [importWh + noiseWh, exportWh + exportNoiseWh]));
 * ```
 */
export function packNoisy(pub: PublicKey, values: readonly [bigint, bigint]): bigint {
  const limit = 1n << BigInt(REGISTER_BITS);
  for (const v of values) if (typeof v !== 'bigint' || v >= limit || -v >= limit) throw new RangeError(`a noised total must be a bigint of magnitude below 2^${REGISTER_BITS}`);
  return encodeSigned(values[0] + (values[1] << BigInt(NOISY_SLOT_BITS)), pub.n);
}

/**
 * The noised import and export totals from a decrypted window sum of {@link packNoisy} plaintexts (signed).
 * Throws if a slot leaves its range (a wrapped or tampered plaintext).
 * @example
 * ```ts
 * const [importWh, exportWh] = unpackNoisy(pub, m); // e.g. [10234n, -17n]
 * ```
 */
export function unpackNoisy(pub: PublicKey, m: bigint): [bigint, bigint] {
  const whole = decodeSigned(m, pub.n, NOISY_HALF << BigInt(NOISY_SLOT_BITS));
  const width = 1n << BigInt(NOISY_SLOT_BITS);
  let low = ((whole % width) + width) % width;
  if (low >= NOISY_HALF) low -= width;
  const high = (whole - low) / width;
  if (high >= NOISY_HALF || -high >= NOISY_HALF) throw new RangeError('not a noised plaintext (a slot out of range)');
  return [low, high];
}

/**
 * Import and export energy per band from a decrypted window sum (or a register snapshot) of {@link registerLayout}.
 * Throws if a bit is set beyond the last slot (a wrapped or tampered plaintext).
 * @example
 * ```ts
 * const { imports, exports } = unpackRegisters(layout, m, 2); // [peakWh, offPeakWh], [0n, 0n]
 * ```
 */
export function unpackRegisters(layout: Packing, m: bigint, bands: number): { imports: bigint[]; exports: bigint[] } {
  const all = layout.unpack(m, 2 * bands);
  return { imports: all.slice(0, bands), exports: all.slice(bands) };
}

/**
 * Encodes an e2e frame plaintext (the module doc's layout); validates first.
 * @example
 * ```ts
 * const plaintext = encodeE2ePayload(pub, { readings: [{ time, period: 60, status: 0 }], snapshots: [{ at: time, ciphertext: c }] });
 * ```
 */
export function encodeE2ePayload(pub: PublicKey, p: E2ePayload): Buffer {
  check(pub, p, true);
  if (p.stream !== undefined) checkStream(p.stream);
  const top: unknown[] = [E2E_FORMAT, p.readings.map((r) => [r.time, r.period, r.status]), p.snapshots.map((s) => (s.noisy === undefined ? [s.at, ciphertextToBytes(pub, s.ciphertext)] : [s.at, ciphertextToBytes(pub, s.ciphertext), ciphertextToBytes(pub, s.noisy)]))];
  if (p.stream !== undefined) top.push(p.stream);
  return cborEncode(top);
}

/**
 * Decodes and validates an e2e frame plaintext from outside: format, 1..60 readings in time order with
 * periods 1..86400 s, snapshots in increasing `at` within the frame's span, each an exact-length unit of
 * Z*_{n^2}, and the optional meter-sealed stream message's envelope (not its content: nobody here can open it).
 * Throws `TypeError` naming the defect.
 * @example
 * ```ts
 * const { readings, snapshots } = decodeE2ePayload(pub, openFrame(meterKey, frame));
 * ```
 */
export function decodeE2ePayload(pub: PublicKey, bytes: Uint8Array): E2ePayload {
  const top = asArray(cborDecode(bytes), 'e2e payload', 3, 4);
  if (asUint(top[0], 'e2e format', 255) !== E2E_FORMAT) throw new TypeError('unsupported e2e payload format');
  const readings = asArray(top[1], 'readings', 1, MAX_READINGS_PER_BATCH).map((r, i): E2eTiming => {
    const a = asArray(r, `readings[${i}]`, 3, 3);
    return { time: asUint(a[0], `readings[${i}].time`, 0xffffffff), period: asUint(a[1], `readings[${i}].period`, 86400), status: asUint(a[2], `readings[${i}].status`, MAX_STATUS) };
  });
  const len = ciphertextLength(pub);
  const snapshots = asArray(top[2], 'snapshots', 0, MAX_SNAPSHOTS).map((s, i): E2eSnapshot => {
    const a = asArray(s, `snapshots[${i}]`, 2, 3);
    const raw = asBytes(a[1], `snapshots[${i}].ciphertext`, len);
    const snap: E2eSnapshot = { at: asUint(a[0], `snapshots[${i}].at`, 0xffffffff), ciphertext: ciphertextFromBytes(pub, raw) };
    if (a.length === 3) snap.noisy = ciphertextFromBytes(pub, asBytes(a[2], `snapshots[${i}].noisy`, len));
    return snap;
  });
  const p: E2ePayload = { readings, snapshots };
  check(pub, p, false); // ciphertextFromBytes checked each snapshot already
  if (top.length === 4) p.stream = checkStream(top[3]);
  return p;
}

function checkStream(v: unknown): Uint8Array {
  const b = asBytes(v, 'stream');
  if (b.length > MAX_STREAM_BYTES) throw new TypeError(`stream must be at most ${MAX_STREAM_BYTES} bytes`);
  parseMeterStream(b);
  return b;
}

function check(pub: PublicKey, p: E2ePayload, units: boolean): void {
  if (!Array.isArray(p.readings) || p.readings.length < 1 || p.readings.length > MAX_READINGS_PER_BATCH) throw new TypeError(`an e2e payload has 1..${MAX_READINGS_PER_BATCH} readings`);
  if (!Array.isArray(p.snapshots) || p.snapshots.length > MAX_SNAPSHOTS) throw new TypeError(`an e2e payload has at most ${MAX_SNAPSHOTS} snapshots`);
  let prevEnd = -1;
  p.readings.forEach((r, i) => {
    if (!Number.isInteger(r.period) || r.period < 1 || r.period > 86400) throw new TypeError(`readings[${i}].period must be 1..86400`);
    if (!Number.isInteger(r.time) || r.time < 0 || r.time > 0xffffffff) throw new TypeError(`readings[${i}].time must be a uint32`);
    if (!Number.isInteger(r.status) || r.status < 0 || r.status > MAX_STATUS) throw new TypeError(`readings[${i}].status must be a byte`);
    if (r.time < prevEnd) throw new TypeError(`readings[${i}].time goes backwards`);
    prevEnd = r.time + r.period;
  });
  let prevAt = -1;
  p.snapshots.forEach((s, i) => {
    if (!Number.isInteger(s.at) || s.at <= prevAt) throw new TypeError(`snapshots[${i}].at must increase`);
    if (s.at > prevEnd) throw new TypeError(`snapshots[${i}].at lies after the frame's readings`);
    if (units && !pub.isCiphertext(s.ciphertext)) throw new TypeError(`snapshots[${i}] is not a ciphertext under the fleet key`);
    if (units && s.noisy !== undefined && !pub.isCiphertext(s.noisy)) throw new TypeError(`snapshots[${i}].noisy is not a ciphertext under the fleet key`);
    prevAt = s.at;
  });
}

/** Which window a release names. */
export interface E2eWindow {
  kind: 'neighbourhood' | 'billing';
  key: string;
  start: number;
  end: number;
}

/**
 * What the PES sends the MDMS per released window, sealed to the MDMS and signed by the PES (the aggregate
 * envelope, §11) on the aggregate topic of its kind: the window, its revision, how many meters it covers, its
 * packed ciphertext (the product of its snapshot differences, never re-randomised: the guardian recomputes the
 * same product) and the PES's partial decryption of it.
 */
export interface E2eRelease extends E2eWindow {
  revision: number;
  meters: number;
  /** The tariff's band names in slot order (the MDMS names the billing totals with them). */
  bands: string[];
  ciphertext: bigint;
  partial: PartialDecryption;
  /**
   * Neighbourhood windows with differential privacy: the ciphertext is a sum of {@link packNoisy} plaintexts
   * (the meters' noise shares included), and this is the PES's ledger of it (as the classic body's, §11.3).
   */
  dp?: DpLedger;
}

/**
 * What the guardian sends the MDMS per window it recomputed and agrees to open, sealed to the MDMS and signed
 * by the guardian, on `sm/v1/partial/<kind>/<key>`: the window, its meter count and its partial decryption
 * (which names the ciphertext it was made from, so it combines only with the PES's of the same ciphertext).
 */
export interface GuardianPartial extends E2eWindow {
  meters: number;
  partial: PartialDecryption;
}

function windowFields(o: Record<string, unknown>, what: string): E2eWindow {
  if (o.kind !== 'neighbourhood' && o.kind !== 'billing') throw new TypeError(`${what}: kind must be neighbourhood or billing`);
  const key = topicId(o.key as string, `${what} key`);
  const start = asUint(o.start, `${what} start`, MAX_TIME_S);
  const end = asUint(o.end, `${what} end`, MAX_TIME_S);
  if (end <= start) throw new TypeError(`${what}: end must be after start`);
  return { kind: o.kind, key, start, end };
}

function body(v: unknown, fields: string[], what: string, optional: string[] = []): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v) || v instanceof Uint8Array || v instanceof Map) throw new TypeError(`${what} must be a map`);
  const o = v as Record<string, unknown>;
  const keys = Object.keys(o);
  const known = keys.filter((k) => fields.includes(k) || optional.includes(k));
  if (known.length !== keys.length || !fields.every((f) => Object.prototype.hasOwnProperty.call(o, f))) throw new TypeError(`${what} must have exactly the fields ${fields.join(', ')}${optional.length ? ` (and optionally ${optional.join(', ')})` : ''}`);
  return o;
}

const RELEASE_FIELDS = ['kind', 'key', 'start', 'end', 'revision', 'meters', 'bands', 'ciphertext', 'partial'];
const PARTIAL_FIELDS = ['kind', 'key', 'start', 'end', 'meters', 'partial'];

/**
 * The CBOR body of an {@link E2eRelease} (to seal with sealAggregate).
 * @example
 * ```ts
 * sealAggregate(mdmsPublic, topics.neighbourhood('nb1'), releaseBody(pub, release), pesSigner);
 * ```
 */
export function releaseBody(pub: PublicKey, r: E2eRelease): Record<string, unknown> {
  return { kind: r.kind, key: r.key, start: r.start, end: r.end, revision: r.revision, meters: r.meters, bands: r.bands, ciphertext: ciphertextToBytes(pub, r.ciphertext), partial: encodePartial(pub, r.partial), ...(r.dp ? { dp: { epsilon: r.dp.epsilon, spent: r.dp.spent } } : {}) };
}

/**
 * Validates an unsealed PES release (from outside): exact fields, window, revision, meter count, a ciphertext
 * of the exact length and the PES's partial decryption of exactly that ciphertext.
 * @example
 * ```ts
 * const r = parseRelease(pub, openAggregate(mdmsKey, topic, payload, pesVerifyKey));
 * ```
 */
export function parseRelease(pub: PublicKey, v: unknown): E2eRelease {
  const o = body(v, RELEASE_FIELDS, 'e2e release', ['dp']);
  const w = windowFields(o, 'e2e release');
  const ciphertext = ciphertextFromBytes(pub, asBytes(o.ciphertext, 'e2e release ciphertext', ciphertextLength(pub)));
  if (!pub.isCiphertext(ciphertext)) throw new TypeError('e2e release ciphertext is not a unit of Z*_{n^2}');
  const partial = decodePartial(pub, asBytes(o.partial, 'e2e release partial'), 'pes');
  const bands = asArray(o.bands, 'e2e release bands', 1, MAX_BANDS).map((b) => {
    if (typeof b !== 'string' || !BAND.test(b) || b === '__proto__') throw new TypeError(`e2e release band names must match ${BAND.source}`);
    return b;
  });
  if (new Set(bands).size !== bands.length) throw new TypeError('e2e release band names must be distinct');
  const r: E2eRelease = { ...w, revision: asUint(o.revision, 'e2e release revision', MAX_REVISION), meters: asUint(o.meters, 'e2e release meters', MAX_METERS), bands, ciphertext, partial };
  if (Object.prototype.hasOwnProperty.call(o, 'dp')) {
    if (w.kind !== 'neighbourhood') throw new TypeError('e2e release: only a neighbourhood release carries dp (bills are never noised)');
    try {
      r.dp = parseDpLedger(o.dp);
    } catch (e) {
      throw new TypeError(`e2e release: ${(e as Error).message}`);
    }
  }
  return r;
}

/**
 * The CBOR body of a {@link GuardianPartial} (to seal with sealAggregate under the guardian's signing key).
 * @example
 * ```ts
 * sealAggregate(mdmsPublic, topics.partial('billing', 'hh1'), partialBody(pub, p), guardianSigner);
 * ```
 */
export function partialBody(pub: PublicKey, p: GuardianPartial): Record<string, unknown> {
  return { kind: p.kind, key: p.key, start: p.start, end: p.end, meters: p.meters, partial: encodePartial(pub, p.partial) };
}

/**
 * Validates an unsealed guardian partial (from outside).
 * @example
 * ```ts
 * const g = parseGuardianPartial(pub, openAggregate(mdmsKey, topic, payload, guardianVerifyKey));
 * ```
 */
export function parseGuardianPartial(pub: PublicKey, v: unknown): GuardianPartial {
  const o = body(v, PARTIAL_FIELDS, 'guardian partial');
  const w = windowFields(o, 'guardian partial');
  return { ...w, meters: asUint(o.meters, 'guardian partial meters', MAX_METERS), partial: decodePartial(pub, asBytes(o.partial, 'guardian partial partial'), 'guardian') };
}

/**
 * One meter's contribution to a requested window: its snapshot at `to` over its snapshot at `from` (its
 * snapshot differences in the window telescope to that quotient).
 */
export interface E2eSpan {
  meter: string;
  from: number;
  to: number;
}

/**
 * What the PES asks the guardian to open, on `sm/v1/request/<kind>/<key>` (docs/paillier.md "Requests"): the
 * window it released, the revision, each member's span and the ciphertext it computed from them. Not sealed: it
 * names no energy (meters, snapshot times and a ciphertext the broker already carries in the uplinks); the
 * guardian answers only what its own snapshots and rules confirm, whoever asks.
 */
export interface E2eRequest extends E2eWindow {
  revision: number;
  spans: E2eSpan[];
  ciphertext: bigint;
}

const REQUEST_FIELDS = ['kind', 'key', 'start', 'end', 'revision', 'spans', 'ciphertext'];
const METER_ID = /^[0-9a-f]{16}$/;

/**
 * The CBOR body of an {@link E2eRequest} (published as is, CBOR-encoded).
 * @example
 * ```ts
 * publish(topics.request('neighbourhood', 'nb1'), cborEncode(requestBody(pub, req)));
 * ```
 */
export function requestBody(pub: PublicKey, r: E2eRequest): Record<string, unknown> {
  return { kind: r.kind, key: r.key, start: r.start, end: r.end, revision: r.revision, spans: r.spans.map((s) => [s.meter, s.from, s.to]), ciphertext: ciphertextToBytes(pub, r.ciphertext) };
}

/**
 * Validates a request from outside (CBOR bytes): exact fields, window, revision, 1..MAX_METERS spans of
 * distinct meter ids (16 hex digits) with `from < to`, and a ciphertext under the fleet key.
 * @example
 * ```ts
 * const req = parseRequest(pub, payload); // throws TypeError on anything malformed
 * ```
 */
export function parseRequest(pub: PublicKey, bytes: Uint8Array): E2eRequest {
  const o = body(cborDecode(bytes), REQUEST_FIELDS, 'e2e request');
  const w = windowFields(o, 'e2e request');
  const seen = new Set<string>();
  const spans = asArray(o.spans, 'e2e request spans', 1, MAX_METERS).map((v, i) => {
    const a = asArray(v, `e2e request spans[${i}]`, 3, 3);
    if (typeof a[0] !== 'string' || !METER_ID.test(a[0])) throw new TypeError(`e2e request spans[${i}]: meter must be 16 hex digits`);
    if (seen.has(a[0])) throw new TypeError(`e2e request spans[${i}]: meter ${a[0]} named twice`);
    seen.add(a[0]);
    const from = asUint(a[1], `e2e request spans[${i}].from`, MAX_TIME_S);
    const to = asUint(a[2], `e2e request spans[${i}].to`, MAX_TIME_S);
    if (from >= to) throw new TypeError(`e2e request spans[${i}]: from must be before to`);
    return { meter: a[0], from, to };
  });
  const ciphertext = ciphertextFromBytes(pub, asBytes(o.ciphertext, 'e2e request ciphertext', ciphertextLength(pub)));
  if (!pub.isCiphertext(ciphertext)) throw new TypeError('e2e request ciphertext is not a unit of Z*_{n^2}');
  return { ...w, revision: asUint(o.revision, 'e2e request revision', MAX_REVISION), spans, ciphertext };
}
