/**
 * The PES in the end-to-end mode (docs/paillier.md): it folds the meters' Paillier snapshots blind
 * (lib/e2e-windows.ts), holds only its share of the decryption exponent, and for each window the rules release
 * sends the MDMS the window's ciphertext with its own partial decryption, sealed to the MDMS and signed (the
 * aggregate envelope, on the aggregate topic of its kind). It never decrypts and never sees the guardian's
 * partial. Pure (no I/O); `pes --e2e` runs it (pes/e2e-cli.ts, pes/e2e-mqtt.ts: durable state, PUBACK after commit).
 * @module
 */
import type { KeyObject } from 'node:crypto';
import { BlindWindows, type BlindMeter, type BlindSettings } from '../lib/e2e-windows.js';
import { releaseBody } from '../protocol/e2e.js';
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

  constructor(
    settings: BlindSettings,
    private readonly keys: { share: DecryptionShare; mdmsPublic: KeyObject; signer: KeyObject; meters: Map<string, BlindMeter> },
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

  /** The sealed releases decided since the last call, ready to publish at QoS 1. */
  takeOutbox(): { topic: string; payload: Buffer }[] {
    const pub = this.keys.share.publicKey;
    const bands = this.windows.settings.tariff.bands.map((b) => b.name);
    return this.windows.takeReleases().map((r) => {
      const topic = r.kind === 'neighbourhood' ? topics.neighbourhood(r.key) : topics.billing(r.key);
      const body = releaseBody(pub, { kind: r.kind, key: r.key, start: r.start, end: r.end, revision: r.revision, meters: r.meters, bands, ciphertext: r.ciphertext, partial: partialDecrypt(this.keys.share, r.ciphertext) });
      return { topic, payload: sealAggregate(this.keys.mdmsPublic, topic, body, this.keys.signer) };
    });
  }
}
