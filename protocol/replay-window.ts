/**
 * Per-meter anti-replay window in the style of IPsec ESP (RFC 4303 §3.4.3): the highest accepted invocation
 * counter plus a bitmap of the W counters below it. A counter is accepted at most once; a counter at or below
 * `highest - W`, or one already marked, is a replay. Counters below `highest` that were never seen are
 * accepted: the gateway acknowledges frames selectively, so retransmissions arrive out of order.
 *
 * As in RFC 4303, {@link ReplayWindow.check} runs before the (costlier) integrity check and
 * {@link ReplayWindow.mark} only after the frame authenticated, so forged frames cannot move the window.
 *
 * For the {@link DIGEST_DEPTH} most recent counters the window also keeps a 32-bit digest of the frame (the
 * first 4 bytes of its GCM tag, which authenticates the whole frame). A counter seen again with the same digest
 * is an exact duplicate (a gateway that re-published an uplink whose PUBACK it lost): harmless, counted apart,
 * and it never raises the replay alarm. The same counter with another authenticated frame is a real replay
 * (a meter whose counter store was wiped reuses counters under its key).
 * @module
 */

/** Counters below the highest for which the frame digest is kept (duplicates come from recent re-publishing). */
export const DIGEST_DEPTH = 64;

/** Window size in counters (RFC 4303 recommends at least 32; meters retransmit from deep queues). */
export const REPLAY_WINDOW = 1024;

/** Serialisable state of one window. */
export interface ReplayState {
  /** Highest accepted counter, or -1 before the first frame. */
  highest: number;
  /** Bit i set = counter `highest - i` was accepted (bit 0 is `highest` itself). */
  bitmap: Uint8Array;
  /** Frame digests of the {@link DIGEST_DEPTH} most recent counters, at `ic % DIGEST_DEPTH` (absent in old states). */
  digests?: Uint32Array;
}

/**
 * @example
 * ```ts
 * const w = new ReplayWindow();
 * if (w.check(ic) === 'ok' && authenticated) w.mark(ic);
 * ```
 */
export class ReplayWindow {
  highest: number;
  readonly bitmap: Uint8Array;
  readonly digests: Uint32Array;

  constructor(state?: ReplayState) {
    this.highest = state?.highest ?? -1;
    this.bitmap = new Uint8Array(REPLAY_WINDOW / 8);
    this.digests = new Uint32Array(DIGEST_DEPTH);
    if (state) {
      if (!(state.bitmap instanceof Uint8Array) || state.bitmap.length !== REPLAY_WINDOW / 8) throw new TypeError('replay bitmap must be 128 bytes');
      this.bitmap.set(state.bitmap);
      if (state.digests) {
        if (!(state.digests instanceof Uint32Array) || state.digests.length !== DIGEST_DEPTH) throw new TypeError(`replay digests must be ${DIGEST_DEPTH} words`);
        this.digests.set(state.digests);
      }
    }
  }

  /**
   * Whether `ic`, already seen ({@link check} said `'seen'`), was seen with this very frame (`digest`): an exact
   * duplicate rather than a replay. Unknown for counters older than {@link DIGEST_DEPTH}: then false.
   */
  duplicate(ic: number, digest: number): boolean {
    if (this.check(ic) !== 'seen' || this.highest - ic >= DIGEST_DEPTH) return false;
    return this.digests[ic % DIGEST_DEPTH] === digest >>> 0;
  }

  /** `'ok'` if `ic` may be accepted, `'old'` if it fell out of the window, `'seen'` if already accepted. */
  check(ic: number): 'ok' | 'old' | 'seen' {
    if (this.highest < 0 || ic > this.highest) return 'ok';
    const off = this.highest - ic;
    if (off >= REPLAY_WINDOW) return 'old';
    return this.bitmap[off >>> 3]! & (1 << (off & 7)) ? 'seen' : 'ok';
  }

  /**
   * Records `ic` as accepted with its frame `digest`; call only after the frame authenticated and `check(ic)`
   * said `'ok'`.
   */
  mark(ic: number, digest = 0): void {
    if (ic > this.highest) {
      const shift = this.highest < 0 ? REPLAY_WINDOW : ic - this.highest;
      this.shift(shift);
      this.highest = ic;
    }
    const off = this.highest - ic;
    this.bitmap[off >>> 3]! |= 1 << (off & 7);
    if (off < DIGEST_DEPTH) this.digests[ic % DIGEST_DEPTH] = digest >>> 0;
  }

  state(): ReplayState {
    return { highest: this.highest, bitmap: Uint8Array.from(this.bitmap), digests: Uint32Array.from(this.digests) };
  }

  /** Moves every bit `n` places towards older counters (bit i -> bit i + n). */
  private shift(n: number): void {
    const b = this.bitmap;
    if (n >= REPLAY_WINDOW) {
      b.fill(0);
      return;
    }
    const bytes = n >>> 3;
    const bits = n & 7;
    for (let i = b.length - 1; i >= 0; i--) {
      const src = i - bytes;
      const hi = src >= 0 ? b[src]! : 0;
      const lo = src - 1 >= 0 ? b[src - 1]! : 0;
      b[i] = bits === 0 ? hi : ((hi << bits) | (lo >>> (8 - bits))) & 0xff;
    }
  }
}
