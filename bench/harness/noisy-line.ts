/**
 * A meter and a gateway on real serial devices with line noise between them:
 *
 * ```
 * Meter (firmware, ReconnectingSerialLine) ── pty ═socat═ pty ── NoiseRelay ── pty ═socat═ pty ── gateway
 * ```
 *
 * Two socat pty pairs, and between them a relay that paces the bytes at the line rate (115200 baud 8N1 =
 * 11520 bytes/s per direction: ptys themselves do not throttle) and damages them in both directions: bit
 * flips, dropped bytes, inserted bytes (flags and escapes among them) and bursts of garbage. The gateway
 * publishes to an embedded broker; a subscriber deciphers every frame with the meter key, so the check at
 * the end is on what reached the MQTT side: every reading exactly once, and the register chain intact and
 * equal to the source's integral. Used by test/serial/socat-noise.test.ts (bounded) and
 * bench/serial-soak.ts (long).
 * @module
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import mqtt from 'mqtt';
import { pino, type Logger } from 'pino';
import { SerialPort } from 'serialport';
import { startBroker } from '../../broker/broker.js';
import { MemoryNvStore } from '../../firmware/hal/nv.js';
import type { Sample, Source } from '../../firmware/hal/source.js';
import { Meter, type MeterOptions } from '../../firmware/meter.js';
import { ReconnectingSerialLine } from '../../firmware/serial.js';
import { SyntheticSource } from '../../firmware/sources/synthetic.js';
import { startGateway } from '../../gateway/gateway.js';
import { decodeFrame, openFrame, systemTitle } from '../../protocol/frame.js';
import { decodeReadingBatch } from '../../protocol/reading.js';
import { topics } from '../../protocol/topics.js';
import { decodeUplink } from '../../protocol/uplink.js';

/**
 * Whether socat is installed.
 * @example
 * ```ts
 * describe.skipIf(!haveSocat() && process.env.CI !== 'true')('...', () => {});
 * ```
 */
export const haveSocat = (): boolean => spawnSync('socat', ['-V']).status === 0;

/**
 * A socat pty pair: `socat -d -d pty,raw,echo=0 pty,raw,echo=0`, paths read from its stderr.
 * @example
 * ```ts
 * const { a, b, stop } = await socatPair(); // open a and b with serialport; await stop()
 * ```
 */
export function socatPair(): Promise<{ a: string; b: string; stop(): Promise<void> }> {
  const proc: ChildProcess = spawn('socat', ['-d', '-d', 'pty,raw,echo=0', 'pty,raw,echo=0'], { stdio: ['ignore', 'ignore', 'pipe'] });
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
    await exited;
  };
  return new Promise((resolve, reject) => {
    let err = '';
    const t = setTimeout(() => {
      void stop();
      reject(new Error(`socat gave no pty paths: ${err}`));
    }, 5000);
    proc.stderr!.on('data', (d: Buffer) => {
      err += String(d);
      const paths = [...err.matchAll(/PTY is (\/dev\/pts\/\d+)/g)].map((m) => m[1]!);
      if (paths.length === 2 && /starting data transfer loop/.test(err)) {
        clearTimeout(t);
        resolve({ a: paths[0]!, b: paths[1]!, stop });
      }
    });
    proc.once('error', (e) => {
      clearTimeout(t);
      reject(e);
    });
  });
}

/** Bytes the relay holds per direction before it stops reading (a UART's FIFO and driver buffer). */
const UART_BUFFER = 1024;

export interface NoiseOptions {
  /** Probability per byte of one flipped bit. */
  flip: number;
  /** Probability per byte that it is lost. */
  drop: number;
  /** Probability per byte that a random byte (often 7E or 7D) is inserted after it. */
  insert: number;
  /** Mean time between bursts of 8..64 garbage bytes, ms (0: none). */
  burstEveryMs: number;
  /** Line rate per direction, bytes/s (115200 baud 8N1: 11520). */
  bytesPerSecond: number;
}

/** What the relay did to the bytes, per direction (`up`: meter -> gateway). They only grow. */
export interface RelayCounters {
  bytes: number;
  flipped: number;
  dropped: number;
  inserted: number;
  bursts: number;
}

function openPort(path: string): Promise<SerialPort> {
  return new Promise((resolve, reject) => {
    const p: SerialPort = new SerialPort({ path, baudRate: 115200 }, (err) => (err ? reject(err) : resolve(p)));
  });
}

/**
 * The noisy wire between two pty ends.
 * @example
 * ```ts
 * const relay = await NoiseRelay.open(meterPairEnd, gatewayPairEnd, DEFAULT_NOISE);
 * ```
 */
export class NoiseRelay {
  readonly counters: Record<'up' | 'down', RelayCounters> = {
    up: { bytes: 0, flipped: 0, dropped: 0, inserted: 0, bursts: 0 },
    down: { bytes: 0, flipped: 0, dropped: 0, inserted: 0, bursts: 0 },
  };
  private readonly queues: Record<'up' | 'down', Buffer[]> = { up: [], down: [] };
  private readonly queued: Record<'up' | 'down', number> = { up: 0, down: 0 };
  private timer: NodeJS.Timeout | undefined;
  private last = performance.now();
  private nextBurst: Record<'up' | 'down', number>;

  private constructor(
    private readonly meterSide: SerialPort,
    private readonly gatewaySide: SerialPort,
    private readonly o: NoiseOptions,
  ) {
    this.nextBurst = { up: this.burstAt(), down: this.burstAt() };
    // Like a UART, the wire holds little: past UART_BUFFER bytes queued the relay stops reading, the pty fills
    // and the sender's writes wait (an unbounded queue would add seconds of latency and trigger ack timeouts).
    const take = (from: SerialPort, dir: 'up' | 'down') =>
      from.on('data', (b: Buffer) => {
        const d = this.damage(b, dir);
        this.queues[dir].push(d);
        this.queued[dir] += d.length;
        if (this.queued[dir] > UART_BUFFER) from.pause();
      });
    take(meterSide, 'up');
    take(gatewaySide, 'down');
    this.timer = setInterval(() => this.pace(), 5);
  }

  /** Opens both relay ends (115200 8N1) and starts relaying. */
  static async open(meterSidePath: string, gatewaySidePath: string, o: NoiseOptions): Promise<NoiseRelay> {
    const [a, b] = await Promise.all([openPort(meterSidePath), openPort(gatewaySidePath)]);
    return new NoiseRelay(a, b, o);
  }

  /** Changes the noise (e.g. a quiet end of a run). */
  set(o: Partial<NoiseOptions>): void {
    Object.assign(this.o, o);
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    const shut = (p: SerialPort) => new Promise<void>((r) => (p.isOpen ? p.close(() => r()) : r()));
    await Promise.all([shut(this.meterSide), shut(this.gatewaySide)]);
  }

  private burstAt(): number {
    return this.o.burstEveryMs > 0 ? performance.now() + this.o.burstEveryMs * 2 * Math.random() : Infinity;
  }

  private damage(input: Buffer, dir: 'up' | 'down'): Buffer {
    const c = this.counters[dir];
    const out: number[] = [];
    for (let b of input) {
      c.bytes++;
      if (Math.random() < this.o.drop) {
        c.dropped++;
        continue;
      }
      if (Math.random() < this.o.flip) {
        b ^= 1 << Math.floor(Math.random() * 8);
        c.flipped++;
      }
      out.push(b);
      if (Math.random() < this.o.insert) {
        out.push(Math.random() < 0.5 ? (Math.random() < 0.5 ? 0x7e : 0x7d) : Math.floor(Math.random() * 256));
        c.inserted++;
      }
    }
    if (performance.now() >= this.nextBurst[dir]) {
      out.push(...randomBytes(8 + Math.floor(Math.random() * 57)));
      c.bursts++;
      this.nextBurst[dir] = this.burstAt();
    }
    return Buffer.from(out);
  }

  /** Writes at most the line rate's worth of bytes per direction since the last tick. */
  private pace(): void {
    const now = performance.now();
    const budget = Math.max(1, Math.floor(((now - this.last) / 1000) * this.o.bytesPerSecond));
    this.last = now;
    for (const dir of ['up', 'down'] as const) {
      const q = this.queues[dir];
      let left = budget;
      const parts: Buffer[] = [];
      while (left > 0 && q.length > 0) {
        const head = q[0]!;
        if (head.length <= left) {
          parts.push(head);
          left -= head.length;
          q.shift();
        } else {
          parts.push(head.subarray(0, left));
          q[0] = head.subarray(left);
          left = 0;
        }
      }
      const sent = budget - left;
      this.queued[dir] = Math.max(0, this.queued[dir] - sent);
      if (parts.length) (dir === 'up' ? this.gatewaySide : this.meterSide).write(Buffer.concat(parts));
      const from = dir === 'up' ? this.meterSide : this.gatewaySide;
      if (from.isPaused() && this.queued[dir] <= UART_BUFFER / 2) from.resume();
    }
  }
}

/** A source that yields until `stop()` is called (then the meter sends its last batch and drains). */
function stoppable(source: Source): Source & { stop(): void } {
  let stopped = false;
  return {
    name: source.name,
    stop: () => void (stopped = true),
    async *samples(from?: number): AsyncGenerator<Sample> {
      for await (const s of source.samples(from)) {
        if (stopped) return;
        yield s;
      }
    },
  };
}

export interface NoisyRunOptions {
  noise: NoiseOptions;
  /** Stop the source after this long (the drain comes after). */
  seconds: number;
  /** Quiet the line for the drain (noise off) — true for the bounded test. Default false. */
  quietDrain?: boolean;
  /** Longest drain after the source stopped, ms. */
  drainMs?: number;
  /** Meter options over the defaults used here (e.g. `retransmission: 'fixed'` for the old timer). */
  meter?: Partial<Pick<MeterOptions, 'retransmission' | 'ackTimeoutMs' | 'batch' | 'window'>>;
  /** Called every few seconds with a progress line. */
  progress?: (line: string) => void;
  log?: Logger;
}

export interface NoisyRunResult {
  seconds: number;
  /** Readings and frames the meter produced. */
  readings: number;
  frames: number;
  meter: Meter['counters'] & { link: Meter['link'] };
  gateway: ReturnType<Awaited<ReturnType<typeof startGateway>>['lineCounters']>[string] & { forwarded: number };
  relay: NoiseRelay['counters'];
  /** At the MQTT subscriber. */
  received: { authenticFrames: number; duplicateCopies: number; inauthenticCopies: number; readings: number };
  /** Source integral vs the last register the subscriber saw, Wh. */
  sourceWh: number;
  lastRegisterWh: number;
  /** Everything that is not exactly right; empty on success. */
  problems: string[];
}

/**
 * Runs a meter against a gateway over the noisy wire, then checks what reached the MQTT side.
 * @example
 * ```ts
 * const r = await runNoisyLine({ seconds: 20, noise: { flip: 1e-4, drop: 5e-5, insert: 5e-5, burstEveryMs: 2000, bytesPerSecond: 11520 } });
 * ```
 */
export async function runNoisyLine(o: NoisyRunOptions): Promise<NoisyRunResult> {
  const log = o.log ?? pino({ level: 'silent' });
  const cleanups: (() => Promise<unknown>)[] = [];
  const t0 = performance.now();
  try {
    const broker = await startBroker({ port: 0, logger: log });
    cleanups.push(() => broker.close());
    const key = randomBytes(32);
    const st = systemTitle('SMR', 4242);
    // The subscriber: deciphers every copy of every frame.
    const byIc = new Map<number, { ct: string; prevWh: number; readings: { time: number; importWh: number }[] }>();
    const received = { authenticFrames: 0, duplicateCopies: 0, inauthenticCopies: 0, readings: 0 };
    const sub = await mqtt.connectAsync(broker.url, { reconnectPeriod: 0 });
    cleanups.push(() => sub.endAsync());
    sub.on('message', (_t, payload) => {
      for (const bytes of decodeUplink(payload).frames) {
        const f = decodeFrame(bytes);
        const ct = Buffer.from(f.ciphertext).toString('hex');
        const seen = byIc.get(f.ic);
        if (seen && seen.ct === ct) {
          received.duplicateCopies++;
          continue;
        }
        let batch;
        try {
          batch = decodeReadingBatch(openFrame(key, f));
        } catch {
          received.inauthenticCopies++; // damage that passed the link FCS (1 in 65536 damaged frames)
          continue;
        }
        if (seen) throw new Error(`two authentic frames with counter ${f.ic}`);
        byIc.set(f.ic, { ct, prevWh: batch.prevWh, readings: batch.readings.map((r) => ({ time: r.time, importWh: r.importWh })) });
        received.authenticFrames++;
        received.readings += batch.readings.length;
      }
    });
    await sub.subscribeAsync(topics.frames('gw-noise'), { qos: 1 });

    const m = await socatPair();
    cleanups.push(() => m.stop());
    const g = await socatPair();
    cleanups.push(() => g.stop());
    const relay = await NoiseRelay.open(m.b, g.a, { ...o.noise });
    cleanups.push(() => relay.close());
    const gw = await startGateway({ id: 'gw-noise', lines: [g.b], baudRate: 115200, mqtt: { url: broker.url }, queuePath: ':memory:', logger: log, backoff: { minMs: 100, maxMs: 1000 } });
    cleanups.push(() => gw.close());
    const line = new ReconnectingSerialLine({ path: m.a, baudRate: 115200, log });
    cleanups.push(() => line.close());
    await line.opened();

    const start = 1_704_067_200;
    const source = stoppable(new SyntheticSource({ seed: 7, start, tz: 'UTC' }));
    const meter = await Meter.start({ systemTitle: st, key, line, source, nv: new MemoryNvStore(), batch: 15, ackTimeoutMs: 1000, window: 32, log, ...o.meter });
    cleanups.push(() => meter.stop());

    const progress = setInterval(() => {
      const c = gw.counters;
      o.progress?.(
        `${Math.round((performance.now() - t0) / 1000)} s: ${meter.counters.readings} readings, ${meter.counters.frames} frames (${meter.counters.retransmits} retransmitted, ${meter.unacked} unacked), gateway ${c.framesOk} ok / ${c.badCrc} bad FCS / ${c.malformed} malformed / ${c.resyncs} resyncs, subscriber ${received.authenticFrames} frames`,
      );
    }, 10_000);
    cleanups.push(async () => clearInterval(progress));

    await new Promise((r) => setTimeout(r, o.seconds * 1000));
    source.stop();
    if (o.quietDrain) relay.set({ flip: 0, drop: 0, insert: 0, burstEveryMs: 0 });
    await meter.done(o.drainMs ?? 120_000);
    // The last acks arrived, so the last uplink was PUBACKed; give the subscriber its delivery.
    const until = Date.now() + 10_000;
    while (received.authenticFrames < meter.counters.frames && Date.now() < until) await new Promise((r) => setTimeout(r, 50));

    // Checks: every frame once, every reading once, the register chain, the source's integral.
    const problems: string[] = [];
    const ics = [...byIc.keys()].sort((a, b) => a - b);
    if (ics.length !== meter.counters.frames) problems.push(`${meter.counters.frames} frames sealed, ${ics.length} distinct ones received`);
    if (meter.counters.droppedFromRing) problems.push(`${meter.counters.droppedFromRing} frames dropped from the meter's ring`);
    const times = new Set<number>();
    let prev = 0;
    let chainBreaks = 0;
    for (const ic of ics) {
      const f = byIc.get(ic)!;
      if (f.prevWh !== prev) chainBreaks++;
      for (const r of f.readings) {
        if (times.has(r.time)) problems.push(`reading at ${r.time} received twice`);
        times.add(r.time);
        prev = r.importWh;
      }
    }
    if (chainBreaks) problems.push(`${chainBreaks} register chain breaks (prevWh != previous importWh)`);
    if (times.size !== meter.counters.readings) problems.push(`${meter.counters.readings} readings taken, ${times.size} distinct received`);
    const sorted = [...times].sort((a, b) => a - b);
    if (sorted.length && (sorted[0] !== start || sorted[sorted.length - 1] !== start + (sorted.length - 1) * 60)) problems.push('received readings are not one contiguous minute series from the start');
    // The source's own integral over what was read (independent of the meter's register code).
    let milliWs = 0n;
    let n = 0;
    for await (const s of new SyntheticSource({ seed: 7, start, tz: 'UTC' }).samples()) {
      if (n++ >= meter.counters.readings) break;
      milliWs += BigInt(s.powerMilliW) * BigInt(s.period);
    }
    const sourceWh = Number(milliWs / 3_600_000n);
    if (prev !== sourceWh) problems.push(`last register received ${prev} Wh, source integral ${sourceWh} Wh`);
    if (prev !== meter.registerWh) problems.push(`last register received ${prev} Wh, meter register ${meter.registerWh} Wh`);

    const lc = Object.values(gw.lineCounters())[0]!;
    return {
      seconds: Math.round((performance.now() - t0) / 100) / 10,
      readings: meter.counters.readings,
      frames: meter.counters.frames,
      meter: { ...meter.counters, link: { ...meter.link } },
      gateway: { ...lc, forwarded: gw.counters.forwarded },
      relay: JSON.parse(JSON.stringify(relay.counters)) as NoiseRelay['counters'],
      received,
      sourceWh,
      lastRegisterWh: prev,
      problems,
    };
  } finally {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
  }
}

/** A noise level that keeps a 115200-baud line usable but damages a few percent of frames. */
export const DEFAULT_NOISE: NoiseOptions = { flip: 2e-4, drop: 1e-4, insert: 1e-4, burstEveryMs: 1500, bytesPerSecond: 11_520 };
