/**
 * The project's one CBOR configuration (RFC 8949, via cbor-x).
 *
 * Plain CBOR only, so that a third party can decode our messages with any CBOR library:
 * - no cbor-x record extension, byte strings as major type 2 without the RFC 8746 typed-array tag;
 * - no tags at all (major type 6): {@link cborEncode} refuses values that would need one (Date, Map, Set,
 *   typed arrays other than Uint8Array, class instances, integers beyond ±(2^53 − 1)) and {@link cborDecode}
 *   rejects any input that carries one;
 * - integers always as CBOR integers in preferred (shortest) form — cbor-x on its own writes integers of
 *   2^32 and more as float64, we write them as 8-byte integers (RFC 8949 §4.2.1);
 * - definite-length strings whose length is not in the 8-byte form; arrays and maps may be definite or
 *   indefinite (RFC 8949 §3.2.2) when decoding;
 * - nesting at most {@link MAX_CBOR_DEPTH} levels, and every length must be backed by bytes of the input.
 *
 * {@link cborDecode} checks the input against these rules with a linear, non-recursive scan (the
 * well-formedness check of RFC 8949 Appendix C plus the rules above) before cbor-x decodes it: cbor-x would
 * otherwise decode tag 2 bignums in time quadratic in their length (100 kB took 1 s, measured), build
 * RegExp/Error objects (tag 27), follow shared references (tags 28/29) and compile record definitions.
 * @module
 */
import { Encoder } from 'cbor-x';

/** Deepest nesting of arrays and maps accepted by {@link cborEncode} and {@link cborDecode}. */
export const MAX_CBOR_DEPTH = 32;

// int64AsNumber: an 8-byte CBOR integer decodes to a number (exact: the scan below rejects anything
// beyond 2^53 - 1) rather than a bigint, so a peer's preferred encoding of 2^32 decodes like ours.
const options = { useRecords: false, tagUint8Array: false, mapsAsObjects: true, variableMapSize: true, int64AsNumber: true };
const codec = new Encoder(options);

const TWO_32 = 2 ** 32;
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/**
 * Encodes a value as plain CBOR (see the module rules); throws `TypeError` for values that plain CBOR
 * cannot carry.
 * @example
 * ```ts
 * cborEncode([1, 2]); // <Buffer 82 01 02>
 * cborEncode(2 ** 32); // <Buffer 1b 00 00 00 01 00 00 00 00>
 * ```
 */
export function cborEncode(value: unknown): Buffer {
  return codec.encode(plain(value, 0));
}

/** Returns `v`, or a copy with every large integer replaced by a bigint (cbor-x writes those as 0x1b/0x3b). */
function plain(v: unknown, depth: number): unknown {
  switch (typeof v) {
    case 'number':
      return Number.isSafeInteger(v) && (v >= TWO_32 || v < -TWO_32) ? BigInt(v) : v;
    case 'bigint':
      if (v > MAX_SAFE || v < -MAX_SAFE) throw new TypeError('CBOR integers are limited to ±(2^53 - 1); encode larger ones as byte strings');
      return plain(Number(v), depth);
    case 'string':
    case 'boolean':
    case 'undefined':
      return v;
    case 'object': {
      if (v === null || v instanceof Uint8Array) return v;
      if (depth >= MAX_CBOR_DEPTH) throw new TypeError(`CBOR nesting deeper than ${MAX_CBOR_DEPTH} levels`);
      if (Array.isArray(v)) {
        let out: unknown[] | undefined;
        for (let i = 0; i < v.length; i++) {
          const x = plain(v[i], depth + 1);
          if (x !== v[i]) (out ??= v.slice())[i] = x;
        }
        return out ?? v;
      }
      const proto = Object.getPrototypeOf(v) as object | null;
      if (proto !== Object.prototype && proto !== null) {
        throw new TypeError(`cannot encode a ${(v as object).constructor?.name ?? 'class instance'} as plain CBOR`);
      }
      let out: Record<string, unknown> | undefined;
      for (const [k, x] of Object.entries(v)) {
        const y = plain(x, depth + 1);
        if (y !== x) (out ??= { ...(v as Record<string, unknown>) })[k] = y;
      }
      return out ?? v;
    }
    default:
      throw new TypeError(`cannot encode a ${typeof v} as CBOR`);
  }
}

/**
 * Decodes exactly one plain CBOR item; throws a `TypeError` on malformed input, trailing bytes, tags,
 * indefinite-length strings, integers beyond ±(2^53 − 1), nesting deeper than {@link MAX_CBOR_DEPTH}, or any
 * length not backed by the input. Time and memory are linear in the input length.
 * @example
 * ```ts
 * cborDecode(Buffer.from('820102', 'hex')); // [1, 2]
 * ```
 */
export function cborDecode(bytes: Uint8Array): unknown {
  if (!(bytes instanceof Uint8Array)) throw new TypeError('CBOR input must be bytes');
  if (bytes.length === 0) throw new TypeError('empty CBOR input');
  checkPlainCbor(bytes);
  try {
    return codec.decode(bytes);
  } catch (e) {
    throw new TypeError(`malformed CBOR: ${(e as Error)?.message ?? String(e)}`);
  }
}

const INDEFINITE = -1;
const PROTO = [...'__proto__'].map((c) => c.charCodeAt(0));

function malformed(at: number, why: string): never {
  throw new TypeError(`malformed CBOR at byte ${at}: ${why}`);
}

/** RFC 8949 Appendix C well-formedness, restricted to the plain subset above; iterative, O(n). */
function checkPlainCbor(b: Uint8Array): void {
  const n = b.length;
  const pending: number[] = [1]; // items still expected in each open container; the bottom is the top level
  let p = 0;
  while (pending.length > 0) {
    const top = pending[pending.length - 1]!;
    if (top === 0) {
      pending.pop();
      continue;
    }
    if (p >= n) malformed(p, 'truncated');
    const ib = b[p++]!;
    if (ib === 0xff) {
      if (top !== INDEFINITE) malformed(p, 'break outside an indefinite-length item');
      pending.pop();
      continue;
    }
    if (top !== INDEFINITE) pending[pending.length - 1] = top - 1;
    const major = ib >> 5;
    const ai = ib & 0x1f;
    let arg = ai;
    if (ai >= 24 && ai <= 27) {
      const len = 1 << (ai - 24);
      if (len > n - p) malformed(p, 'truncated');
      arg = 0;
      for (let i = 0; i < len; i++) arg = arg * 256 + b[p++]!; // exact up to 2^53, larger values only compare
      if (ai === 27 && major <= 1 && arg > Number.MAX_SAFE_INTEGER - major) malformed(p, 'integer beyond ±(2^53 - 1)');
    } else if (ai >= 28 && ai <= 30) malformed(p, `reserved additional information ${ai}`);
    switch (major) {
      case 0:
      case 1:
        if (ai === 31) malformed(p, 'indefinite length on an integer');
        break;
      case 2:
      case 3:
        if (ai === 31) malformed(p, 'indefinite-length strings are not supported');
        if (arg > n - p) malformed(p, `string of ${arg} bytes but only ${n - p} left`);
        // No string here needs an 8-byte length, and cbor-x (its native string extractor, cbor-extract 2)
        // refuses one whenever a long text string came before it: refuse it always, not by accident.
        if (ai === 27) malformed(p, 'string length in the 8-byte form');
        // A map key "__proto__" would set the decoded object's prototype instead of adding an entry (cbor-x
        // assigns keys to a plain object): the entry would vanish silently. No message of this protocol uses the
        // string, so it is refused wherever it stands.
        if (major === 3 && arg === PROTO.length && PROTO.every((c, i) => b[p + i] === c)) malformed(p, 'the text string "__proto__" is not allowed');
        p += arg;
        break;
      case 4:
      case 5:
        if (pending.length > MAX_CBOR_DEPTH) malformed(p, `nesting deeper than ${MAX_CBOR_DEPTH} levels`);
        if (ai === 31) pending.push(INDEFINITE);
        else {
          const items = major === 4 ? arg : 2 * arg; // each item needs at least one byte
          if (items > n - p) malformed(p, `${major === 4 ? 'array' : 'map'} of ${arg} entries but only ${n - p} bytes left`);
          pending.push(items);
        }
        break;
      case 6:
        malformed(p, `tag ${arg}: CBOR tags are not used by this protocol`);
        break;
      default: // 7: only false, true, null, undefined and floats
        if (ai < 20 || ai === 24) malformed(p, `unassigned simple value`);
        if (ai === 31) malformed(p, 'break outside an indefinite-length item'); // unreachable: 0xff handled above
    }
  }
  if (p !== n) malformed(p, `${n - p} trailing bytes after the CBOR item`);
}

/** Narrowing helpers for decoded CBOR, each throwing a `TypeError` that names the field. */
export function asUint(v: unknown, name: string, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max) {
    throw new TypeError(`${name} must be an unsigned integer <= ${max}`);
  }
  return v;
}

export function asBytes(v: unknown, name: string, len?: number): Uint8Array {
  if (!(v instanceof Uint8Array)) throw new TypeError(`${name} must be a byte string`);
  if (len !== undefined && v.length !== len) throw new TypeError(`${name} must be ${len} bytes, got ${v.length}`);
  return v;
}

export function asText(v: unknown, name: string, maxLen = 256): string {
  if (typeof v !== 'string' || v.length === 0 || v.length > maxLen) {
    throw new TypeError(`${name} must be a non-empty text string of at most ${maxLen} characters`);
  }
  return v;
}

export function asArray(v: unknown, name: string, min = 0, max = 1 << 16): unknown[] {
  if (!Array.isArray(v) || v.length < min || v.length > max) {
    throw new TypeError(`${name} must be an array of ${min}..${max} items`);
  }
  return v;
}
