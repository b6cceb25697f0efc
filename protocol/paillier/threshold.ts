/**
 * Two-party (2-of-2) threshold decryption for the engine's keys: the end-to-end mode splits the Paillier
 * secret between the PES and the guardian, so that neither can decrypt anything alone (docs/paillier.md,
 * "Two-party threshold decryption").
 *
 * Construction: the trusted-dealer 2-of-2 case of threshold Paillier with an additive split of the
 * decryption exponent over the integers, as in Damgard and Jurik (PKC 2001, §4, the exponent d with
 * d = 0 mod lambda and d = 1 mod n) and Hazay, Mikkelsen, Rabin and Toft ("Efficient RSA key generation and
 * threshold Paillier in the two-party setting", CT-RSA 2012 / J. Cryptology 2019, the additive 2-party
 * sharing of d with a statistically hiding share), with g = n + 1 as everywhere in the engine.
 * - lambda = lcm(p - 1, q - 1), d0 = lambda (lambda^-1 mod n): d0 = 0 mod lambda, d0 = 1 mod n.
 * - R = 2^sigma n^2 with sigma = {@link STATISTICAL_BITS} (128), a bound made from the public n only.
 * - d = d0 + K n lambda with the smallest K that makes d >= R. Every element of Z*_{n^2} has an order that
 *   divides n lambda, so d is a decryption exponent as good as d0 (d = 0 mod lambda, d = 1 mod n).
 * - d_pes uniform in [1, R), d_guardian = d - d_pes, which lies in (0, R + n lambda): both shares are
 *   positive, so neither holder inverts anything. d_pes is exactly, and d_guardian (uniform on
 *   [d - R + 1, d], with 0 <= d - R < n lambda) within statistical distance n lambda / R < 2^-sigma of, the
 *   uniform distribution on [1, R), whatever the key: a share says nothing about lambda, d or the factors.
 * - Partial decryption c_i = c^(d_i) mod n^2 (OpenSSL's constant-time Montgomery exponentiation, modexp.ts:
 *   a share holder knows no factor, so no CRT); combination c_pes c_guardian = c^d = 1 + m n mod n^2 for
 *   c = (1 + n)^m y^n, and m = L(c_pes c_guardian mod n^2) with L(x) = (x - 1) / n.
 *
 * What is not here: a proof that a partial decryption is correct (a non-goal). A wrong partial makes the
 * product fail L's integrality check (refused, {@link combinePartials}) unless it was crafted as
 * c^(d_i) (1 + delta n), which shifts the plaintext by delta: the receiver detects that only through the
 * plaintext's own bounds (packing slots, signed magnitudes: decodeSigned's maxAbs), so a guardian's partials
 * must be authenticated (signed) by whoever carries them.
 *
 * Secrets: shares are bigints, which JavaScript cannot overwrite; the Buffers made from them are zeroed, and
 * {@link destroyShare} drops the OpenSSL object that last held the exponent. The dealer (`provision --e2e`)
 * should destroy the private key after {@link splitKey}.
 * @example
 * ```ts
 * const { pes, guardian } = splitKey(key);
 * const c = key.publicKey.encrypt(42n);
 * combinePartials(key.publicKey, partialDecrypt(pes, c), partialDecrypt(guardian, c)); // 42n
 * ```
 * @module
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { asArray, asBytes, asUint, cborDecode, cborEncode } from '../cbor.js';
import { bitLength, fromBytes, gcd, modInv, randomBelow, toBytes } from './arith.js';
import { ciphertextToBytes, encodeCiphertext } from './codec.js';
import { keyIdBytes, PrivateKey, PublicKey } from './keys.js';
import { Modulus } from './modexp.js';

/**
 * Format version of serialised shares and partial decryptions (their first CBOR item).
 * @example
 * ```ts
 * (cborDecode(encodeShare(share)) as unknown[])[0] === THRESHOLD_FORMAT; // true
 * ```
 */
export const THRESHOLD_FORMAT = 1;

/**
 * sigma: a share is within statistical distance 2^-sigma of a key-independent distribution.
 * @example
 * ```ts
 * shareBound(pub) === (pub.n2 << BigInt(STATISTICAL_BITS)) + pub.n2; // true
 * ```
 */
export const STATISTICAL_BITS = 128;

/** The two share holders. On the wire: 1 = pes, 2 = guardian. */
export type Party = 'pes' | 'guardian';

/**
 * The wire number of each party (and its inverse, {@link partyOf}).
 * @example
 * ```ts
 * PARTY_NUMBER.guardian; // 2
 * ```
 */
export const PARTY_NUMBER: Readonly<Record<Party, number>> = Object.freeze({ pes: 1, guardian: 2 });

/**
 * The party a wire number names; TypeError for anything but 1 or 2.
 * @example
 * ```ts
 * partyOf(1); // 'pes'
 * ```
 */
export function partyOf(v: unknown): Party {
  if (v === 1) return 'pes';
  if (v === 2) return 'guardian';
  throw new TypeError(`share holder must be 1 (pes) or 2 (guardian), got ${String(v)}`);
}

/** One party's share of the decryption exponent. Secret: never log it, write it 0600 (or sealed). */
export interface DecryptionShare {
  readonly publicKey: PublicKey;
  readonly party: Party;
  /** d_i, in (0, {@link shareBound}). */
  readonly exponent: bigint;
}

/** A partial decryption c^(d_i) mod n^2, named by its party and the ciphertext it was made from. */
export interface PartialDecryption {
  readonly party: Party;
  /** {@link ciphertextId} of the ciphertext (16 bytes). */
  readonly ciphertextId: Buffer;
  /** c^(d_i) mod n^2, a unit of Z*_{n^2}. */
  readonly value: bigint;
}

/**
 * Every share lies in (0, shareBound): R + n^2 with R = 2^sigma n^2 (public, from n only).
 * @example
 * ```ts
 * share.exponent < shareBound(share.publicKey); // true
 * ```
 */
export function shareBound(pub: PublicKey): bigint {
  return (pub.n2 << BigInt(STATISTICAL_BITS)) + pub.n2;
}

/**
 * 16 bytes naming a ciphertext under a key: SHA-256(encodeCiphertext(pub, c))[0..16]. A partial carries it,
 * so partials of different ciphertexts are refused instead of combined into garbage.
 * @example
 * ```ts
 * ciphertextId(pub, c).toString('hex'); // '3f0c...' (32 hex digits)
 * ```
 */
export function ciphertextId(pub: PublicKey, c: bigint): Buffer {
  return createHash('sha256').update(encodeCiphertext(pub, c)).digest().subarray(0, 16);
}

function checkPub(pub: unknown): PublicKey {
  if (!(pub instanceof PublicKey)) throw new TypeError('expected a Paillier public key of this engine');
  return pub;
}

function checkParty(party: unknown): Party {
  if (party !== 'pes' && party !== 'guardian') throw new TypeError(`share holder must be 'pes' or 'guardian', got ${String(party)}`);
  return party;
}

function checkExponent(pub: PublicKey, d: unknown): bigint {
  if (typeof d !== 'bigint') throw new TypeError('share exponent must be a bigint');
  if (d <= 0n || d >= shareBound(pub)) throw new TypeError('share exponent is out of range (0, 2^sigma n^2 + n^2)');
  return d;
}

function checkShare(share: unknown): DecryptionShare {
  const s = share as DecryptionShare;
  if (typeof s !== 'object' || s === null) throw new TypeError('expected a decryption share');
  checkExponent(checkPub(s.publicKey), s.exponent);
  checkParty(s.party);
  return s;
}

function makeShare(publicKey: PublicKey, party: Party, exponent: bigint): DecryptionShare {
  return Object.freeze({ publicKey, party, exponent: checkExponent(publicKey, exponent) });
}

/**
 * Splits a private key into the PES's and the guardian's shares (the dealer's step, `provision --e2e`):
 * d = lambda (lambda^-1 mod n) + K n lambda >= R, d_pes uniform in [1, R), d_guardian = d - d_pes. `random`
 * (default: the OS CSPRNG) must return a uniform integer in [0, bound); it is a parameter for test vectors
 * only. The caller should destroy the private key afterwards: the shares replace it.
 * @example
 * ```ts
 * const key = await generatePaillier(2048);
 * const { pes, guardian } = splitKey(key);
 * await key.destroy();
 * ```
 */
export function splitKey(key: PrivateKey, random: (bound: bigint) => bigint = randomBelow): { pes: DecryptionShare; guardian: DecryptionShare } {
  if (!(key instanceof PrivateKey)) throw new TypeError('splitKey needs a Paillier private key of this engine');
  if (typeof random !== 'function') throw new TypeError('random must be a function');
  const { p, q } = key.primes;
  const pub = key.publicKey as PublicKey;
  const p1 = p - 1n;
  const q1 = q - 1n;
  const lambda = (p1 / gcd(p1, q1)) * q1;
  const d0 = lambda * modInv(lambda, key.n); // = 0 mod lambda, = 1 mod n
  const order = key.n * lambda; // a multiple of every element's order in Z*_{n^2}
  const R = pub.n2 << BigInt(STATISTICAL_BITS);
  const d = d0 >= R ? d0 : d0 + ((R - d0 + order - 1n) / order) * order; // smallest d = d0 mod order with d >= R
  let d1 = 0n;
  for (let i = 0; d1 === 0n; i++) {
    if (i === 8) throw new TypeError('random returned 0 eight times: not a uniform source');
    d1 = random(R);
    if (typeof d1 !== 'bigint' || d1 < 0n || d1 >= R) throw new TypeError('random(bound) must return a bigint in [0, bound)');
  }
  return { pes: makeShare(pub, 'pes', d1), guardian: makeShare(pub, 'guardian', d - d1) };
}

// One OpenSSL modulus object per share: it holds the last exponent set into it until destroyShare.
const moduli = new WeakMap<DecryptionShare, Modulus>();

/**
 * The party's partial decryption of ciphertext c: c^(d_i) mod n^2, with the ciphertext's id. c must be a
 * unit of Z*_{n^2} (TypeError otherwise). Alone it reveals nothing about the plaintext.
 * @example
 * ```ts
 * const mine = partialDecrypt(guardianShare, aggregate);
 * publish(topic, encodePartial(guardianShare.publicKey, mine));
 * ```
 */
export function partialDecrypt(share: DecryptionShare, c: bigint): PartialDecryption {
  const s = checkShare(share);
  const pub = s.publicKey;
  if (typeof c !== 'bigint' || !pub.isCiphertext(c)) throw new TypeError('not a ciphertext under this key: outside Z*_{n^2}');
  let mod = moduli.get(s);
  if (!mod) moduli.set(s, (mod = new Modulus(pub.n2)));
  return Object.freeze({ party: s.party, ciphertextId: ciphertextId(pub, c), value: mod.pow(c, s.exponent) });
}

/**
 * Drops the OpenSSL object that holds the share's exponent (a BigInt itself cannot be overwritten in JS:
 * drop every reference to the share too).
 * @example
 * ```ts
 * destroyShare(share);
 * ```
 */
export function destroyShare(share: DecryptionShare): void {
  moduli.get(share)?.dispose();
  moduli.delete(share);
}

function checkPartial(pub: PublicKey, x: unknown, what: string): PartialDecryption {
  const p = x as PartialDecryption;
  if (typeof p !== 'object' || p === null) throw new TypeError(`${what} must be a partial decryption`);
  checkParty(p.party);
  if (!(p.ciphertextId instanceof Uint8Array) || p.ciphertextId.length !== 16) throw new TypeError(`${what}: ciphertext id must be 16 bytes`);
  if (typeof p.value !== 'bigint' || !pub.isCiphertext(p.value)) throw new TypeError(`${what}: value is not a unit of Z*_{n^2}`);
  return p;
}

/**
 * The plaintext residue in [0, n) from the two parties' partial decryptions of the same ciphertext:
 * m = L(c_pes c_guardian mod n^2). Refuses (TypeError) two partials of one party, partials of different
 * ciphertexts (or not of `c`, when given), and a product that is not 1 mod n (a wrong partial). A partial
 * crafted to shift the plaintext passes: check the result against its bounds (module doc).
 * @example
 * ```ts
 * const m = combinePartials(pub, pesPartial, guardianPartial, aggregate);
 * layout.unpack(m);
 * ```
 */
export function combinePartials(pub: PublicKey, a: PartialDecryption, b: PartialDecryption, c?: bigint): bigint {
  checkPub(pub);
  checkPartial(pub, a, 'first partial');
  checkPartial(pub, b, 'second partial');
  if (a.party === b.party) throw new TypeError(`both partial decryptions are the ${a.party}'s: one of each party is needed`);
  if (!timingSafeEqual(a.ciphertextId, b.ciphertextId)) throw new TypeError('the partial decryptions are of different ciphertexts');
  if (c !== undefined && !timingSafeEqual(a.ciphertextId, ciphertextId(pub, c))) throw new TypeError('the partial decryptions are not of this ciphertext');
  const x = (a.value * b.value) % pub.n2;
  if ((x - 1n) % pub.n !== 0n) throw new TypeError('the partial decryptions do not combine (c^d != 1 mod n): a partial is wrong or under another key');
  return (x - 1n) / pub.n;
}

function keyIdMatches(pub: PublicKey, v: unknown): void {
  const kid = Buffer.from(asBytes(v, 'key id', 8));
  const mine = keyIdBytes(pub.n);
  if (!timingSafeEqual(kid, mine)) throw new TypeError(`made under Paillier key ${kid.toString('hex')}, not ${mine.toString('hex')}`);
}

/**
 * CBOR `[1, keyId(8), party (1 pes | 2 guardian), d_i (minimal big-endian bytes)]`. Secret: write it 0600 or
 * sealed, and `fill(0)` the bytes after writing.
 * @example
 * ```ts
 * writeSecret('guardian/paillier.share', sealBlob(encodeShare(guardian)));
 * ```
 */
export function encodeShare(share: DecryptionShare): Buffer {
  const s = checkShare(share);
  const d = toBytes(s.exponent);
  try {
    return cborEncode([THRESHOLD_FORMAT, keyIdBytes(s.publicKey.n), PARTY_NUMBER[s.party], d]);
  } finally {
    d.fill(0);
  }
}

/**
 * Parses {@link encodeShare}'s output under `pub`: refuses (TypeError) a share made for another key, another
 * party than `expectParty` (when given), a non-minimal or out-of-range exponent. The caller should `fill(0)`
 * the bytes it read.
 * @example
 * ```ts
 * const share = decodeShare(pub, bytes, 'guardian');
 * ```
 */
export function decodeShare(pub: PublicKey, bytes: Uint8Array, expectParty?: Party): DecryptionShare {
  checkPub(pub);
  const a = asArray(cborDecode(bytes), 'Paillier decryption share', 4, 4);
  if (asUint(a[0], 'share format', 255) !== THRESHOLD_FORMAT) throw new TypeError('unsupported decryption share format');
  try {
    keyIdMatches(pub, a[1]);
  } catch (e) {
    throw new TypeError(`decryption share ${(e as Error).message}`);
  }
  const party = partyOf(a[2]);
  if (expectParty !== undefined && party !== checkParty(expectParty)) throw new TypeError(`decryption share is the ${party}'s, expected the ${expectParty}'s`);
  const d = asBytes(a[3], 'share exponent');
  if (d.length === 0 || d[0] === 0) throw new TypeError('share exponent must be a minimal big-endian integer');
  if (d.length > Math.ceil(bitLength(shareBound(pub)) / 8)) throw new TypeError('share exponent is out of range (0, 2^sigma n^2 + n^2)');
  return makeShare(pub, party, fromBytes(d));
}

/**
 * The wire form of a partial decryption: CBOR `[1, keyId(8), party (1 | 2), ciphertextId(16), c^(d_i) as
 * |n^2|/8 bytes big-endian]` (the payload a guardian publishes, docs/paillier.md).
 * @example
 * ```ts
 * const bytes = encodePartial(pub, partialDecrypt(share, c)); // 539 bytes at 2048 bits
 * ```
 */
export function encodePartial(pub: PublicKey, partial: PartialDecryption): Buffer {
  checkPub(pub);
  const p = checkPartial(pub, partial, 'partial');
  return cborEncode([THRESHOLD_FORMAT, keyIdBytes(pub.n), PARTY_NUMBER[p.party], Buffer.from(p.ciphertextId), ciphertextToBytes(pub, p.value)]);
}

/**
 * Parses {@link encodePartial}'s output under `pub` (bytes from outside: everything is checked, TypeError on
 * any defect): format, key id, party (and `expectParty` when given), a 16-byte ciphertext id, a value of
 * the exact length that is a unit of Z*_{n^2}.
 * @example
 * ```ts
 * const theirs = decodePartial(pub, payload, 'guardian');
 * const m = combinePartials(pub, partialDecrypt(pesShare, c), theirs, c);
 * ```
 */
export function decodePartial(pub: PublicKey, bytes: Uint8Array, expectParty?: Party): PartialDecryption {
  checkPub(pub);
  const a = asArray(cborDecode(bytes), 'partial decryption', 5, 5);
  if (asUint(a[0], 'partial decryption format', 255) !== THRESHOLD_FORMAT) throw new TypeError('unsupported partial decryption format');
  try {
    keyIdMatches(pub, a[1]);
  } catch (e) {
    throw new TypeError(`partial decryption ${(e as Error).message}`);
  }
  const party = partyOf(a[2]);
  if (expectParty !== undefined && party !== checkParty(expectParty)) throw new TypeError(`partial decryption is the ${party}'s, expected the ${expectParty}'s`);
  const id = Buffer.from(asBytes(a[3], 'ciphertext id', 16));
  const raw = asBytes(a[4], 'partial decryption value');
  const len = Math.ceil((2 * pub.bits) / 8);
  if (raw.length !== len) throw new TypeError(`partial decryption value must be ${len} bytes, got ${raw.length}`);
  return checkPartial(pub, { party, ciphertextId: id, value: fromBytes(raw) }, 'partial');
}
