/**
 * The PES in the end-to-end mode (docs/paillier.md): it folds the meters' Paillier snapshots blind
 * (lib/e2e-windows.ts), holds only its share of the decryption exponent, and for each window the rules release
 * sends the MDMS the window's ciphertext with its own partial decryption, sealed to the MDMS and signed (the
 * aggregate envelope, on the aggregate topic of its kind), and the guardian a request naming the window's
 * members and their snapshot spans (the guardian checks it and sends its own partial to the MDMS). It never
 * decrypts and never sees the guardian's partial. Pure (no I/O); `pes --e2e` runs it (pes/e2e-cli.ts, pes/e2e-mqtt.ts: durable state, PUBACK after commit).
 *
 * The household stream: each frame's meter-sealed stream message (docs/protocol.md §11.5) goes out unchanged on
 * the household's topic. The PES cannot open it (the key is the meter's and the household's) and does not sign
 * it: the AES-GCM tag under that key already proves to the household that its meter made it, which no PES
 * signature could add to, and a broker password alone cannot forge it.
 *
 * The DP budget (`dpBudget`, as the classic PES's `--dp-budget`, docs/privacy.md): at most that much epsilon per
 * neighbourhood per UTC day of the windows' start, and never a ledger above what a release may report. A
 * neighbourhood release that would exceed it is withheld (never sealed nor published), counted
 * (`dpBudgetHeld`) and logged. The blind windows have already counted it as released by then (lib/e2e-windows.ts
 * decides, the PES only filters), so unlike the classic PES the window is not re-evaluated: a later change
 * makes the next revision, which the budget judges again. A withheld release sends the guardian no request
 * either, so nothing of it is decrypted (and the guardian keeps its own ledger besides: guardian/core.ts).
 * @module
 */
import type { KeyObject } from 'node:crypto';
import type { Logger } from 'pino';
import { BlindWindows, type BlindMeter, type BlindRelease, type BlindSettings } from '../lib/e2e-windows.js';
import { MAX_EPSILON_SPENT } from '../protocol/aggregate.js';
import { addEpsilon, DpDays } from '../lib/dp-days.js';
import { cborEncode } from '../protocol/cbor.js';
import { releaseBody, requestBody } from '../protocol/e2e.js';
import { partialDecrypt, type DecryptionShare } from '../protocol/paillier/threshold.js';
import { sealAggregate } from '../protocol/seal.js';
import { topics } from '../protocol/topics.js';


/** Options of {@link PesE2e} beyond its settings and keys. */
export interface PesE2eOptions {
  /** Most epsilon per neighbourhood per UTC day of the windows (needs `settings.dpEpsilon`, at least it). */
  dpBudget?: number;
  /** Where a withheld release is reported (warn). */
  log?: Pick<Logger, 'warn'>;
}

/**
 * @example
 * ```ts
 * const pes = new PesE2e(settings, { share, mdmsPublic, signer, meters }, { dpBudget: 9.6 });
 * pes.ingestUplink(bytes);
 * for (const m of pes.takeOutbox()) publish(m.topic, m.payload);
 * ```
 */
export class PesE2e {
  readonly windows: BlindWindows;
  /** Neighbourhood releases sent with a DP ledger (settings.dpEpsilon; the noise is the meters'). */
  dpReleases = 0;
  /** Neighbourhood releases withheld because they would exceed the DP budget (the classic PES's counter name). */
  dpBudgetHeld = 0;
  /** The DP ledger: epsilon spent per neighbourhood, revisions included (saved with the windows: {@link ledgerState}). */
  private readonly dpSpent = new Map<string, number>();
  /** Epsilon spent per `neighbourhood|UTC day of the window's start` (what `dpBudget` bounds), the retained days. */
  private readonly dpDays = new DpDays();
  private ledgerChanged = false;

  constructor(
    settings: BlindSettings,
    private readonly keys: { share: DecryptionShare; mdmsPublic: KeyObject; signer: KeyObject; meters: Map<string, BlindMeter> },
    private readonly options: PesE2eOptions = {},
  ) {
    const budget = options.dpBudget;
    if (budget !== undefined) {
      if (settings.dpEpsilon === undefined) throw new RangeError('dp-budget needs dp-epsilon');
      if (!(Number.isFinite(budget) && budget >= settings.dpEpsilon)) throw new RangeError('dp-budget must be a number at least dp-epsilon');
    }
    this.windows = new BlindWindows(settings, keys.share.publicKey, keys.meters);
    this.windows.onStream = (household, sealed) => {
      this.streams.push({ topic: topics.household(household), payload: Buffer.from(sealed) });
      this.streamMessages++;
    };
  }

  private streams: { topic: string; payload: Buffer }[] = [];
  /** Meter-sealed household stream messages queued for forwarding. */
  streamMessages = 0;

  /** One gateway uplink. */
  ingestUplink(bytes: Uint8Array, topicGateway?: string): void {
    this.windows.ingestUplink(bytes, topicGateway);
  }

  /** Closes every window (end of a replay). */
  flush(): void {
    this.windows.flush();
  }

  /**
   * The household stream messages to forward and the sealed releases decided since the last call, ready to
   * publish at QoS 1.
   */
  takeOutbox(): { topic: string; payload: Buffer }[] {
    const streams = this.streams;
    this.streams = [];
    return [...streams, ...this.releases()];
  }

  /**
   * Per release, the sealed release for the MDMS and the request for the guardian (docs/paillier.md
   * "Requests": the window, its revision, each member's span and the ciphertext; the guardian recomputes the
   * ciphertext from its own snapshots, checks the rules and answers with its partial decryption to the MDMS).
   */
  private releases(): { topic: string; payload: Buffer }[] {
    const pub = this.keys.share.publicKey;
    const bands = this.windows.settings.tariff.bands.map((b) => b.name);
    const out: { topic: string; payload: Buffer }[] = [];
    for (const r of this.windows.takeReleases()) {
      if (this.overBudget(r)) {
        // Before any partial or seal: nothing of a withheld release leaves the PES.
        this.dpBudgetHeld++;
        this.ledgerChanged = true;
        this.options.log?.warn({ neighbourhood: r.key, start: r.start, revision: r.revision, budget: this.options.dpBudget }, "pes: release withheld: it would exceed the neighbourhood's DP budget");
        continue;
      }
      const topic = r.kind === 'neighbourhood' ? topics.neighbourhood(r.key) : topics.billing(r.key);
      const body = releaseBody(pub, { kind: r.kind, key: r.key, start: r.start, end: r.end, revision: r.revision, meters: r.meters, bands, ciphertext: r.ciphertext, partial: partialDecrypt(this.keys.share, r.ciphertext), ...this.ledger(r) });
      const request = requestBody(pub, { kind: r.kind, key: r.key, start: r.start, end: r.end, revision: r.revision, spans: r.spans, ciphertext: r.ciphertext });
      this.requests++;
      out.push({ topic, payload: sealAggregate(this.keys.mdmsPublic, topic, body, this.keys.signer) }, { topic: topics.request(r.kind, r.key), payload: Buffer.from(cborEncode(request)) });
    }
    this.forgetDays();
    return out;
  }

  /** Requests sent to the guardian (one per release). */
  requests = 0;

  /**
   * Whether one more noised release of `r`'s neighbourhood would exceed its DP budget: `dpBudget` per UTC day of
   * the window's start, and in any case the most a ledger may report (protocol/aggregate.ts), as the classic PES.
   */
  private overBudget(r: BlindRelease): boolean {
    const epsilon = this.windows.settings.dpEpsilon;
    if (epsilon === undefined || r.kind !== 'neighbourhood') return false;
    if (addEpsilon(this.dpSpent.get(r.key) ?? 0, epsilon) > MAX_EPSILON_SPENT) return true;
    const budget = this.options.dpBudget;
    return budget !== undefined && this.dpDays.after(r.key, r.start, epsilon) > budget;
  }

  /** With DP, a neighbourhood release's ledger entry `{dp: {epsilon, spent}}` (charged now, to its day too); else nothing. */
  private ledger(r: BlindRelease): { dp?: { epsilon: number; spent: number } } {
    const epsilon = this.windows.settings.dpEpsilon;
    if (epsilon === undefined || r.kind !== 'neighbourhood') return {};
    const spent = addEpsilon(this.dpSpent.get(r.key) ?? 0, epsilon);
    this.dpSpent.set(r.key, spent);
    this.dpDays.charge(r.key, r.start, epsilon);
    this.dpReleases++;
    this.ledgerChanged = true;
    return { dp: { epsilon, spent } };
  }

  /** A day's budget line goes once every window of the day is past the retention (none can be released again). */
  private forgetDays(): void {
    if (this.dpDays.forget(this.windows.watermark, this.windows.retentionS)) this.ledgerChanged = true;
  }

  /**
   * The DP ledger as the state file keeps it (lib/blind-service.ts `extra`): `save()` gives it when it changed
   * since the last call (undefined otherwise), `restore()` loads what was saved last.
   * @example
   * ```ts
   * startBlindService({ ..., extra: pes.ledgerState });
   * ```
   */
  readonly ledgerState = {
    save: (): unknown => {
      if (!this.ledgerChanged) return undefined;
      this.ledgerChanged = false;
      return { dpSpent: Object.fromEntries(this.dpSpent), dpReleases: this.dpReleases, dpDays: this.dpDays.toJSON(), dpBudgetHeld: this.dpBudgetHeld };
    },
    restore: (v: unknown): void => {
      if (v === undefined || v === null) return;
      const o = v as { dpSpent?: unknown; dpReleases?: unknown; dpDays?: unknown; dpBudgetHeld?: unknown };
      if (typeof o !== 'object' || typeof o.dpSpent !== 'object' || o.dpSpent === null || !Number.isInteger(o.dpReleases)) throw new TypeError('malformed DP ledger in the state file');
      // A state saved before the budget existed has no days nor held count.
      if ((o.dpDays !== undefined && (typeof o.dpDays !== 'object' || o.dpDays === null)) || (o.dpBudgetHeld !== undefined && !Number.isInteger(o.dpBudgetHeld))) throw new TypeError('malformed DP ledger in the state file');
      for (const [k, e] of Object.entries(o.dpSpent)) {
        if (typeof e !== 'number' || !(e >= 0)) throw new TypeError('malformed DP ledger in the state file');
        this.dpSpent.set(k, e);
      }
      this.dpDays.load(o.dpDays ?? {}, 'the state file');
      this.dpReleases = o.dpReleases as number;
      this.dpBudgetHeld = (o.dpBudgetHeld as number | undefined) ?? 0;
    },
  };
}
