/**
 * CBOR tooling for structure-aware fuzzing, written from RFC 8949 and docs/protocol.md §1 without cbor-x or
 * protocol/cbor.ts, so that it can serve as an independent oracle:
 * - {@link CNode}: a CBOR syntax tree that can say things the project's encoder never says (non-preferred
 *   argument widths, indefinite lengths, tags, lying length headers, reserved and simple values, raw bytes);
 * - {@link encodeNode}: writes such a tree;
 * - {@link refDecode}: a reference decoder of the plain subset of §1 (no tags, definite strings without 8-byte lengths,
 * integers within ±(2^53 − 1), depth ≤ 32, lengths backed by input) that says "valid" or "invalid" for any bytes;
 * - {@link mutateBytes} / {@link mutationArb}: byte-level mutations (flips, cuts, duplications, insertions,
 *   overwrites with CBOR- and HDLC-significant bytes).
 * @module
 */
import fc from 'fast-check';

/** Width of a CBOR head's argument: 'pref' = preferred (shortest), else the number of argument bytes (0 = in the initial byte). */
export type Width = 'pref' | 0 | 1 | 2 | 4 | 8;

export type CNode =
  | { k: 'int'; v: bigint; w?: Width }
  | { k: 'bytes'; v: Uint8Array; w?: Width; chunks?: number; lie?: bigint }
  | { k: 'text'; v: string; w?: Width; chunks?: number; lie?: bigint }
  | { k: 'array'; v: CNode[]; w?: Width; indef?: boolean; lie?: bigint }
  | { k: 'map'; v: [CNode, CNode][]; w?: Width; indef?: boolean; lie?: bigint }
  | { k: 'tag'; tag: bigint; v: CNode }
  | { k: 'simple'; v: number }
  | { k: 'float'; v: number; size: 2 | 4 | 8 }
  | { k: 'raw'; v: Uint8Array };

const U64 = (1n << 64n) - 1n;

function head(out: number[], major: number, n: bigint, w: Width = 'pref'): void {
  if (n < 0n) n = 0n;
  if (n > U64) n = U64;
  // A width too small for the value is widened (the tree says "at least this wide").
  const need: 0 | 1 | 2 | 4 | 8 = n < 24n ? 0 : n < 0x100n ? 1 : n < 0x10000n ? 2 : n < 0x100000000n ? 4 : 8;
  const width = w === 'pref' || w < need ? need : w;
  if (width === 0) {
    out.push((major << 5) | Number(n));
    return;
  }
  out.push((major << 5) | (24 + Math.log2(width)));
  for (let i = width - 1; i >= 0; i--) out.push(Number((n >> BigInt(8 * i)) & 0xffn));
}

function put(out: number[], bytes: Uint8Array): void {
  for (const b of bytes) out.push(b);
}

function writeString(out: number[], major: 2 | 3, bytes: Uint8Array, node: { w?: Width; chunks?: number; lie?: bigint }): void {
  if (node.chunks !== undefined) {
    out.push((major << 5) | 31);
    const n = Math.max(1, node.chunks);
    const step = Math.max(1, Math.ceil(bytes.length / n));
    for (let i = 0; i < bytes.length; i += step) {
      const part = bytes.subarray(i, i + step);
      head(out, major, BigInt(part.length));
      put(out, part);
    }
    out.push(0xff);
    return;
  }
  head(out, major, node.lie ?? BigInt(bytes.length), node.w);
  put(out, bytes);
}

function halfBits(v: number): number | undefined {
  // The half-precision values the generator uses, exactly (RFC 8949 Appendix D).
  if (Number.isNaN(v)) return 0x7e00;
  if (v === Infinity) return 0x7c00;
  if (v === -Infinity) return 0xfc00;
  if (Object.is(v, -0)) return 0x8000;
  const abs = Math.abs(v);
  const sign = v < 0 ? 0x8000 : 0;
  if (abs === 0) return 0;
  const e = Math.floor(Math.log2(abs));
  if (e < -14 || e > 15) return undefined;
  const mant = abs / 2 ** e - 1;
  const m = mant * 1024;
  if (!Number.isInteger(m)) return undefined;
  return sign | ((e + 15) << 10) | m;
}

function writeNode(out: number[], n: CNode, depth: number): void {
  if (depth > 5000) throw new RangeError('tree too deep for the writer');
  switch (n.k) {
    case 'int':
      if (n.v >= 0n) head(out, 0, n.v, n.w);
      else head(out, 1, -1n - n.v, n.w);
      return;
    case 'bytes':
      return writeString(out, 2, n.v, n);
    case 'text':
      return writeString(out, 3, new TextEncoder().encode(n.v), n);
    case 'array':
      if (n.indef) out.push(0x9f);
      else head(out, 4, n.lie ?? BigInt(n.v.length), n.w);
      for (const x of n.v) writeNode(out, x, depth + 1);
      if (n.indef) out.push(0xff);
      return;
    case 'map':
      if (n.indef) out.push(0xbf);
      else head(out, 5, n.lie ?? BigInt(n.v.length), n.w);
      for (const [a, b] of n.v) {
        writeNode(out, a, depth + 1);
        writeNode(out, b, depth + 1);
      }
      if (n.indef) out.push(0xff);
      return;
    case 'tag':
      head(out, 6, n.tag);
      return writeNode(out, n.v, depth + 1);
    case 'simple':
      if (n.v < 24) out.push(0xe0 | n.v);
      else out.push(0xf8, n.v & 0xff);
      return;
    case 'float': {
      const h = n.size === 2 ? halfBits(n.v) : undefined;
      if (n.size === 2 && h !== undefined) {
        out.push(0xf9, h >> 8, h & 0xff);
        return;
      }
      const size = n.size === 2 ? 4 : n.size;
      const dv = new DataView(new ArrayBuffer(size));
      if (size === 4) dv.setFloat32(0, n.v);
      else dv.setFloat64(0, n.v);
      out.push(size === 4 ? 0xfa : 0xfb);
      put(out, new Uint8Array(dv.buffer));
      return;
    }
    case 'raw':
      return put(out, n.v);
  }
}

/**
 * Encodes a CBOR tree exactly as it says (including its lies).
 * @example
 * ```ts
 * encodeNode({ k: 'array', v: [{ k: 'int', v: 5n, w: 8 }] }); // 81 1b 00 00 00 00 00 00 00 05
 * ```
 */
export function encodeNode(n: CNode): Uint8Array {
  const out: number[] = [];
  writeNode(out, n, 0);
  return Uint8Array.from(out);
}

/**
 * Shortcuts for trees of the protocol's plain values.
 * @example
 * ```ts
 * C.array(C.uint(1), C.text('gw-nb1'), C.array(C.bytes(frame)));
 * ```
 */
export const C = {
  uint: (v: number | bigint): CNode => ({ k: 'int', v: BigInt(v) }),
  bytes: (v: Uint8Array): CNode => ({ k: 'bytes', v }),
  text: (v: string): CNode => ({ k: 'text', v }),
  array: (...v: CNode[]): CNode => ({ k: 'array', v }),
  map: (o: Record<string, CNode>): CNode => ({ k: 'map', v: Object.entries(o).map(([a, b]) => [C.text(a), b]) }),
};

// ---------------------------------------------------------------------------------------------------------
// Reference decoder (the oracle)

/** A decoded map; kept apart from arrays and objects so validators never mistake one for the other. */
export class RefMap {
  constructor(readonly entries: [unknown, unknown][]) {}
}
export type RefValue = number | string | boolean | null | undefined | Uint8Array | RefValue[] | RefMap;

export const REF_MAX_DEPTH = 32;

class Invalid extends Error {}

/**
 * Decodes `bytes` as exactly one item of the plain CBOR subset of docs/protocol.md §1, or says why not.
 * Text strings are decoded leniently (invalid UTF-8 becomes U+FFFD), as the protocol's validators only look
 * at text through a pattern.
 * @example
 * ```ts
 * refDecode(Uint8Array.of(0x82, 0x01, 0x02)); // { ok: true, value: [1, 2] }
 * ```
 */
export function refDecode(bytes: Uint8Array): { ok: true; value: RefValue } | { ok: false; why: string } {
  let p = 0;
  const n = bytes.length;
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const take = (k: number) => {
    if (p + k > n) throw new Invalid('truncated');
    const s = bytes.subarray(p, p + k);
    p += k;
    return s;
  };
  const arg = (ai: number): bigint => {
    if (ai < 24) return BigInt(ai);
    if (ai > 27) throw new Invalid(`reserved additional information ${ai}`);
    const len = 1 << (ai - 24);
    const s = take(len);
    let v = 0n;
    for (const b of s) v = (v << 8n) | BigInt(b);
    return v;
  };
  const SAFE = BigInt(Number.MAX_SAFE_INTEGER);
  const item = (depth: number): RefValue | typeof BREAK => {
    const ib = take(1)[0]!;
    const major = ib >> 5;
    const ai = ib & 31;
    if (ib === 0xff) return BREAK;
    switch (major) {
      case 0: {
        if (ai === 31) throw new Invalid('indefinite integer');
        const v = arg(ai);
        if (v > SAFE) throw new Invalid('integer beyond 2^53 - 1');
        return Number(v);
      }
      case 1: {
        if (ai === 31) throw new Invalid('indefinite integer');
        const v = -1n - arg(ai);
        if (v < -SAFE) throw new Invalid('integer beyond -(2^53 - 1)');
        return Number(v);
      }
      case 2:
      case 3: {
        if (ai === 31) throw new Invalid('indefinite-length string');
        if (ai === 27) throw new Invalid('string length in the 8-byte form (§1)');
        const len = arg(ai);
        if (len > BigInt(n - p)) throw new Invalid('string longer than the input');
        const s = take(Number(len));
        if (major === 2) return Uint8Array.from(s);
        const text = new TextDecoder().decode(s);
        if (text === '__proto__') throw new Invalid('the text string "__proto__" (§1)');
        return text;
      }
      case 4:
      case 5: {
        if (depth >= REF_MAX_DEPTH) throw new Invalid('nesting deeper than 32');
        const indef = ai === 31;
        const count = indef ? Infinity : Number(arg(ai));
        if (!indef && count > n - p) throw new Invalid('container longer than the input');
        if (major === 4) {
          const out: RefValue[] = [];
          for (let i = 0; i < count; i++) {
            const x = item(depth + 1);
            if (x === BREAK) {
              if (!indef) throw new Invalid('break in a definite array');
              return out;
            }
            out.push(x);
          }
          if (indef) throw new Invalid('unreachable');
          return out;
        }
        const entries: [unknown, unknown][] = [];
        for (let i = 0; i < count; i++) {
          const key = item(depth + 1);
          if (key === BREAK) {
            if (!indef) throw new Invalid('break in a definite map');
            return new RefMap(entries);
          }
          const val = item(depth + 1);
          if (val === BREAK) throw new Invalid('break after a map key');
          entries.push([key, val]);
        }
        return new RefMap(entries);
      }
      case 6:
        throw new Invalid('tag');
      default: {
        if (ai === 20) return false;
        if (ai === 21) return true;
        if (ai === 22) return null;
        if (ai === 23) return undefined;
        if (ai === 25) {
          take(2);
          return halfToNumber(dv.getUint16(p - 2));
        }
        if (ai === 26) {
          take(4);
          return dv.getFloat32(p - 4);
        }
        if (ai === 27) {
          take(8);
          return dv.getFloat64(p - 8);
        }
        throw new Invalid(`simple value ${ai}`);
      }
    }
  };
  try {
    if (n === 0) throw new Invalid('empty');
    const v = item(0);
    if (v === BREAK) throw new Invalid('break at top level');
    if (p !== n) throw new Invalid('trailing bytes');
    return { ok: true, value: v };
  } catch (e) {
    if (e instanceof Invalid) return { ok: false, why: e.message };
    throw e;
  }
}
const BREAK = Symbol('break');

function halfToNumber(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

// ---------------------------------------------------------------------------------------------------------
// Spec validators on reference values (docs/protocol.md), independent of protocol/*.ts

/**
 * An unsigned integer <= max; a float with an integer value counts (§1 says the reference decoder accepts it).
 * @example
 * ```ts
 * isUint(5, 255); // true
 * ```
 */
export const isUint = (v: unknown, max = Number.MAX_SAFE_INTEGER): v is number =>
  typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= max;
const isBytes = (v: unknown, len?: number): v is Uint8Array => v instanceof Uint8Array && (len === undefined || v.length === len);
export const TOPIC_ID = /^[A-Za-z0-9_.-]{1,64}$/;

/**
 * §4, §6, §7, §7.1: is this a valid serial-line message?
 * @example
 * ```ts
 * const r = refDecode(bytes); if (r.ok) specMessage(r.value); // 'frame' | 'ack' | 'keyTransfer' | 'keyAck' | null
 * ```
 */
export function specMessage(v: RefValue): 'frame' | 'ack' | 'keyTransfer' | 'keyAck' | null {
  if (!Array.isArray(v)) return null;
  if (!isUint(v[1], 255) || v[1] !== 1 || !isUint(v[0], 255)) return null;
  if (v[0] === 1 && v.length === 6) {
    return isBytes(v[2], 8) && isUint(v[3], 255) && v[3] === 0x32 && isUint(v[4], 0xffffffff) && isBytes(v[5]) && v[5].length >= 12 ? 'frame' : null;
  }
  if (v[0] === 2 && v.length === 4) return isBytes(v[2], 8) && isUint(v[3], 0xffffffff) ? 'ack' : null;
  if (v[0] === 3 && v.length === 5) return isBytes(v[2], 8) && isUint(v[3], 0xffffffff) && v[3] >= 1 && isBytes(v[4], 40) ? 'keyTransfer' : null;
  if (v[0] === 4 && v.length === 4) return isBytes(v[2], 8) && isUint(v[3], 0xffffffff) && v[3] >= 1 ? 'keyAck' : null;
  return null;
}

/**
 * §5: is this a valid reading batch (short form `[prevWh, readings]` or long form `[prevWh, readings, prevExportWh]`)?
 * @example
 * ```ts
 * specBatch([1000, [[1700000000, 60, 1002, 120, 0]]]); // true
 * specBatch([1000, [[1700000000, 60, 1002, 120, 0, 7]], 5]); // true
 * ```
 */
export function specBatch(v: RefValue): boolean {
  if (!Array.isArray(v) || (v.length !== 2 && v.length !== 3)) return false;
  const long = v.length === 3;
  const [prevWh, list, prevExportWh = 0] = v;
  if (!isUint(prevWh, 2 ** 48) || !isUint(prevExportWh, 2 ** 48) || !Array.isArray(list) || list.length < 1 || list.length > 60) return false;
  let reg = prevWh;
  let exp = prevExportWh;
  let end = -1;
  for (const r of list) {
    if (!Array.isArray(r) || r.length !== (long ? 6 : 5)) return false;
    const [time, period, importWh, powerW, status, exportWh = 0] = r;
    if (!isUint(time, 0xffffffff) || !isUint(period, 86400) || period === 0 || !isUint(importWh, 2 ** 48) || !isUint(powerW, 0xffffffff)) return false;
    if (!isUint(exportWh, 2 ** 48) || !isUint(status, 7)) return false;
    if (time < end) return false;
    if (!(status & 4) && (importWh < reg || exportWh < exp)) return false;
    reg = importWh;
    exp = exportWh;
    end = time + period;
  }
  return true;
}

/**
 * §9: is this a valid uplink? Returns its frames, or null.
 * @example
 * ```ts
 * specUplink([1, 'gw-nb1', [frame]]); // { gateway: 'gw-nb1', frames: [frame] }
 * ```
 */
export function specUplink(v: RefValue): { gateway: string; frames: Uint8Array[] } | null {
  if (!Array.isArray(v) || v.length !== 3 || !isUint(v[0], 255) || v[0] !== 1) return null;
  const [, gw, frames] = v;
  if (typeof gw !== 'string' || !TOPIC_ID.test(gw)) return null;
  if (!Array.isArray(frames) || frames.length < 1 || frames.length > 1024 || !frames.every((f) => isBytes(f))) return null;
  return { gateway: gw, frames: frames as Uint8Array[] };
}

// ---------------------------------------------------------------------------------------------------------
// Mutations

/** Boundary integers of the protocol's fields (types, versions, SC, counters, registers, periods, CBOR widths). */
export const BOUNDARY_INTS: bigint[] = [
  0n, 1n, 2n, 3n, 23n, 24n, 0x32n, 0x33n, 59n, 60n, 61n, 255n, 256n, 1023n, 1024n, 1025n, 2048n, 65535n, 65536n, 86399n, 86400n, 86401n,
  0xffffffffn, 0x100000000n, 2n ** 48n - 1n, 2n ** 48n, 2n ** 48n + 1n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 63n, U64, -1n, -2n, -(2n ** 32n), -(2n ** 53n) + 1n, -(2n ** 53n), -(2n ** 64n),
];
/** Length claims no input can back. */
export const HUGE_LENGTHS: bigint[] = [2n ** 16n, 2n ** 31n - 1n, 2n ** 31n, 2n ** 32n - 1n, 2n ** 32n, 2n ** 53n, 2n ** 63n, U64];

export const widthArb: fc.Arbitrary<Width> = fc.constantFrom<Width>('pref', 'pref', 'pref', 0, 1, 2, 4, 8);

/** Any CBOR tree, including invalid ones (tags, reserved simple values, lying lengths, deep nesting). */
export const anyNodeArb: fc.Arbitrary<CNode> = fc.letrec<{ node: CNode }>((tie) => ({
  node: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.record({ k: fc.constant('int' as const), v: fc.oneof(fc.constantFrom(...BOUNDARY_INTS), fc.bigInt({ min: -(2n ** 64n), max: U64 })), w: widthArb }),
    fc.record({ k: fc.constant('bytes' as const), v: fc.oneof(fc.uint8Array({ maxLength: 24 }), fc.uint8Array({ minLength: 24, maxLength: 80 })), w: widthArb }),
    fc.record({ k: fc.constant('bytes' as const), v: fc.uint8Array({ maxLength: 8 }), lie: fc.constantFrom(...HUGE_LENGTHS) }),
    fc.record({ k: fc.constant('bytes' as const), v: fc.uint8Array({ maxLength: 16 }), chunks: fc.integer({ min: 1, max: 3 }) }),
    fc.record({ k: fc.constant('text' as const), v: fc.oneof(fc.string({ maxLength: 12 }), fc.string({ minLength: 24, maxLength: 90 }), fc.string({ unit: 'binary', maxLength: 16 }), fc.constantFrom('gw-nb0', 'nb0', 'hh0', 'flat', '__proto__', 'constructor', '+', '#', 'a/b', '', 'x'.repeat(65), '\u0000', 'ü', 'gw-nb0\n')), w: widthArb }),
    fc.record({ k: fc.constant('text' as const), v: fc.string({ maxLength: 4 }), lie: fc.constantFrom(...HUGE_LENGTHS) }),
    fc.record({ k: fc.constant('array' as const), v: fc.array(tie('node'), { maxLength: 6 }), w: widthArb, indef: fc.boolean() }),
    fc.record({ k: fc.constant('array' as const), v: fc.array(tie('node'), { maxLength: 2 }), lie: fc.constantFrom(...HUGE_LENGTHS) }),
    fc.record({ k: fc.constant('map' as const), v: fc.array(fc.tuple(tie('node'), tie('node')), { maxLength: 3 }), w: widthArb, indef: fc.boolean() }),
    fc.record({ k: fc.constant('tag' as const), tag: fc.constantFrom(0n, 1n, 2n, 3n, 24n, 27n, 28n, 29n, 55799n, 2n ** 32n), v: tie('node') }),
    fc.record({ k: fc.constant('simple' as const), v: fc.oneof(fc.integer({ min: 0, max: 31 }), fc.integer({ min: 0, max: 255 })) }),
    fc.record({
      k: fc.constant('float' as const),
      v: fc.oneof(fc.constantFrom(0, -0, 1, 1.5, 50, 2 ** 32, 2 ** 53, 2 ** 53 + 2, 1e300, NaN, Infinity, -Infinity, -1, 0.1), fc.double()),
      size: fc.constantFrom(2 as const, 4 as const, 8 as const),
    }),
    fc.record({ k: fc.constant('raw' as const), v: fc.uint8Array({ minLength: 1, maxLength: 6 }) }),
  ),
})).node;

/** An edit of one node of a tree, found by `path` (each step taken modulo the number of children). */
export type TreeEdit =
  | { op: 'replace'; path: number[]; with: CNode }
  | { op: 'int'; path: number[]; v: bigint }
  | { op: 'width'; path: number[]; w: Width }
  | { op: 'indef'; path: number[] }
  | { op: 'lie'; path: number[]; n: bigint }
  | { op: 'tag'; path: number[]; tag: bigint }
  | { op: 'drop'; path: number[] }
  | { op: 'add'; path: number[]; with: CNode }
  | { op: 'float'; path: number[]; size: 2 | 4 | 8 }
  | { op: 'nest'; path: number[]; depth: number };

const pathArb = fc.array(fc.nat({ max: 1 << 16 }), { minLength: 0, maxLength: 4 });
export const treeEditArb: fc.Arbitrary<TreeEdit> = fc.oneof(
  fc.record({ op: fc.constant('replace' as const), path: pathArb, with: anyNodeArb }),
  { weight: 3, arbitrary: fc.record({ op: fc.constant('int' as const), path: pathArb, v: fc.constantFrom(...BOUNDARY_INTS) }) },
  fc.record({ op: fc.constant('width' as const), path: pathArb, w: widthArb }),
  fc.record({ op: fc.constant('indef' as const), path: pathArb }),
  fc.record({ op: fc.constant('lie' as const), path: pathArb, n: fc.oneof(fc.constantFrom(...HUGE_LENGTHS), fc.bigInt({ min: 0n, max: 70n })) }),
  fc.record({ op: fc.constant('tag' as const), path: pathArb, tag: fc.constantFrom(0n, 2n, 24n, 28n, 55799n) }),
  fc.record({ op: fc.constant('drop' as const), path: pathArb }),
  fc.record({ op: fc.constant('add' as const), path: pathArb, with: anyNodeArb }),
  fc.record({ op: fc.constant('float' as const), path: pathArb, size: fc.constantFrom(2 as const, 4 as const, 8 as const) }),
  fc.record({ op: fc.constant('nest' as const), path: pathArb, depth: fc.constantFrom(1, 30, 31, 32, 33, 100) }),
);

function children(n: CNode): CNode[] | undefined {
  if (n.k === 'array') return n.v;
  if (n.k === 'map') return n.v.flat();
  if (n.k === 'tag') return [n.v];
  return undefined;
}

/**
 * Returns a copy of `root` with `edit` applied (the original is not changed).
 * @example
 * ```ts
 * applyEdit(frameTree, { op: 'lie', path: [5], n: 2n ** 32n }); // the ciphertext claims 4 GB
 * ```
 */
export function applyEdit(root: CNode, edit: TreeEdit): CNode {
  const rec = (n: CNode, path: number[]): CNode => {
    const kids = children(n);
    if (path.length > 0 && kids && kids.length > 0) {
      const i = path[0]! % kids.length;
      const rest = path.slice(1);
      if (n.k === 'array') return { ...n, v: n.v.map((c, j) => (j === i ? rec(c, rest) : c)) };
      if (n.k === 'tag') return { ...n, v: rec(n.v, rest) };
      if (n.k === 'map') {
        const flat = n.v.flat().map((c, j) => (j === i ? rec(c, rest) : c));
        const pairs: [CNode, CNode][] = [];
        for (let j = 0; j < flat.length; j += 2) pairs.push([flat[j]!, flat[j + 1]!]);
        return { ...n, v: pairs };
      }
    }
    return editHere(n, edit);
  };
  return rec(root, edit.path);
}

function editHere(n: CNode, e: TreeEdit): CNode {
  switch (e.op) {
    case 'replace':
      return e.with;
    case 'int':
      return n.k === 'int' || n.k === 'float' ? { k: 'int', v: e.v } : n.k === 'array' ? { ...n, v: [...n.v, { k: 'int', v: e.v }] } : { k: 'int', v: e.v };
    case 'width':
      return n.k === 'int' || n.k === 'bytes' || n.k === 'text' || n.k === 'array' || n.k === 'map' ? { ...n, w: e.w } : n;
    case 'indef':
      if (n.k === 'array' || n.k === 'map') return { ...n, indef: !n.indef };
      if (n.k === 'bytes' || n.k === 'text') return { ...n, chunks: 2 };
      return n;
    case 'lie':
      if (n.k === 'bytes' || n.k === 'text') return { ...n, lie: e.n, chunks: undefined };
      if (n.k === 'array' || n.k === 'map') return { ...n, lie: e.n, indef: false };
      return n;
    case 'tag':
      return { k: 'tag', tag: e.tag, v: n };
    case 'drop':
      if (n.k === 'array' && n.v.length > 0) return { ...n, v: n.v.slice(0, -1) };
      if (n.k === 'bytes' && n.v.length > 0) return { ...n, v: n.v.subarray(0, n.v.length - 1) };
      if (n.k === 'text' && n.v.length > 0) return { ...n, v: n.v.slice(0, -1) };
      return n;
    case 'add':
      if (n.k === 'array') return { ...n, v: [...n.v, e.with] };
      if (n.k === 'bytes') return { ...n, v: Uint8Array.from([...n.v, 0]) };
      return n;
    case 'float':
      return n.k === 'int' && n.v <= BigInt(Number.MAX_SAFE_INTEGER) && n.v >= -BigInt(Number.MAX_SAFE_INTEGER) ? { k: 'float', v: Number(n.v), size: e.size } : n;
    case 'nest': {
      let x = n;
      for (let i = 0; i < e.depth; i++) x = { k: 'array', v: [x] };
      return x;
    }
  }
}

/** A byte-level mutation; positions are taken modulo the input length. */
export type ByteMutation =
  | { kind: 'flip'; at: number; bit: number }
  | { kind: 'set'; at: number; byte: number }
  | { kind: 'cut'; at: number; len: number }
  | { kind: 'truncate'; len: number }
  | { kind: 'dup'; at: number; len: number }
  | { kind: 'insert'; at: number; bytes: Uint8Array };

/** Bytes that mean something to CBOR heads or to the HDLC framing. */
export const SPECIAL_BYTES = [0x00, 0x01, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1f, 0x3b, 0x40, 0x5b, 0x5f, 0x7b, 0x7d, 0x7e, 0x7f, 0x80, 0x9b, 0x9f, 0xa0, 0xbf, 0xc2, 0xd8, 0xf4, 0xf7, 0xf8, 0xf9, 0xfb, 0xfc, 0xff];

export const byteMutationArb: fc.Arbitrary<ByteMutation> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.nat({ max: 7 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('set' as const), at: fc.nat(), byte: fc.oneof(fc.constantFrom(...SPECIAL_BYTES), fc.nat({ max: 255 })) }) },
  fc.record({ kind: fc.constant('cut' as const), at: fc.nat(), len: fc.integer({ min: 1, max: 40 }) }),
  fc.record({ kind: fc.constant('truncate' as const), len: fc.integer({ min: 1, max: 20 }) }),
  fc.record({ kind: fc.constant('dup' as const), at: fc.nat(), len: fc.integer({ min: 1, max: 40 }) }),
  fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), bytes: fc.oneof(fc.constantFrom(...SPECIAL_BYTES).map((b) => Uint8Array.of(b)), fc.uint8Array({ minLength: 1, maxLength: 9 })) }),
);
export const mutationArb = fc.array(byteMutationArb, { minLength: 1, maxLength: 4 });

/**
 * Applies byte-level mutations.
 * @example
 * ```ts
 * mutateBytes(frame, [{ kind: 'flip', at: 10, bit: 0 }]);
 * ```
 */
export function mutateBytes(input: Uint8Array, mutations: ByteMutation[]): Buffer {
  let b = Buffer.from(input);
  for (const m of mutations) {
    const at = b.length === 0 ? 0 : ('at' in m ? m.at : 0) % b.length;
    switch (m.kind) {
      case 'flip':
        if (b.length) b[at]! ^= 1 << m.bit;
        break;
      case 'set':
        if (b.length) b[at] = m.byte;
        break;
      case 'cut':
        b = Buffer.concat([b.subarray(0, at), b.subarray(at + m.len)]);
        break;
      case 'truncate':
        b = b.subarray(0, Math.max(0, b.length - m.len));
        break;
      case 'dup':
        b = Buffer.concat([b.subarray(0, at + m.len), b.subarray(at, at + m.len), b.subarray(at + m.len)]);
        break;
      case 'insert':
        b = Buffer.concat([b.subarray(0, at), m.bytes, b.subarray(at)]);
        break;
    }
  }
  return b;
}

/**
 * Deep equality of reference values / decoded protocol values (bytes by content, -0 equal to 0).
 * @example
 * ```ts
 * sameValue([1, Uint8Array.of(2)], [1, Buffer.from([2])]); // true
 * ```
 */
export function sameValue(a: unknown, b: unknown): boolean {
  if (a instanceof Uint8Array && b instanceof Uint8Array) return Buffer.from(a).equals(Buffer.from(b));
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => sameValue(x, b[i]));
  if (typeof a === 'number' && typeof b === 'number') return a === b || (Number.isNaN(a) && Number.isNaN(b));
  if (a && b && typeof a === 'object' && typeof b === 'object' && !(a instanceof Uint8Array) && !(b instanceof Uint8Array)) {
    const ka = Object.keys(a).sort();
    const kb = Object.keys(b).sort();
    return sameValue(ka, kb) && ka.every((k) => sameValue((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
  }
  return a === b;
}
