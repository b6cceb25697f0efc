/**
 * Opens household stream messages with WebCrypto (docs/protocol.md §11.2):
 * `[2, kid, epoch, wrappedKey, iv, ciphertext‖tag]`, AAD = CBOR `[2, topic, kid, epoch]`. The content key of
 * each (kid, epoch, wrappedKey) is unwrapped once (RSA-OAEP-SHA-256) and cached as a non-extractable AES key.
 * This is protocol/seal.ts `openStream` for the browser, where node:crypto does not exist.
 * @module
 */
import { asArray, asBytes, asUint, cborDecode, cborEncode } from '../../protocol/cbor.js';
import { ab, hex, sameBytes } from './bytes.js';

const SEAL_STREAM = 2;
const CACHE_MAX = 64;

/** Why a message did not open: counted by the app and shown to the household. */
export type OpenFailure = 'malformed' | 'otherKey' | 'tampered';

/**
 * A message that could not be opened, and why.
 * @example
 * ```ts
 * if (e instanceof OpenError && e.reason === 'otherKey') counters.otherKey++;
 * ```
 */
export class OpenError extends Error {
  constructor(
    readonly reason: OpenFailure,
    message: string,
  ) {
    super(message);
    this.name = 'OpenError';
  }
}

/**
 * Opens stream messages for one household key.
 * @example
 * ```ts
 * const opener = new StreamOpener(privateKey, await keyIdOf(spki));
 * const body = parseStreamBody(await opener.open(topics.household('hh1'), payload));
 * ```
 */
export class StreamOpener {
  private readonly cache = new Map<string, Promise<CryptoKey>>();
  /** RSA unwraps done (one per epoch when all goes well). */
  unwraps = 0;

  constructor(
    private readonly privateKey: CryptoKey,
    private readonly kid: Uint8Array,
  ) {
    if (kid.length !== 8) throw new TypeError('kid must be 8 bytes');
  }

  /** Decrypts one message and returns its decoded CBOR body; throws {@link OpenError}. */
  async open(topic: string, payload: Uint8Array): Promise<unknown> {
    let kid: Uint8Array, epoch: number, wrapped: Uint8Array, iv: Uint8Array, ct: Uint8Array;
    try {
      const a = asArray(cborDecode(payload), 'sealed stream message', 6, 6);
      if (asUint(a[0], 'seal type', 255) !== SEAL_STREAM) throw new TypeError('not a stream seal');
      kid = asBytes(a[1], 'kid', 8);
      epoch = asUint(a[2], 'epoch', 0xffffffff);
      wrapped = asBytes(a[3], 'wrapped key');
      iv = asBytes(a[4], 'iv', 12);
      ct = asBytes(a[5], 'ciphertext');
      if (ct.length < 16) throw new TypeError('ciphertext shorter than the tag');
    } catch (e) {
      throw new OpenError('malformed', `malformed stream message: ${(e as Error).message}`);
    }
    if (!sameBytes(kid, this.kid)) throw new OpenError('otherKey', `sealed for key ${hex(kid)}, not ours (${hex(this.kid)})`);
    // The whole wrapped key (§11.2: cache per (kid, epoch, wrappedKey)); a prefix let an envelope whose wrapped
    // key was altered further on open from the cache.
    const id = `${epoch}:${hex(wrapped)}`;
    let key = this.cache.get(id);
    if (!key) {
      key = this.unwrap(wrapped);
      this.cache.set(id, key);
      if (this.cache.size > CACHE_MAX) this.cache.delete(this.cache.keys().next().value!);
      key.catch(() => this.cache.delete(id));
    }
    let pt: ArrayBuffer;
    try {
      const aad = cborEncode([SEAL_STREAM, topic, kid, epoch]);
      pt = await crypto.subtle.decrypt({ name: 'AES-GCM', iv: ab(iv), additionalData: ab(aad), tagLength: 128 }, await key, ab(ct));
    } catch (e) {
      if (e instanceof OpenError) throw e;
      throw new OpenError('tampered', 'stream message failed authentication (tampered, or sealed for another topic)');
    }
    try {
      return cborDecode(new Uint8Array(pt));
    } catch (e) {
      throw new OpenError('malformed', `malformed stream body: ${(e as Error).message}`);
    }
  }

  private async unwrap(wrapped: Uint8Array): Promise<CryptoKey> {
    let raw: Uint8Array<ArrayBuffer>;
    try {
      raw = new Uint8Array(await crypto.subtle.decrypt({ name: 'RSA-OAEP' }, this.privateKey, ab(wrapped)));
    } catch {
      throw new OpenError('tampered', 'content key unwrap failed (wrapped key damaged, or another key)');
    }
    this.unwraps++;
    try {
      if (raw.length !== 32) throw new OpenError('malformed', 'content key must be 32 bytes');
      return await crypto.subtle.importKey('raw', raw, 'AES-GCM', false, ['decrypt']);
    } finally {
      raw.fill(0);
    }
  }
}
