/**
 * Luxembourg's encrypted P1 (Smarty): each telegram travels in a DLMS/COSEM general-global-cipher APDU.
 *
 * Layout: `DB 08 <system title, 8 bytes> <length> 30 <invocation counter, 4 bytes BE> <ciphertext> <tag, 12>`,
 * the length in BER form (`LL` below 0x80, `81 LL`, or `82 LL LL` as Smarty meters send) covering the
 * security control byte, counter, ciphertext and tag. Security control 0x30 = suite 0, authenticated and
 * encrypted: AES-128-GCM with IV = system title || invocation counter and AAD = 0x30 || authentication key;
 * the plaintext is an ordinary DSMR telegram.
 *
 * {@link DlmsFrameParser} delimits frames in the byte stream: it resynchronises on 0xDB, checks the header
 * (0x08, a known length form, a length within bounds) and waits for the whole length before emitting; a
 * header that does not check drops that 0xDB byte (counted) and the search goes on from the next byte.
 * @module
 */
import { createCipheriv, createDecipheriv } from 'node:crypto';
import { Transform, type TransformCallback, type TransformOptions } from 'node:stream';

/** General-global-cipher APDU tag. */
export const GLO_CIPHER_TAG = 0xdb;
/** Security control: suite 0 (AES-GCM-128), authenticated and encrypted. */
export const SC_AUTH_ENC = 0x30;
const TAG_LEN = 12;
const MIN_BODY = 1 + 4 + TAG_LEN;

/** One delimited frame, not yet decrypted. */
export interface DlmsFrame {
  systemTitle: Buffer;
  sc: number;
  ic: number;
  ciphertext: Buffer;
  tag: Buffer;
}

/** The user's keys for the encrypted P1 port (16 bytes each). Never logged. */
export interface P1Keys {
  key: Uint8Array;
  authKey: Uint8Array;
}

export interface DlmsParserOptions extends Omit<TransformOptions, 'transform' | 'flush' | 'readableObjectMode'> {
  /** Longest frame accepted (header included), bytes (default 4096; 64..65536). */
  maxFrameBytes?: number;
}

/** What the frame parser has seen. All counters only grow. */
export interface DlmsParserCounters {
  frames: number;
  /** Bytes outside any frame. */
  garbageBytes: number;
  /** 0xDB bytes whose header did not check (wrong title length, length form or size). */
  badHeaders: number;
  /** A frame cut short by the end of the stream. */
  truncated: number;
}

/**
 * Splits an encrypted P1 byte stream into {@link DlmsFrame}s.
 * @example
 * ```ts
 * port.pipe(new DlmsFrameParser()).on('data', (f: DlmsFrame) => parser.write(openP1Frame(f, keys)));
 * ```
 */
export class DlmsFrameParser extends Transform {
  readonly counters: DlmsParserCounters = { frames: 0, garbageBytes: 0, badHeaders: 0, truncated: 0 };
  private readonly max: number;
  private buf: Buffer = Buffer.alloc(0);

  constructor(options: DlmsParserOptions = {}) {
    const { maxFrameBytes = 4096, ...rest } = options;
    if (!Number.isSafeInteger(maxFrameBytes) || maxFrameBytes < 64 || maxFrameBytes > 65536) throw new RangeError('"maxFrameBytes" must be an integer in 64..65536');
    super({ ...rest, readableObjectMode: true });
    this.max = maxFrameBytes;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    this.scan();
    callback();
  }

  override _flush(callback: TransformCallback): void {
    if (this.buf.length > 0) {
      if (this.buf[0] === GLO_CIPHER_TAG) this.counters.truncated++;
      else this.counters.garbageBytes += this.buf.length;
    }
    this.buf = Buffer.alloc(0);
    callback();
  }

  private skipHeader(): void {
    this.counters.badHeaders++;
    this.buf = this.buf.subarray(1);
  }

  private scan(): void {
    for (;;) {
      const start = this.buf.indexOf(GLO_CIPHER_TAG);
      if (start < 0) {
        this.counters.garbageBytes += this.buf.length;
        this.buf = Buffer.alloc(0);
        return;
      }
      this.counters.garbageBytes += start;
      const b = (this.buf = this.buf.subarray(start));
      if (b.length < 2) return;
      if (b[1] !== 8) {
        this.skipHeader();
        continue;
      }
      if (b.length < 11) return;
      const form = b[10]!;
      let head: number;
      let len: number;
      if (form < 0x80) [head, len] = [11, form];
      else if (form === 0x81) {
        if (b.length < 12) return;
        [head, len] = [12, b[11]!];
      } else if (form === 0x82) {
        if (b.length < 13) return;
        [head, len] = [13, b.readUInt16BE(11)];
      } else {
        this.skipHeader();
        continue;
      }
      if (len < MIN_BODY || head + len > this.max) {
        this.skipHeader();
        continue;
      }
      if (b.length < head + len) return;
      const body = b.subarray(head, head + len);
      this.counters.frames++;
      this.push({
        systemTitle: Buffer.from(b.subarray(2, 10)),
        sc: body[0]!,
        ic: body.readUInt32BE(1),
        ciphertext: Buffer.from(body.subarray(5, len - TAG_LEN)),
        tag: Buffer.from(body.subarray(len - TAG_LEN)),
      } satisfies DlmsFrame);
      this.buf = b.subarray(head + len);
    }
  }
}

function checkKeys(keys: P1Keys): void {
  if (!(keys?.key instanceof Uint8Array) || keys.key.length !== 16) throw new RangeError('P1 key must be 16 bytes (AES-128)');
  if (!(keys.authKey instanceof Uint8Array) || keys.authKey.length !== 16) throw new RangeError('P1 authentication key must be 16 bytes');
}

function ivAad(systemTitle: Uint8Array, ic: number, sc: number, authKey: Uint8Array): { iv: Buffer; aad: Buffer } {
  const iv = Buffer.alloc(12);
  iv.set(systemTitle, 0);
  iv.writeUInt32BE(ic, 8);
  return { iv, aad: Buffer.concat([Buffer.of(sc), authKey]) };
}

/**
 * Decrypts and authenticates a frame; returns the telegram bytes. Throws on an unsupported security control
 * byte or a failed authentication (wrong key, wrong authentication key, corrupted frame).
 * @example
 * ```ts
 * const telegram = openP1Frame(frame, { key, authKey });
 * ```
 */
export function openP1Frame(frame: DlmsFrame, keys: P1Keys): Buffer {
  checkKeys(keys);
  if (frame.sc !== SC_AUTH_ENC) throw new Error(`unsupported security control 0x${frame.sc.toString(16)} (only 0x30, AES-128-GCM authenticated and encrypted)`);
  const { iv, aad } = ivAad(frame.systemTitle, frame.ic, frame.sc, keys.authKey);
  const d = createDecipheriv('aes-128-gcm', keys.key, iv, { authTagLength: TAG_LEN });
  d.setAAD(aad);
  d.setAuthTag(frame.tag);
  const out = d.update(frame.ciphertext);
  try {
    return Buffer.concat([out, d.final()]);
  } catch {
    out.fill(0);
    throw new Error('P1 frame failed authentication (wrong key or corrupted frame)');
  }
}

/**
 * Builds an encrypted P1 frame exactly as a Smarty meter sends it (for test fixtures and captures).
 * @example
 * ```ts
 * const wire = sealP1Frame(telegram, { key, authKey }, Buffer.from('SAG12345'), 1);
 * ```
 */
export function sealP1Frame(telegram: Uint8Array, keys: P1Keys, systemTitle: Uint8Array, ic: number): Buffer {
  checkKeys(keys);
  if (!(systemTitle instanceof Uint8Array) || systemTitle.length !== 8) throw new RangeError('system title must be 8 bytes');
  if (!Number.isSafeInteger(ic) || ic < 0 || ic > 0xffffffff) throw new RangeError('invocation counter must be a 32-bit unsigned integer');
  const { iv, aad } = ivAad(systemTitle, ic, SC_AUTH_ENC, keys.authKey);
  const c = createCipheriv('aes-128-gcm', keys.key, iv, { authTagLength: TAG_LEN });
  c.setAAD(aad);
  const ct = Buffer.concat([c.update(telegram), c.final()]);
  const len = 1 + 4 + ct.length + TAG_LEN;
  if (len > 0xffff) throw new RangeError('telegram too long for one frame');
  const head = Buffer.alloc(18);
  head[0] = GLO_CIPHER_TAG;
  head[1] = 8;
  head.set(systemTitle, 2);
  head[10] = 0x82;
  head.writeUInt16BE(len, 11);
  head[13] = SC_AUTH_ENC;
  head.writeUInt32BE(ic, 14);
  return Buffer.concat([head, ct, c.getAuthTag()]);
}
