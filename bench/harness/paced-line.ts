/**
 * An in-process serial cable paced at a baud rate, with optional line noise: two duplex ends, a meter's and
 * a gateway's, that behave like UARTs.
 *
 * Each end's transmitter has a driver buffer (default 4096 bytes, like a Linux tty's): a write completes as
 * soon as its bytes fit in it, long before they are on the wire, and `drain(callback)` (like
 * `SerialPortStream.drain`, i.e. `tcdrain`) calls back once the last byte written has left. Bytes leave at
 * `bytesPerSecond` in small chunks; the line's own clock runs on: a chunk whose event fires late still left on
 * time if bytes were waiting, so the line carries exactly its rate however busy the event loop is. Noise, if
 * any, hits the bytes as they arrive (flipped bits, lost and inserted bytes, bursts of garbage), from a seeded
 * generator so that two runs see the same kind of damage. Faster to set up than socat ptys
 * (bench/harness/noisy-line.ts), and a write's completion means what it means on a real UART.
 * @module
 */
import { Duplex } from 'node:stream';

/** Damage per byte delivered (probabilities) and bursts of 8..64 garbage bytes (mean interval, ms; 0: none). */
export interface PacedNoise {
  flip: number;
  drop: number;
  insert: number;
  burstEveryMs: number;
}

export interface PacedLineOptions {
  /** Line rate per direction, bytes/s (8N1: baud / 10). */
  bytesPerSecond: number;
  /** Transmit driver buffer per end, bytes (default 4096). */
  driverBuffer?: number;
  /** Noise in both directions (default none). */
  noise?: PacedNoise;
  /** Seed of the noise generator (default 1). */
  seed?: number;
}

/** What one direction carried. They only grow. */
export interface PacedCounters {
  /** Bytes put on the wire by the transmitter. */
  sent: number;
  /** Bytes handed to the receiver (after noise). */
  delivered: number;
  flipped: number;
  dropped: number;
  inserted: number;
  bursts: number;
}

/** Bytes per wire event (a UART interrupt's worth). */
const CHUNK = 32;

type Direction = 'up' | 'down';

/** One end of a {@link PacedLine}: a Duplex with `drain(callback)`. */
export class PacedPort extends Duplex {
  constructor(
    private readonly line: PacedLine,
    private readonly dir: Direction,
  ) {
    super();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, callback: (err?: Error | null) => void): void {
    this.line.enqueue(this.dir, chunk, callback);
  }

  override _read(): void {
    // bytes are pushed as the line delivers them
  }

  /** Calls back once every byte written so far has left the transmitter. */
  drain(callback: (err?: Error | null) => void): void {
    this.line.onDrained(this.dir, () => callback(null));
  }
}

interface Transmitter {
  queue: Buffer[];
  queued: number;
  /** Write callback of a write that does not fit in the driver buffer yet. */
  blocked: (() => void) | undefined;
  drainWaiters: (() => void)[];
  /** Line clock: when the chunk on the wire ends (ms, performance.now()); undefined when idle. */
  busyUntil: number | undefined;
  timer: NodeJS.Timeout | undefined;
  nextBurst: number;
}

/**
 * A paced cable between a meter end (`up` = meter -> gateway) and a gateway end.
 * @example
 * ```ts
 * const cable = new PacedLine({ bytesPerSecond: 960 }); // 9600 baud 8N1
 * const meter = await Meter.start({ line: streamLine(cable.meterEnd), ... });
 * await startGateway({ lines: [cable.gatewayEnd], ... });
 * ```
 */
export class PacedLine {
  readonly meterEnd: PacedPort;
  readonly gatewayEnd: PacedPort;
  readonly counters: Record<Direction, PacedCounters> = {
    up: { sent: 0, delivered: 0, flipped: 0, dropped: 0, inserted: 0, bursts: 0 },
    down: { sent: 0, delivered: 0, flipped: 0, dropped: 0, inserted: 0, bursts: 0 },
  };
  private readonly rate: number;
  private readonly driverBuffer: number;
  private noise: PacedNoise | undefined;
  private seed: number;
  private closed = false;
  private readonly tx: Record<Direction, Transmitter>;

  constructor(o: PacedLineOptions) {
    if (!(o.bytesPerSecond > 0 && Number.isFinite(o.bytesPerSecond))) throw new RangeError('"bytesPerSecond" must be a positive number');
    const buffer = o.driverBuffer ?? 4096;
    if (!Number.isSafeInteger(buffer) || buffer < 1) throw new RangeError('"driverBuffer" must be a positive integer');
    this.rate = o.bytesPerSecond;
    this.driverBuffer = buffer;
    this.noise = o.noise && { ...o.noise };
    this.seed = (o.seed ?? 1) >>> 0;
    const t = (): Transmitter => ({ queue: [], queued: 0, blocked: undefined, drainWaiters: [], busyUntil: undefined, timer: undefined, nextBurst: Infinity });
    this.tx = { up: t(), down: t() };
    this.tx.up.nextBurst = this.burstAt();
    this.tx.down.nextBurst = this.burstAt();
    this.meterEnd = new PacedPort(this, 'up');
    this.gatewayEnd = new PacedPort(this, 'down');
  }

  /** Changes the noise (undefined: a clean line). */
  setNoise(noise: PacedNoise | undefined): void {
    this.noise = noise && { ...noise };
    this.tx.up.nextBurst = this.burstAt();
    this.tx.down.nextBurst = this.burstAt();
  }

  /** Stops the line: bytes in transit are lost; pending callbacks are released. */
  close(): void {
    this.closed = true;
    for (const t of Object.values(this.tx)) {
      clearTimeout(t.timer);
      t.queue = [];
      t.queued = 0;
      t.blocked?.();
      t.blocked = undefined;
      t.drainWaiters.splice(0).forEach((w) => w());
    }
    this.meterEnd.destroy();
    this.gatewayEnd.destroy();
  }

  /** @internal A write on `dir`'s end: completes once its bytes fit in the driver buffer. */
  enqueue(dir: Direction, chunk: Buffer, done: () => void): void {
    const t = this.tx[dir];
    if (this.closed) return done();
    t.queue.push(Buffer.from(chunk));
    t.queued += chunk.length;
    if (t.queued <= this.driverBuffer) done();
    else t.blocked = done;
    if (t.busyUntil === undefined) this.next(dir, performance.now());
  }

  /** @internal Calls `f` once `dir`'s transmitter is empty. */
  onDrained(dir: Direction, f: () => void): void {
    const t = this.tx[dir];
    if (this.closed || (t.queued === 0 && t.busyUntil === undefined)) setImmediate(f);
    else t.drainWaiters.push(f);
  }

  /** Puts the next chunk of `dir` on the wire, starting at `start` on the line clock. */
  private next(dir: Direction, start: number): void {
    const t = this.tx[dir];
    if (this.closed) return;
    if (t.queued === 0) {
      t.busyUntil = undefined;
      t.drainWaiters.splice(0).forEach((w) => w());
      return;
    }
    const parts: Buffer[] = [];
    let n = 0;
    while (n < CHUNK && t.queue.length > 0) {
      const head = t.queue[0]!;
      const take = Math.min(head.length, CHUNK - n);
      parts.push(head.subarray(0, take));
      n += take;
      if (take === head.length) t.queue.shift();
      else t.queue[0] = head.subarray(take);
    }
    t.queued -= n;
    this.counters[dir].sent += n;
    const end = start + (n * 1000) / this.rate;
    t.busyUntil = end;
    t.timer = setTimeout(() => {
      this.deliver(dir, Buffer.concat(parts));
      if (t.blocked && t.queued <= this.driverBuffer) {
        const b = t.blocked;
        t.blocked = undefined;
        b();
      }
      // Bytes were waiting: the next chunk left when this one ended, however late this event runs.
      this.next(dir, t.queued > 0 ? end : performance.now());
    }, Math.max(0, end - performance.now()));
  }

  private deliver(dir: Direction, bytes: Buffer): void {
    const out = this.noise ? this.damage(dir, bytes) : bytes;
    this.counters[dir].delivered += out.length;
    if (out.length > 0) (dir === 'up' ? this.gatewayEnd : this.meterEnd).push(out);
  }

  private random(): number {
    // mulberry32
    let x = (this.seed = (this.seed + 0x6d2b79f5) >>> 0);
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 2 ** 32;
  }

  private burstAt(): number {
    const every = this.noise?.burstEveryMs ?? 0;
    return every > 0 ? performance.now() + every * 2 * this.random() : Infinity;
  }

  private damage(dir: Direction, input: Buffer): Buffer {
    const o = this.noise!;
    const c = this.counters[dir];
    const out: number[] = [];
    for (let b of input) {
      if (this.random() < o.drop) {
        c.dropped++;
        continue;
      }
      if (this.random() < o.flip) {
        b ^= 1 << Math.floor(this.random() * 8);
        c.flipped++;
      }
      out.push(b);
      if (this.random() < o.insert) {
        out.push(this.random() < 0.5 ? (this.random() < 0.5 ? 0x7e : 0x7d) : Math.floor(this.random() * 256));
        c.inserted++;
      }
    }
    const t = this.tx[dir];
    if (performance.now() >= t.nextBurst) {
      const n = 8 + Math.floor(this.random() * 57);
      for (let i = 0; i < n; i++) out.push(Math.floor(this.random() * 256));
      c.bursts++;
      t.nextBurst = this.burstAt();
    }
    return Buffer.from(out);
  }
}
