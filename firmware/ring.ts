/**
 * The meter's bounded store of unacknowledged frames.
 *
 * Frames stay here, oldest first, until the gateway acknowledges them (selectively, by invocation counter).
 * When the ring is full the oldest frame is dropped and counted: its readings are lost but not its energy,
 * because the next frame's `prevWh` is the register before it, so the difference lands in the next interval.
 * @module
 */

/** Default number of unacknowledged frames a meter keeps. */
export const DEFAULT_RING_CAPACITY = 256;

/** One stored frame: its invocation counter and its encoded CBOR message (without link framing). */
export interface RingFrame {
  ic: number;
  bytes: Uint8Array;
}

/**
 * A FIFO of unacknowledged frames with selective removal.
 * @example
 * ```ts
 * const ring = new FrameRing(256);
 * ring.push({ ic: 7, bytes });
 * ring.ack(7); // true: freed
 * ```
 */
export class FrameRing {
  readonly capacity: number;
  /** Frames dropped on overflow since construction. */
  dropped = 0;
  private frames: RingFrame[] = [];

  constructor(capacity = DEFAULT_RING_CAPACITY, frames: RingFrame[] = []) {
    if (!Number.isSafeInteger(capacity) || capacity < 1 || capacity > 65536) throw new RangeError('ring capacity must be an integer in 1..65536');
    this.capacity = capacity;
    for (const f of frames) this.push(f);
  }

  /** Number of frames held. */
  get size(): number {
    return this.frames.length;
  }

  /** The frames, oldest first (a copy of the list; the frames themselves are shared). */
  list(): RingFrame[] {
    return this.frames.slice();
  }

  /** Whether a frame with this counter is held. */
  has(ic: number): boolean {
    return this.frames.some((f) => f.ic === ic);
  }

  /**
   * The frame with counter `ic`, if held.
   * @example
   * ```ts
   * const f = ring.get(7); if (f) await line.write(encodeLinkFrame(f.bytes));
   * ```
   */
  get(ic: number): RingFrame | undefined {
    return this.frames.find((f) => f.ic === ic);
  }

  /**
   * Appends a frame; returns the frame dropped to make room, if any. Counters must increase.
   * @example
   * ```ts
   * const lost = ring.push({ ic, bytes }); if (lost) log.warn({ ic: lost.ic }, 'ring overflow');
   * ```
   */
  push(frame: RingFrame): RingFrame | undefined {
    const last = this.frames[this.frames.length - 1];
    if (last && frame.ic <= last.ic) throw new RangeError(`ring frames must have increasing counters (${frame.ic} after ${last.ic})`);
    this.frames.push(frame);
    if (this.frames.length <= this.capacity) return undefined;
    this.dropped++;
    return this.frames.shift();
  }

  /** Frees the frame with counter `ic`; returns whether it was held. */
  ack(ic: number): boolean {
    const i = this.frames.findIndex((f) => f.ic === ic);
    if (i < 0) return false;
    this.frames.splice(i, 1);
    return true;
  }
}
