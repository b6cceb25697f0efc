/**
 * The project's one CBOR configuration (RFC 8949, via cbor-x).
 *
 * Plain CBOR only: no cbor-x record extension (a third party must decode our messages with any CBOR
 * library) and byte strings as major type 2 without the RFC 8746 typed-array tag.
 * @module
 */
import { Encoder } from 'cbor-x';

const codec = new Encoder({ useRecords: false, tagUint8Array: false, mapsAsObjects: true, variableMapSize: true });

/**
 * Encodes a value as plain CBOR.
 * @example
 * ```ts
 * cborEncode([1, 2]); // <Buffer 82 01 02>
 * ```
 */
export function cborEncode(value: unknown): Buffer {
  return codec.encode(value);
}

/**
 * Decodes one CBOR item; throws a `TypeError` on malformed input or trailing bytes.
 * @example
 * ```ts
 * cborDecode(Buffer.from('820102', 'hex')); // [1, 2]
 * ```
 */
export function cborDecode(bytes: Uint8Array): unknown {
  if (!(bytes instanceof Uint8Array)) throw new TypeError('CBOR input must be bytes');
  if (bytes.length === 0) throw new TypeError('empty CBOR input');
  let items: unknown[];
  try {
    items = codec.decodeMultiple(bytes) as unknown[];
  } catch (e) {
    throw new TypeError(`malformed CBOR: ${(e as Error).message}`);
  }
  if (!Array.isArray(items) || items.length !== 1) throw new TypeError('expected exactly one CBOR item');
  return items[0];
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
