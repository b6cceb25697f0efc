/**
 * Sealing: hybrid public-key encryption for everything the PES publishes.
 *
 * - Aggregate seal (PES -> MDMS), one per message: a fresh AES-256 key wrapped with RSA-OAEP-SHA-256
 *   (RFC 8017 §7.1) to the recipient, then AES-256-GCM over the CBOR body.
 *   Envelope: `[1, kid(8), wrappedKey, iv(12), ciphertext||tag(16)]`, AAD = CBOR `[1, topic, kid]`.
 * - Stream seal (PES -> household): a content key per (household, epoch), wrapped once per epoch and carried
 *   in every message so each can be opened alone; one AES-GCM per message, no RSA operation per reading.
 *   Envelope: `[2, kid(8), epoch, wrappedKey, iv(12), ciphertext||tag(16)]`, AAD = CBOR `[2, topic, kid, epoch]`.
 * Binding the topic in the AAD means a sealed message re-published on another topic fails to open.
 * `kid` is the first 8 bytes of SHA-256 over the recipient's SubjectPublicKeyInfo (DER).
 * @module
 */
import { constants, createHash, createPublicKey, privateDecrypt, publicEncrypt, randomBytes, type KeyObject } from 'node:crypto';
import { gcmDecrypt, gcmEncrypt } from './aead.js';
import { asUint, cborDecode, cborEncode } from './cbor.js';
import { aggregateAad, CONTENT_KEY_BYTES, parseAggregateEnvelope, parseStream, SEAL_AGGREGATE, SEAL_IV_BYTES, SEAL_STREAM, SEAL_TAG_BYTES, streamAad } from './envelope.js';

/**
 * Key id of a public key: SHA-256(SPKI DER)[0..8].
 * @example
 * ```ts
 * keyId(publicKey).toString('hex');
 * ```
 */
export function keyId(publicKey: KeyObject): Buffer {
  const pub = publicKey.type === 'public' ? publicKey : createPublicKey(publicKey);
  const spki = pub.export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(spki).digest().subarray(0, 8);
}

/** RSA-OAEP-SHA-256 wrap of a symmetric key. */
export function wrapKey(publicKey: KeyObject, key: Uint8Array): Buffer {
  return publicEncrypt({ key: publicKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, key);
}

/** RSA-OAEP-SHA-256 unwrap; throws a clear error when the key does not match. */
export function unwrapKey(privateKey: KeyObject, wrapped: Uint8Array): Buffer {
  try {
    return privateDecrypt({ key: privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, wrapped);
  } catch {
    throw new Error('key unwrap failed: the private key does not match the sealed message');
  }
}

/**
 * Seals a CBOR-encodable body for the holder of `publicKey`, bound to `topic`.
 * @example
 * ```ts
 * const payload = sealAggregate(mdmsPublicKey, topics.neighbourhood('nb1'), aggregate);
 * ```
 */
export function sealAggregate(publicKey: KeyObject, topic: string, body: unknown): Buffer {
  const kid = keyId(publicKey);
  const key = randomBytes(CONTENT_KEY_BYTES);
  const iv = randomBytes(SEAL_IV_BYTES);
  try {
    const ct = gcmEncrypt(key, iv, cborEncode(body), aggregateAad(topic, kid), SEAL_TAG_BYTES);
    return cborEncode([SEAL_AGGREGATE, kid, wrapKey(publicKey, key), iv, ct]);
  } finally {
    key.fill(0);
  }
}

/**
 * Opens an aggregate seal. Throws if the key id differs from `privateKey`'s ("sealed for another key"),
 * if the topic differs from the one it was sealed for, or on any tampering.
 * @example
 * ```ts
 * const aggregate = openAggregate(mdmsPrivateKey, topic, payload);
 * ```
 */
export function openAggregate(privateKey: KeyObject, topic: string, payload: Uint8Array): unknown {
  const e = parseAggregateEnvelope(payload);
  const mine = keyId(createPublicKey(privateKey));
  if (!mine.equals(e.kid)) throw new Error(`sealed for key ${Buffer.from(e.kid).toString('hex')}, not ours (${mine.toString('hex')})`);
  const key = unwrapKey(privateKey, e.wrapped);
  try {
    const pt = gcmDecrypt(key, e.iv, e.ciphertext, aggregateAad(topic, e.kid), SEAL_TAG_BYTES);
    return cborDecode(pt);
  } finally {
    key.fill(0);
  }
}

/** A stream content key for one (household, epoch), with its wrapped form. */
export interface StreamKey {
  kid: Buffer;
  epoch: number;
  key: Buffer;
  wrapped: Buffer;
}

/**
 * Creates the content key for one epoch of a household stream (one RSA operation per epoch).
 * @example
 * ```ts
 * const sk = newStreamKey(householdPublicKey, 20410);
 * ```
 */
export function newStreamKey(publicKey: KeyObject, epoch: number): StreamKey {
  asUint(epoch, 'epoch', 0xffffffff);
  const key = randomBytes(CONTENT_KEY_BYTES);
  return { kid: keyId(publicKey), epoch, key, wrapped: wrapKey(publicKey, key) };
}

/**
 * Seals one stream message with an epoch content key.
 * @example
 * ```ts
 * client.publish(topic, sealStream(sk, topic, { meter, readings }), { qos: 1 });
 * ```
 */
export function sealStream(sk: StreamKey, topic: string, body: unknown): Buffer {
  const iv = randomBytes(SEAL_IV_BYTES);
  const ct = gcmEncrypt(sk.key, iv, cborEncode(body), streamAad(topic, sk.kid, sk.epoch), SEAL_TAG_BYTES);
  return cborEncode([SEAL_STREAM, sk.kid, sk.epoch, sk.wrapped, iv, ct]);
}

/**
 * Opens a stream message with the household's private key (Node side: `ucs watch`, the HA bridge, tests).
 * Pass a `cache` map to unwrap each epoch's key once.
 * @example
 * ```ts
 * const body = openStream(householdPrivateKey, topic, payload, new Map());
 * ```
 */
export function openStream(privateKey: KeyObject, topic: string, payload: Uint8Array, cache?: Map<string, Buffer>): unknown {
  const e = parseStream(payload);
  // The whole wrapped key is part of the cache key (§11.2: "per (kid, epoch, wrappedKey)"): with only a prefix,
  // an envelope whose wrapped key was altered after that prefix opened from the cache, although the RSA-OAEP
  // unwrap it stands for would fail.
  const id = `${Buffer.from(e.kid).toString('hex')}:${e.epoch}:${Buffer.from(e.wrapped).toString('base64')}`;
  let key = cache?.get(id);
  if (!key) {
    const mine = keyId(createPublicKey(privateKey));
    if (!mine.equals(e.kid)) throw new Error(`sealed for key ${Buffer.from(e.kid).toString('hex')}, not ours (${mine.toString('hex')})`);
    key = unwrapKey(privateKey, e.wrapped);
    cache?.set(id, key);
  }
  const pt = gcmDecrypt(key, e.iv, e.ciphertext, streamAad(topic, e.kid, e.epoch), SEAL_TAG_BYTES);
  return cborDecode(pt);
}
