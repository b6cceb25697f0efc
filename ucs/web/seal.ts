/**
 * Opens household stream messages with WebCrypto (docs/protocol.md §11.2):
 * `[2, kid, epoch, wrappedKey, iv, ciphertext‖tag]`, AAD = CBOR `[2, topic, kid, epoch]`. The content key of
 * each (kid, epoch, wrappedKey) is unwrapped once (RSA-OAEP-SHA-256) and cached as a non-extractable AES key.
 * This is protocol/seal.ts `openStream` for the browser, where node:crypto does not exist; both read the
 * envelope with protocol/envelope.ts.
 * @module
 */
import { cborDecode } from '../../protocol/cbor.js';
import { CONTENT_KEY_BYTES, KID_BYTES, parseStream, SEAL_TAG_BYTES, streamAad, type StreamEnvelope } from '../../protocol/envelope.js';
import { ab, hex, sameBytes } from './bytes.js';

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
    if (kid.length !== KID_BYTES) throw new TypeError(`kid must be ${KID_BYTES} bytes`);
  }

  /** Decrypts one message and returns its decoded CBOR body; throws {@link OpenError}. */
  async open(topic: string, payload: Uint8Array): Promise<unknown> {
    let e: StreamEnvelope;
    try {
      e = parseStream(payload);
    } catch (err) {
      throw new OpenError('malformed', `malformed stream message: ${(err as Error).message}`);
    }
    const { kid, epoch, wrapped, iv, ciphertext: ct } = e;
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
      const aad = streamAad(topic, kid, epoch);
      pt = await crypto.subtle.decrypt({ name: 'AES-GCM', iv: ab(iv), additionalData: ab(aad), tagLength: SEAL_TAG_BYTES * 8 }, await key, ab(ct));
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
      if (raw.length !== CONTENT_KEY_BYTES) throw new OpenError('malformed', 'content key must be 32 bytes');
      return await crypto.subtle.importKey('raw', raw, 'AES-GCM', false, ['decrypt']);
    } finally {
      raw.fill(0);
    }
  }
}
