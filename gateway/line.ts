/**
 * Serial lines: the thin adapter between a byte stream (a serialport, a mock, a pty) and the gateway core.
 * A {@link Line} owns one LinkParser for its whole life, so counters survive reconnections of the port.
 * @module
 */
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import type { SerialPortStream } from '@serialport/stream';
import { SerialPort } from 'serialport';
import { encodeAck } from '../protocol/frame.js';
import { encodeLinkFrame, LinkParser } from '../protocol/link.js';
import { classifyPayload, lineCounters, newLineCounters, type LineCounters, type OpaqueFrame } from './core.js';
import type { OfferResult } from './forwarder.js';

/**
 * One serial line into the gateway.
 * @example
 * ```ts
 * const line = new Line('/dev/ttyUSB0', (l, frame) => forwarder.offer(l, frame), logger);
 * line.attach(port);
 * ```
 */
export class Line {
  readonly name: string;
  readonly parser = new LinkParser();
  private readonly own = newLineCounters();
  private port: Duplex | undefined;

  constructor(
    name: string,
    onFrame: (line: Line, frame: OpaqueFrame) => OfferResult,
    private readonly logger: Logger,
  ) {
    if (typeof name !== 'string' || name.length === 0) throw new TypeError('line name must be a non-empty string');
    if (typeof onFrame !== 'function') throw new TypeError('"onFrame" must be a function');
    this.name = name;
    this.parser.on('data', (payload: Buffer) => {
      const c = classifyPayload(payload);
      if (c.kind === 'frame') {
        this.own.framesOk++;
        const r = onFrame(this, c.frame);
        if (r === 'duplicate' || r === 'reacked') this.own.duplicates++;
        else if (r === 'full') this.own.queueFull++;
      } else {
        this.own[c.kind]++;
        this.logger.debug({ line: this.name, kind: c.kind, reason: c.reason, bytes: payload.length }, 'gateway: payload is not a frame');
      }
    });
  }

  /** Whether a port is attached and open. */
  get up(): boolean {
    const p = this.port as (Duplex & { isOpen?: boolean }) | undefined;
    return p !== undefined && !p.destroyed && p.isOpen !== false;
  }

  /** This line's counters (link-level ones from its parser). */
  counters(): LineCounters {
    return lineCounters(this.own, this.parser.counters);
  }

  /** Starts reading `port` (the parser stays, so a partial frame from a previous port is resynchronised). */
  attach(port: Duplex): void {
    this.detach();
    this.port = port;
    port.pipe(this.parser, { end: false });
  }

  /** Stops reading the current port, if any (does not close it). */
  detach(): void {
    if (this.port) this.port.unpipe(this.parser);
    this.port = undefined;
  }

  /** Writes the selective acknowledgement of `frame` (a link frame holding `[2, 1, systemTitle, ic]`). */
  sendAck(frame: OpaqueFrame): void {
    if (!this.up) {
      this.own.acksDropped++;
      return;
    }
    this.port!.write(encodeLinkFrame(encodeAck({ systemTitle: frame.systemTitle, ic: frame.ic })), (err) => {
      if (err) this.logger.warn({ line: this.name, err: err.message }, 'gateway: ack write failed');
    });
    this.own.acksSent++;
  }
}

export interface SerialLineOptions {
  baudRate?: number;
  /** First reopen delay, ms (doubles per failed attempt). Default 500. */
  minBackoffMs?: number;
  /** Largest reopen delay, ms. Default 30000. */
  maxBackoffMs?: number;
  logger: Logger;
  /** Opens the port (tests inject mock bindings). Default: `new SerialPort({ path, baudRate, autoOpen: false })`. */
  createPort?: (path: string, baudRate: number) => SerialPortStream;
}

/**
 * Opens serial port `path` for `line` (8N1 at `baudRate`) and reopens it with backoff whenever it fails to
 * open, closes or disappears (USB adapter unplugged, pty gone), until `close()`.
 * @example
 * ```ts
 * const serial = openSerialLine(line, '/dev/ttyUSB0', { baudRate: 115200, logger });
 * await serial.close();
 * ```
 */
export function openSerialLine(line: Line, path: string, o: SerialLineOptions): { close(): Promise<void> } {
  const baudRate = o.baudRate ?? 115200;
  if (!Number.isInteger(baudRate) || baudRate < 50 || baudRate > 4_000_000) throw new TypeError('baud rate must be an integer between 50 and 4000000');
  const minMs = o.minBackoffMs ?? 500;
  const maxMs = o.maxBackoffMs ?? 30_000;
  const create = o.createPort ?? ((p: string, b: number) => new SerialPort({ path: p, baudRate: b, autoOpen: false }));
  const log = o.logger;
  let attempts = 0;
  let closed = false;
  let timer: NodeJS.Timeout | undefined;
  let current: SerialPortStream | undefined;

  const retry = (why: string) => {
    attempts++;
    const delay = Math.min(maxMs, minMs * 2 ** Math.min(attempts - 1, 30));
    log.warn({ line: path, attempt: attempts, retryInMs: delay, why }, 'gateway: serial line down, will reopen');
    timer = setTimeout(open, delay);
  };

  function open(): void {
    timer = undefined;
    const port = create(path, baudRate);
    port.on('error', (err: Error) => log.warn({ line: path, err: err.message }, 'gateway: serial line error'));
    port.open((err) => {
      if (closed) {
        if (!err) port.destroy();
        return;
      }
      if (err) return retry(err.message);
      attempts = 0;
      current = port;
      line.attach(port);
      log.info({ line: path, baudRate }, 'gateway: serial line up');
      port.once('close', () => {
        if (current !== port) return;
        current = undefined;
        line.detach();
        if (!closed) retry('port closed');
      });
    });
  }
  open();

  return {
    async close() {
      closed = true;
      clearTimeout(timer);
      const port = current;
      current = undefined;
      line.detach();
      if (port?.isOpen) await new Promise<void>((resolve) => port.close(() => resolve()));
    },
  };
}
