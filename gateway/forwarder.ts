/**
 * The forwarding state machine: queue frames durably, batch them into uplinks, and acknowledge each frame
 * to its meter only after the broker's PUBACK for the uplink that carried it (ARCHITECTURE.md, durability
 * chain step 2). Storage, publishing and line writes are injected, so this module does no I/O itself.
 *
 * Invariants:
 * - a frame is in the store before it is published, and leaves it only after PUBACK;
 * - a frame is acknowledged (selective ack, per meter and invocation counter) only after that PUBACK;
 * - at most one copy of a frame (meter, ic and the exact bytes) is queued; retransmissions join the queued
 *   copy and are acknowledged with it; a retransmission of a frame forwarded recently is acknowledged at once
 *   (its ack was lost);
 * - a frame with the (meter, ic) of another but other bytes is forwarded too (docs/protocol.md §8.6: the
 *   gateway cannot authenticate, so it never drops by counter): it is a forgery, line damage that passed the
 *   FCS, or a meter reusing counters after a wiped store, and only the PES can tell. The ack of a (meter, ic)
 *   goes out once every copy carrying it has its PUBACK, so a forged copy cannot get the genuine frame
 *   acknowledged (and freed by the meter) before the genuine frame is upstream;
 * - uplinks leave in queue order; after a failed publish the frames go back to the head of the queue.
 * @module
 */
import { createHash } from 'node:crypto';
import { encodeUplink, MAX_FRAMES_PER_UPLINK } from '../protocol/uplink.js';
import { classifyPayload, type OpaqueFrame } from './core.js';

/** Durable storage of queued frames (see gateway/queue.ts for the SQLite one). */
export interface FrameStore {
  /** Every stored frame, oldest first. */
  load(): { seq: number; bytes: Uint8Array }[];
  /** Stores a frame; returns its sequence number (increasing). It may be buffered until {@link flush}. */
  add(bytes: Uint8Array): number;
  /** Makes every added frame durable; called before frames are published. */
  flush(): void;
  /** Deletes frames by sequence number, atomically. */
  remove(seqs: number[]): void;
}

/** What {@link Forwarder.offer} did with a frame. */
export type OfferResult = 'queued' | 'duplicate' | 'reacked' | 'full';

export interface ForwarderOptions<L> {
  /** Gateway id written into each uplink. */
  gatewayId: string;
  store: FrameStore;
  /** Publishes one uplink at QoS 1; `done` once, after PUBACK or on failure. */
  publish: (payload: Buffer, done: (err?: Error | null) => void) => void;
  /** Sends the acknowledgement of `frame` on `line`. */
  ack: (line: L, frame: OpaqueFrame) => void;
  /** Frames per uplink (1..1024). Default 256. */
  maxBatch?: number;
  /** Longest a frame waits for its batch to fill, ms. Default 20. */
  maxDelayMs?: number;
  /** Uplinks awaiting PUBACK at once. Default 16. */
  maxInflight?: number;
  /** Queue bound in frames. Default 100000. */
  maxQueueFrames?: number;
  /** Queue bound in bytes of frames. Default 64 MiB. */
  maxQueueBytes?: number;
  /** How many forwarded frame ids to remember for re-acknowledging retransmissions. Default 16384. */
  recentAcks?: number;
  /** Wait before retrying after a publish failed while still connected, ms. Default 1000. */
  retryMs?: number;
  /** Called for a stored frame that no longer decodes (it is dropped from the store). */
  onCorrupt?: (seq: number, reason: string) => void;
  /** Called when the store fails (disk full, I/O error); publishing pauses and retries after `retryMs`. */
  onStoreError?: (err: Error) => void;
}

interface Entry {
  seq: number;
  frame: OpaqueFrame;
  /** `frame.key` plus a digest of the bytes: the identity of this copy. */
  copy: string;
}

/** The identity of one copy of a frame: (meter, ic) and its exact bytes. */
function copyKey(frame: OpaqueFrame): string {
  return `${frame.key}#${createHash('sha256').update(frame.bytes).digest('base64').slice(0, 22)}`;
}

function intOpt(v: number | undefined, def: number, min: number, max: number, name: string): number {
  const n = v ?? def;
  if (!Number.isInteger(n) || n < min || n > max) throw new TypeError(`"${name}" must be an integer between ${min} and ${max}`);
  return n;
}

/**
 * Queues, batches, publishes and acknowledges frames. `L` is whatever identifies a serial line.
 * @example
 * ```ts
 * const fwd = new Forwarder({ gatewayId: 'gw-n1', store, publish, ack: (line, f) => line.sendAck(f) });
 * fwd.restore();
 * fwd.setOnline(true);
 * fwd.offer(line, frame); // 'queued'
 * ```
 */
export class Forwarder<L> {
  /** Frames acknowledged by the broker. */
  forwarded = 0;
  /** Uplinks acknowledged by the broker. */
  uplinks = 0;
  /** Uplinks that failed and were queued again. */
  publishErrors = 0;
  /** Store failures (writes retried; a failed delete leaves a frame to be re-published after a restart). */
  storeErrors = 0;

  private readonly o: Required<Omit<ForwarderOptions<L>, 'onCorrupt' | 'onStoreError'>> & Pick<ForwarderOptions<L>, 'onCorrupt' | 'onStoreError'>;
  /** Queued copies by {@link copyKey}. */
  private readonly entries = new Map<string, Entry>();
  /** Per (meter, ic): queued copies not yet PUBACKed, and the lines waiting for its ack. */
  private readonly pendingAck = new Map<string, { copies: number; lines: Set<L> }>();
  private waiting: Entry[] = [];
  private head = 0;
  private bytes = 0;
  private inflight = 0;
  private readonly recent = new Map<string, true>();
  private online = false;
  private due = false;
  /** Set after a failed publish: nothing is published until a retry timer or a reconnection. */
  private paused = false;
  private closed = false;
  private timer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private idle: (() => void)[] = [];

  constructor(options: ForwarderOptions<L>) {
    if (!options || typeof options.publish !== 'function' || typeof options.ack !== 'function' || !options.store) {
      throw new TypeError('"store", "publish" and "ack" are required');
    }
    if (typeof options.gatewayId !== 'string' || options.gatewayId.length === 0) throw new TypeError('"gatewayId" must be a non-empty string');
    this.o = {
      ...options,
      maxBatch: intOpt(options.maxBatch, 256, 1, MAX_FRAMES_PER_UPLINK, 'maxBatch'),
      maxDelayMs: intOpt(options.maxDelayMs, 20, 0, 60_000, 'maxDelayMs'),
      maxInflight: intOpt(options.maxInflight, 16, 1, 1024, 'maxInflight'),
      maxQueueFrames: intOpt(options.maxQueueFrames, 100_000, 1, 10_000_000, 'maxQueueFrames'),
      maxQueueBytes: intOpt(options.maxQueueBytes, 64 * 1024 * 1024, 1, 2 ** 40, 'maxQueueBytes'),
      recentAcks: intOpt(options.recentAcks, 16_384, 0, 10_000_000, 'recentAcks'),
      retryMs: intOpt(options.retryMs, 1000, 1, 600_000, 'retryMs'),
    };
  }

  /** Frames queued and not yet acknowledged by the broker. */
  get pending(): number {
    return this.entries.size;
  }

  /** Loads the frames a previous run left in the store; they are published first. Returns how many. */
  restore(): number {
    let n = 0;
    for (const { seq, bytes } of this.o.store.load()) {
      const c = classifyPayload(bytes);
      const copy = c.kind === 'frame' ? copyKey(c.frame) : '';
      if (c.kind !== 'frame' || this.entries.has(copy)) {
        this.o.store.remove([seq]);
        this.o.onCorrupt?.(seq, c.kind === 'frame' ? 'duplicate in store' : c.reason);
        continue;
      }
      const e: Entry = { seq, frame: c.frame, copy };
      this.entries.set(copy, e);
      this.ackState(c.frame.key).copies++;
      this.waiting.push(e);
      this.bytes += bytes.length;
      n++;
    }
    if (n > 0) this.due = true;
    this.pump();
    return n;
  }

  /**
   * Takes a frame received on `line`. Returns 'full' if the queue is at its bound: the frame is then
   * neither stored nor acknowledged, so the meter keeps it and retransmits.
   */
  offer(line: L, frame: OpaqueFrame): OfferResult {
    const copy = copyKey(frame);
    if (this.entries.has(copy)) {
      this.ackState(frame.key).lines.add(line);
      return 'duplicate';
    }
    if (this.recent.has(copy)) {
      const waiting = this.pendingAck.get(frame.key);
      if (waiting) waiting.lines.add(line); // another copy of this (meter, ic) is not upstream yet
      else this.o.ack(line, frame);
      return 'reacked';
    }
    if (this.closed || this.entries.size >= this.o.maxQueueFrames || this.bytes + frame.bytes.length > this.o.maxQueueBytes) return 'full';
    const e: Entry = { seq: this.o.store.add(frame.bytes), frame, copy };
    this.entries.set(copy, e);
    const state = this.ackState(frame.key);
    state.copies++;
    state.lines.add(line);
    this.waiting.push(e);
    this.bytes += frame.bytes.length;
    this.pump();
    return 'queued';
  }

  /** Tells the forwarder whether the broker connection is up; going up publishes what is waiting. */
  setOnline(online: boolean): void {
    this.online = online;
    if (online) {
      this.paused = false;
      clearTimeout(this.retryTimer);
      this.retryTimer = undefined;
      this.due = this.waitingCount > 0;
      this.pump();
    }
  }

  /** Publishes every waiting frame now, without waiting for batches to fill. */
  flush(): void {
    this.due = this.waitingCount > 0;
    this.pump();
  }

  /** Resolves once no uplink awaits its PUBACK, or after `timeoutMs`. Returns whether it drained. */
  drain(timeoutMs: number): Promise<boolean> {
    if (this.inflight === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const t = setTimeout(() => resolve(false), timeoutMs);
      this.idle.push(() => {
        clearTimeout(t);
        resolve(true);
      });
    });
  }

  /** Stops batching and timers. Frames still queued stay in the store for the next run. */
  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    clearTimeout(this.retryTimer);
  }

  private get waitingCount(): number {
    return this.waiting.length - this.head;
  }

  private ackState(key: string): { copies: number; lines: Set<L> } {
    let s = this.pendingAck.get(key);
    if (!s) this.pendingAck.set(key, (s = { copies: 0, lines: new Set() }));
    return s;
  }

  private take(n: number): Entry[] {
    const batch = this.waiting.slice(this.head, this.head + n);
    this.head += n;
    if (this.head > 4096 && this.head * 2 > this.waiting.length) {
      this.waiting = this.waiting.slice(this.head);
      this.head = 0;
    }
    return batch;
  }

  private pump(): void {
    if (this.closed || !this.online || this.paused) return;
    const { maxBatch, maxInflight, maxDelayMs } = this.o;
    while (!this.paused && this.inflight < maxInflight && this.waitingCount > 0 && (this.waitingCount >= maxBatch || this.due)) {
      if (!this.storeOk(() => this.o.store.flush())) return; // on disk before it is published
      this.publishBatch(this.take(Math.min(maxBatch, this.waitingCount)));
    }
    if (this.waitingCount === 0) this.due = false;
    else if (!this.due && !this.timer) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.due = true;
        this.pump();
      }, maxDelayMs);
    }
  }

  private publishBatch(batch: Entry[]): void {
    this.inflight++;
    const payload = encodeUplink({ gateway: this.o.gatewayId, frames: batch.map((e) => e.frame.bytes) });
    let called = false;
    this.o.publish(payload, (err) => {
      if (called) return;
      called = true;
      this.inflight--;
      if (err) this.failed(batch);
      else this.acknowledged(batch);
      if (this.inflight === 0) for (const f of this.idle.splice(0)) f();
      this.pump();
    });
  }

  private storeOk(op: () => void): boolean {
    try {
      op();
      return true;
    } catch (e) {
      this.storeErrors++;
      this.o.onStoreError?.(e as Error);
      this.pause();
      return false;
    }
  }

  private pause(): void {
    this.paused = true;
    if (!this.closed && !this.retryTimer) {
      this.retryTimer = setTimeout(() => {
        this.retryTimer = undefined;
        this.paused = false;
        this.pump();
      }, this.o.retryMs);
    }
  }

  private acknowledged(batch: Entry[]): void {
    // The broker has the frames, so they are acked even if the delete fails (they would be re-published
    // after a restart: a harmless duplicate).
    this.storeOk(() => this.o.store.remove(batch.map((e) => e.seq)));
    for (const e of batch) {
      this.entries.delete(e.copy);
      this.bytes -= e.frame.bytes.length;
      if (this.o.recentAcks > 0) {
        if (this.recent.size >= this.o.recentAcks) this.recent.delete(this.recent.keys().next().value!);
        this.recent.set(e.copy, true);
      }
      const state = this.pendingAck.get(e.frame.key)!;
      if (--state.copies > 0) continue; // another copy of this (meter, ic) is still on its way
      this.pendingAck.delete(e.frame.key);
      for (const line of state.lines) this.o.ack(line, e.frame);
    }
    this.forwarded += batch.length;
    this.uplinks++;
  }

  private failed(batch: Entry[]): void {
    this.publishErrors++;
    // Back to the head of the queue, in queue order, for the next connection (or a retry).
    this.waiting = [...batch, ...this.waiting.slice(this.head)].sort((a, b) => a.seq - b.seq);
    this.head = 0;
    this.due = true;
    this.pause();
  }
}
