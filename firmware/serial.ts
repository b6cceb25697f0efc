/**
 * The meter's serial port: a {@link SerialLine} over a real device (serialport, 8N1 unless told), reopened with
 * exponential backoff whenever it disappears (USB adapter unplugged, pty closed) or cannot be opened.
 *
 * While the port is down, writes are dropped and counted: the frames stay in the meter's ring and are
 * retransmitted after their acknowledgement timeout, so nothing is queued behind a dead port. With
 * `openTimeoutMs`, a port that has never opened within that time is given up ({@link SerialOpenError}: a
 * mistyped or absent device is a clear error, not an endless retry loop); once open, it is reopened for ever.
 * Tests and the
 * replay command use an already-open stream instead (`streamLine` over one end of a crossed mock pair).
 * @module
 */
import { SerialPortStream } from '@serialport/stream';
import { SerialPort } from 'serialport';
import pino, { type Logger } from 'pino';
import type { SerialLine } from './hal/line.js';

/** A serialport binding (its package's `exports` map hides the declaration from NodeNext, hence derived). */
type BindingInterface = SerialPortStream['settings']['binding'];

export { streamLine } from './hal/line.js';

export interface SerialLineOptions {
  /** Device path, e.g. `/dev/ttyUSB0`. */
  path: string;
  /** Default 115200. */
  baudRate?: number;
  /** Default 8 (a P1 port of DSMR 2.2/3 uses 7 with even parity). */
  dataBits?: 7 | 8;
  /** Default 'none'. */
  parity?: 'none' | 'even';
  /** serialport binding (default: the platform binding; tests pass the mock binding). */
  binding?: BindingInterface;
  /** First reconnect delay, ms (default 250); doubles per failure. */
  minBackoffMs?: number;
  /** Longest reconnect delay, ms (default 10000). */
  maxBackoffMs?: number;
  /** Give up if the port has not opened once within this many ms (default: keep trying for ever). */
  openTimeoutMs?: number;
  log?: Logger;
}

/**
 * The port did not open within `openTimeoutMs`: it names the device, how long and how often it was tried,
 * and the last reason.
 * @example
 * ```ts
 * await line.opened().catch((e) => { if (e instanceof SerialOpenError) console.error(e.message); });
 * ```
 */
export class SerialOpenError extends Error {
  override name = 'SerialOpenError';
  constructor(
    readonly path: string,
    readonly attempts: number,
    readonly lastError: string,
    waitedMs: number,
  ) {
    super(`cannot open serial port ${path}: ${lastError} (${attempts} attempt${attempts === 1 ? '' : 's'} over ${Math.round(waitedMs / 1000)} s)`);
  }
}

/** Connection statistics of a {@link ReconnectingSerialLine}. All counters only grow. */
export interface SerialLineCounters {
  opens: number;
  openFailures: number;
  disconnects: number;
  /** Bytes written while the port was down (lost, like on an unplugged wire). */
  droppedBytes: number;
}

/**
 * A serial line that keeps itself open.
 * @example
 * ```ts
 * const line = new ReconnectingSerialLine({ path: '/dev/ttyUSB0' });
 * await line.opened(); // optional: wait for the first successful open
 * const meter = await Meter.start({ line, ... });
 * ```
 */
export class ReconnectingSerialLine implements SerialLine {
  readonly counters: SerialLineCounters = { opens: 0, openFailures: 0, disconnects: 0, droppedBytes: 0 };
  private readonly path: string;
  private readonly baudRate: number;
  private readonly dataBits: 7 | 8;
  private readonly parity: 'none' | 'even';
  private readonly binding: BindingInterface;
  private readonly minBackoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly log: Logger;
  private readonly listeners = new Set<(chunk: Buffer) => void>();
  private current: SerialPortStream | undefined;
  private backoff: number;
  private retry: NodeJS.Timeout | undefined;
  private closed = false;
  private openWaiters: { resolve: () => void; reject: (e: Error) => void }[] = [];
  private failure: SerialOpenError | undefined;
  private giveUp: NodeJS.Timeout | undefined;
  private lastOpenError = 'not tried yet';

  constructor(options: SerialLineOptions) {
    const { path, baudRate = 115200, dataBits = 8, parity = 'none', binding = SerialPort.binding, minBackoffMs = 250, maxBackoffMs = 10_000, openTimeoutMs, log } = options;
    if (typeof path !== 'string' || path.length === 0) throw new TypeError('"path" must be a non-empty device path');
    if (!Number.isSafeInteger(baudRate) || baudRate < 50 || baudRate > 4_000_000) throw new RangeError('"baudRate" must be an integer in 50..4000000');
    if (dataBits !== 7 && dataBits !== 8) throw new RangeError('"dataBits" must be 7 or 8');
    if (parity !== 'none' && parity !== 'even') throw new RangeError('"parity" must be "none" or "even"');
    if (!Number.isSafeInteger(minBackoffMs) || minBackoffMs < 1) throw new RangeError('"minBackoffMs" must be a positive integer');
    if (!Number.isSafeInteger(maxBackoffMs) || maxBackoffMs < minBackoffMs) throw new RangeError('"maxBackoffMs" must be an integer >= minBackoffMs');
    if (openTimeoutMs !== undefined && !(Number.isSafeInteger(openTimeoutMs) && openTimeoutMs >= 0)) throw new RangeError('"openTimeoutMs" must be a non-negative integer');
    this.path = path;
    this.baudRate = baudRate;
    this.dataBits = dataBits;
    this.parity = parity;
    this.binding = binding;
    this.minBackoffMs = this.backoff = minBackoffMs;
    this.maxBackoffMs = maxBackoffMs;
    this.log = (log ?? pino({ enabled: false })).child({ port: path });
    if (openTimeoutMs !== undefined) {
      const since = Date.now();
      this.giveUp = setTimeout(() => {
        this.failure = new SerialOpenError(path, this.counters.openFailures, this.lastOpenError, Date.now() - since);
        this.log.error({ attempts: this.counters.openFailures, err: this.lastOpenError }, 'serial port did not open: giving up');
        this.openWaiters.splice(0).forEach((w) => w.reject(this.failure!));
        void this.close();
      }, openTimeoutMs);
    }
    this.connect();
  }

  /** Whether the port is open right now. */
  get isOpen(): boolean {
    return this.current?.isOpen ?? false;
  }

  /** The currently open port stream, if any (for diagnostics and tests). */
  get port(): SerialPortStream | undefined {
    return this.current;
  }

  /** Resolves once the port is open (immediately if it is); rejects with {@link SerialOpenError} if it gave up. */
  opened(): Promise<void> {
    if (this.isOpen) return Promise.resolve();
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => this.openWaiters.push({ resolve, reject }));
  }

  write(bytes: Buffer): Promise<void> {
    const port = this.current;
    if (!port?.isOpen) {
      this.counters.droppedBytes += bytes.length;
      return Promise.resolve();
    }
    return new Promise((resolve) => port.write(bytes, () => resolve()));
  }

  /** Resolves once the bytes written so far have left the UART (`tcdrain`), or at once while the port is down. */
  drain(): Promise<void> {
    const port = this.current;
    if (!port?.isOpen) return Promise.resolve();
    return new Promise((resolve) => port.drain(() => resolve()));
  }

  onData(listener: (chunk: Buffer) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Closes the port for good (no more reconnects). */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retry);
    clearTimeout(this.giveUp);
    const port = this.current;
    this.current = undefined;
    if (port?.isOpen) await new Promise<void>((resolve) => port.close(() => resolve()));
  }

  private connect(): void {
    if (this.closed) return;
    const port = new SerialPortStream({ binding: this.binding, path: this.path, baudRate: this.baudRate, dataBits: this.dataBits, stopBits: 1, parity: this.parity, autoOpen: false });
    port.on('error', (err: Error) => this.log.warn({ err: err.message }, 'serial port error'));
    port.open((err) => {
      if (err) {
        this.counters.openFailures++;
        this.lastOpenError = err.message;
        this.log.warn({ err: err.message, retryMs: this.backoff }, 'cannot open serial port');
        this.scheduleReconnect();
        return;
      }
      if (this.closed) {
        port.close();
        return;
      }
      this.counters.opens++;
      clearTimeout(this.giveUp);
      this.backoff = this.minBackoffMs;
      this.current = port;
      this.log.info({ baudRate: this.baudRate }, 'serial port open');
      port.on('data', (chunk: Buffer) => this.listeners.forEach((l) => l(chunk)));
      port.once('close', () => {
        if (this.current === port) this.current = undefined;
        if (this.closed) return;
        this.counters.disconnects++;
        this.log.warn({ retryMs: this.backoff }, 'serial port closed; reconnecting');
        this.scheduleReconnect();
      });
      this.openWaiters.splice(0).forEach((w) => w.resolve());
    });
  }

  private scheduleReconnect(): void {
    if (this.closed) return;
    clearTimeout(this.retry);
    this.retry = setTimeout(() => this.connect(), this.backoff);
    this.backoff = Math.min(this.backoff * 2, this.maxBackoffMs);
  }
}
