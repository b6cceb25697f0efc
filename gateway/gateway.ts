/**
 * The data concentrator: serial lines -> link parser -> opaque frames -> on-disk queue -> batched MQTT
 * uplinks (QoS 1) -> selective acks back to each meter after PUBACK. It holds no keys.
 * @module
 */
import type { Duplex } from 'node:stream';
import type { SerialPortStream } from '@serialport/stream';
import { pino, type Logger } from 'pino';
import { topicId, topics } from '../protocol/topics.js';
import { totalCounters, type GatewayCounters, type LineCounters, type OpaqueFrame } from './core.js';
import { Forwarder } from './forwarder.js';
import { Line, openSerialLine } from './line.js';
import { checkBrokerUrls, connectUplink } from './mqtt.js';
import { openFrameQueue } from './queue.js';

export interface GatewayOptions {
  /** Gateway id (a topic level): publishes to `sm/v1/frames/<id>` as MQTT client `gateway-<id>`. */
  id: string;
  /** Serial lines: device paths (opened, and reopened with backoff) or already-open streams (used as given). */
  lines: Array<string | Duplex>;
  mqtt: { url: string; username?: string; password?: string };
  /** Queue file (SQLite); `':memory:'` for a volatile queue. */
  queuePath: string;
  /** Baud rate for device paths. Default 115200. */
  baudRate?: number;
  /** Frames per uplink. Default 256. */
  maxBatch?: number;
  /** Longest a frame waits for its batch, ms. Default 20. */
  maxDelayMs?: number;
  /** Uplinks awaiting PUBACK at once. Default 16. */
  maxInflight?: number;
  /** Queue bound, frames. Default 100000. */
  maxQueueFrames?: number;
  /** Queue bound, bytes. Default 64 MiB. */
  maxQueueBytes?: number;
  /** Backoff for broker reconnection and serial reopening, ms. Default 500..30000. */
  backoff?: { minMs?: number; maxMs?: number };
  /** How long close() waits for outstanding PUBACKs, ms. Default 2000. */
  closeTimeoutMs?: number;
  logger?: Logger;
  /** Port factory for device paths (tests). */
  createPort?: (path: string, baudRate: number) => SerialPortStream;
}

export interface GatewayHandle {
  readonly id: string;
  /** Totals over all lines plus forwarding state (a snapshot). */
  readonly counters: GatewayCounters;
  /** Per-line counters, by line name. */
  lineCounters(): Record<string, LineCounters>;
  /** Whether the broker connection is up. */
  readonly connected: boolean;
  /** Publishes what is waiting, waits briefly for PUBACKs, then closes lines, connection and queue. */
  close(): Promise<void>;
}

/**
 * Starts a gateway. Returns at once; the broker connection and the serial lines come up in the background
 * (and come back after failures), while frames are queued on disk.
 * @example
 * ```ts
 * const gw = await startGateway({ id: 'gw-n1', lines: ['/dev/ttyUSB0'], mqtt: { url: 'mqtt://127.0.0.1:1883' }, queuePath: 'state/gw-n1.db' });
 * console.log(gw.counters.forwarded);
 * await gw.close();
 * ```
 */
export async function startGateway(opts: GatewayOptions): Promise<GatewayHandle> {
  const id = topicId(opts.id, 'gateway id');
  if (!Array.isArray(opts.lines) || opts.lines.length === 0) throw new TypeError('at least one serial line is required');
  if (!opts.mqtt || typeof opts.mqtt.url !== 'string') throw new TypeError('"mqtt.url" is required');
  checkBrokerUrls(opts.mqtt.url); // before the queue and the lines are opened: a bad flag leaves nothing open
  const logger = (opts.logger ?? pino({ name: 'gateway' })).child({ gateway: id });
  const closeTimeoutMs = opts.closeTimeoutMs ?? 2000;

  const queue = openFrameQueue(opts.queuePath, (err) => logger.error({ err: err.message }, 'gateway: queue write failed (will retry)'));
  let uplink: ReturnType<typeof connectUplink> | undefined;
  const forwarder = new Forwarder<Line>({
    gatewayId: id,
    store: queue,
    publish: (payload, done) => (uplink ? uplink.publish(payload, done) : done(new Error('not connected'))),
    ack: (line, frame) => line.sendAck(frame),
    maxBatch: opts.maxBatch,
    maxDelayMs: opts.maxDelayMs,
    maxInflight: opts.maxInflight,
    maxQueueFrames: opts.maxQueueFrames,
    maxQueueBytes: opts.maxQueueBytes,
    onCorrupt: (seq, reason) => logger.warn({ seq, reason }, 'gateway: dropped an undecodable frame from the queue'),
    onStoreError: (err) => logger.error({ err: err.message }, 'gateway: queue failed; publishing paused, will retry'),
  });
  const restored = forwarder.restore();
  if (restored > 0) logger.info({ frames: restored }, 'gateway: re-publishing frames queued by a previous run');

  const onFrame = (line: Line, frame: OpaqueFrame) => {
    const r = forwarder.offer(line, frame);
    if (r === 'full') logger.warn({ line: line.name, pending: forwarder.pending }, 'gateway: queue full, frame not acknowledged (the meter keeps it)');
    return r;
  };
  const lines: Line[] = [];
  const serials: { close(): Promise<void> }[] = [];
  // Declared before any line is attached: a line's 'close' listener reads it (a failed start closes them too).
  let closing: Promise<void> | undefined;
  opts.lines.forEach((l, i) => {
    if (typeof l === 'string') {
      const line = new Line(l, onFrame, logger);
      lines.push(line);
      serials.push(openSerialLine(line, l, { baudRate: opts.baudRate, minBackoffMs: opts.backoff?.minMs, maxBackoffMs: opts.backoff?.maxMs, logger, createPort: opts.createPort }));
    } else if (l && typeof (l as Duplex).pipe === 'function' && typeof (l as Duplex).write === 'function') {
      const name = (l as { path?: unknown }).path;
      const line = new Line(typeof name === 'string' && name ? name : `line-${i}`, onFrame, logger);
      lines.push(line);
      line.attach(l as Duplex);
      (l as Duplex).once('close', () => {
        if (!closing) logger.warn({ line: line.name }, 'gateway: serial line closed by its owner'); // not news while closing
      });
    } else {
      throw new TypeError(`lines[${i}] must be a device path or an open serial port stream`);
    }
  });

  uplink = connectUplink({
    url: opts.mqtt.url,
    clientId: `gateway-${id}`,
    username: opts.mqtt.username,
    password: opts.mqtt.password,
    topic: topics.frames(id),
    logger,
    minBackoffMs: opts.backoff?.minMs,
    maxBackoffMs: opts.backoff?.maxMs,
    onOnline: () => forwarder.setOnline(true),
    onOffline: () => forwarder.setOnline(false),
  });

  const counters = (): GatewayCounters =>
    totalCounters(
      lines.map((l) => l.counters()),
      {
        forwarded: forwarder.forwarded,
        pending: forwarder.pending,
        uplinks: forwarder.uplinks,
        publishErrors: forwarder.publishErrors,
        storeErrors: forwarder.storeErrors,
        linesUp: lines.filter((l) => l.up).length,
      },
    );

  return {
    id,
    get counters() {
      return counters();
    },
    lineCounters: () => Object.fromEntries(lines.map((l) => [l.name, l.counters()])),
    get connected() {
      return uplink?.connected ?? false;
    },
    close() {
      closing ??= (async () => {
        // Lines stay attached while draining, so the acks of frames PUBACKed now still reach the meters.
        forwarder.flush();
        await forwarder.drain(closeTimeoutMs);
        forwarder.close();
        for (const l of lines) l.detach();
        await Promise.all([uplink!.close(), ...serials.map((s) => s.close())]);
        queue.close(); // frames still queued are re-published by the next run
        logger.info(counters(), 'gateway: closed');
      })();
      return closing;
    },
  };
}
