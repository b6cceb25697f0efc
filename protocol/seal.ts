/**
 * Sealing: hybrid public-key encryption for everything the PES publishes.
 *
 * - Aggregate seal (PES -> MDMS), one per message: a fresh AES-256 key wrapped with RSA-OAEP-SHA-256
 *   (RFC 8017 §7.1) to the recipient, then AES-256-GCM over the CBOR body.
 *   Envelope: `[1, kid(8), wrappedKey, iv(12), ciphertext||tag(16), sig(64)]`, AAD = CBOR `[1, topic, kid]`;
 *   `sig` is the PES's Ed25519 signature over CBOR `[1, topic, kid, wrappedKey, iv, ciphertext||tag]`.
 * - Stream seal (PES -> household): a content key per (household, epoch), wrapped once per epoch and carried
 *   in every message so each can be opened alone; one AES-GCM per message, no RSA operation per reading.
 *   Envelope: `[2, kid(8), epoch, wrappedKey, epochSig(64), iv(12), ciphertext||tag(16)]`, AAD = CBOR
 *   `[2, topic, kid, epoch]`; `epochSig` is the PES's Ed25519 signature over CBOR `[2, topic, kid, epoch, wrappedKey]`.
 * Binding the topic in the AAD means a sealed message re-published on another topic fails to open.
 * `kid` is the first 8 bytes of SHA-256 over the recipient's SubjectPublicKeyInfo (DER).
 * @module
 */
import { constants, createHash, createPublicKey, privateDecrypt, publicEncrypt, randomBytes, sign, verify, type KeyObject } from 'node:crypto';
import { gcmDecrypt, gcmEncrypt } from './aead.js';
import { asUint, cborDecode, cborEncode } from './cbor.js';
import { aggregateAad, aggregateSigned, CONTENT_KEY_BYTES, parseAggregateEnvelope, parseStream, SEAL_AGGREGATE, SEAL_IV_BYTES, SEAL_STREAM, SEAL_TAG_BYTES, streamAad, streamEpochSigned } from './envelope.js';

/**
 * A seal whose PES signature is missing or does not verify: not from the PES (a forgery with a stolen broker
 * password, or a PES with another signing key).
 * @example
 * ```ts
 * if (e instanceof SignatureError) counters.badSignature++;
 * ```
 */
export class SignatureError extends Error {
  override name = 'SignatureError';
}

function checkSigner(key: KeyObject, type: 'private' | 'public'): void {
  if (!key || key.asymmetricKeyType !== 'ed25519' || key.type !== type) throw new TypeError(`the PES signing key must be an Ed25519 ${type} key`);
}

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
 * Seals a CBOR-encodable body for the holder of `publicKey`, bound to `topic`, signed with the PES's Ed25519
 * key `signer`.
 * @example
 * ```ts
 * const payload = sealAggregate(mdmsPublicKey, topics.neighbourhood('nb1'), aggregate, pesSigningKey);
 * ```
 */
export function sealAggregate(publicKey: KeyObject, topic: string, body: unknown, signer: KeyObject): Buffer {
  checkSigner(signer, 'private');
  const kid = keyId(publicKey);
  const key = randomBytes(CONTENT_KEY_BYTES);
  const iv = randomBytes(SEAL_IV_BYTES);
  try {
    const ct = gcmEncrypt(key, iv, cborEncode(body), aggregateAad(topic, kid), SEAL_TAG_BYTES);
    const env = { kid, wrapped: wrapKey(publicKey, key), iv, ciphertext: ct };
    return cborEncode([SEAL_AGGREGATE, env.kid, env.wrapped, env.iv, env.ciphertext, sign(null, aggregateSigned(topic, env), signer)]);
  } finally {
    key.fill(0);
  }
}

/**
 * Opens an aggregate seal. Throws {@link SignatureError} unless the PES's signature (`signer`, its Ed25519
 * public key) verifies over the envelope and `topic`; throws if the key id differs from `privateKey`'s
 * ("sealed for another key"), if the topic differs from the one it was sealed for, or on any tampering.
 * @example
 * ```ts
 * const aggregate = openAggregate(mdmsPrivateKey, topic, payload, pesSigningPublicKey);
 * ```
 */
export function openAggregate(privateKey: KeyObject, topic: string, payload: Uint8Array, signer: KeyObject): unknown {
  checkSigner(signer, 'public');
  let e;
  try {
    e = parseAggregateEnvelope(payload);
  } catch (err) {
    if (/unsigned/.test((err as Error).message)) throw new SignatureError((err as Error).message);
    throw err;
  }
  if (!verify(null, aggregateSigned(topic, e), signer, e.sig)) throw new SignatureError('aggregate seal: the PES signature does not verify');
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

/** A stream content key for one (household, epoch), with its wrapped form and the PES's epoch signature. */
export interface StreamKey {
  kid: Buffer;
  epoch: number;
  key: Buffer;
  wrapped: Buffer;
  /** The household topic the epoch signature covers. */
  topic: string;
  epochSig: Buffer;
}

/**
 * Creates the content key for one epoch of a household stream on `topic` (one RSA operation and one Ed25519
 * signature per epoch).
 * @example
 * ```ts
 * const sk = newStreamKey(householdPublicKey, 20410, topics.household('hh1'), pesSigningKey);
 * ```
 */
export function newStreamKey(publicKey: KeyObject, epoch: number, topic: string, signer: KeyObject): StreamKey {
  asUint(epoch, 'epoch', 0xffffffff);
  checkSigner(signer, 'private');
  const key = randomBytes(CONTENT_KEY_BYTES);
  const kid = keyId(publicKey);
  const wrapped = wrapKey(publicKey, key);
  return { kid, epoch, key, wrapped, topic, epochSig: sign(null, streamEpochSigned(topic, kid, epoch, wrapped), signer) };
}

/**
 * Seals one stream message with an epoch content key.
 * @example
 * ```ts
 * client.publish(topic, sealStream(sk, topic, { meter, readings }), { qos: 1 });
 * ```
 */
export function sealStream(sk: StreamKey, topic: string, body: unknown): Buffer {
  if (topic !== sk.topic) throw new TypeError('stream key was made (and signed) for another topic');
  const iv = randomBytes(SEAL_IV_BYTES);
  const ct = gcmEncrypt(sk.key, iv, cborEncode(body), streamAad(topic, sk.kid, sk.epoch), SEAL_TAG_BYTES);
  return cborEncode([SEAL_STREAM, sk.kid, sk.epoch, sk.wrapped, sk.epochSig, iv, ct]);
}

/**
 * Opens a stream message with the household's private key (Node side: `ucs watch`, the HA bridge, tests),
 * after checking the PES's epoch signature with `signer` (its Ed25519 public key; {@link SignatureError}).
 * Pass a `cache` map to unwrap (and verify) each epoch's key once.
 * @example
 * ```ts
 * const body = openStream(householdPrivateKey, pesSigningPublicKey, topic, payload, new Map());
 * ```
 */
export function openStream(privateKey: KeyObject, signer: KeyObject, topic: string, payload: Uint8Array, cache?: Map<string, Buffer>): unknown {
  checkSigner(signer, 'public');
  let e;
  try {
    e = parseStream(payload);
  } catch (err) {
    if (/unsigned/.test((err as Error).message)) throw new SignatureError((err as Error).message);
    throw err;
  }
  // The whole wrapped key and the signature are part of the cache key (§11.2: "per (kid, epoch, wrappedKey)"):
  // with only a prefix, an envelope whose wrapped key was altered after that prefix opened from the cache,
  // although the RSA-OAEP unwrap it stands for would fail; without the signature, a forged signature would.
  const id = `${topic}:${Buffer.from(e.kid).toString('hex')}:${e.epoch}:${Buffer.from(e.wrapped).toString('base64')}:${Buffer.from(e.epochSig).toString('base64')}`;
  let key = cache?.get(id);
  if (!key) {
    if (!verify(null, streamEpochSigned(topic, e.kid, e.epoch, e.wrapped), signer, e.epochSig)) throw new SignatureError('stream seal: the PES epoch signature does not verify');
    const mine = keyId(createPublicKey(privateKey));
    if (!mine.equals(e.kid)) throw new Error(`sealed for key ${Buffer.from(e.kid).toString('hex')}, not ours (${mine.toString('hex')})`);
    key = unwrapKey(privateKey, e.wrapped);
    cache?.set(id, key);
  }
  const pt = gcmDecrypt(key, e.iv, e.ciphertext, streamAad(topic, e.kid, e.epoch), SEAL_TAG_BYTES);
  return cborDecode(pt);
}
