/**
 * The meter's end-to-end mode (docs/protocol.md §5.3): instead of a reading batch, each frame carries its
 * readings' timing and status and, at every aggregation-interval boundary, one packed Paillier ciphertext of
 * the meter's cumulative import and export registers per tariff band (protocol/e2e.ts). Nobody but the PES and
 * the guardian together can open it, and they only open sums of at least k meters or whole billing periods.
 *
 * The band registers count, since this encoder's epoch began, the energy of the readings that start in each
 * band (lib/tariff.ts `bandAt`, the PES's band rule). Encryption uses the key's fixed-base DJN table (built
 * once by `precompute()`) or its randomiser pool when one runs: one table exponentiation, or one
 * multiplication, per interval.
 *
 * With a household stream key (`meters/<id>.stream`, `provision --e2e`), each frame also carries the batch as
 * the household's stream message, sealed here under that key (protocol/meter-seal.ts, docs/protocol.md §11.5):
 * the PES forwards it to the household without being able to open it. One AES-GCM per frame.
 * @module
 */
import { bandAt, type Tariff } from '../lib/tariff.js';
import { encodeE2ePayload, registerLayout, type E2eSnapshot } from '../protocol/e2e.js';
import { meterId } from '../protocol/frame.js';
import { sealMeterStream } from '../protocol/meter-seal.js';
import { streamBody } from '../protocol/stream.js';
import { topics } from '../protocol/topics.js';
import type { PublicKey } from '../protocol/paillier/keys.js';
import type { Packing } from '../protocol/paillier/packing.js';
import { readingEnergies, readingExports, type ReadingBatch } from '../protocol/reading.js';

/** The encoder's state (registers in the clear: it lives in the meter, as its registers do). */
export interface E2eEncoderState {
  imports: bigint[];
  exports: bigint[];
  /** Next interval boundary a snapshot is due at; null before the first reading (baseline not taken). */
  nextBoundary: number | null;
}

/** What a meter needs to seal its household's stream (the key from `meters/<id>.stream`). */
export interface E2eStreamSealing {
  key: Uint8Array;
  systemTitle: Uint8Array;
  household: string;
}

/**
 * @example
 * ```ts
 * const enc = new E2eEncoder(loadMeterPaillierKey(keys), { intervalS: 3600, tariff, stream: { key, systemTitle, household } });
 * await Meter.start({ ..., payload: (batch, ic) => enc.encode(batch, ic) });
 * ```
 */
export class E2eEncoder {
  readonly layout: Packing;
  /** Snapshots encrypted so far. */
  snapshots = 0;
  private readonly bandIndex: Map<string, number>;
  private state: E2eEncoderState;

  constructor(
    private readonly pub: PublicKey,
    private readonly o: { intervalS: number; tariff: Tariff; stream?: E2eStreamSealing },
    state?: E2eEncoderState,
  ) {
    if (!Number.isInteger(o.intervalS) || o.intervalS < 60 || 86400 % o.intervalS !== 0) throw new RangeError('interval must be 1 minute .. 1 day and divide a day');
    const bands = o.tariff.bands.length;
    this.layout = registerLayout(pub, bands);
    this.bandIndex = new Map(o.tariff.bands.map((b, i) => [b.name, i]));
    this.state = state ?? { imports: Array<bigint>(bands).fill(0n), exports: Array<bigint>(bands).fill(0n), nextBoundary: null };
  }

  /** A copy of the state, for the meter's NV store. */
  get snapshotState(): E2eEncoderState {
    return { imports: [...this.state.imports], exports: [...this.state.exports], nextBoundary: this.state.nextBoundary };
  }

  private boundaryAfter(t: number): number {
    return t - (t % this.o.intervalS) + this.o.intervalS;
  }

  private snapshot(at: number): E2eSnapshot {
    this.snapshots++;
    return { at, ciphertext: this.pub.encrypt(this.layout.pack([...this.state.imports, ...this.state.exports])) };
  }

  /**
   * The e2e frame plaintext for a validated batch (its registers give each reading's energies), and the
   * registers advanced past it. With a stream key, `ic` (the frame's invocation counter) is bound into the
   * household's stream message.
   * @example
   * ```ts
   * const plaintext = enc.encode({ prevWh, readings }, ic);
   * ```
   */
  encode(batch: ReadingBatch, ic?: number): Buffer {
    const e = readingEnergies(batch);
    const x = readingExports(batch);
    const s = this.state;
    const snapshots: E2eSnapshot[] = [];
    batch.readings.forEach((r, i) => {
      if (s.nextBoundary === null) {
        snapshots.push(this.snapshot(r.time));
        s.nextBoundary = this.boundaryAfter(r.time);
      } else if (r.time >= s.nextBoundary) {
        // No reading reached the boundary (a stretch without samples): take it before this one.
        snapshots.push(this.snapshot(s.nextBoundary));
        s.nextBoundary = this.boundaryAfter(r.time);
      }
      const band = this.bandIndex.get(bandAt(this.o.tariff, r.time));
      if (band === undefined) throw new Error('tariff band missing from the layout');
      s.imports[band]! += BigInt(e[i]!);
      s.exports[band]! += BigInt(x[i]!);
      const end = r.time + r.period;
      if (end >= s.nextBoundary) {
        snapshots.push(this.snapshot(s.nextBoundary));
        s.nextBoundary = this.boundaryAfter(end);
      }
    });
    const readings = batch.readings.map((r) => ({ time: r.time, period: r.period, status: r.status }));
    const st = this.o.stream;
    if (!st) return encodeE2ePayload(this.pub, { readings, snapshots });
    if (ic === undefined) throw new TypeError('sealing the household stream needs the frame invocation counter');
    const stream = sealMeterStream(st.key, topics.household(st.household), st.systemTitle, ic, streamBody(meterId(st.systemTitle), batch));
    return encodeE2ePayload(this.pub, { readings, snapshots, stream });
  }
}
