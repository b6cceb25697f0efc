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
 * @module
 */
import type { KeyObject } from 'node:crypto';
import { BlindWindows, type BlindMeter, type BlindSettings } from '../lib/e2e-windows.js';
import { cborEncode } from '../protocol/cbor.js';
import { releaseBody, requestBody } from '../protocol/e2e.js';
import { partialDecrypt, type DecryptionShare } from '../protocol/paillier/threshold.js';
import { sealAggregate } from '../protocol/seal.js';
import { topics } from '../protocol/topics.js';

/**
 * @example
 * ```ts
 * const pes = new PesE2e(settings, { share, mdmsPublic, signer, meters });
 * pes.ingestUplink(bytes);
 * for (const m of pes.takeOutbox()) publish(m.topic, m.payload);
 * ```
 */
export class PesE2e {
  readonly windows: BlindWindows;
  /** Neighbourhood releases sent with a DP ledger (settings.dpEpsilon; the noise is the meters'). */
  dpReleases = 0;
  /** The DP ledger: epsilon spent per neighbourhood, revisions included (saved with the windows: {@link ledgerState}). */
  private readonly dpSpent = new Map<string, number>();
  private ledgerChanged = false;

  constructor(
    settings: BlindSettings,
    private readonly keys: { share: DecryptionShare; mdmsPublic: KeyObject; signer: KeyObject; meters: Map<string, BlindMeter> },
  ) {
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
    return this.windows.takeReleases().flatMap((r) => {
      const topic = r.kind === 'neighbourhood' ? topics.neighbourhood(r.key) : topics.billing(r.key);
      const body = releaseBody(pub, { kind: r.kind, key: r.key, start: r.start, end: r.end, revision: r.revision, meters: r.meters, bands, ciphertext: r.ciphertext, partial: partialDecrypt(this.keys.share, r.ciphertext), ...this.ledger(r.kind, r.key) });
      const request = requestBody(pub, { kind: r.kind, key: r.key, start: r.start, end: r.end, revision: r.revision, spans: r.spans, ciphertext: r.ciphertext });
      this.requests++;
      return [
        { topic, payload: sealAggregate(this.keys.mdmsPublic, topic, body, this.keys.signer) },
        { topic: topics.request(r.kind, r.key), payload: Buffer.from(cborEncode(request)) },
      ];
    });
  }

  /** Requests sent to the guardian (one per release). */
  requests = 0;

  /** With DP, a neighbourhood release's ledger entry `{dp: {epsilon, spent}}` (charged now); else nothing. */
  private ledger(kind: 'neighbourhood' | 'billing', key: string): { dp?: { epsilon: number; spent: number } } {
    const epsilon = this.windows.settings.dpEpsilon;
    if (epsilon === undefined || kind !== 'neighbourhood') return {};
    // Rounded as the classic PES's ledger (pes/core/pes.ts), so that 0.1 + 0.2 reads 0.3.
    const spent = Math.round(((this.dpSpent.get(key) ?? 0) + epsilon) * 1e9) / 1e9;
    this.dpSpent.set(key, spent);
    this.dpReleases++;
    this.ledgerChanged = true;
    return { dp: { epsilon, spent } };
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
      return { dpSpent: Object.fromEntries(this.dpSpent), dpReleases: this.dpReleases };
    },
    restore: (v: unknown): void => {
      if (v === undefined || v === null) return;
      const o = v as { dpSpent?: unknown; dpReleases?: unknown };
      if (typeof o !== 'object' || typeof o.dpSpent !== 'object' || o.dpSpent === null || !Number.isInteger(o.dpReleases)) throw new TypeError('malformed DP ledger in the state file');
      for (const [k, e] of Object.entries(o.dpSpent)) {
        if (typeof e !== 'number' || !(e >= 0)) throw new TypeError('malformed DP ledger in the state file');
        this.dpSpent.set(k, e);
      }
      this.dpReleases = o.dpReleases as number;
    },
  };
}
