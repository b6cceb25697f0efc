/**
 * The meter's main loop: a tick per source sample, over the HAL (serial line, clock, source, NV store).
 *
 * Each tick integrates one sample into the import register (1-0:1.8.0) and the export register (1-0:2.8.0,
 * energy delivered to the grid by a household with panels) and appends a reading to the current batch. A
 * batch goes out in the short form of docs/protocol.md §5 while the export register is 0 (a meter without
 * panels sends exactly version 1's bytes) and in the long form once it has moved (encodeReadingBatch
 * chooses). A full batch (or the last, partial one when the source ends) becomes a frame: sealed with the next
 * invocation counter, stored in the ring, persisted to NV, and only then transmitted. Frames leave the ring
 * only on the gateway's selective acknowledgement; unacknowledged frames are retransmitted, oldest first,
 * with at most `window` frames queued or in flight.
 *
 * Retransmission (issue 15): frames go to the line from a transmit queue, one write (of up to 4 frames) at
 * a time, and a frame's timer starts once its write has drained (it is on the wire), not when it was
 * queued: at 9600 baud a window of frames takes seconds to leave, and timing it from the queue retransmitted
 * frames that were still waiting their turn. The timeout is estimated from the round trips like TCP's (RFC 6298,
 * firmware/rto.ts: SRTT + 4 RTTVAR, Karn's algorithm, exponential backoff, clamped). A frame already queued
 * is never queued again. `retransmission: 'fixed'` keeps the timer as it was before (a fixed
 * `ackTimeoutMs` from queueing, no drain wait), as a baseline for `npm run bench -- serial`.
 *
 * A sample that carries the metered meter's own registers (`importWh` and `exportWh`, from a P1 port) is not
 * integrated: the registers adopt them exactly. A fresh meter (no NV state) starts from the first such values,
 * so its first reading has no energy (a meter counts from its installation, not the P1 meter's whole history).
 *
 * Status flags set on readings: POWER_FAILURE on the first reading produced after a boot from persisted
 * state (every restart is treated as a power cut; the readings themselves are complete, because the source
 * resumes where the last persisted frame ended). REGISTER_RESET when the adopted import register goes
 * backwards (the P1 meter was replaced, or a corrupt line): both registers are then taken as they come (an
 * absent export register as 0) and the reading's energies are its registers themselves (§5 of
 * docs/protocol.md). A replaced meter resets both registers; an export register that goes backwards while
 * the import register does not is a corrupt line, not a replacement: flagging it REGISTER_RESET would count
 * the whole import register as energy, so the export register keeps its value instead (counted `exportHeld`) and
 * the next good value carries the energy, which only shifts. CLOCK_SET is never set: a source whose time goes
 * backwards (or overlaps the previous sample) stops the meter with an error.
 *
 * Key transfer (docs/protocol.md §7.1, the DLMS `global_key_transfer`): a valid transfer for this meter (its KEK
 * unwraps it, generation above the one in use) is saved to NV, still wrapped, and only then acknowledged on the
 * line. The meter then drains: it seals no frame under the new key while a frame sealed under the old one is
 * unacknowledged, so every old-key frame is upstream before the first new-key frame, and switches with the next
 * frame. The invocation counter continues across the switch (one counter, never reused whatever the key).
 * While it drains (normally one round trip; as long as the gateway is unreachable otherwise) the loop seals
 * nothing and reads no sample: a file or synthetic source resumes where it stopped; for a live P1 port the
 * register is cumulative, so the energy of that time reaches the next reading.
 * @module
 */
import { timingSafeEqual } from 'node:crypto';
import pino, { type Logger } from 'pino';
import { encodeLinkFrame, LinkParser, type LinkCounters } from '../protocol/link.js';
import { decodeMessage, encodeFrame, encodeKeyAck, meterId, MSG_ACK, MSG_KEY_TRANSFER, SC_AES256GCM, sealFrame, type KeyTransfer } from '../protocol/frame.js';
import { unwrapMeterKey } from '../protocol/key-wrap.js';
import { encodeReadingBatch, MAX_READINGS_PER_BATCH, Status, type Reading, type ReadingBatch } from '../protocol/reading.js';
import { createClock, type Clock } from './hal/clock.js';
import type { SerialLine } from './hal/line.js';
import type { NvStore } from './hal/nv.js';
import type { Sample, Source } from './hal/source.js';
import { DEFAULT_COUNTER_BLOCK, InvocationCounter } from './counter.js';
import { averagePowerW, EnergyRegister, MILLIWS_PER_WH } from './register.js';
import { DEFAULT_RING_CAPACITY, FrameRing } from './ring.js';
import { newRto, rtoOnAck, rtoOnTimeout, type Rto } from './rto.js';
import { decodeMeterState, encodeMeterState, type MeterState, type StoredKey } from './state.js';
import { E2eEncoder, type E2eDpOptions, type E2eEncoderState, type E2eStreamSealing } from './e2e.js';
import type { PublicKey } from '../protocol/paillier/keys.js';
import type { Tariff } from '../lib/tariff.js';

export interface MeterOptions {
  /** The meter's 8-byte system title (its id is `meterId(systemTitle)`). */
  systemTitle: Uint8Array;
  /** The meter's provisioned AES-256 key, generation 0 (copied: the caller may wipe its buffer once the meter started). */
  key: Uint8Array;
  /**
   * The meter's key-encryption key (32 bytes): unwraps key transfers and the transferred key kept in NV. Without
   * it the meter refuses transfers, and refuses to boot from NV that holds a transferred key.
   */
  kek?: Uint8Array;
  line: SerialLine;
  source: Source;
  nv: NvStore;
  /** Default: `createClock('max')`. */
  clock?: Clock;
  /** Readings per frame, 1..60 (default 15). */
  batch?: number;
  /**
   * How the acknowledgement timeout is chosen: `'adaptive'` (default) estimates it from round trips timed
   * from the moment a frame has left the line (RFC 6298); `'fixed'` is the timer before issue 15, kept as a
   * benchmark baseline: `ackTimeoutMs` from when a frame is queued.
   */
  retransmission?: 'adaptive' | 'fixed';
  /** Adaptive: the timeout before the first round trip is measured; fixed: the timeout. Wall ms (default 1000). */
  ackTimeoutMs?: number;
  /** Adaptive: lowest timeout, ms (default 200, or `ackTimeoutMs` if lower). */
  minAckTimeoutMs?: number;
  /** Adaptive: highest timeout after backoff, ms (default 60000, or `ackTimeoutMs` if higher). */
  maxAckTimeoutMs?: number;
  /** Most frames queued or in flight (sent, not yet acknowledged or timed out) at once (default 32). */
  window?: number;
  /** Unacknowledged frames kept (default 256). */
  ringCapacity?: number;
  /** Invocation counters reserved per NV write (default 64). */
  counterBlock?: number;
  /** Default timeout of {@link Meter.done}, ms (default: wait forever). */
  drainTimeoutMs?: number;
  /** pino logger; counters and ids only, never readings. Default: silent. */
  log?: Logger;
  /** The frame plaintext of a batch and its frame's invocation counter (default: the reading batch, §5; the end-to-end mode: firmware/e2e.ts, which binds its household stream message to the counter). */
  payload?: (batch: ReadingBatch, ic: number) => Uint8Array;
  /**
   * The end-to-end mode with its encoder in NV (docs/protocol.md §5.3): frames carry Paillier snapshots under
   * `publicKey` (precompute it once per process) instead of readings, and the encoder's band registers and
   * next boundary are saved with each frame, so a power cut neither repeats nor skips a snapshot. A meter
   * keeps its mode for life: NV of the other mode refuses to boot. Excludes `payload`.
   */
  e2e?: { publicKey: PublicKey; intervalS: number; tariff: Tariff; stream?: E2eStreamSealing; dp?: E2eDpOptions };
}

/** What a meter has done since it booted. All counters only grow. */
export interface MeterCounters {
  /** Readings produced. */
  readings: number;
  /** Frames sealed. */
  frames: number;
  /** Bytes written to the line (link-framed, including retransmissions). */
  bytesSent: number;
  /** Frame transmissions after the first (timeouts, and ring frames restored at boot). */
  retransmits: number;
  /** Acknowledgement timers that expired (each queues the frame again). */
  timeouts: number;
  /** Frames freed by an acknowledgement. */
  acked: number;
  /** Frames dropped from a full ring (their energy moves to the next frame, their readings are lost). */
  droppedFromRing: number;
  /** Well-framed downlink payloads that were not a valid acknowledgement for this meter. */
  badDownlink: number;
  /** Acknowledgements for frames no longer held (already acknowledged, or dropped). */
  duplicateAcks: number;
  /** Readings flagged REGISTER_RESET (an adopted import register went backwards). */
  registerResets: number;
  /** Readings whose adopted export register went backwards while the import register did not: held at its value. */
  exportHeld: number;
  /** Key transfers accepted (saved and acknowledged; a repeat of the pending one is acknowledged again, not counted). */
  keyTransfers: number;
  /** Key transfers refused: no KEK, generation not above the one in use, or the wrapped key did not authenticate. */
  badKeyTransfer: number;
  /** Switches to a transferred key. */
  keySwitches: number;
}

/**
 * Thrown (or rejected) once a meter was stopped or halted.
 * @example
 * ```ts
 * await meter.done().catch((e) => { if (!(e instanceof MeterStoppedError)) throw e; });
 * ```
 */
export class MeterStoppedError extends Error {
  constructor(how: 'stopped' | 'halted') {
    super(`meter ${how}`);
    this.name = 'MeterStoppedError';
  }
}

interface Transmission {
  /** Wall ms its acknowledgement timer started at; `null` when the timer is not running. */
  sentAt: number | null;
  /** Wall ms the last copy had left the line (adaptive), for the round-trip sample. */
  onWireAt: number | null;
  /** In the transmit queue or being written: never queued a second time. */
  queued: boolean;
  sends: number;
  /** Whether the NV store holds the frame: never sent before (durability chain step 1). */
  durable: boolean;
}

function check(cond: boolean, message: string): void {
  if (!cond) throw new RangeError(message);
}

/** Byte equality in constant time for equal lengths (the system title is public, but the habit costs nothing). */
function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * A simulated smart meter. {@link Meter.start} restores NV state (or starts fresh) and runs until the
 * source is exhausted; {@link Meter.done} then resolves once every frame is acknowledged.
 * @example
 * ```ts
 * const meter = await Meter.start({ systemTitle: st, key, line: streamLine(port), source, nv: new FileNvStore(file) });
 * const counters = await meter.done(60_000);
 * await meter.stop();
 * ```
 */
export class Meter {
  /** The meter id (hex system title). */
  readonly id: string;
  readonly counters: MeterCounters = { readings: 0, frames: 0, bytesSent: 0, retransmits: 0, timeouts: 0, acked: 0, droppedFromRing: 0, badDownlink: 0, duplicateAcks: 0, registerResets: 0, exportHeld: 0, keyTransfers: 0, badKeyTransfer: 0, keySwitches: 0 };
  private readonly st: Uint8Array;
  private key: Uint8Array;
  private readonly kek: Uint8Array | undefined;
  /** The key in use when transferred (absent: the provisioned key, generation 0). */
  private keyStored: StoredKey | undefined;
  /** An acknowledged transfer not switched to yet. */
  private next: StoredKey | undefined;
  private readonly line: SerialLine;
  private readonly source: Source;
  private readonly nv: NvStore;
  private readonly clock: Clock;
  private readonly batchSize: number;
  private readonly payload: MeterOptions['payload'];
  private readonly fixedTimer: boolean;
  private readonly ackTimeoutMs: number;
  private rto: Rto;
  private readonly window: number;
  private readonly drainTimeoutMs: number;
  private readonly log: Logger;
  private readonly parser = new LinkParser();
  private readonly importReg: EnergyRegister;
  private readonly exportReg: EnergyRegister;
  private readonly ring: FrameRing;
  private readonly counter: InvocationCounter;
  private readonly tx = new Map<number, Transmission>();
  /** Counters of frames waiting for the line, oldest first. */
  private readonly txQueue: number[] = [];
  private writing = false;
  private readonly abort = new AbortController();
  /** The state as of the last frame (what NV holds, or is about to). */
  private committed: { milliWs: bigint; exportMilliWs: bigint; resumeAt: number; samples: number; e2e?: E2eEncoderState };
  /** The end-to-end mode's snapshot encoder (its state as of the last frame is `committed.e2e`). */
  private readonly encoder: E2eEncoder | undefined;
  private mark: number;
  private batch: Reading[] = [];
  private batchEnd = -1;
  private powerFailurePending: boolean;
  /** A fresh meter takes its starting register from the first sample that carries one. */
  private baselinePending: boolean;
  private startMilliWs: bigint;
  private startExportMilliWs: bigint;
  private sourceDone = false;
  private halted = false;
  private stopped = false;
  private timer: NodeJS.Timeout | undefined;
  private unsubscribe: () => void = () => undefined;
  private roomWaiters: (() => void)[] = [];
  private saveChain: Promise<void> = Promise.resolve();
  private queuedSave: Promise<void> | undefined;
  private loop: Promise<void> = Promise.resolve();
  private finish!: { resolve: (c: MeterCounters) => void; reject: (e: Error) => void };
  private readonly finished: Promise<MeterCounters>;

  private constructor(o: MeterOptions, state: MeterState | undefined) {
    this.st = o.systemTitle;
    this.id = meterId(o.systemTitle);
    this.kek = o.kek && Uint8Array.from(o.kek);
    this.keyStored = state?.key;
    this.next = state?.next;
    // Our own copy: the caller may wipe theirs. A transferred key comes from NV, unwrapped with the KEK.
    this.key = this.keyStored ? Uint8Array.from(unwrapMeterKey(this.kek!, this.keyStored.generation, this.keyStored.wrapped)) : Uint8Array.from(o.key);
    this.line = o.line;
    this.source = o.source;
    this.nv = o.nv;
    this.clock = o.clock ?? createClock('max');
    this.batchSize = o.batch ?? 15;
    this.payload = o.payload;
    this.fixedTimer = o.retransmission === 'fixed';
    this.ackTimeoutMs = o.ackTimeoutMs ?? 1000;
    const minMs = o.minAckTimeoutMs ?? Math.min(200, this.ackTimeoutMs);
    this.rto = newRto({ initialMs: this.ackTimeoutMs, minMs, maxMs: o.maxAckTimeoutMs ?? Math.max(60_000, this.ackTimeoutMs, minMs), granularityMs: sweepMs(minMs) });
    this.window = o.window ?? 32;
    this.drainTimeoutMs = o.drainTimeoutMs ?? Infinity;
    this.log = (o.log ?? pino({ enabled: false })).child({ meter: this.id });
    this.importReg = new EnergyRegister(state?.registerMilliWs ?? 0n);
    this.exportReg = new EnergyRegister(state?.exportMilliWs ?? 0n);
    this.encoder = o.e2e && new E2eEncoder(o.e2e.publicKey, { intervalS: o.e2e.intervalS, tariff: o.e2e.tariff, ...(o.e2e.stream ? { stream: o.e2e.stream } : {}), ...(o.e2e.dp ? { dp: o.e2e.dp } : {}) }, state?.e2e);
    this.committed = { milliWs: this.importReg.milliWs, exportMilliWs: this.exportReg.milliWs, resumeAt: state?.resumeAt ?? -1, samples: state?.samples ?? 0, ...(this.encoder ? { e2e: this.encoder.snapshotState } : {}) };
    this.mark = state?.reservedIc ?? 0;
    this.counter = new InvocationCounter(this.mark, (mark) => this.reserve(mark), o.counterBlock ?? DEFAULT_COUNTER_BLOCK);
    this.ring = new FrameRing(o.ringCapacity ?? DEFAULT_RING_CAPACITY);
    for (const f of state?.ring ?? []) this.keep(f.ic, f.bytes, 1);
    this.powerFailurePending = state !== undefined;
    this.baselinePending = state === undefined;
    this.startMilliWs = this.importReg.milliWs;
    this.startExportMilliWs = this.exportReg.milliWs;
    this.finished = new Promise((resolve, reject) => (this.finish = { resolve, reject }));
    this.finished.catch(() => undefined); // reported through done()
  }

  /**
   * Boots a meter: validates options, restores NV state, retransmits restored frames and starts the loop.
   * Rejects if the NV record is corrupt or belongs to another meter.
   */
  static async start(options: MeterOptions): Promise<Meter> {
    const o = options;
    check(o.systemTitle instanceof Uint8Array && o.systemTitle.length === 8, '"systemTitle" must be 8 bytes');
    check(o.key instanceof Uint8Array && o.key.length === 32, '"key" must be 32 bytes (AES-256)');
    check(o.kek === undefined || (o.kek instanceof Uint8Array && o.kek.length === 32), '"kek" must be 32 bytes (AES-256)');
    check(typeof o.line?.write === 'function' && typeof o.line.onData === 'function', '"line" must be a SerialLine');
    check(typeof o.source?.samples === 'function', '"source" must be a Source');
    check(typeof o.nv?.load === 'function' && typeof o.nv.save === 'function', '"nv" must be an NvStore');
    const int = (v: number | undefined, name: string, lo: number, hi: number) =>
      check(v === undefined || (Number.isSafeInteger(v) && v >= lo && v <= hi), `"${name}" must be an integer in ${lo}..${hi}`);
    int(o.batch, 'batch', 1, MAX_READINGS_PER_BATCH);
    check(o.retransmission === undefined || o.retransmission === 'adaptive' || o.retransmission === 'fixed', '"retransmission" must be "adaptive" or "fixed"');
    int(o.ackTimeoutMs, 'ackTimeoutMs', 1, 3_600_000);
    int(o.minAckTimeoutMs, 'minAckTimeoutMs', 1, 3_600_000);
    int(o.maxAckTimeoutMs, 'maxAckTimeoutMs', 1, 3_600_000);
    check((o.minAckTimeoutMs ?? Math.min(200, o.ackTimeoutMs ?? 1000)) <= (o.maxAckTimeoutMs ?? 3_600_000), '"minAckTimeoutMs" must not exceed "maxAckTimeoutMs"');
    int(o.window, 'window', 1, 65536);
    check(o.drainTimeoutMs === undefined || o.drainTimeoutMs === Infinity || (Number.isSafeInteger(o.drainTimeoutMs) && o.drainTimeoutMs >= 0), '"drainTimeoutMs" must be a non-negative integer or Infinity');
    const record = await o.nv.load();
    const state = record === undefined ? undefined : decodeMeterState(record, o.systemTitle);
    if ((state?.key || state?.next) && !o.kek) throw new Error(`meter ${meterId(o.systemTitle)}: NV holds a transferred key: its KEK is needed to boot`);
    check(!(o.e2e && o.payload), '"e2e" and "payload" exclude each other');
    if (state && !state.e2e !== !o.e2e) throw new Error(`meter ${meterId(o.systemTitle)}: NV holds a${state.e2e ? 'n end-to-end' : ' classic'} meter's state: it cannot boot in the ${o.e2e ? 'end-to-end' : 'classic'} mode (a meter keeps its mode; give it a fresh NV store)`);
    const bands = o.e2e?.tariff.bands.length;
    if (state?.e2e && state.e2e.imports.length !== bands) throw new Error(`meter ${meterId(o.systemTitle)}: NV holds ${state.e2e.imports.length} tariff band registers, the tariff has ${bands}`);
    const meter = new Meter(o, state);
    meter.boot(state !== undefined);
    return meter;
  }

  /**
   * Import register at the start of the first reading of this boot, Wh: where the energy this meter sends
   * begins (its NV register, or for a fresh meter on a P1 source the P1 register it started from).
   */
  get startWh(): number {
    return Number(this.startMilliWs / MILLIWS_PER_WH);
  }

  /** Import register at the end of the last reading produced, Wh. */
  get registerWh(): number {
    return this.importReg.wh;
  }

  /** Import register at the end of the last reading produced, mW·s (exact). */
  get registerMilliWs(): bigint {
    return this.importReg.milliWs;
  }

  /** Export register at the start of the first reading of this boot, Wh (as {@link startWh} for import). */
  get startExportWh(): number {
    return Number(this.startExportMilliWs / MILLIWS_PER_WH);
  }

  /** Export register at the end of the last reading produced, Wh. */
  get exportRegisterWh(): number {
    return this.exportReg.wh;
  }

  /** Frames waiting for an acknowledgement. */
  get unacked(): number {
    return this.ring.size;
  }

  /** The acknowledgement timeout now, ms (adaptive: the current RTO estimate). */
  get ackTimeout(): number {
    return this.fixedTimer ? this.ackTimeoutMs : this.rto.rto;
  }

  /** Generation of the key in use (0: the provisioned key). */
  get keyGeneration(): number {
    return this.keyStored?.generation ?? 0;
  }

  /** Counters of the downlink link parser (bad CRCs, garbage, resyncs). */
  get link(): LinkCounters {
    return this.parser.counters;
  }

  /**
   * Resolves with the counters once the source is exhausted and every frame is acknowledged; rejects if the
   * meter fails, is stopped or halted first, or after `timeoutMs` (default: the `drainTimeoutMs` option).
   * @example
   * ```ts
   * await meter.done(30_000);
   * ```
   */
  done(timeoutMs = this.drainTimeoutMs): Promise<MeterCounters> {
    if (timeoutMs === Infinity) return this.finished;
    let t: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      t = setTimeout(() => reject(new Error(`meter ${this.id}: ${this.ring.size} frames unacknowledged after ${timeoutMs} ms${this.sourceDone ? '' : ' (source not exhausted)'}`)), timeoutMs);
    });
    return Promise.race([this.finished, timeout]).finally(() => clearTimeout(t));
  }

  /** Clean shutdown: stops the loop and the line, waits for NV writes in progress. Idempotent. */
  async stop(): Promise<void> {
    if (this.halted) return; // a dead meter's NV write may never finish
    if (!this.stopped) {
      this.shutDown('stopped');
      this.log.info({ ...this.counters, unacked: this.ring.size }, 'meter stopped');
    }
    await this.loop;
    await this.saveChain;
  }

  /** Power cut: stops everything at once; no further NV write or transmission happens. */
  halt(): void {
    if (this.halted) return;
    this.halted = true;
    this.shutDown('halted');
  }

  private shutDown(how: 'stopped' | 'halted'): void {
    this.stopped = true;
    this.abort.abort(new MeterStoppedError(how));
    clearInterval(this.timer);
    this.unsubscribe();
    this.parser.destroy();
    this.wakeRoom();
    this.finish.reject(new MeterStoppedError(how));
  }

  private boot(resumed: boolean): void {
    this.parser.on('data', (payload: Buffer) => this.onDownlink(payload));
    this.parser.on('error', () => undefined); // LinkParser counts bad input itself and does not error
    this.unsubscribe = this.line.onData((chunk) => this.parser.write(chunk));
    this.timer = setInterval(() => this.expire(), this.fixedTimer ? sweepMs(this.ackTimeoutMs) : this.rto.options.granularityMs);
    this.log.info({ resumed, unacked: this.ring.size, reservedIc: this.mark, source: this.source.name }, 'meter booted');
    this.pump();
    this.loop = this.run().catch((e: Error) => this.fail(e));
  }

  private fail(e: Error): void {
    if (this.stopped) return; // a stop or halt interrupted the loop
    this.log.error({ err: e.message, ...this.counters }, 'meter failed');
    this.stopped = true;
    clearInterval(this.timer);
    this.unsubscribe();
    this.wakeRoom();
    this.finish.reject(e);
  }

  /** The main loop: one tick per sample. */
  private async run(): Promise<void> {
    let lastEnd = this.committed.resumeAt;
    this.batchEnd = lastEnd;
    let started = false;
    const signal = this.abort.signal;
    const samples = this.source.samples(lastEnd >= 0 ? lastEnd : undefined);
    // Only a live source needs its wait raced against a stop: the race costs an allocation per sample.
    for await (const s of this.source.live ? untilAborted(samples, signal) : samples) {
      if (this.stopped) return;
      checkSample(s, lastEnd, this.source.name);
      if (!started) {
        this.clock.start(s.time);
        started = true;
      }
      await this.clock.waitUntil(s.time + s.period, signal);
      this.tick(s);
      lastEnd = s.time + s.period;
      if (this.batch.length >= this.batchSize) await this.emitFrame();
    }
    if (this.stopped) return;
    if (this.batch.length > 0) await this.emitFrame();
    this.sourceDone = true;
    this.log.info({ ...this.counters }, 'source exhausted');
    this.checkFinished();
  }

  private tick(s: Sample): void {
    let status = 0;
    const powerW = averagePowerW(s.powerMilliW);
    if (s.importWh === undefined) {
      this.importReg.add(s.powerMilliW, s.period);
      this.exportReg.add(s.exportMilliW ?? 0, s.period);
    } else {
      if (this.baselinePending) {
        this.importReg.adopt(s.importWh);
        if (s.exportWh !== undefined) this.exportReg.adopt(s.exportWh);
        this.committed = { ...this.committed, milliWs: this.importReg.milliWs, exportMilliWs: this.exportReg.milliWs };
        this.startMilliWs = this.importReg.milliWs;
        this.startExportMilliWs = this.exportReg.milliWs;
      }
      if (this.importReg.adopt(s.importWh).reset) {
        this.exportReg.adopt(s.exportWh ?? 0); // a new meter: both registers start again
        status |= Status.REGISTER_RESET;
        this.counters.registerResets++;
        this.log.warn({ time: s.time, resets: this.counters.registerResets }, 'register went backwards: reading flagged REGISTER_RESET');
      } else if (s.exportWh !== undefined && s.exportWh < this.exportReg.wh) {
        this.counters.exportHeld++;
        this.log.warn({ time: s.time, exportHeld: this.counters.exportHeld }, 'export register went backwards without the import register: kept its value');
      } else if (s.exportWh !== undefined) this.exportReg.adopt(s.exportWh);
    }
    const importWh = this.importReg.wh;
    const exportWh = this.exportReg.wh;
    this.baselinePending = false;
    if (this.powerFailurePending) {
      status |= Status.POWER_FAILURE;
      this.powerFailurePending = false;
    }
    this.batch.push({ time: s.time, period: s.period, importWh, powerW, status, exportWh });
    this.batchEnd = s.time + s.period;
    this.counters.readings++;
  }

  private async emitFrame(): Promise<void> {
    const readings = this.batch;
    this.batch = [];
    const prevWh = Number(this.committed.milliWs / MILLIWS_PER_WH);
    const prevExportWh = Number(this.committed.exportMilliWs / MILLIWS_PER_WH);
    if (this.next) await this.switchKey();
    if (this.stopped) return;
    const ic = await this.counter.next();
    const batch = { prevWh, readings, prevExportWh };
    const plaintext = this.encoder ? this.encoder.encode(batch, ic) : this.payload ? this.payload(batch, ic) : encodeReadingBatch(batch);
    // The encoder has moved past this batch; NV keeps its state as of the last frame until that frame is saved.
    const e2e = this.encoder?.snapshotState;
    const bytes = encodeFrame(sealFrame(this.key, { systemTitle: this.st, sc: SC_AES256GCM, ic }, plaintext));
    plaintext.fill(0);
    this.committed = { milliWs: this.importReg.milliWs, exportMilliWs: this.exportReg.milliWs, resumeAt: this.batchEnd, samples: this.committed.samples + readings.length, ...(e2e ? { e2e } : {}) };
    const t = this.keep(ic, bytes, 0);
    this.counters.frames++;
    await this.persist();
    t.durable = true; // an acknowledgement during the save may wake pump(): until now it had to skip this frame
    this.pump();
    if (this.clock.speed === 'max' || this.clock.speed === 'live') {
      // Seal the next frames while these are on the line, not faster than the line carries them (a live
      // meter back-filling its history runs as fast as 'max').
      while ((this.txQueue.length >= FRAMES_AHEAD || this.ring.size >= this.window) && !this.stopped) await new Promise<void>((resolve) => this.roomWaiters.push(resolve));
    }
  }

  /**
   * Switches to the acknowledged transferred key once no frame sealed under the old key is unacknowledged, so
   * that the receiver has every old-key frame before it sees the first new-key one. The switch reaches NV with
   * the frame that follows (a cut before that save boots with the old key and the pending one, and drains again).
   */
  private async switchKey(): Promise<void> {
    while (this.ring.size > 0 && !this.stopped) await new Promise<void>((resolve) => this.roomWaiters.push(resolve));
    const next = this.next;
    if (this.stopped || !next) return;
    const key = unwrapMeterKey(this.kek!, next.generation, next.wrapped);
    this.key.fill(0);
    this.key = Uint8Array.from(key);
    key.fill(0);
    this.keyStored = next;
    this.next = undefined;
    this.counters.keySwitches++;
    this.log.info({ generation: next.generation }, 'switched to the transferred key');
  }

  /**
   * A key-transfer message (serial-line type 3) handed over out of band, as a technician's tool on the
   * meter's optical port would: the same handling as one arriving on the line (see the module doc). Resolves
   * `'accepted'` once the key is in NV and acknowledged, `'repeat'` for the transfer already held, `'refused'`
   * (counted in `badKeyTransfer`) for anything else.
   * @example
   * ```ts
   * if ((await meter.acceptKeyTransfer(readFileSync(transferPath))) === 'refused') throw new Error('refused');
   * ```
   */
  async acceptKeyTransfer(message: Uint8Array): Promise<'accepted' | 'repeat' | 'refused'> {
    let m: ReturnType<typeof decodeMessage>;
    try {
      m = decodeMessage(message);
    } catch (e) {
      return this.refuse(0, (e as Error).message);
    }
    if (m.type !== MSG_KEY_TRANSFER || !sameBytes(m.systemTitle, this.st)) return this.refuse(0, 'not a key transfer for this meter');
    return this.onKeyTransfer(m);
  }

  private refuse(generation: number, why: string): 'refused' {
    this.counters.badKeyTransfer++;
    this.log.warn({ generation, refused: this.counters.badKeyTransfer }, `key transfer refused: ${why}`);
    return 'refused';
  }

  /** A key transfer: refused and counted, or saved to NV, acknowledged, then switched to (see the module doc). */
  private async onKeyTransfer(t: KeyTransfer): Promise<'accepted' | 'repeat' | 'refused'> {
    if (this.stopped) return 'refused';
    const ack = () => {
      const wire = encodeLinkFrame(encodeKeyAck({ systemTitle: this.st, generation: t.generation }));
      this.counters.bytesSent += wire.length;
      this.line.write(wire).catch(() => undefined); // a lost acknowledgement: the sender repeats the transfer
    };
    const same = (k: StoredKey | undefined) => k !== undefined && k.generation === t.generation && sameBytes(k.wrapped, t.wrapped);
    if (same(this.next) || same(this.keyStored)) {
      ack(); // a repeat: our acknowledgement was lost
      return 'repeat';
    }
    if (!this.kek) return this.refuse(t.generation, 'this meter has no KEK');
    if (t.generation <= Math.max(this.keyGeneration, this.next?.generation ?? 0)) return this.refuse(t.generation, 'generation not above the one held');
    try {
      unwrapMeterKey(this.kek, t.generation, t.wrapped).fill(0);
    } catch (e) {
      return this.refuse(t.generation, (e as Error).message);
    }
    this.next = { generation: t.generation, wrapped: Uint8Array.from(t.wrapped) };
    this.counters.keyTransfers++;
    this.log.info({ generation: t.generation }, 'key transfer accepted');
    try {
      await this.persist();
    } catch (e) {
      this.fail(e as Error);
      return 'refused';
    }
    ack();
    return 'accepted';
  }

  /**
   * Puts a frame in the ring (`sends` = 1 for frames restored from NV: they may have been sent, and are
   * durable). A new frame is not durable until the save that follows: a meter killed during that save
   * comes back without it and rebuilds its readings under a new counter, so it must not have left.
   */
  private keep(ic: number, bytes: Uint8Array, sends: number): Transmission {
    const lost = this.ring.push({ ic, bytes });
    const t: Transmission = { sentAt: null, onWireAt: null, queued: false, sends, durable: sends > 0 };
    this.tx.set(ic, t);
    if (lost) {
      this.tx.delete(lost.ic);
      this.counters.droppedFromRing++;
      this.log.warn({ ic: lost.ic, dropped: this.counters.droppedFromRing }, 'ring full: oldest frame dropped');
    }
    return t;
  }

  /** Counter hook: makes a new reservation mark durable before any counter under it is used. */
  private async reserve(mark: number): Promise<void> {
    this.mark = mark;
    await this.persist();
  }

  /**
   * Saves the current committed state. Saves run one at a time; a call while one is queued joins it, and
   * the queued save snapshots the state when it starts, so it includes every change made before the call.
   */
  private persist(): Promise<void> {
    if (this.queuedSave) return this.queuedSave;
    const save = this.saveChain.then(async () => {
      this.queuedSave = undefined;
      if (this.halted) throw new MeterStoppedError('halted');
      const keys = { ...(this.keyStored ? { key: this.keyStored } : {}), ...(this.next ? { next: this.next } : {}) };
      await this.nv.save(encodeMeterState({ systemTitle: this.st, reservedIc: this.mark, registerMilliWs: this.committed.milliWs, exportMilliWs: this.committed.exportMilliWs, resumeAt: this.committed.resumeAt, samples: this.committed.samples, ring: this.ring.list(), ...keys, ...(this.committed.e2e ? { e2e: this.committed.e2e } : {}) }));
    });
    this.queuedSave = save;
    this.saveChain = save.catch(() => undefined);
    return save;
  }

  /** Queues frames neither queued nor in flight, oldest first, while the window has room, and transmits. */
  private pump(): void {
    if (this.stopped) return;
    let busy = 0;
    for (const t of this.tx.values()) if (t.sentAt !== null || t.queued) busy++;
    const now = this.clock.nowMs();
    for (const f of this.ring.list()) {
      if (busy >= this.window) break;
      const t = this.tx.get(f.ic)!;
      if (t.sentAt !== null || t.queued || !t.durable) continue;
      t.queued = true;
      if (this.fixedTimer) t.sentAt = now; // the old timer: it runs from queueing
      busy++;
      this.txQueue.push(f.ic);
    }
    this.transmit();
  }

  /**
   * Writes the queued frames, oldest first, up to {@link FRAMES_PER_WRITE} per write, one write at a time.
   * Adaptive: the frames' timers start once the write has drained (they are on the wire; for all but the last
   * of a write that is a little late, which only delays a retransmission); fixed: once the driver took them,
   * the timer having run since queueing. Several frames per write spread the turnaround between a drain and
   * the next write (an idle line) over several frames.
   */
  private transmit(): void {
    if (this.writing || this.stopped) return;
    const batch: { ic: number; t: Transmission; wire: Buffer }[] = [];
    while (batch.length < FRAMES_PER_WRITE && this.txQueue.length > 0) {
      const ic = this.txQueue.shift()!;
      const t = this.tx.get(ic);
      if (!t) continue; // acknowledged or dropped while it waited
      if (t.sends > 0) this.counters.retransmits++;
      t.sends++;
      t.onWireAt = null;
      batch.push({ ic, t, wire: encodeLinkFrame(this.ring.get(ic)!.bytes) });
    }
    this.wakeRoom(); // the queue has room: the loop may seal the next frame while these are on the line
    if (batch.length === 0) return;
    const wire = batch.length === 1 ? batch[0]!.wire : Buffer.concat(batch.map((b) => b.wire));
    this.counters.bytesSent += wire.length;
    this.writing = true;
    const written = this.fixedTimer ? this.line.write(wire) : this.line.write(wire).then(() => this.line.drain?.());
    const sent = () => {
      this.writing = false;
      const now = this.clock.nowMs();
      let expired = false;
      for (const { ic, t } of batch) {
        t.queued = false;
        if (!this.fixedTimer && this.tx.get(ic) === t) t.sentAt = t.onWireAt = now;
        if (this.fixedTimer && t.sentAt === null) expired = true; // its timer expired while it waited: send it again
      }
      if (expired) this.pump();
      else this.transmit();
    };
    written.then(sent, sent); // a failed write lost the bytes, as on a wire: the timer recovers the frames
  }

  /** Timer: frames unacknowledged for the timeout leave flight and are queued again (adaptive: backoff). */
  private expire(): void {
    const now = this.clock.nowMs();
    let any = false;
    for (const t of this.tx.values()) {
      if (t.sentAt === null || now - t.sentAt < this.ackTimeout) continue;
      if (!this.fixedTimer) this.rto = rtoOnTimeout(this.rto, t.sentAt, now);
      t.sentAt = null;
      this.counters.timeouts++;
      any = true;
    }
    if (any) this.pump();
  }

  private onDownlink(payload: Buffer): void {
    if (this.stopped) return;
    let ic: number;
    try {
      const m = decodeMessage(payload);
      if ((m.type !== MSG_ACK && m.type !== MSG_KEY_TRANSFER) || !sameBytes(m.systemTitle, this.st)) throw new TypeError('not an acknowledgement or key transfer for this meter');
      if (m.type === MSG_KEY_TRANSFER) return void this.onKeyTransfer(m);
      ic = m.ic;
    } catch {
      this.counters.badDownlink++;
      return;
    }
    if (!this.ring.ack(ic)) {
      this.counters.duplicateAcks++;
      return;
    }
    const t = this.tx.get(ic)!;
    // Karn: a frame sent more than once gives no sample; nor one acknowledged before its write drained.
    if (!this.fixedTimer && t.onWireAt !== null) this.rto = rtoOnAck(this.rto, { rttMs: this.clock.nowMs() - t.onWireAt, retransmitted: t.sends > 1 });
    this.tx.delete(ic);
    this.counters.acked++;
    this.persist().catch((e: Error) => this.fail(e));
    this.pump();
    this.wakeRoom();
    this.checkFinished();
  }

  private wakeRoom(): void {
    for (const w of this.roomWaiters.splice(0)) w();
  }

  private checkFinished(): void {
    if (!this.sourceDone || this.ring.size > 0 || this.stopped) return;
    clearInterval(this.timer);
    this.log.info({ ...this.counters }, 'all frames acknowledged');
    this.finish.resolve({ ...this.counters });
  }
}

/** Most frames in one write to the line. */
const FRAMES_PER_WRITE = 4;
/** At speed max, frames sealed ahead of the line (waiting in the transmit queue). */
const FRAMES_AHEAD = 2;

/** How often the timers are checked for a timeout of `ms` (the timer granularity G). */
function sweepMs(ms: number): number {
  return Math.max(5, Math.floor(ms / 4));
}

/**
 * Iterates `samples` until they end or `signal` aborts. A live source (a P1 port) may wait for its next
 * sample indefinitely; a stopped meter must not wait with it. On abort the source is asked to return (it
 * releases its port once its pending read settles) and the iteration ends at once.
 */
async function* untilAborted(samples: AsyncIterable<Sample>, signal: AbortSignal): AsyncGenerator<Sample> {
  const it = samples[Symbol.asyncIterator]();
  let done = false;
  try {
    while (!signal.aborted) {
      const next = it.next();
      // One abort listener per wait, removed as soon as the sample comes: racing every sample against one
      // long-lived "aborted" promise (Promise.race) left a reaction on it per sample, never released until the
      // stop, which cost half the pipeline's throughput and 400 MB per million readings (npm run bench -- pipeline).
      const r = await new Promise<IteratorResult<Sample>>((resolve, reject) => {
        const onAbort = (): void => resolve({ done: true, value: undefined });
        signal.addEventListener('abort', onAbort, { once: true });
        next.then(
          (v) => {
            signal.removeEventListener('abort', onAbort);
            resolve(v);
          },
          (e: unknown) => {
            signal.removeEventListener('abort', onAbort);
            reject(e);
          },
        );
      });
      if (r.done) {
        done = !signal.aborted;
        return;
      }
      yield r.value;
    }
  } finally {
    if (!done) void it.return?.(undefined)?.catch(() => undefined);
  }
}

function checkSample(s: Sample, lastEnd: number, source: string): void {
  if (!Number.isSafeInteger(s.time) || s.time < 0 || s.time > 0xffffffff) throw new RangeError(`${source}: sample time ${s.time} is not a Unix time`);
  if (!Number.isSafeInteger(s.period) || s.period < 1 || s.period > 86400) throw new RangeError(`${source}: sample at ${s.time} has period ${s.period} (must be 1..86400 s)`);
  if (!Number.isSafeInteger(s.powerMilliW) || s.powerMilliW < 0 || s.powerMilliW > 4e12) throw new RangeError(`${source}: sample at ${s.time} has invalid power`);
  if (s.exportMilliW !== undefined && (!Number.isSafeInteger(s.exportMilliW) || s.exportMilliW < 0 || s.exportMilliW > 4e12)) throw new RangeError(`${source}: sample at ${s.time} has invalid export power`);
  for (const r of [s.importWh, s.exportWh]) if (r !== undefined && (!Number.isSafeInteger(r) || r < 0 || r > 2 ** 48)) throw new RangeError(`${source}: sample at ${s.time} has an invalid register`);
  if (s.exportWh !== undefined && s.importWh === undefined) throw new RangeError(`${source}: sample at ${s.time} has an export register without an import register`);
  if (s.time < lastEnd) throw new RangeError(`${source}: sample at ${s.time} starts before the previous one ended (${lastEnd}); clock set backwards is not supported`);
}
