/**
 * The household viewers' anti-replay check on the meter-sealed stream (end-to-end mode, docs/protocol.md §11.5):
 * the tag of an old sealed message still verifies, so whoever can publish on the household's topic (the broker,
 * a stolen PES password) could present it again. Per meter the viewer keeps the PES's anti-replay window
 * (protocol/replay-window.ts: the highest frame counter seen and a bitmap of the 1024 below it) and drops a
 * message whose counter it has already accepted or that fell below the window. Older counters never seen are
 * accepted, as at the PES: it forwards a meter's retransmitted frames out of order.
 *
 * Pure: the browser (ucs/web/seal.ts, state kept in IndexedDB) and the Node viewers (ucs/stream.ts) share it.
 * As at the PES, the viewer checks a message after its tag verified (one AES-GCM) and marks it only then: a
 * forged message neither moves the window nor counts as a replay.
 * @module
 */
import type { MeterStreamEnvelope } from '../../protocol/envelope.js';
import { ReplayWindow, type ReplayState } from '../../protocol/replay-window.js';
import { hex } from './bytes.js';

/**
 * What the check says of a message: `fresh` (open it), `duplicate` (the very message already accepted: an MQTT
 * redelivery, or the archive repeating what came live), `replayed` (a counter already accepted with another
 * message, or one below the window).
 */
export type StreamVerdict = 'fresh' | 'duplicate' | 'replayed';

/** Serialisable state: per meter (system title, hex) its window. IndexedDB stores it as is. */
export type StreamGuardState = Record<string, ReplayState>;

/** The first 4 bytes of the GCM tag (last 16 bytes): it authenticates the whole message, as the PES's digest. */
function digestOf(e: Pick<MeterStreamEnvelope, 'ciphertext'>): number {
  const c = e.ciphertext;
  const t = c.length - 16;
  return ((c[t]! << 24) | (c[t + 1]! << 16) | (c[t + 2]! << 8) | c[t + 3]!) >>> 0;
}

/**
 * Per-meter anti-replay windows over meter-sealed stream messages.
 * @example
 * ```ts
 * const guard = new MeterStreamGuard(await store.getMeta('meterStream'));
 * const e = parseMeterStream(payload);
 * const body = open(e); // throws unless the tag verifies
 * if (guard.check(e) === 'fresh') { guard.mark(e); await store.setMeta('meterStream', guard.state()); use(body); }
 * ```
 */
export class MeterStreamGuard {
  private readonly windows = new Map<string, ReplayWindow>();
  /** Messages marked since construction (the caller persists {@link state} when it moved). */
  marked = 0;

  /**
   * @param state a previous {@link state} (null/undefined: none). Throws `TypeError` on one that is not a state
   *   of this kind (the caller then starts afresh and says so).
   */
  constructor(state?: unknown) {
    if (state === undefined || state === null) return;
    if (typeof state !== 'object' || Array.isArray(state)) throw new TypeError('stream counter state must be an object');
    for (const [meter, w] of Object.entries(state as Record<string, unknown>)) {
      if (!/^[0-9a-f]{16}$/.test(meter)) throw new TypeError(`stream counter state names no meter: ${meter.slice(0, 20)}`);
      const highest = (w as { highest?: unknown } | null)?.highest;
      if (!Number.isInteger(highest) || (highest as number) < -1 || (highest as number) > 0xffffffff) throw new TypeError(`stream counter state of meter ${meter}: bad highest counter`);
      this.windows.set(meter, new ReplayWindow(w as ReplayState));
    }
  }

  /** Whether a message (its meter, frame counter and tag) may be opened; see {@link StreamVerdict}. */
  check(e: Pick<MeterStreamEnvelope, 'systemTitle' | 'ic' | 'ciphertext'>): StreamVerdict {
    const w = this.windows.get(hex(e.systemTitle));
    if (!w) return 'fresh';
    const v = w.check(e.ic);
    if (v === 'ok') return 'fresh';
    return v === 'seen' && w.duplicate(e.ic, digestOf(e)) ? 'duplicate' : 'replayed';
  }

  /** Records a message as accepted: call only after it authenticated and {@link check} said `fresh`. */
  mark(e: Pick<MeterStreamEnvelope, 'systemTitle' | 'ic' | 'ciphertext'>): void {
    const meter = hex(e.systemTitle);
    let w = this.windows.get(meter);
    if (!w) this.windows.set(meter, (w = new ReplayWindow()));
    w.mark(e.ic, digestOf(e));
    this.marked++;
  }

  /** The highest frame counter accepted from `meter` (hex system title), or -1. */
  highest(meter: string): number {
    return this.windows.get(meter)?.highest ?? -1;
  }

  /** The state to persist (copies). */
  state(): StreamGuardState {
    const out: StreamGuardState = {};
    for (const [meter, w] of this.windows) out[meter] = w.state();
    return out;
  }
}
