/**
 * The meter-sealed household stream (end-to-end mode, docs/protocol.md §11.5), Node side: the meter seals each
 * reading batch's stream body (protocol/stream.ts) with AES-256-GCM under the household's stream key
 * (protocol/household-key.ts `activationSecrets`, the `stream` value, provisioned into the meter's own key material only), and the PES
 * forwards the result unopened on the household's topic. The household's browser (ucs/web/seal.ts), `ucs watch`
 * and the Home Assistant bridge open it. No PES signature: only the meter and the household hold the key, so the
 * GCM tag itself proves the meter made it.
 *
 * Envelope `[3, systemTitle(8), ic, iv(12), ciphertext||tag(16)]`, AAD = CBOR `[3, topic, systemTitle, ic]`
 * (protocol/envelope.ts).
 * @module
 */
import { randomBytes } from 'node:crypto';
import { gcmDecrypt, gcmEncrypt } from './aead.js';
import { cborDecode, cborEncode } from './cbor.js';
import { CONTENT_KEY_BYTES, meterStreamAad, parseMeterStream, SEAL_IV_BYTES, SEAL_METER_STREAM, SEAL_TAG_BYTES, SYSTEM_TITLE_BYTES } from './envelope.js';

function checkKey(key: Uint8Array): void {
  if (!(key instanceof Uint8Array) || key.length !== CONTENT_KEY_BYTES) throw new TypeError(`a stream key is ${CONTENT_KEY_BYTES} bytes`);
}

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

/**
 * Seals one stream body for the household on `topic` (fresh random IV).
 * @example
 * ```ts
 * const blob = sealMeterStream(streamKey, topics.household('hh1'), systemTitle, ic, streamBody(meter, batch));
 * ```
 */
export function sealMeterStream(key: Uint8Array, topic: string, systemTitle: Uint8Array, ic: number, body: unknown, iv: Uint8Array = randomBytes(SEAL_IV_BYTES)): Buffer {
  checkKey(key);
  if (!(systemTitle instanceof Uint8Array) || systemTitle.length !== SYSTEM_TITLE_BYTES) throw new TypeError(`system title must be ${SYSTEM_TITLE_BYTES} bytes`);
  const ct = gcmEncrypt(key, iv, cborEncode(body), meterStreamAad(topic, systemTitle, ic), SEAL_TAG_BYTES);
  return cborEncode([SEAL_METER_STREAM, systemTitle, ic, iv, ct]);
}

/**
 * Opens a meter-sealed stream message received on `topic` with the household's stream key: checks the envelope,
 * the tag (AAD: topic, meter, frame counter) and that the body names the meter that sealed it. Throws `TypeError`
 * for a malformed envelope or body, `Error` for one that does not authenticate (tampered, moved, another key).
 * @example
 * ```ts
 * const body = parseStreamBody(openMeterStream(streamKey, topic, payload));
 * ```
 */
export function openMeterStream(key: Uint8Array, topic: string, payload: Uint8Array): unknown {
  checkKey(key);
  const e = parseMeterStream(payload);
  let pt: Uint8Array;
  try {
    pt = gcmDecrypt(key, e.iv, e.ciphertext, meterStreamAad(topic, e.systemTitle, e.ic), SEAL_TAG_BYTES);
  } catch {
    throw new Error('meter-sealed stream message failed authentication (tampered, moved to another topic or meter, or another stream key)');
  }
  const body = cborDecode(pt) as { meter?: unknown } | null;
  if (typeof body !== 'object' || body === null || body.meter !== hex(e.systemTitle)) throw new TypeError('meter-sealed stream body names another meter than the one that sealed it');
  return body;
}
