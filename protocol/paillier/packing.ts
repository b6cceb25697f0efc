/**
 * Packing: several non-negative integers in slots of one plaintext (BatchCrypt-style; EPPA packs
 * multi-dimensional meter data the same way), so one encryption, one addition and one decryption serve all
 * of them.
 *
 * Layout: slot i occupies bits [i s, (i + 1) s) of the plaintext, s = valueBits + bitLength(terms - 1). A
 * sum of at most `terms` packed plaintexts, each slot value < 2^valueBits, has slot sums
 * <= terms (2^valueBits - 1) < 2^s: no carry crosses into the next slot. All slots together stay below
 * 2^(|n| - 1) < n, so the plaintext never wraps mod n. The layout is refused when even one slot does not fit,
 * {@link Packing.pack} refuses values >= 2^valueBits, and {@link PackedSum} refuses a term beyond the budget:
 * overflow is impossible by construction, not detected afterwards. (mulPlain by k counts as k terms.)
 * @module
 */
import { bitLength } from './arith.js';
import type { PaillierPublic } from './types.js';

export interface PackingOptions {
  /** Bits of each value (values are in [0, 2^valueBits)). */
  valueBits: number;
  /** Most packed plaintexts that will ever be added together. */
  terms: number;
  /** Slots wanted (default: as many as fit). */
  slots?: number;
}

/**
 * @example
 * ```ts
 * const layout = new Packing(key.n, { valueBits: 32, terms: 10_000 }); // 46-bit slots, 44 at 2048 bits
 * const sum = new PackedSum(key, layout);
 * for (const meter of meters) sum.add(key.encrypt(layout.pack(meter.intervals)));
 * layout.unpack(key.decrypt(sum.ciphertext)); // per-slot totals
 * ```
 */
export class Packing {
  readonly valueBits: number;
  readonly terms: number;
  readonly slotBits: number;
  readonly slots: number;
  private readonly width: bigint;

  constructor(n: bigint, options: PackingOptions) {
    const { valueBits, terms } = options;
    if (!Number.isInteger(valueBits) || valueBits < 1 || valueBits > 4096) throw new RangeError('valueBits must be an integer in 1..4096');
    if (!Number.isInteger(terms) || terms < 1 || terms > Number.MAX_SAFE_INTEGER) throw new RangeError('terms must be a positive safe integer');
    const slotBits = valueBits + bitLength(BigInt(terms - 1));
    const fit = Math.floor((bitLength(n) - 1) / slotBits);
    if (fit < 1) throw new RangeError(`a ${slotBits}-bit slot does not fit in a ${bitLength(n)}-bit plaintext`);
    const slots = options.slots ?? fit;
    if (!Number.isInteger(slots) || slots < 1) throw new RangeError('slots must be a positive integer');
    if (slots > fit) throw new RangeError(`${slots} slots of ${slotBits} bits do not fit; at most ${fit}`);
    this.valueBits = valueBits;
    this.terms = terms;
    this.slotBits = slotBits;
    this.slots = slots;
    this.width = BigInt(slotBits);
  }

  /** Packs up to `slots` values (missing slots are 0) into one plaintext. */
  pack(values: readonly bigint[]): bigint {
    if (!Array.isArray(values) || values.length > this.slots) throw new RangeError(`at most ${this.slots} values per plaintext`);
    let m = 0n;
    for (let i = values.length - 1; i >= 0; i--) {
      const v = values[i];
      if (typeof v !== 'bigint' || v < 0n || v >> BigInt(this.valueBits) !== 0n) {
        throw new RangeError(`packed value ${i} must be a bigint in [0, 2^${this.valueBits})`);
      }
      m = (m << this.width) | v;
    }
    return m;
  }

  /** The `count` slot sums of a decrypted packed plaintext; throws if bits are set beyond the last slot. */
  unpack(m: bigint, count = this.slots): bigint[] {
    if (!Number.isInteger(count) || count < 1 || count > this.slots) throw new RangeError(`count must be in 1..${this.slots}`);
    if (typeof m !== 'bigint' || m < 0n || m >> (this.width * BigInt(this.slots)) !== 0n) {
      throw new RangeError('not a plaintext of this packing layout (bits set beyond the last slot)');
    }
    const mask = (1n << this.width) - 1n;
    const out: bigint[] = [];
    for (let i = 0; i < count; i++, m >>= this.width) out.push(m & mask);
    return out;
  }
}

/**
 * A homomorphic sum of packed ciphertexts that refuses to exceed its layout's term budget.
 * @example
 * ```ts
 * const sum = new PackedSum(key, layout);
 * sum.add(c1).add(c2);
 * ```
 */
export class PackedSum {
  private acc: bigint | undefined;
  private used = 0;

  constructor(
    private readonly key: PaillierPublic,
    readonly layout: Packing,
  ) {}

  /** Terms added so far. */
  get terms(): number {
    return this.used;
  }

  /** Adds a ciphertext of one packed plaintext (`weight` > 1 if it already is a sum of that many). */
  add(c: bigint, weight = 1): this {
    if (!Number.isInteger(weight) || weight < 1) throw new RangeError('weight must be a positive integer');
    if (this.used + weight > this.layout.terms) {
      throw new RangeError(`packing budget exhausted: the layout allows ${this.layout.terms} terms, ${this.used} used`);
    }
    if (typeof c !== 'bigint' || c <= 0n || c >= this.key.n2) throw new RangeError('ciphertext is not in Z*_{n^2}: out of range');
    this.acc = this.acc === undefined ? c : this.key.add(this.acc, c);
    this.used += weight;
    return this;
  }

  /** The sum so far (E(0) when nothing was added). */
  get ciphertext(): bigint {
    return this.acc ?? this.key.encrypt(0n);
  }
}
