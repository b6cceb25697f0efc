/**
 * `p1:<device or capture file>`: a {@link Source} that reads a real meter's P1 port, live through a serial
 * cable, or from a capture of the raw bytes a P1 port sent (`cat /dev/ttyUSB0 > capture.p1`).
 *
 * Each telegram that passes the stream parser (CRC, resync, bounds) and parses becomes one sample that
 * carries the meter's own import register (`importWh`: 1.8.0, or 1.8.1 + 1.8.2), its export register
 * (`exportWh`: 2.8.0, or 2.8.1 + 2.8.2; absent when the telegram has no export line) and its import power
 * line (1.7.0, reported, not integrated). A telegram stamped `t` ends the sample: the sample covers
 * `[t - period, t)` where `period` is the time since the previous telegram, capped at `maxPeriod` (longer
 * silences — the cable pulled, the meter restarting — are counted as gaps; their energy lands in the sample
 * after them, because the register carries it). The first telegram's period is the dialect's telegram
 * interval. A telegram whose clock does not advance (a duplicate, a meter clock set back) is skipped and
 * counted. DSMR 2.2/3 telegrams have no clock: live they are stamped with the reader's clock, in a capture
 * with `start` (default: the file's modification time) plus the dialect's interval per telegram.
 *
 * With `keys` the port is Luxembourg's encrypted P1: frames are delimited (resync on 0xDB), authenticated
 * and decrypted, and only then parsed; a frame that fails authentication or whose invocation counter does
 * not increase is counted and dropped.
 * @module
 */
import { createReadStream, statSync } from 'node:fs';
import { PassThrough, type Readable } from 'node:stream';
import pino, { type Logger } from 'pino';
import { IANAZone } from 'luxon';
import type { SerialPortStream } from '@serialport/stream';
import type { SerialLine } from '../../hal/line.js';
import type { Sample, Source } from '../../hal/source.js';
import { ReconnectingSerialLine } from '../../serial.js';
import { DlmsFrameParser, openP1Frame, type DlmsFrame, type P1Keys } from './dlms.js';
import { P1TelegramParser, type P1ParserCounters, type P1RejectReason } from './parser.js';
import { DIALECTS, isDialect, P1ParseError, parseTelegram, type Dialect, type SerialSettings } from './telegram.js';

type BindingInterface = SerialPortStream['settings']['binding'];

export interface P1SourceOptions {
  /** IANA zone the meter's clock is in (default `UTC`; a Dutch meter needs `Europe/Amsterdam`). */
  tz?: string;
  /** The meter's dialect (default `auto`: detected per telegram; a live port then opens at 115200 8N1). */
  dialect?: Dialect | 'auto';
  /** Serial settings overriding the dialect's. */
  serial?: Partial<SerialSettings>;
  /** Keys of an encrypted (Luxembourg) P1 port. */
  keys?: P1Keys;
  /** Longest sample, seconds (default 3600): a longer silence is a gap. */
  maxPeriod?: number;
  /** Longest telegram accepted, bytes (default 8192). */
  maxTelegramBytes?: number;
  /** Time of the first clockless telegram in a capture, Unix s (default: the file's modification time). */
  start?: number;
  /** Reader's clock, ms (default Date.now): stamps clockless telegrams on a live port. */
  now?: () => number;
  /** serialport binding (tests pass the mock binding). */
  binding?: BindingInterface;
  /** An already-open line to read instead of opening `target` (tests, a crossed mock pair); it is live. */
  line?: SerialLine;
  /** pino logger (give it the meter id); counters and reasons only, never values or keys. */
  log?: Logger;
}

/** Counters of the latest pass. All only grow during a pass. */
export interface P1SourceCounters extends P1ParserCounters {
  /** Telegrams that became samples (or were skipped as before the resume point). */
  parsed: number;
  /** Checked telegrams that did not parse (no import register, a malformed value, a bad clock). */
  malformed: number;
  /** Telegrams skipped because their clock did not advance. */
  outOfOrder: number;
  /** Silences longer than `maxPeriod`. */
  gaps: number;
  /** OBIS lines not read, and non-OBIS lines, summed over telegrams. */
  ignoredLines: number;
  foreignLines: number;
  /** Encrypted port: frames delimited, failed authentication, counter not increasing, and framing counters. */
  frames: number;
  decryptFailures: number;
  replayedFrames: number;
  frameGarbageBytes: number;
  badFrameHeaders: number;
}

function emptyCounters(): P1SourceCounters {
  return {
    telegrams: 0, crcErrors: 0, missingCrc: 0, truncated: 0, oversize: 0, garbageBytes: 0,
    parsed: 0, malformed: 0, outOfOrder: 0, gaps: 0, ignoredLines: 0, foreignLines: 0,
    frames: 0, decryptFailures: 0, replayedFrames: 0, frameGarbageBytes: 0, badFrameHeaders: 0,
  };
}

/**
 * Whether a source spec names a P1 port or capture; returns the path after `p1:`.
 * @example
 * ```ts
 * parseP1Spec('p1:/dev/ttyUSB0'); // '/dev/ttyUSB0'
 * parseP1Spec('apt.csv'); // undefined
 * ```
 */
export function parseP1Spec(spec: string): string | undefined {
  if (!spec.startsWith('p1:')) return undefined;
  const path = spec.slice(3);
  if (path.length === 0) throw new TypeError('p1 source must be p1:<serial device or capture file>');
  return path;
}

/**
 * Reads a P1 port or capture.
 * @example
 * ```ts
 * const source = new P1Source('/dev/ttyUSB0', { tz: 'Europe/Amsterdam', dialect: 'dsmr5', log });
 * for await (const s of source.samples()) meter.tick(s);
 * ```
 */
export class P1Source implements Source {
  readonly name: string;
  /** Whether the target is a live port (else a capture file). */
  readonly live: boolean;
  private readonly o: Required<Pick<P1SourceOptions, 'tz' | 'dialect' | 'maxPeriod' | 'maxTelegramBytes' | 'now'>> & P1SourceOptions;
  private readonly zone: IANAZone;
  private readonly log: Logger;
  private own = emptyCounters();
  private parser: P1TelegramParser | undefined;
  private frames: DlmsFrameParser | undefined;

  constructor(readonly target: string, options: P1SourceOptions = {}) {
    const { tz = 'UTC', dialect = 'auto', maxPeriod = 3600, maxTelegramBytes = 8192, now = Date.now } = options;
    if (!IANAZone.isValidZone(tz)) throw new RangeError(`unknown time zone "${tz}"`);
    if (dialect !== 'auto' && !isDialect(dialect)) throw new TypeError(`unknown P1 dialect "${String(dialect)}" (one of auto, ${Object.keys(DIALECTS).join(', ')})`);
    if (!Number.isSafeInteger(maxPeriod) || maxPeriod < 1 || maxPeriod > 86400) throw new RangeError('"maxPeriod" must be an integer in 1..86400');
    if (options.start !== undefined && (!Number.isSafeInteger(options.start) || options.start < 0)) throw new RangeError('"start" must be a Unix time in seconds');
    if (options.keys && (options.keys.key?.length !== 16 || options.keys.authKey?.length !== 16)) throw new RangeError('P1 keys must be 16 bytes each');
    let live = target.startsWith('/dev/') || options.line !== undefined;
    if (!live) {
      try {
        const st = statSync(target);
        live = st.isCharacterDevice() || st.isFIFO() || st.isSocket();
        if (!live && !st.isFile()) throw new Error('not a regular file or a serial device');
      } catch (e) {
        throw new Error(`cannot read P1 capture ${target}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
      }
    }
    this.live = live;
    this.name = `p1:${target}`;
    this.o = { ...options, tz, dialect, maxPeriod, maxTelegramBytes, now };
    this.zone = IANAZone.create(tz);
    this.log = (options.log ?? pino({ enabled: false })).child({ source: this.name });
  }

  /** Counters of the latest pass (reset when {@link samples} starts a new one). */
  get counters(): P1SourceCounters {
    const c = { ...this.own, ...(this.parser?.counters ?? {}) };
    if (this.frames) {
      c.frames = this.frames.counters.frames;
      c.frameGarbageBytes = this.frames.counters.garbageBytes;
      c.badFrameHeaders = this.frames.counters.badHeaders;
    }
    return c;
  }

  /** Serial settings a live port is opened with. */
  get serial(): SerialSettings {
    const base = this.o.dialect === 'auto' ? DIALECTS.dsmr5.serial : DIALECTS[this.o.dialect].serial;
    return { ...base, ...this.o.serial };
  }

  async *samples(from = -Infinity): AsyncGenerator<Sample> {
    this.own = emptyCounters();
    const c = this.own;
    const crc = this.o.dialect !== 'auto' && DIALECTS[this.o.dialect].crc ? 'required' : 'auto';
    const parser = (this.parser = new P1TelegramParser({ maxTelegramBytes: this.o.maxTelegramBytes, crc }));
    this.frames = undefined;
    let equipmentId: string | undefined;
    parser.on('rejected', ({ reason, bytes }: { reason: P1RejectReason; bytes: number }) => {
      this.log.warn({ reason, bytes, equipmentId, ...this.counters }, 'P1 telegram rejected');
    });
    const { input, close } = this.open();
    const onError = (e: Error) => parser.destroy(e);
    input.on('error', onError);
    const frames = this.o.keys ? this.pipeEncrypted(input, parser, this.o.keys) : undefined;
    if (!frames) input.pipe(parser);

    let untimed = this.live ? undefined : (this.o.start ?? Math.floor(statSync(this.target).mtimeMs / 1000));
    let last: number | undefined;
    try {
      for await (const raw of parser as AsyncIterable<Buffer>) {
        let t;
        try {
          t = parseTelegram(raw, this.zone);
        } catch (e) {
          if (!(e instanceof P1ParseError)) throw e;
          c.malformed++;
          this.log.warn({ err: e.message, equipmentId, malformed: c.malformed }, 'P1 telegram malformed');
          continue;
        }
        equipmentId = t.equipmentId ?? equipmentId;
        c.ignoredLines += t.ignoredLines;
        c.foreignLines += t.foreignLines;
        const dialect = this.o.dialect === 'auto' ? t.dialect : this.o.dialect;
        const interval = DIALECTS[dialect].intervalS;
        let time = t.time;
        if (time === undefined) {
          if (untimed === undefined) time = Math.floor(this.o.now() / 1000);
          else {
            time = untimed;
            untimed += interval;
          }
        }
        if (last !== undefined && time <= last) {
          c.outOfOrder++;
          this.log.warn({ equipmentId, outOfOrder: c.outOfOrder }, 'P1 telegram clock did not advance: skipped');
          continue;
        }
        let period = last === undefined ? interval : time - last;
        if (period > this.o.maxPeriod) {
          c.gaps++;
          this.log.warn({ equipmentId, silenceS: period, gaps: c.gaps }, 'no P1 telegram for longer than maxPeriod');
          period = this.o.maxPeriod;
        }
        last = time;
        c.parsed++;
        if (time - period < 0 || time - period < from) continue;
        const sample: Sample = { time: time - period, period, powerMilliW: t.powerImportMilliW ?? 0, importWh: t.importWh };
        if (t.exportWh !== undefined) sample.exportWh = t.exportWh;
        yield sample;
      }
    } finally {
      input.off('error', onError);
      input.unpipe();
      frames?.destroy();
      parser.destroy();
      await close();
    }
  }

  private open(): { input: Readable; close: () => Promise<void> } {
    if (!this.live) {
      const input = createReadStream(this.target);
      return { input, close: async () => void input.destroy() };
    }
    const s = this.serial;
    const given = this.o.line;
    const line = given ?? new ReconnectingSerialLine({ path: this.target, baudRate: s.baudRate, dataBits: s.dataBits, parity: s.parity, binding: this.o.binding, log: this.log });
    const input = new PassThrough();
    const off = line.onData((chunk) => input.write(chunk));
    return {
      input,
      close: async () => {
        off();
        input.destroy();
        if (!given) await (line as ReconnectingSerialLine).close();
      },
    };
  }

  private pipeEncrypted(input: Readable, parser: P1TelegramParser, keys: P1Keys): DlmsFrameParser {
    const frames = (this.frames = new DlmsFrameParser());
    const c = this.own;
    let lastIc = -1;
    frames.on('data', (f: DlmsFrame) => {
      let telegram: Buffer;
      try {
        telegram = openP1Frame(f, keys);
      } catch (e) {
        c.decryptFailures++;
        this.log.warn({ err: (e as Error).message, ic: f.ic, decryptFailures: c.decryptFailures }, 'P1 frame refused');
        return;
      }
      if (f.ic <= lastIc) {
        c.replayedFrames++;
        this.log.warn({ ic: f.ic, lastIc, replayedFrames: c.replayedFrames }, 'P1 frame counter did not increase: dropped');
        return;
      }
      lastIc = f.ic;
      if (!parser.write(telegram)) {
        frames.pause(); // a capture decrypts faster than the meter consumes: do not buffer all of it
        parser.once('drain', () => frames.resume());
      }
    });
    frames.on('end', () => parser.end());
    frames.on('error', (e: Error) => parser.destroy(e));
    input.pipe(frames);
    return frames;
  }
}
