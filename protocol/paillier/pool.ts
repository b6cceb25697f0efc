/**
 * A pool of precomputed DJN randomisers h_s^r mod n^2, filled in the background by worker threads, so that
 * the online cost of an encryption or a re-randomisation is one multiplication mod n^2.
 *
 * Each randomiser is handed out once (`take()` removes it): using one twice would make the two ciphertexts'
 * quotient (1 + n)^(m1 - m2), revealing m1 - m2. `take()` is synchronous and returns `undefined` when the pool
 * is empty; the caller then computes a randomiser inline (counted in `counters.misses`). Workers are unref'd
 * (they never keep the process alive, except while someone awaits {@link RandomiserPool.filled}) and
 * {@link RandomiserPool.close} terminates them.
 * @module
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { RandomiserSpec } from './kernel.js';

export interface PoolOptions {
  /** Randomisers kept ready (default 256). */
  capacity?: number;
  /** Worker threads (default: cores - 1, at least 1, at most 4). */
  workers?: number;
  /** Randomisers per request to a worker (default 16). */
  batch?: number;
}

export interface PoolCounters {
  /** Randomisers received from workers. */
  produced: number;
  /** Randomisers handed out by take(). */
  taken: number;
  /** take() calls that found the pool empty (the caller computed inline). */
  misses: number;
  /** Worker failures. */
  errors: number;
}

interface Waiter {
  min: number;
  resolve: () => void;
  reject: (e: Error) => void;
}

/**
 * @example
 * ```ts
 * const pool = key.startPool({ capacity: 512 });
 * await pool.filled(64);        // optional: wait for a warm pool
 * key.rerandomize(c);           // one multiplication, randomiser from the pool
 * await key.closePool();
 * ```
 */
export class RandomiserPool {
  readonly capacity: number;
  readonly batch: number;
  readonly counters: PoolCounters = { produced: 0, taken: 0, misses: 0, errors: 0 };
  private readonly items: bigint[] = [];
  private readonly workers = new Map<Worker, number>(); // worker -> randomisers requested, not yet received
  private waiters: Waiter[] = [];
  private closed = false;
  private failure: Error | undefined;
  private turn = 0;

  constructor(spec: RandomiserSpec, options: PoolOptions = {}) {
    const capacity = options.capacity ?? 256;
    const batch = options.batch ?? 16;
    const workers = options.workers ?? Math.min(4, Math.max(1, availableParallelism() - 1));
    if (!Number.isInteger(capacity) || capacity < 1 || capacity > 1_000_000) throw new RangeError('pool capacity must be an integer in 1..1000000');
    if (!Number.isInteger(batch) || batch < 1 || batch > capacity) throw new RangeError('pool batch must be an integer in 1..capacity');
    if (!Number.isInteger(workers) || workers < 1 || workers > 64) throw new RangeError('pool workers must be an integer in 1..64');
    this.capacity = capacity;
    this.batch = batch;
    for (let i = 0; i < workers; i++) this.spawn(spec);
    this.refill();
  }

  /** Randomisers ready now. */
  get available(): number {
    return this.items.length;
  }

  /** A fresh randomiser, or `undefined` when the pool is empty (compute one inline then). Never blocks. */
  take(): bigint | undefined {
    const r = this.items.pop();
    if (r === undefined) this.counters.misses++;
    else this.counters.taken++;
    this.refill();
    return r;
  }

  /** Resolves once at least `min` randomisers are ready; rejects if the pool is closed or its workers died. */
  filled(min = this.capacity): Promise<void> {
    if (!Number.isInteger(min) || min < 0 || min > this.capacity) return Promise.reject(new RangeError('min must be in 0..capacity'));
    if (this.items.length >= min) return Promise.resolve();
    if (this.closed || this.workers.size === 0) return Promise.reject(this.failure ?? new Error('randomiser pool is closed'));
    return new Promise<void>((resolve, reject) => {
      this.waiters.push({ min, resolve, reject });
      this.setRef(true);
    });
  }

  /** Terminates the workers and forgets the ready randomisers. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.items.length = 0;
    this.settleWaiters(new Error('randomiser pool is closed'));
    const workers = [...this.workers.keys()];
    this.workers.clear();
    await Promise.all(workers.map((w) => w.terminate()));
  }

  private spawn(spec: RandomiserSpec): void {
    const worker = new Worker(new URL('./pool-worker.js', import.meta.url), { workerData: spec });
    this.workers.set(worker, 0);
    worker.on('message', (msg: { type?: string; values?: unknown }) => {
      if (msg?.type !== 'batch' || !Array.isArray(msg.values)) return;
      const owed = this.workers.get(worker);
      if (owed === undefined || this.closed) return;
      this.workers.set(worker, Math.max(0, owed - msg.values.length));
      for (const v of msg.values) if (typeof v === 'bigint' && this.items.length < this.capacity) this.items.push(v);
      this.counters.produced += msg.values.length;
      this.settleWaiters();
      this.refill();
    });
    const lost = (e: Error): void => {
      if (!this.workers.delete(worker) || this.closed) return;
      this.counters.errors++;
      this.failure = e;
      if (this.workers.size === 0) this.settleWaiters(e);
      else this.refill();
    };
    worker.on('error', lost);
    worker.on('exit', (code) => lost(new Error(`randomiser worker exited with code ${code}`)));
    worker.unref(); // after the listeners: adding a 'message' listener refs the worker again
  }

  private refill(): void {
    if (this.closed || this.workers.size === 0) return;
    let owed = 0;
    for (const o of this.workers.values()) owed += o;
    const workers = [...this.workers.keys()];
    // Whole batches while a batch's worth is missing; the remainder once nothing is in flight, so that the
    // pool does reach capacity (filled(capacity) resolves) without a message per take().
    for (;;) {
      const missing = this.capacity - this.items.length - owed;
      if (missing <= 0 || (missing < this.batch && owed > 0)) break;
      const w = workers[this.turn++ % workers.length]!;
      const count = Math.min(this.batch, missing);
      w.postMessage({ type: 'fill', count });
      this.workers.set(w, this.workers.get(w)! + count);
      owed += count;
    }
  }

  private settleWaiters(error?: Error): void {
    const keep: Waiter[] = [];
    for (const w of this.waiters) {
      if (error) w.reject(error);
      else if (this.items.length >= w.min) w.resolve();
      else keep.push(w);
    }
    this.waiters = keep;
    if (keep.length === 0) this.setRef(false);
  }

  private setRef(on: boolean): void {
    for (const w of this.workers.keys()) {
      if (on) w.ref();
      else w.unref();
    }
  }
}
