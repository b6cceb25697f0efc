/**
 * The guardian's core (end-to-end mode, docs/paillier.md): it recomputes every window from its own copy of the
 * uplinks (lib/e2e-windows.ts, the PES's rules) and contributes its partial decryption only to a window it
 * computed and released itself: a neighbourhood interval of >= k distinct meters, or one household's whole
 * billing period. A request for anything else (one meter's difference, a window under k or still open, a span
 * that is not a billing period, a ciphertext other than the one it computed) is refused, counted and logged.
 * Pure: no I/O; guardian/README.md says what is not built yet.
 * @module
 */
import type { Logger } from 'pino';
import { BlindWindows, type BlindMeter, type BlindSettings } from '../lib/e2e-windows.js';
import type { GuardianPartial } from '../protocol/e2e.js';
import { partialDecrypt, type DecryptionShare, type PartialDecryption } from '../protocol/paillier/threshold.js';

/** Why the guardian refused a request. */
export type GuardianRefusal = 'notInterval' | 'notBillingPeriod' | 'notComputed' | 'underK' | 'notReleased' | 'ciphertextMismatch';

/** A request to open `ciphertext` as the named window. */
export interface PartialRequest {
  kind: 'neighbourhood' | 'billing';
  key: string;
  start: number;
  end: number;
  ciphertext: bigint;
}

/**
 * @example
 * ```ts
 * const g = new GuardianCore(settings, { share: keys.paillierShare, meters });
 * g.ingestUplink(bytes);
 * for (const p of g.takePartials()) publish(topics.partial(p.kind, p.key), p);
 * ```
 */
export class GuardianCore {
  readonly windows: BlindWindows;
  readonly refusals: Record<GuardianRefusal, number> = { notInterval: 0, notBillingPeriod: 0, notComputed: 0, underK: 0, notReleased: 0, ciphertextMismatch: 0 };

  constructor(
    settings: BlindSettings,
    private readonly keys: { share: DecryptionShare; meters: Map<string, BlindMeter> },
    private readonly log?: Logger,
  ) {
    this.windows = new BlindWindows(settings, keys.share.publicKey, keys.meters);
  }

  /** One gateway uplink. */
  ingestUplink(bytes: Uint8Array, topicGateway?: string): void {
    this.windows.ingestUplink(bytes, topicGateway);
  }

  /** Closes every window (end of a replay). */
  flush(): void {
    this.windows.flush();
  }

  /** Its partial decryption of every window its own rules released since the last call. */
  takePartials(): GuardianPartial[] {
    return this.windows.takeReleases().map((r) => ({ kind: r.kind, key: r.key, start: r.start, end: r.end, meters: r.meters, partial: partialDecrypt(this.keys.share, r.ciphertext) }));
  }

  /**
   * Answers a request: the guardian's partial decryption if the request names a window it computed and
   * released itself with exactly that ciphertext; otherwise a refusal (counted, logged).
   * @example
   * ```ts
   * const a = g.request({ kind: 'neighbourhood', key: 'nb1', start, end: start + 3600, ciphertext });
   * if ('refused' in a) console.log(a.refused); // e.g. 'underK'
   * ```
   */
  request(req: PartialRequest): { partial: PartialDecryption } | { refused: GuardianRefusal; reason: string } {
    const refuse = (refused: GuardianRefusal, reason: string) => {
      this.refusals[refused]++;
      this.log?.warn({ kind: req.kind, key: req.key, start: req.start, end: req.end, refused, count: this.refusals[refused] }, `guardian: request refused: ${reason}`);
      return { refused, reason };
    };
    const cal = this.windows.calendar;
    if (req.kind === 'neighbourhood') {
      if (req.start !== cal.intervalStart(req.start) || req.end !== req.start + cal.intervalS) return refuse('notInterval', 'not one neighbourhood interval');
    } else {
      const slot = cal.billing(req.start);
      if (slot.start !== req.start || slot.end !== req.end) return refuse('notBillingPeriod', 'not one whole billing period');
    }
    const mine = this.windows.releasedWindow(req.kind, req.key, req.start);
    if (!mine) return refuse('notComputed', 'no such window in the guardian\'s own recomputation');
    if ('unreleased' in mine) {
      if (req.kind === 'neighbourhood' && mine.closed && mine.meters < this.windows.settings.k) return refuse('underK', `the window covers ${mine.meters} meters, fewer than k`);
      return refuse('notReleased', mine.closed ? 'the window is held by the release rules' : 'the window is still open');
    }
    if (mine.ciphertext !== req.ciphertext) return refuse('ciphertextMismatch', 'the ciphertext is not the one the guardian computed for this window');
    return { partial: partialDecrypt(this.keys.share, req.ciphertext) };
  }
}
