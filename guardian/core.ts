/**
 * The guardian's core (end-to-end mode, docs/paillier.md "Requests"): it folds its own copy of the uplinks
 * (lib/e2e-windows.ts in answer mode: anti-replay, authenticity, each meter's snapshots) and contributes its
 * partial decryption only to what the PES asks for AND its own snapshots and rules confirm: a neighbourhood
 * interval of >= k distinct meters of that neighbourhood (a revision only when >= revision-k of them changed,
 * the membership guard as the PES's), or one household's whole billing period; the ciphertext is recomputed
 * here from the meters' own snapshots, so the PES cannot slip in anything else. A request for anything else
 * (one meter's interval, a window under k, a span that is not a billing period, a ciphertext other than the
 * named snapshots') is refused, counted and logged; one whose window is still open here or whose snapshots
 * have not arrived yet waits, and is answered as they come. Pure: no I/O.
 * @module
 */
import type { Logger } from 'pino';
import { DpDays } from '../lib/dp-days.js';
import { BlindWindows, type BlindMeter, type BlindRequest, type BlindSettings, type RequestRefusal } from '../lib/e2e-windows.js';
import { parseRequest, type GuardianPartial } from '../protocol/e2e.js';
import { partialDecrypt, type DecryptionShare } from '../protocol/paillier/threshold.js';

/** Why the guardian refused a request (`malformed`: not a request at all). */
export type GuardianRefusal = RequestRefusal | 'malformed';

/**
 * @example
 * ```ts
 * const g = new GuardianCore(settings, { share: keys.paillierShare, meters });
 * g.ingestUplink(bytes);
 * g.ingestRequest(requestBytes, topic);
 * for (const p of g.takePartials()) publish(topics.partial(p.kind, p.key), p);
 * ```
 */
export class GuardianCore {
  readonly windows: BlindWindows;
  readonly refusals: Record<GuardianRefusal, number> = {
    malformed: 0,
    notInterval: 0,
    notBillingPeriod: 0,
    notMember: 0,
    badSpan: 0,
    underK: 0,
    revisionHeld: 0,
    membershipHeld: 0,
    staleRevision: 0,
    notWhole: 0,
    unknownSnapshot: 0,
    ciphertextMismatch: 0,
    dpBudget: 0,
    expired: 0,
  };
  /** The guardian's own DP ledger: epsilon answered per neighbourhood and UTC day of the windows (saved with the refusal counters). */
  private readonly dpDays = new DpDays();
  private ledgerChanged = false;

  /**
   * `dpBudget` (with `settings.dpEpsilon`): the most epsilon per neighbourhood per UTC day of the windows that it
   * helps open, whatever the PES asks (the PES's `--dp-budget`; a compromised PES that ignores its own is refused
   * here, `dpBudget`).
   */
  constructor(
    settings: BlindSettings,
    private readonly keys: { share: DecryptionShare; meters: Map<string, BlindMeter> },
    private readonly log?: Logger,
    private readonly dpBudget?: number,
  ) {
    if (dpBudget !== undefined && (settings.dpEpsilon === undefined || !(dpBudget >= settings.dpEpsilon))) throw new RangeError('a DP budget needs dpEpsilon, and at least that much');
    this.windows = new BlindWindows(settings, keys.share.publicKey, keys.meters, 'answer');
    this.windows.admit = (req) => this.charge(req);
    this.windows.onRefusal = (req, refused, reason) => {
      this.refusals[refused]++;
      this.ledgerChanged = true;
      this.log?.warn({ kind: req.kind, key: req.key, start: req.start, end: req.end, revision: req.revision, meters: req.spans.length, refused, count: this.refusals[refused] }, `guardian: request refused: ${reason}`);
    };
  }

  /** One gateway uplink. */
  ingestUplink(bytes: Uint8Array, topicGateway?: string): void {
    this.windows.ingestUplink(bytes, topicGateway);
  }

  /** Closes every window (end of a replay): the requests waiting for that are answered. */
  flush(): void {
    this.windows.flush();
  }

  /**
   * One request of the PES as it arrives (CBOR bytes from outside; `topic` its MQTT topic, which must name the
   * same window kind and key): answered, waiting, or refused (counted, logged).
   * @example
   * ```ts
   * const outcome = g.ingestRequest(packet.payload, packet.topic);
   * if ('refused' in outcome) metrics.refused.inc({ why: outcome.refused });
   * ```
   */
  ingestRequest(bytes: Uint8Array, topic?: { kind: string; key: string } | null): ReturnType<BlindWindows['request']> | { refused: 'malformed'; reason: string } {
    let req: BlindRequest;
    try {
      req = parseRequest(this.keys.share.publicKey, bytes);
      if (topic !== undefined && (topic === null || topic.kind !== req.kind || topic.key !== req.key)) throw new TypeError('the request names another window than its topic');
    } catch (e) {
      this.refusals.malformed++;
      this.ledgerChanged = true;
      this.log?.warn({ err: (e as Error).message, count: this.refusals.malformed }, 'guardian: malformed request refused');
      return { refused: 'malformed', reason: (e as Error).message };
    }
    return this.request(req);
  }

  /**
   * A parsed request: answered (its partial comes with {@link takePartials}), waiting, or refused.
   * @example
   * ```ts
   * const a = g.request({ kind: 'neighbourhood', key: 'nb1', start, end: start + 3600, revision: 0, spans, ciphertext });
   * if ('refused' in a) console.log(a.refused); // e.g. 'underK'
   * ```
   */
  request(req: BlindRequest): ReturnType<BlindWindows['request']> {
    return this.windows.request(req);
  }

  /** Its partial decryption of every request answered since the last call. */
  takePartials(): GuardianPartial[] {
    return this.windows.takeReleases().map((r) => ({ kind: r.kind, key: r.key, start: r.start, end: r.end, meters: r.meters, partial: partialDecrypt(this.keys.share, r.ciphertext) }));
  }

  /** Charges one noised neighbourhood answer to its day, or says why it would exceed the budget. */
  private charge(req: BlindRequest): string | null {
    const epsilon = this.windows.settings.dpEpsilon;
    if (this.dpBudget === undefined || epsilon === undefined || req.kind !== 'neighbourhood') return null;
    const spent = this.dpDays.after(req.key, req.start, epsilon);
    if (spent > this.dpBudget) return `one more answer would spend ${spent} of the day's budget ${this.dpBudget} for neighbourhood ${req.key}`;
    this.dpDays.charge(req.key, req.start, epsilon);
    this.dpDays.forget(this.windows.watermark, this.windows.retentionS);
    this.ledgerChanged = true;
    return null;
  }

  /**
   * The DP ledger as the state file keeps it (lib/blind-service.ts `extra`): `save()` gives it when it changed
   * since the last call, `restore()` loads what was saved last.
   * @example
   * ```ts
   * startBlindService({ ..., extra: core.ledgerState });
   * ```
   */
  readonly ledgerState = {
    save: (): unknown => {
      if (!this.ledgerChanged) return undefined;
      this.ledgerChanged = false;
      return { dpDays: this.dpDays.toJSON(), refusals: this.refusals };
    },
    restore: (v: unknown): void => {
      if (v === undefined || v === null) return;
      const o = v as { dpDays?: unknown; refusals?: unknown };
      if (typeof o !== 'object') throw new TypeError("malformed DP ledger in the guardian's state file");
      this.dpDays.load(o.dpDays, "the guardian's state file");
      // The refusal counters go on from where they were (they only grow).
      if (typeof o.refusals === 'object' && o.refusals !== null) {
        for (const k of Object.keys(this.refusals) as GuardianRefusal[]) {
          const n = (o.refusals as Record<string, unknown>)[k];
          if (typeof n === 'number' && Number.isSafeInteger(n) && n >= 0) this.refusals[k] = n;
        }
      }
    },
  };

}
