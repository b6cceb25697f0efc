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
 * With differential privacy (`dp`, docs/privacy.md) the meter also keeps a cumulative noise register per
 * total (import, export): at every interval snapshot it adds its share of discrete Laplace noise
 * (lib/polya.ts `laplaceShare`, 1/`shares` of the noise a window of `shares` meters needs) and encrypts the
 * noised totals as a second ciphertext (protocol/e2e.ts `packNoisy`): two encryptions per interval. The band
 * registers, and so the bills, never hold noise.
 *
 * With a household stream key (`meters/<id>.stream`, `provision --e2e`), each frame also carries the batch as
 * the household's stream message, sealed here under that key (protocol/meter-seal.ts, docs/protocol.md §11.5):
 * the PES forwards it to the household without being able to open it. One AES-GCM per frame.
 * @module
 */
import { cryptoUniform, laplaceShare, type Uniform } from '../lib/polya.js';
import { bandAt, type Tariff } from '../lib/tariff.js';
import { encodeE2ePayload, packNoisy, registerLayout, type E2eSnapshot } from '../protocol/e2e.js';
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
  /** With `dp`: the cumulative noise added to total import and total export so far, Wh (signed). */
  noise?: [bigint, bigint];
}

/** The meter's share of distributed differential-privacy noise (docs/privacy.md). */
export interface E2eDpOptions {
  /** Epsilon per neighbourhood release. */
  epsilon: number;
  /** The most one meter adds to an interval, Wh (max power x interval). */
  sensitivityWh: number;
  /** How many meters' shares make the whole noise: the k of the releases (a window has at least k meters). */
  shares: number;
  /** Uniforms in (0, 1]; default node:crypto. */
  rnd?: Uniform;
}

/** Largest noise scale sensitivity / epsilon, Wh, the 48-bit noised totals take for decades of intervals. */
export const MAX_NOISE_SCALE_WH = 2 ** 30;


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
    private readonly o: { intervalS: number; tariff: Tariff; dp?: E2eDpOptions; stream?: E2eStreamSealing },
    state?: E2eEncoderState,
  ) {
    if (!Number.isInteger(o.intervalS) || o.intervalS < 60 || 86400 % o.intervalS !== 0) throw new RangeError('interval must be 1 minute .. 1 day and divide a day');
    if (o.dp) {
      const { epsilon, sensitivityWh, shares } = o.dp;
      if (!(epsilon > 0) || !(sensitivityWh > 0) || !Number.isFinite(epsilon) || !Number.isFinite(sensitivityWh)) throw new RangeError('dp epsilon and sensitivity must be positive');
      if (sensitivityWh / epsilon > MAX_NOISE_SCALE_WH) throw new RangeError(`dp noise scale sensitivity / epsilon must be at most ${MAX_NOISE_SCALE_WH} Wh`);
      if (!Number.isInteger(shares) || shares < 1) throw new RangeError('dp shares must be a positive integer');
    }
    const bands = o.tariff.bands.length;
    this.layout = registerLayout(pub, bands);
    this.bandIndex = new Map(o.tariff.bands.map((b, i) => [b.name, i]));
    this.state = state ?? { imports: Array<bigint>(bands).fill(0n), exports: Array<bigint>(bands).fill(0n), nextBoundary: null };
    if (o.dp && !this.state.noise) this.state.noise = [0n, 0n];
  }

  /** A copy of the state, for the meter's NV store. */
  get snapshotState(): E2eEncoderState {
    const s = this.state;
    return { imports: [...s.imports], exports: [...s.exports], nextBoundary: s.nextBoundary, ...(s.noise ? { noise: [s.noise[0], s.noise[1]] as [bigint, bigint] } : {}) };
  }

  private boundaryAfter(t: number): number {
    return t - (t % this.o.intervalS) + this.o.intervalS;
  }

  /** A snapshot at `at`; `share`: add this interval's noise shares first (every snapshot but the baseline). */
  private snapshot(at: number, share = true): E2eSnapshot {
    this.snapshots++;
    const s = this.state;
    const snap: E2eSnapshot = { at, ciphertext: this.pub.encrypt(this.layout.pack([...s.imports, ...s.exports])) };
    const dp = this.o.dp;
    if (dp && s.noise) {
      if (share) for (const i of [0, 1]) s.noise[i] = s.noise[i]! + BigInt(laplaceShare(dp.epsilon, dp.sensitivityWh, dp.shares, dp.rnd ?? cryptoUniform));
      const total = (xs: bigint[]) => xs.reduce((a, b) => a + b, 0n);
      snap.noisy = this.pub.encrypt(packNoisy(this.pub, [total(s.imports) + s.noise[0], total(s.exports) + s.noise[1]]));
    }
    return snap;
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
        snapshots.push(this.snapshot(r.time, false));
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
