/**
 * The invocation counter (IC, COSEM object 0-0:43.1.0.255) with block reservation.
 *
 * GCM must never see the same (key, IV) twice (NIST SP 800-38D §8), and the IV is system title || IC, so a
 * counter must never be reused, even across a power cut at the worst moment. Before handing out a counter
 * the meter persists a high-water mark `reservedUpTo` (exclusive) a block ahead; on boot it resumes at the
 * persisted mark, skipping whatever part of the last block it had not used — the jump-ahead real meters do.
 * A power cut before the mark is durable loses nothing (no counter of the new block was used); a cut after
 * it only skips counters.
 * @module
 */
import { MAX_IC } from '../protocol/frame.js';

/** Default number of counters reserved per NV write. */
export const DEFAULT_COUNTER_BLOCK = 64;

/**
 * Thrown when the counter would pass 2^32 - 1: the meter must stop sending until its key is renewed.
 * @example
 * ```ts
 * meter.done().catch((e) => { if (e instanceof CounterExhaustedError) alarm('renew key'); });
 * ```
 */
export class CounterExhaustedError extends Error {
  constructor() {
    super('invocation counter exhausted (2^32 - 1 reached): the key must be renewed');
    this.name = 'CounterExhaustedError';
  }
}

/**
 * Hands out invocation counters, persisting a reservation before the first counter of every block.
 * @example
 * ```ts
 * const counter = new InvocationCounter(persistedMark, async (mark) => nv.save({ ...state, reservedIc: mark }));
 * const ic = await counter.next(); // persisted a new mark first if the block was used up
 * ```
 */
export class InvocationCounter {
  private nextIc: number;
  private reserved: number;
  private readonly block: number;
  private readonly persist: (reservedUpTo: number) => Promise<void>;

  /**
   * @param reservedUpTo the persisted mark (0 for a new meter); counting resumes there
   * @param persist makes a new mark durable; must resolve only once it is
   * @param block counters per reservation
   */
  constructor(reservedUpTo: number, persist: (reservedUpTo: number) => Promise<void>, block = DEFAULT_COUNTER_BLOCK) {
    if (!Number.isSafeInteger(reservedUpTo) || reservedUpTo < 0 || reservedUpTo > MAX_IC + 1) {
      throw new RangeError(`reserved counter mark must be an integer in 0..2^32, got ${reservedUpTo}`);
    }
    if (!Number.isSafeInteger(block) || block < 1 || block > 1 << 20) throw new RangeError('counter block must be an integer in 1..1048576');
    this.nextIc = reservedUpTo;
    this.reserved = reservedUpTo;
    this.persist = persist;
    this.block = block;
  }

  /** The persisted high-water mark (exclusive): no counter at or above it has been used. */
  get reservedUpTo(): number {
    return this.reserved;
  }

  /** The counter {@link next} would return. */
  get peek(): number {
    return this.nextIc;
  }

  /**
   * Returns a counter never returned before by this meter (across restarts), reserving and persisting a new
   * block first when needed. Throws {@link CounterExhaustedError} past 2^32 - 1.
   */
  async next(): Promise<number> {
    if (this.nextIc > MAX_IC) throw new CounterExhaustedError();
    if (this.nextIc >= this.reserved) {
      const mark = Math.min(this.nextIc + this.block, MAX_IC + 1);
      await this.persist(mark);
      this.reserved = mark;
    }
    return this.nextIc++;
  }
}
