/**
 * Opens household stream messages with WebCrypto (docs/protocol.md §11.2):
 * `[2, kid, epoch, wrappedKey, epochSig, iv, ciphertext‖tag]`, AAD = CBOR `[2, topic, kid, epoch]`. The PES's
 * Ed25519 epoch signature is verified first; the content key of each (topic, epoch, wrappedKey, epochSig) is then
 * unwrapped once (RSA-OAEP-SHA-256) and cached as a non-extractable AES key.
 * This is protocol/seal.ts `openStream` for the browser, where node:crypto does not exist; both read the
 * envelope with protocol/envelope.ts.
 *
 * In the end-to-end mode the household's meters seal the stream themselves (docs/protocol.md §11.5,
 * `[3, systemTitle, ic, iv, ciphertext‖tag]`, AAD = CBOR `[3, topic, systemTitle, ic]`) under the household's
 * stream key; the opener holds that key too (non-extractable) and opens either seal, so the views do not
 * care which mode made a message (protocol/meter-seal.ts `openMeterStream` for the browser). A meter-sealed
 * message that authenticates but whose frame counter its meter's window has already accepted (or that fell
 * below it) is dropped as `duplicate` or `replayed` (ucs/web/stream-guard.ts: the tag of an old message still
 * verifies, so whoever can publish on the household's topic could present it again).
 * @module
 */
import { cborDecode } from '../../protocol/cbor.js';
import { CONTENT_KEY_BYTES, KID_BYTES, meterStreamAad, parseMeterStream, parseStream, SEAL_METER_STREAM, SEAL_TAG_BYTES, streamAad, streamEpochSigned, streamSealType, type StreamEnvelope } from '../../protocol/envelope.js';
import { ab, hex, sameBytes } from './bytes.js';
import { MeterStreamGuard } from './stream-guard.js';

const CACHE_MAX = 64;

/**
 * Why a message did not open: counted by the app and shown to the household. `duplicate`: a meter-sealed
 * message already accepted (redelivery); `replayed`: a meter-sealed message whose frame counter was already
 * accepted with another message, or fell below the meter's window (ucs/web/stream-guard.ts).
 */
export type OpenFailure = 'malformed' | 'otherKey' | 'tampered' | 'duplicate' | 'replayed';

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
 * const opener = new StreamOpener(privateKey, await keyIdOf(spki), await importPesVerifyKey(pesSpki));
 * const body = parseStreamBody(await opener.open(topics.household('hh1'), payload));
 * ```
 */
export class StreamOpener {
  private readonly cache = new Map<string, Promise<CryptoKey>>();
  /** RSA unwraps done (one per epoch when all goes well). */
  unwraps = 0;

  /**
   * @param pesVerifyKey the PES's Ed25519 public key ({@link importPesVerifyKey}): a content key whose epoch
   *   signature does not verify is never unwrapped (a forged stream counts as tampered).
   * @param streamKey the household's stream key ({@link importStreamKey}) for meter-sealed messages; without
   *   one they count as sealed for another key.
   * @param guard the meters' anti-replay windows for meter-sealed messages (restored from the app's store, so a
   *   replay after a reload is still refused); {@link guard} is what to persist again.
   */
  constructor(
    private readonly privateKey: CryptoKey,
    private readonly kid: Uint8Array,
    private readonly pesVerifyKey: CryptoKey,
    private readonly streamKey: CryptoKey | null = null,
    readonly guard: MeterStreamGuard = new MeterStreamGuard(),
  ) {
    if (kid.length !== KID_BYTES) throw new TypeError(`kid must be ${KID_BYTES} bytes`);
  }

  /** Decrypts one message and returns its decoded CBOR body; throws {@link OpenError}. */
  async open(topic: string, payload: Uint8Array): Promise<unknown> {
    let e: StreamEnvelope;
    try {
      if (streamSealType(payload) === SEAL_METER_STREAM) return this.openMeterSealed(topic, payload);
      e = parseStream(payload);
    } catch (err) {
      throw new OpenError('malformed', `malformed stream message: ${(err as Error).message}`);
    }
    const { kid, epoch, wrapped, iv, ciphertext: ct } = e;
    if (!sameBytes(kid, this.kid)) throw new OpenError('otherKey', `sealed for key ${hex(kid)}, not ours (${hex(this.kid)})`);
    // The whole wrapped key (§11.2: cache per (kid, epoch, wrappedKey)); a prefix let an envelope whose wrapped
    // key was altered further on open from the cache. The signature and topic too: a forged one must not open
    // from the cache of a genuine one.
    const id = `${topic}:${epoch}:${hex(wrapped)}:${hex(e.epochSig)}`;
    let key = this.cache.get(id);
    if (!key) {
      key = this.verified(topic, e).then(() => this.unwrap(wrapped));
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

  private async openMeterSealed(topic: string, payload: Uint8Array): Promise<unknown> {
    let e;
    try {
      e = parseMeterStream(payload);
    } catch (err) {
      throw new OpenError('malformed', `malformed meter-sealed message: ${(err as Error).message}`);
    }
    if (!this.streamKey) throw new OpenError('otherKey', 'sealed by a meter under the stream key, which this account does not hold (registered before the end-to-end mode)');
    let pt: ArrayBuffer;
    try {
      const aad = meterStreamAad(topic, e.systemTitle, e.ic);
      pt = await crypto.subtle.decrypt({ name: 'AES-GCM', iv: ab(e.iv), additionalData: ab(aad), tagLength: SEAL_TAG_BYTES * 8 }, this.streamKey, ab(e.ciphertext));
    } catch {
      throw new OpenError('tampered', 'meter-sealed message failed authentication (tampered, moved to another topic or meter, or another stream key)');
    }
    let body: unknown;
    try {
      body = cborDecode(new Uint8Array(pt));
    } catch (err) {
      throw new OpenError('malformed', `malformed stream body: ${(err as Error).message}`);
    }
    if ((body as { meter?: unknown } | null)?.meter !== hex(e.systemTitle)) throw new OpenError('tampered', 'meter-sealed body names another meter than the one that sealed it');
    // After the tag, as the PES does: a forgery is `tampered` whatever its counter, so nobody without the key
    // can have messages counted as replays.
    const verdict = this.guard.check(e);
    const meter = hex(e.systemTitle);
    if (verdict === 'duplicate') throw new OpenError('duplicate', `meter ${meter}'s message of frame ${e.ic} was already received`);
    if (verdict === 'replayed') throw new OpenError('replayed', `meter ${meter}'s frame ${e.ic} was already received or is too old (highest ${this.guard.highest(meter)}): a replayed message, dropped`);
    this.guard.mark(e);
    return body;
  }

  private async verified(topic: string, e: StreamEnvelope): Promise<void> {
    const signed = streamEpochSigned(topic, e.kid, e.epoch, e.wrapped);
    let ok = false;
    try {
      ok = await crypto.subtle.verify({ name: 'Ed25519' }, this.pesVerifyKey, ab(e.epochSig), ab(signed));
    } catch {
      ok = false;
    }
    if (!ok) throw new OpenError('tampered', 'stream epoch not signed by the PES (forged, or another PES)');
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

/**
 * Imports the household's stream key (from its sealed secrets, ucs/web/keys.ts) as a non-extractable AES-GCM
 * decryption key for {@link StreamOpener}.
 * @example
 * ```ts
 * const opener = new StreamOpener(privateKey, kid, pesKey, await importStreamKey(streamKey));
 * ```
 */
export function importStreamKey(raw: Uint8Array): Promise<CryptoKey> {
  if (raw.length !== CONTENT_KEY_BYTES) throw new TypeError(`the stream key must be ${CONTENT_KEY_BYTES} bytes`);
  return crypto.subtle.importKey('raw', ab(raw), 'AES-GCM', false, ['decrypt']);
}

/**
 * Imports the PES's Ed25519 public key (SubjectPublicKeyInfo DER, as `GET /api/pes-key` serves it) for
 * {@link StreamOpener}.
 * @example
 * ```ts
 * const { spki } = await (await fetch('/api/pes-key')).json();
 * const opener = new StreamOpener(privateKey, kid, await importPesVerifyKey(fromB64u(spki, 'spki')));
 * ```
 */
export function importPesVerifyKey(spki: Uint8Array): Promise<CryptoKey> {
  return crypto.subtle.importKey('spki', ab(spki), { name: 'Ed25519' }, false, ['verify']);
}
