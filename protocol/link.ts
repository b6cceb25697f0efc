/**
 * Serial link layer: HDLC-style asynchronous framing (ISO/IEC 13239 §4.5.2, as used by IEC 62056-46).
 *
 * On the wire a frame is `7E | stuffed(payload || FCS) | 7E` where FCS is CRC-16/X.25 over the payload,
 * least significant byte first, and stuffing replaces every 0x7E or 0x7D inside the frame by
 * `7D (byte ^ 0x20)`. A receiver that holds no keys can therefore find frame boundaries, check integrity,
 * count line errors and resynchronise on the next flag after any garbage.
 * @module
 */
import { Transform, type TransformCallback, type TransformOptions } from 'node:stream';
import { crc16x25 } from './crc.js';

/** HDLC flag byte. */
export const FLAG = 0x7e;
/** HDLC control-escape byte. */
export const ESCAPE = 0x7d;
/** Largest payload (before stuffing, without FCS) that a conforming sender may put in one frame. */
export const MAX_PAYLOAD = 2048;

/**
 * Wraps `payload` into one link frame.
 * @example
 * ```ts
 * encodeLinkFrame(Uint8Array.of(0x01, 0x7e)); // 7e 01 7d 5e <fcs lo> <fcs hi> 7e
 * ```
 */
export function encodeLinkFrame(payload: Uint8Array): Buffer {
  if (!(payload instanceof Uint8Array)) throw new TypeError('payload must be a Uint8Array');
  if (payload.length === 0 || payload.length > MAX_PAYLOAD) {
    throw new RangeError(`link payload must be 1..${MAX_PAYLOAD} bytes, got ${payload.length}`);
  }
  const fcs = crc16x25(payload);
  const body = Buffer.concat([payload, Buffer.from([fcs & 0xff, fcs >>> 8])]);
  const out = Buffer.allocUnsafe(body.length * 2 + 2);
  let o = 0;
  out[o++] = FLAG;
  for (const b of body) {
    if (b === FLAG || b === ESCAPE) {
      out[o++] = ESCAPE;
      out[o++] = b ^ 0x20;
    } else out[o++] = b;
  }
  out[o++] = FLAG;
  return out.subarray(0, o);
}

/** Line statistics kept by a {@link LinkParser}. All counters only grow. */
export interface LinkCounters {
  /** Frames with a valid FCS emitted downstream. */
  frames: number;
  /** Frames whose FCS did not match (line noise, bit flips). */
  badCrc: number;
  /** Frames longer than the configured maximum; dropped whole. */
  oversize: number;
  /** Frames too short to hold a payload and an FCS, or with an invalid escape sequence (`7D 7D`, `7D 7E`). */
  malformed: number;
  /**
   * Times the parser discarded data and resynchronised on a flag: once per bad frame (badCrc, oversize,
   * malformed) and once per run of bytes outside any frame.
   */
  resyncs: number;
  /** Bytes discarded outside frames: before the first flag, and an unterminated frame at the end of the stream. */
  garbageBytes: number;
}

export interface LinkParserOptions extends TransformOptions {
  /** Largest accepted payload in bytes (default {@link MAX_PAYLOAD}). */
  maxPayload?: number;
}

/**
 * A serialport-style parser (`extends Transform`) that turns a byte stream into verified link payloads.
 *
 * It reads like `@serialport/parser-delimiter`: `_transform` accumulates bytes and pushes every whole,
 * FCS-checked payload; `_flush` drops an unterminated tail (counted as garbage). Bad frames never stop
 * the stream: they are counted in {@link LinkParser.counters} and parsing resumes at the next flag.
 * @example
 * ```ts
 * const parser = port.pipe(new LinkParser());
 * parser.on('data', (payload: Buffer) => handle(payload));
 * ```
 */
export class LinkParser extends Transform {
  readonly counters: LinkCounters = { frames: 0, badCrc: 0, oversize: 0, malformed: 0, resyncs: 0, garbageBytes: 0 };
  private readonly maxPayload: number;
  private readonly buf: Buffer;
  private len = 0;
  /** Bytes on the wire since the opening flag (escapes included). */
  private raw = 0;
  private inFrame = false;
  private escaped = false;
  private overflow = false;
  private garbageRun = 0;
  private bad = false;

  constructor(options: LinkParserOptions = {}) {
    const { maxPayload = MAX_PAYLOAD, ...rest } = options;
    if (!Number.isInteger(maxPayload) || maxPayload < 1 || maxPayload > 1 << 20) {
      throw new TypeError('"maxPayload" must be an integer between 1 and 1048576');
    }
    super({ ...rest, readableObjectMode: true });
    this.maxPayload = maxPayload;
    this.buf = Buffer.allocUnsafe(maxPayload + 2);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    for (let i = 0; i < chunk.length; i++) this.byte(chunk[i]!);
    cb();
  }

  override _flush(cb: TransformCallback): void {
    if (this.inFrame && this.raw > 0) this.noteGarbage(this.raw);
    this.endGarbage();
    this.reset();
    cb();
  }

  private byte(b: number): void {
    if (b === FLAG) {
      this.endGarbage();
      // Anything between two flags is a frame attempt, even one made only of escapes ("7E 7D 7E" is an
      // HDLC abort): count it rather than drop it silently. Only "7E 7E" (inter-frame fill) is nothing.
      if (this.inFrame && this.raw > 0) this.finish();
      // A flag both closes a frame and may open the next one (shared flags are allowed).
      this.reset();
      this.inFrame = true;
      return;
    }
    if (!this.inFrame) {
      this.noteGarbage(1);
      return;
    }
    this.raw++;
    if (b === ESCAPE) {
      // "7D 7D" is not a valid escape sequence: the frame is malformed, keep reading until the next flag.
      if (this.escaped) this.bad = true;
      this.escaped = !this.escaped;
      return;
    }
    if (this.escaped) {
      b ^= 0x20;
      this.escaped = false;
    }
    if (this.len >= this.buf.length) {
      this.overflow = true;
      return;
    }
    this.buf[this.len++] = b;
  }

  private finish(): void {
    if (this.overflow) this.counters.oversize++;
    else if (this.bad || this.escaped || this.len < 3) this.counters.malformed++;
    else {
      const n = this.len - 2;
      const fcs = this.buf[n]! | (this.buf[n + 1]! << 8);
      const payload = Buffer.from(this.buf.subarray(0, n));
      if (crc16x25(payload) === fcs) {
        this.counters.frames++;
        this.push(payload);
        return;
      }
      this.counters.badCrc++;
    }
    this.counters.resyncs++; // whatever went wrong, we resynchronise on the flag that ended it
  }

  private reset(): void {
    this.len = 0;
    this.raw = 0;
    this.escaped = false;
    this.overflow = false;
    this.bad = false;
    this.inFrame = false;
  }

  private noteGarbage(n: number): void {
    if (this.garbageRun === 0) this.counters.resyncs++;
    this.garbageRun += n;
    this.counters.garbageBytes += n;
  }

  private endGarbage(): void {
    this.garbageRun = 0;
  }
}
