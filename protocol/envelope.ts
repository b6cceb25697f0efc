/**
 * The outer layer of the two seals (docs/protocol.md §11), without any cryptography: constants, the AAD
 * each seal authenticates, and parsers that check the envelope's shape. Browser-safe (no node:crypto): the
 * Node sealer (protocol/seal.ts) and the browser opener (ucs/web/seal.ts) both build on it, so the two can
 * not disagree on a byte.
 *
 * - Aggregate seal: `[1, kid(8), wrappedKey, iv(12), ciphertext||tag(16), sig(64)]`, AAD = CBOR `[1, topic, kid]`;
 *   `sig` is the PES's Ed25519 signature (RFC 8032) over CBOR `[1, topic, kid, wrappedKey, iv, ciphertext||tag]`.
 * - Stream seal: `[2, kid(8), epoch, wrappedKey, epochSig(64), iv(12), ciphertext||tag(16)]`, AAD = CBOR
 *   `[2, topic, kid, epoch]`; `epochSig` is the PES's Ed25519 signature over CBOR `[2, topic, kid, epoch,
 *   wrappedKey]`, made once per epoch: it proves the content key came from the PES, so nobody else (a stolen
 *   broker password included) can get a message accepted on a household's stream.
 * @module
 */
import { asArray, asBytes, asUint, cborDecode, cborEncode } from './cbor.js';

/** Seal type of a PES -> MDMS aggregate (the envelope's first element). */
export const SEAL_AGGREGATE = 1;
/** Seal type of a PES -> household stream message. */
export const SEAL_STREAM = 2;
/** Bytes of a key id: SHA-256(SPKI DER)[0..8]. */
export const KID_BYTES = 8;
/** Bytes of an AES-GCM IV in a seal. */
export const SEAL_IV_BYTES = 12;
/** Bytes of the AES-GCM tag in a seal (appended to the ciphertext). */
export const SEAL_TAG_BYTES = 16;
/** Bytes of a content key (AES-256). */
export const CONTENT_KEY_BYTES = 32;
/** Bytes of an Ed25519 signature (RFC 8032 §5.1.6). */
export const SIG_BYTES = 64;

/** The parsed outer layer of an aggregate seal. */
export interface AggregateEnvelope {
  kid: Uint8Array;
  wrapped: Uint8Array;
  iv: Uint8Array;
  /** Ciphertext followed by the 16-byte tag. */
  ciphertext: Uint8Array;
  /** The PES's Ed25519 signature over {@link aggregateSigned}. */
  sig: Uint8Array;
}

/** The parsed outer layer of a stream message (what a browser needs before its WebCrypto unwrap). */
export interface StreamEnvelope {
  kid: Uint8Array;
  epoch: number;
  wrapped: Uint8Array;
  /** The PES's Ed25519 signature over {@link streamEpochSigned}. */
  epochSig: Uint8Array;
  iv: Uint8Array;
  /** Ciphertext followed by the 16-byte tag. */
  ciphertext: Uint8Array;
}

/**
 * What the PES signs for an aggregate: CBOR `[1, topic, kid, wrappedKey, iv, ciphertext||tag]` (the whole
 * envelope but the signature, and the topic it is published on).
 * @example
 * ```ts
 * verify(null, aggregateSigned(topic, env), pesSigningPublicKey, env.sig);
 * ```
 */
export function aggregateSigned(topic: string, e: Omit<AggregateEnvelope, 'sig'>): Uint8Array {
  return cborEncode([SEAL_AGGREGATE, topic, e.kid, e.wrapped, e.iv, e.ciphertext]);
}

/**
 * What the PES signs once per stream epoch: CBOR `[2, topic, kid, epoch, wrappedKey]`.
 * @example
 * ```ts
 * const epochSig = sign(null, streamEpochSigned(topic, kid, epoch, wrapped), pesSigningKey);
 * ```
 */
export function streamEpochSigned(topic: string, kid: Uint8Array, epoch: number, wrapped: Uint8Array): Uint8Array {
  return cborEncode([SEAL_STREAM, topic, asBytes(kid, 'kid', KID_BYTES), asUint(epoch, 'epoch', 0xffffffff), wrapped]);
}

/**
 * The AAD of an aggregate seal: CBOR `[1, topic, kid]`.
 * @example
 * ```ts
 * aggregateAad('sm/v1/agg/neighbourhood/nb1', kid); // bytes 83 01 78 1b ...
 * ```
 */
export function aggregateAad(topic: string, kid: Uint8Array): Uint8Array {
  return cborEncode([SEAL_AGGREGATE, topic, asBytes(kid, 'kid', KID_BYTES)]);
}

/**
 * The AAD of a stream message: CBOR `[2, topic, kid, epoch]`.
 * @example
 * ```ts
 * streamAad('sm/v1/household/hh1/readings', kid, 20410);
 * ```
 */
export function streamAad(topic: string, kid: Uint8Array, epoch: number): Uint8Array {
  return cborEncode([SEAL_STREAM, topic, asBytes(kid, 'kid', KID_BYTES), asUint(epoch, 'epoch', 0xffffffff)]);
}

function ciphertext(v: unknown): Uint8Array {
  const ct = asBytes(v, 'ciphertext');
  if (ct.length < SEAL_TAG_BYTES) throw new TypeError('ciphertext shorter than the tag');
  return ct;
}

/**
 * Parses an aggregate envelope without opening it; throws `TypeError` naming the bad element.
 * @example
 * ```ts
 * const { kid } = parseAggregateEnvelope(payload); // which key it was sealed for
 * ```
 */
export function parseAggregateEnvelope(payload: Uint8Array): AggregateEnvelope {
  const a = asArray(cborDecode(payload), 'sealed aggregate', 5, 6);
  if (asUint(a[0], 'seal type', 255) !== SEAL_AGGREGATE) throw new TypeError('not an aggregate seal');
  if (a.length !== 6) throw new TypeError('unsigned aggregate seal (no PES signature)');
  return { kid: asBytes(a[1], 'kid', KID_BYTES), wrapped: asBytes(a[2], 'wrapped key'), iv: asBytes(a[3], 'iv', SEAL_IV_BYTES), ciphertext: ciphertext(a[4]), sig: asBytes(a[5], 'signature', SIG_BYTES) };
}

/**
 * Parses a stream envelope without opening it; throws `TypeError` naming the bad element.
 * @example
 * ```ts
 * const { kid, epoch } = parseStream(payload);
 * ```
 */
export function parseStream(payload: Uint8Array): StreamEnvelope {
  const a = asArray(cborDecode(payload), 'sealed stream message', 6, 7);
  if (asUint(a[0], 'seal type', 255) !== SEAL_STREAM) throw new TypeError('not a stream seal');
  if (a.length !== 7) throw new TypeError('unsigned stream seal (no PES epoch signature)');
  return {
    kid: asBytes(a[1], 'kid', KID_BYTES),
    epoch: asUint(a[2], 'epoch', 0xffffffff),
    wrapped: asBytes(a[3], 'wrapped key'),
    epochSig: asBytes(a[4], 'epoch signature', SIG_BYTES),
    iv: asBytes(a[5], 'iv', SEAL_IV_BYTES),
    ciphertext: ciphertext(a[6]),
  };
}

/**
 * Seal type of a meter -> household stream message (the end-to-end mode, docs/protocol.md §11.5): sealed by the
 * meter itself under the household's stream key, forwarded unopened by the PES.
 */
export const SEAL_METER_STREAM = 3;
/** Bytes of a meter's system title (docs/protocol.md §6). */
export const SYSTEM_TITLE_BYTES = 8;

/** The parsed outer layer of a meter-sealed stream message. */
export interface MeterStreamEnvelope {
  /** The sealing meter's system title. */
  systemTitle: Uint8Array;
  /** The invocation counter of the ciphered frame that carried it (§6, §8). */
  ic: number;
  iv: Uint8Array;
  /** Ciphertext followed by the 16-byte tag. */
  ciphertext: Uint8Array;
}

/**
 * The AAD of a meter-sealed stream message: CBOR `[3, topic, systemTitle, ic]`. It binds the household's topic,
 * the meter and the frame, so a message moved to another household, relabelled as another meter's, or replayed
 * under another frame's counter does not open.
 * @example
 * ```ts
 * meterStreamAad('sm/v1/household/hh1/readings', systemTitle, 7);
 * ```
 */
export function meterStreamAad(topic: string, systemTitle: Uint8Array, ic: number): Uint8Array {
  return cborEncode([SEAL_METER_STREAM, topic, asBytes(systemTitle, 'system title', SYSTEM_TITLE_BYTES), asUint(ic, 'ic', 0xffffffff)]);
}

/**
 * The seal type of a household stream message (its first element: {@link SEAL_STREAM} or
 * {@link SEAL_METER_STREAM}); throws `TypeError` if it is neither.
 * @example
 * ```ts
 * if (streamSealType(payload) === SEAL_METER_STREAM) body = openMeterStream(streamKey, topic, payload);
 * ```
 */
export function streamSealType(payload: Uint8Array): typeof SEAL_STREAM | typeof SEAL_METER_STREAM {
  const a = asArray(cborDecode(payload), 'sealed stream message', 5, 7);
  const t = asUint(a[0], 'seal type', 255);
  if (t !== SEAL_STREAM && t !== SEAL_METER_STREAM) throw new TypeError('not a stream seal');
  return t;
}

/**
 * Parses a meter-sealed stream envelope `[3, systemTitle(8), ic, iv(12), ciphertext||tag]` without opening it;
 * throws `TypeError` naming the bad element.
 * @example
 * ```ts
 * const { systemTitle, ic } = parseMeterStream(payload);
 * ```
 */
export function parseMeterStream(payload: Uint8Array): MeterStreamEnvelope {
  const a = asArray(cborDecode(payload), 'meter-sealed stream message', 5, 5);
  if (asUint(a[0], 'seal type', 255) !== SEAL_METER_STREAM) throw new TypeError('not a meter stream seal');
  return { systemTitle: asBytes(a[1], 'system title', SYSTEM_TITLE_BYTES), ic: asUint(a[2], 'ic', 0xffffffff), iv: asBytes(a[3], 'iv', SEAL_IV_BYTES), ciphertext: ciphertext(a[4]) };
}
