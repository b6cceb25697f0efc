/**
 * Backoff after failed broker logins, and a fair, bounded queue for the password checks (scrypt).
 * Pure: the clock is an argument; no timers, no I/O.
 * @module
 */

/** Tuning of {@link AuthThrottle}. */
export interface ThrottleOptions {
  /** Failures allowed before the backoff starts. Default 10. */
  freeFailures?: number;
  /** First backoff; it doubles with each further failure. Default 1000 ms. */
  baseDelayMs?: number;
  /** Longest backoff. Default 60 000 ms. */
  maxDelayMs?: number;
  /** Failures are forgotten after this long without one. Default 15 min. */
  forgetAfterMs?: number;
  /** How long a (user, address) pair that logged in stays known. Default 7 days. */
  knownForMs?: number;
  /** Most entries per table; the oldest go first. Default 20 000. */
  maxEntries?: number;
}

/** Whether a CONNECT may go on to the password check, and if not, for how long it would be refused. */
export type ThrottleVerdict = { allowed: true } | { allowed: false; retryInMs: number; by: 'address' | 'user' | 'pair' };

interface Ledger {
  failures: number;
  last: number;
  until: number;
}

/** A Map that keeps at most `max` entries, dropping the least recently written. */
class BoundedMap<V> extends Map<string, V> {
  constructor(private readonly max: number) {
    super();
  }
  override set(key: string, value: V): this {
    super.delete(key); // re-inserted last: most recent
    super.set(key, value);
    if (this.size > this.max) super.delete(this.keys().next().value!);
    return this;
  }
}

/**
 * Failed logins counted per source address, per user and per (user, address) pair, each with exponential
 * backoff once its free failures are spent: during a backoff, CONNECTs it covers are refused without a
 * password check. A pair that logged in recently is *known*; the address and user backoffs do not apply to
 * it, so a flood from elsewhere (or against the same user from other addresses) never locks the rightful
 * owner out of its usual address; only its own pair's backoff does, which guessing from that very address
 * triggers. Failures of known pairs count only on the pair. `user` undefined (a name not worth a ledger)
 * counts on the address only. Tables are bounded ({@link ThrottleOptions.maxEntries}).
 * @example
 * ```ts
 * const t = new AuthThrottle();
 * if (t.check('pes', '10.0.0.7', Date.now()).allowed) {
 *   // verify the password, then:
 *   ok ? t.succeeded('pes', '10.0.0.7', Date.now()) : t.failed('pes', '10.0.0.7', Date.now());
 * }
 * ```
 */
export class AuthThrottle {
  private readonly o: Required<ThrottleOptions>;
  private readonly ledgers: BoundedMap<Ledger>;
  private readonly known: BoundedMap<number>;

  constructor(options: ThrottleOptions = {}) {
    this.o = { freeFailures: 10, baseDelayMs: 1000, maxDelayMs: 60_000, forgetAfterMs: 15 * 60_000, knownForMs: 7 * 86_400_000, maxEntries: 20_000, ...options };
    this.ledgers = new BoundedMap(this.o.maxEntries * 3);
    this.known = new BoundedMap(this.o.maxEntries);
  }

  /** Whether `user` may try a password from `address` now. */
  check(user: string | undefined, address: string, now: number): ThrottleVerdict {
    const wait = (key: string) => Math.max(0, (this.ledgers.get(key)?.until ?? 0) - now);
    const pair = user !== undefined ? wait(pairKey(user, address)) : 0;
    if (pair > 0) return { allowed: false, retryInMs: pair, by: 'pair' };
    if (this.isKnown(user, address, now)) return { allowed: true };
    const byAddress = wait(`a ${address}`);
    if (byAddress > 0) return { allowed: false, retryInMs: byAddress, by: 'address' };
    const byUser = user !== undefined ? wait(`u ${user}`) : 0;
    if (byUser > 0) return { allowed: false, retryInMs: byUser, by: 'user' };
    return { allowed: true };
  }

  /** Records a wrong password (or an unknown user) from `address`. */
  failed(user: string | undefined, address: string, now: number): void {
    if (user === undefined) return this.bump(`a ${address}`, now);
    this.bump(pairKey(user, address), now);
    if (this.isKnown(user, address, now)) return;
    this.bump(`a ${address}`, now);
    this.bump(`u ${user}`, now);
  }

  /** Records a successful login: the pair becomes known and its failures are forgotten. */
  succeeded(user: string, address: string, now: number): void {
    this.ledgers.delete(pairKey(user, address));
    this.known.set(pairKey(user, address), now);
  }

  /** Whether `user` logged in from `address` within {@link ThrottleOptions.knownForMs}. */
  isKnown(user: string | undefined, address: string, now: number): boolean {
    if (user === undefined) return false;
    const at = this.known.get(pairKey(user, address));
    return at !== undefined && now - at < this.o.knownForMs;
  }

  private bump(key: string, now: number): void {
    const old = this.ledgers.get(key);
    const l: Ledger = old && now - old.last < this.o.forgetAfterMs ? old : { failures: 0, last: now, until: 0 };
    l.failures++;
    l.last = now;
    const over = l.failures - this.o.freeFailures;
    if (over > 0) l.until = now + Math.min(this.o.maxDelayMs, this.o.baseDelayMs * 2 ** Math.min(over - 1, 30));
    this.ledgers.set(key, l);
  }
}

const pairKey = (user: string, address: string) => `p ${user} ${address}`;

/** Tuning of {@link FairQueue}. */
export interface FairQueueOptions {
  /** Tasks running at once. Default 3. */
  concurrency?: number;
  /** Tasks of one lane running at once. Default `concurrency - 1` (at least 1): a slot stays free for the other lanes. */
  maxRunningPerLane?: number;
  /** Tasks waiting per lane. Default 256. */
  maxPerLane?: number;
  /** Tasks waiting in all. Default 1024. */
  maxWaiting?: number;
}

/**
 * Runs at most `concurrency` async tasks at once; waiting tasks are grouped in lanes (e.g. one per source
 * address) served in turn, and one lane never holds every slot, so a lane with a thousand tasks does not
 * delay another lane's task at all while it is the only busy one.
 * A task that finds its lane or the whole queue full is not queued: {@link FairQueue.run} returns undefined
 * at once, for the caller to refuse it cheaply.
 * @example
 * ```ts
 * const q = new FairQueue({ concurrency: 3 });
 * const result = q.run(address, () => verifyPassword(pw, hash));
 * if (!result) return refuse('busy');
 * const ok = await result;
 * ```
 */
export class FairQueue {
  private readonly o: Required<FairQueueOptions>;
  private readonly lanes = new Map<string, (() => void)[]>();
  private readonly runningIn = new Map<string, number>();
  private running = 0;
  private waiting = 0;

  constructor(options: FairQueueOptions = {}) {
    const concurrency = options.concurrency ?? 3;
    this.o = { concurrency, maxRunningPerLane: Math.max(1, concurrency - 1), maxPerLane: 256, maxWaiting: 1024, ...options };
  }

  /** Tasks waiting (not yet started). */
  get size(): number {
    return this.waiting;
  }

  /** Queues `task` in `lane`; undefined when the lane or the queue is full. */
  run<T>(lane: string, task: () => Promise<T>): Promise<T> | undefined {
    const q = this.lanes.get(lane) ?? [];
    if (q.length >= this.o.maxPerLane || this.waiting >= this.o.maxWaiting) return undefined;
    return new Promise<T>((resolve, reject) => {
      q.push(() => {
        Promise.resolve()
          .then(task)
          .then(resolve, reject)
          .finally(() => {
            this.running--;
            const n = this.runningIn.get(lane)! - 1;
            if (n > 0) this.runningIn.set(lane, n);
            else this.runningIn.delete(lane);
            this.pump();
          });
      });
      this.waiting++;
      if (q.length === 1) this.lanes.set(lane, q);
      this.pump();
    });
  }

  private pump(): void {
    while (this.running < this.o.concurrency && this.waiting > 0) {
      let next: [string, (() => void)[]] | undefined;
      for (const entry of this.lanes) {
        if ((this.runningIn.get(entry[0]) ?? 0) < this.o.maxRunningPerLane) {
          next = entry;
          break;
        }
      }
      if (!next) return; // every waiting lane is at its share: the free slot waits for another lane
      const [lane, q] = next;
      this.lanes.delete(lane);
      const start = q.shift()!;
      if (q.length > 0) this.lanes.set(lane, q); // to the back: the other lanes go first
      this.waiting--;
      this.running++;
      this.runningIn.set(lane, (this.runningIn.get(lane) ?? 0) + 1);
      start();
    }
  }
}
