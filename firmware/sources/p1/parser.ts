/**
 * `P1TelegramParser`: a Transform in the style of serialport's parsers that turns the raw bytes of a P1
 * port into whole, checked telegrams.
 *
 * - Accumulates bytes and emits one Buffer per telegram, from `/` to the end of the line after `!`.
 * - Joins mid-telegram: bytes before the first `/` are counted as garbage and dropped.
 * - Resynchronises on `/`: a `/` inside a telegram (the meter restarted mid-telegram, or the reader missed
 *   its end) drops the partial telegram (counted) and starts a new one there. `/` occurs nowhere else in a
 *   telegram.
 * - Checks the CRC-16/ARC from `/` to `!` against the 4 upper-case hex digits after `!` (fewer are accepted:
 *   some meters drop leading zeros); a mismatch, or a trailer that is neither hex nor empty, is counted and
 *   the telegram is never emitted. A telegram without a
 *   CRC (DSMR 2.2/3) is emitted unless `crc: 'required'`.
 * - Bounded: a telegram longer than `maxTelegramBytes` is dropped (counted) and the parser waits for the
 *   next `/`, so a line that never sends `!` cannot grow memory.
 * - `_flush` drops an unfinished telegram (counted) and ends cleanly.
 * Every rejection is also emitted as a `'rejected'` event `{ reason, bytes }` (bytes: its length) so the
 * owner can log it with its meter id; nothing of a rejected telegram's content is parsed.
 * @module
 */
import { Transform, type TransformCallback, type TransformOptions } from 'node:stream';
import { crc16arc } from './crc.js';

const SLASH = 0x2f;
const BANG = 0x21;
const LF = 0x0a;

export interface P1ParserOptions extends Omit<TransformOptions, 'transform' | 'flush' | 'readableObjectMode'> {
  /** Longest telegram accepted, bytes (default 8192; 64..1048576). */
  maxTelegramBytes?: number;
  /** `'auto'` (default): check the CRC when present, accept telegrams without one; `'required'`: refuse those. */
  crc?: 'auto' | 'required';
}

/** What the parser has seen. All counters only grow. */
export interface P1ParserCounters {
  /** Telegrams emitted. */
  telegrams: number;
  /** Telegrams whose CRC did not match, or whose trailer was malformed. */
  crcErrors: number;
  /** Telegrams without a CRC refused under `crc: 'required'`. */
  missingCrc: number;
  /** Partial telegrams dropped (a new `/` came first, or the stream ended). */
  truncated: number;
  /** Telegrams dropped for exceeding `maxTelegramBytes`. */
  oversize: number;
  /** Bytes outside any telegram. */
  garbageBytes: number;
}

export type P1RejectReason = 'crc' | 'missingCrc' | 'truncated' | 'oversize';

/**
 * Splits a P1 byte stream into checked telegrams.
 * @example
 * ```ts
 * const parser = port.pipe(new P1TelegramParser({ crc: 'required' }));
 * parser.on('data', (telegram: Buffer) => console.log(parseTelegram(telegram, 'Europe/Amsterdam').importWh));
 * parser.on('rejected', ({ reason }) => log.warn({ reason }, 'telegram rejected'));
 * ```
 */
export class P1TelegramParser extends Transform {
  readonly counters: P1ParserCounters = { telegrams: 0, crcErrors: 0, missingCrc: 0, truncated: 0, oversize: 0, garbageBytes: 0 };
  private readonly max: number;
  private readonly crcMode: 'auto' | 'required';
  private buf: Buffer = Buffer.alloc(0);
  /** Whether `buf` starts with the `/` of a telegram in progress. */
  private inTelegram = false;

  constructor(options: P1ParserOptions = {}) {
    const { maxTelegramBytes = 8192, crc = 'auto', ...rest } = options;
    if (!Number.isSafeInteger(maxTelegramBytes) || maxTelegramBytes < 64 || maxTelegramBytes > 1 << 20) {
      throw new RangeError('"maxTelegramBytes" must be an integer in 64..1048576');
    }
    if (crc !== 'auto' && crc !== 'required') throw new TypeError('"crc" must be "auto" or "required"');
    super({ ...rest, readableObjectMode: true });
    this.max = maxTelegramBytes;
    this.crcMode = crc;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    this.scan();
    callback();
  }

  override _flush(callback: TransformCallback): void {
    if (this.inTelegram) this.reject('truncated', this.buf.length);
    else this.counters.garbageBytes += this.buf.length;
    this.buf = Buffer.alloc(0);
    this.inTelegram = false;
    callback();
  }

  private reject(reason: P1RejectReason, bytes: number): void {
    if (reason === 'crc') this.counters.crcErrors++;
    else this.counters[reason]++;
    this.emit('rejected', { reason, bytes });
  }

  private scan(): void {
    for (;;) {
      if (!this.inTelegram) {
        const start = this.buf.indexOf(SLASH);
        if (start < 0) {
          this.counters.garbageBytes += this.buf.length;
          this.buf = Buffer.alloc(0);
          return;
        }
        this.counters.garbageBytes += start;
        this.buf = this.buf.subarray(start);
        this.inTelegram = true;
      }
      const bang = this.buf.indexOf(BANG, 1);
      const slash = this.buf.indexOf(SLASH, 1);
      if (slash >= 0 && (bang < 0 || slash < bang)) {
        this.reject('truncated', slash);
        this.buf = this.buf.subarray(slash);
        continue;
      }
      if (bang < 0) {
        if (this.buf.length > this.max) {
          this.reject('oversize', this.buf.length);
          this.buf = Buffer.alloc(0);
          this.inTelegram = false;
        }
        return;
      }
      const end = this.buf.indexOf(LF, bang);
      if (end < 0 || end > bang + 7) {
        if (end < 0 && this.buf.length <= bang + 7) return; // the trailer is still arriving
        this.reject('crc', bang + 1); // no line end within "!XXXX\r\n": the trailer is corrupt
        this.buf = this.buf.subarray(bang + 1);
        this.inTelegram = false;
        continue;
      }
      const size = end + 1;
      const trailer = this.buf.toString('latin1', bang + 1, end).replace(/\r$/, '');
      let ok: boolean;
      if (size > this.max) {
        this.reject('oversize', size);
        ok = false;
      } else if (/^[0-9A-F]{1,4}$/.test(trailer)) {
        ok = crc16arc(this.buf, 0, bang + 1) === parseInt(trailer, 16);
        if (!ok) this.reject('crc', size);
      } else if (trailer === '') {
        ok = this.crcMode === 'auto';
        if (!ok) this.reject('missingCrc', size);
      } else {
        ok = false;
        this.reject('crc', size);
      }
      if (ok) {
        this.counters.telegrams++;
        this.push(Buffer.from(this.buf.subarray(0, size)));
      }
      this.buf = this.buf.subarray(size);
      this.inTelegram = false;
    }
  }
}
