/**
 * Application messages on the serial line, modelled on DLMS/COSEM general-glo-ciphering (IEC 62056-5-3
 * §9.2.7.2.4.1: system title, security control byte, invocation counter, GCM) but encoded in CBOR.
 *
 * Every message is a CBOR array whose first item is its type:
 * - ciphered frame (meter -> gateway): `[1, version=1, systemTitle(8 bytes), sc, ic, ciphertext||tag]`
 * - acknowledgement (gateway -> meter): `[2, version=1, systemTitle(8 bytes), ic]`
 * - key transfer (head-end -> meter): `[3, version=1, systemTitle(8 bytes), generation, wrappedKey(40 bytes)]`
 * - key-transfer acknowledgement (meter -> head-end): `[4, version=1, systemTitle(8 bytes), generation]`
 *
 * Ciphering (AES-256-GCM, NIST SP 800-38D): IV = systemTitle || ic (4 bytes big-endian) — 12 bytes, unique
 * per (key, frame) because the meter never reuses an invocation counter; AAD = the 15-byte header
 * `01 | 01 | systemTitle | sc | ic(BE)`; tag 12 bytes, appended to the ciphertext.
 * @module
 */
import { asArray, asBytes, asUint, cborDecode, cborEncode } from './cbor.js';
import { gcmDecrypt, gcmEncrypt } from './aead.js';
import { MAX_KEY_GENERATION, WRAPPED_KEY_LEN } from './key-wrap.js';

export const MSG_FRAME = 1;
export const MSG_ACK = 2;
/** A new meter key wrapped under the meter's KEK (protocol/key-wrap.ts; docs/protocol.md §7.1). */
export const MSG_KEY_TRANSFER = 3;
/** The meter holds the transferred key durably and will switch to it. */
export const MSG_KEY_ACK = 4;
export const FRAME_VERSION = 1;
/** Security control byte: bit 4 authentication + bit 5 encryption, suite 2 (AES-GCM-256). */
export const SC_AES256GCM = 0x32;
export const SYSTEM_TITLE_LEN = 8;
export const TAG_LEN = 12;
export const MAX_IC = 0xffffffff;

export interface FrameHeader {
  systemTitle: Uint8Array;
  sc: number;
  ic: number;
}
export interface CipheredFrame extends FrameHeader {
  /** Ciphertext followed by the 12-byte GCM tag. */
  ciphertext: Uint8Array;
}
export interface Ack {
  systemTitle: Uint8Array;
  ic: number;
}
export interface KeyTransfer {
  systemTitle: Uint8Array;
  /** 1..2^32 - 1; a meter accepts only a generation above the one it uses. */
  generation: number;
  /** The new key, AES-key-wrapped under the meter's KEK with the generation bound (40 bytes). */
  wrapped: Uint8Array;
}
export interface KeyAck {
  systemTitle: Uint8Array;
  generation: number;
}
export type Message =
  | ({ type: typeof MSG_FRAME } & CipheredFrame)
  | ({ type: typeof MSG_ACK } & Ack)
  | ({ type: typeof MSG_KEY_TRANSFER } & KeyTransfer)
  | ({ type: typeof MSG_KEY_ACK } & KeyAck);

/**
 * A system title: 3-byte manufacturer (FLAG) id in ASCII followed by a 5-byte serial number.
 * @example
 * ```ts
 * systemTitle('SMR', 42); // 53 4d 52 00 00 00 00 2a
 * ```
 */
export function systemTitle(manufacturer: string, serial: number): Uint8Array {
  if (!/^[A-Z]{3}$/.test(manufacturer)) throw new TypeError('manufacturer must be 3 upper-case letters');
  if (!Number.isSafeInteger(serial) || serial < 0 || serial >= 2 ** 40) throw new RangeError('serial must fit 5 bytes');
  const st = new Uint8Array(8);
  st.set(Buffer.from(manufacturer, 'ascii'));
  for (let i = 7, s = serial; i >= 3; i--, s = Math.floor(s / 256)) st[i] = s % 256;
  return st;
}

/** Lower-case hex of a system title: the meter id used in logs, topics and files. */
export function meterId(st: Uint8Array): string {
  return Buffer.from(st).toString('hex');
}

/** The 12-byte GCM IV: system title || invocation counter (big-endian). */
export function frameIv(st: Uint8Array, ic: number): Uint8Array {
  const iv = new Uint8Array(12);
  iv.set(st);
  new DataView(iv.buffer).setUint32(8, ic, false);
  return iv;
}

/** The 15-byte additional authenticated data: type, version, system title, SC, IC (big-endian). */
export function frameAad(h: FrameHeader): Uint8Array {
  const aad = new Uint8Array(15);
  aad[0] = MSG_FRAME;
  aad[1] = FRAME_VERSION;
  aad.set(h.systemTitle, 2);
  aad[10] = h.sc;
  new DataView(aad.buffer).setUint32(11, h.ic, false);
  return aad;
}

function checkHeader(h: FrameHeader): void {
  asBytes(h.systemTitle, 'systemTitle', SYSTEM_TITLE_LEN);
  if (h.sc !== SC_AES256GCM) throw new TypeError(`unsupported security control byte 0x${h.sc.toString(16)}`);
  asUint(h.ic, 'invocation counter', MAX_IC);
}

/**
 * Ciphers a plaintext payload into a frame (AES-256-GCM with the IV and AAD above).
 * @example
 * ```ts
 * const frame = sealFrame(key, { systemTitle: st, sc: SC_AES256GCM, ic: 7 }, encodeReadingBatch(batch));
 * ```
 */
export function sealFrame(key: Uint8Array, h: FrameHeader, plaintext: Uint8Array): CipheredFrame {
  checkHeader(h);
  const ciphertext = gcmEncrypt(key, frameIv(h.systemTitle, h.ic), plaintext, frameAad(h));
  return { systemTitle: h.systemTitle, sc: h.sc, ic: h.ic, ciphertext };
}

/**
 * Verifies and deciphers a frame; throws `Error('authentication failed')` on a bad tag, wrong key,
 * or any header change.
 * @example
 * ```ts
 * const plaintext = openFrame(key, frame);
 * ```
 */
export function openFrame(key: Uint8Array, f: CipheredFrame): Uint8Array {
  checkHeader(f);
  return gcmDecrypt(key, frameIv(f.systemTitle, f.ic), f.ciphertext, frameAad(f));
}

/**
 * Encodes a ciphered frame as the CBOR message that goes into a link frame.
 * @example
 * ```ts
 * port.write(encodeLinkFrame(encodeFrame(frame)));
 * ```
 */
export function encodeFrame(f: CipheredFrame): Buffer {
  checkHeader(f);
  // Never emit what decodeMessage would refuse.
  if (asBytes(f.ciphertext, 'ciphertext').length < TAG_LEN) throw new TypeError('ciphertext shorter than the GCM tag');
  return cborEncode([MSG_FRAME, FRAME_VERSION, f.systemTitle, f.sc, f.ic, f.ciphertext]);
}

/**
 * Encodes an acknowledgement: "frame `ic` of meter `systemTitle` is durable upstream".
 * @example
 * ```ts
 * encodeAck({ systemTitle: st, ic: 7 });
 * ```
 */
export function encodeAck(a: Ack): Buffer {
  asBytes(a.systemTitle, 'systemTitle', SYSTEM_TITLE_LEN);
  asUint(a.ic, 'invocation counter', MAX_IC);
  return cborEncode([MSG_ACK, FRAME_VERSION, a.systemTitle, a.ic]);
}

/**
 * Encodes a key transfer: "meter `systemTitle`, here is your key of `generation`, wrapped under your KEK".
 * @example
 * ```ts
 * encodeKeyTransfer({ systemTitle: st, generation: 1, wrapped: wrapMeterKey(kek, 1, newKey) });
 * ```
 */
export function encodeKeyTransfer(t: KeyTransfer): Buffer {
  asBytes(t.systemTitle, 'systemTitle', SYSTEM_TITLE_LEN);
  if (asUint(t.generation, 'key generation', MAX_KEY_GENERATION) < 1) throw new RangeError('key generation must be at least 1');
  asBytes(t.wrapped, 'wrapped key', WRAPPED_KEY_LEN);
  return cborEncode([MSG_KEY_TRANSFER, FRAME_VERSION, t.systemTitle, t.generation, t.wrapped]);
}

/**
 * Encodes a key-transfer acknowledgement: "meter `systemTitle` holds the key of `generation` durably".
 * @example
 * ```ts
 * encodeKeyAck({ systemTitle: st, generation: 1 });
 * ```
 */
export function encodeKeyAck(a: KeyAck): Buffer {
  asBytes(a.systemTitle, 'systemTitle', SYSTEM_TITLE_LEN);
  if (asUint(a.generation, 'key generation', MAX_KEY_GENERATION) < 1) throw new RangeError('key generation must be at least 1');
  return cborEncode([MSG_KEY_ACK, FRAME_VERSION, a.systemTitle, a.generation]);
}

/**
 * Decodes any serial-line message (frame, ack, key transfer or key-transfer ack) without deciphering it; this is all a gateway can do.
 * Throws `TypeError` naming the first bad field.
 * @example
 * ```ts
 * const m = decodeMessage(payload); if (m.type === MSG_FRAME) forward(m);
 * ```
 */
export function decodeMessage(bytes: Uint8Array): Message {
  const a = asArray(cborDecode(bytes), 'message', 4, 6);
  const type = asUint(a[0], 'message type', 255);
  if (asUint(a[1], 'version', 255) !== FRAME_VERSION) throw new TypeError(`unsupported version ${String(a[1])}`);
  if (type === MSG_FRAME && a.length === 6) {
    const f = {
      systemTitle: asBytes(a[2], 'systemTitle', SYSTEM_TITLE_LEN),
      sc: asUint(a[3], 'security control', 255),
      ic: asUint(a[4], 'invocation counter', MAX_IC),
      ciphertext: asBytes(a[5], 'ciphertext'),
    };
    checkHeader(f);
    if (f.ciphertext.length < TAG_LEN) throw new TypeError('ciphertext shorter than the GCM tag');
    return { type: MSG_FRAME, ...f };
  }
  if (type === MSG_ACK && a.length === 4) {
    return { type: MSG_ACK, systemTitle: asBytes(a[2], 'systemTitle', SYSTEM_TITLE_LEN), ic: asUint(a[3], 'invocation counter', MAX_IC) };
  }
  if ((type === MSG_KEY_TRANSFER && a.length === 5) || (type === MSG_KEY_ACK && a.length === 4)) {
    const systemTitle = asBytes(a[2], 'systemTitle', SYSTEM_TITLE_LEN);
    const generation = asUint(a[3], 'key generation', MAX_KEY_GENERATION);
    if (generation < 1) throw new TypeError('key generation must be at least 1');
    if (type === MSG_KEY_ACK) return { type: MSG_KEY_ACK, systemTitle, generation };
    return { type: MSG_KEY_TRANSFER, systemTitle, generation, wrapped: asBytes(a[4], 'wrapped key', WRAPPED_KEY_LEN) };
  }
  throw new TypeError(`unknown message type ${type} with ${a.length} items`);
}

/**
 * Decodes a message that must be a ciphered frame.
 * @example
 * ```ts
 * const frame = decodeFrame(bytes);
 * ```
 */
export function decodeFrame(bytes: Uint8Array): CipheredFrame {
  const m = decodeMessage(bytes);
  if (m.type !== MSG_FRAME) throw new TypeError('not a ciphered frame');
  const { type: _t, ...f } = m;
  return f;
}
