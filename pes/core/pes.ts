/**
 * The PES core: frames in, sealed aggregates and household stream messages out. No I/O: the adapters
 * (pes/pes.ts, pes/mqtt.ts, pes/store.ts) persist {@link PesCore.checkpoint} and publish its outbox.
 *
 * Per frame: decode -> meter lookup -> anti-replay check -> AES-GCM open -> decode batch -> plaintext buffer
 * zeroed -> time checks -> energy attribution -> fold into Paillier accumulators (one `addPlain` per frame and
 * window: a frame's readings that share a window are summed while the decoded frame is in hand) -> household
 * stream message sealed to the household. No reading is logged, persisted or published in clear.
 *
 * Per message (uplink), after its frames: windows whose end + lateness their neighbourhood's watermark passed
 * are closed; closed windows that changed are evaluated for release (k rule for neighbourhoods, revision-k for
 * their revisions, the membership guard against differencing: docs/privacy.md); windows past the retention
 * horizon are deleted from the store.
 *
 * Memory is O(open windows + meters), not O(days): the watermark is per neighbourhood (its meters' progress;
 * from three meters on, the single furthest meter does not count, so one meter with a clock ahead cannot close
 * its neighbourhood's windows: `--max-skew` bounds it against its neighbourhood's watermark), and a closed
 * window leaves memory at the checkpoint that writes it. A window not in memory is created as a *pending*
 * delta; before the next checkpoint the adapter hands {@link PesCore.coldWanted}'s stored rows to
 * {@link PesCore.hydrate}, which folds the delta into the stored window (a late reading: revision rules as
 * before) or starts a new one. What stays in memory per closed window is only a count per neighbourhood, UTC
 * day and released membership (for the differencing guard) and the DP ledger's day lines.
 * @module
 */
import { addEpsilon } from '../../lib/dp-days.js';
import { differsByFew } from '../../lib/policy.js';
import { constants, createPublicKey, timingSafeEqual, verify, type KeyObject } from 'node:crypto';
import type { Logger } from 'pino';
import { decodeFrame, meterId, openFrame, type CipheredFrame } from '../../protocol/frame.js';
import { ciphertextFromBytes, ciphertextToBytes, decodeSigned, type PaillierPrivate } from '../../protocol/paillier/engine.js';
import { decodeReadingBatch, type ReadingBatch } from '../../protocol/reading.js';
import type { BillingAggregate, NeighbourhoodAggregate, PolicyStatement } from '../../protocol/aggregate.js';
import { MAX_EPSILON_SPENT } from '../../protocol/aggregate.js';
import { activationMac, bindingSigned, decodeHouseholdKey, popSigned, PSS_SALT_BYTES, type HouseholdKeyMessage } from '../../protocol/household-key.js';
import { keyId, newStreamKey, sealAggregate, sealStream, type StreamKey } from '../../protocol/seal.js';
import { streamBody } from '../../protocol/stream.js';
import { topicId, topics } from '../../protocol/topics.js';
import { decodeUplink } from '../../protocol/uplink.js';
import type { BillingPeriod } from '../duration.js';
import type { Tariff } from '../../lib/tariff.js';
import { Calendar } from './calendar.js';
import { GUARD_COUNTERS, newCounters, type PesCounters } from './counters.js';
import { attribute, pruneGaps, type EnergyOp, type EnergyState } from './energy.js';
import { ReplayWindow, type ReplayState } from '../../protocol/replay-window.js';
import { discreteLaplace, DP_MAX_POWER_W, intervalSensitivityWh } from './dp.js';
import { packPair, unpackPair } from './pair.js';

/** What the PES knows about one provisioned meter. */
export interface MeterInfo {
  /** The meter's AES-256 key from provisioning, generation 0 (unwrapped from the provisioning file). */
  key: Uint8Array;
  /** Keys made by `provision rotate`, generation 1, 2, ... in order (docs/protocol.md §7.1). */
  rotated?: Uint8Array[];
  household: string;
  neighbourhood: string;
}

export interface PesSettings {
  /** Neighbourhood interval in seconds (divides a day; aligned to the Unix epoch). */
  intervalS: number;
  billing: BillingPeriod;
  /** Time zone in which billing periods are aligned. */
  tz: string;
  tariff: Tariff;
  /** Allowed lateness: a window closes when the watermark passes end + lateness. */
  latenessS: number;
  /** Fewest distinct meters a released neighbourhood aggregate may cover. */
  k: number;
  /** Fewest distinct meters that must have changed a released neighbourhood window before a revision is released. */
  revisionK: number;
  /**
   * The differencing guard (docs/privacy.md): a neighbourhood release whose membership differs from one already
   * released for the same neighbourhood by 1 to revisionK - 1 meters is held. Default true.
   */
  membershipGuard?: boolean;
  /** Differential privacy (pes/core/dp.ts): epsilon per neighbourhood release; absent = no noise. */
  dpEpsilon?: number;
  /** Most power one meter can draw, W: the DP sensitivity is this over one interval. */
  dpMaxPowerW?: number;
  /**
   * Most epsilon spent per neighbourhood per UTC day of its windows (with `dpEpsilon`); a release that would
   * exceed it is held (`dpBudgetHeld`). Absent = no budget.
   */
  dpBudget?: number;
  /** Closed windows are kept (for revisions) until the watermark passes end + retention. */
  retentionS: number;
  /** Readings further than this from the watermark (either way) are rejected as absurd. */
  maxSkewS: number;
  /** Consecutive replays from one meter that raise an alarm. */
  replayAlarmAfter: number;
}

export interface PesCoreKeys {
  paillier: PaillierPrivate;
  mdmsPublic: KeyObject;
  /** Per household, the key derived from its activation code (protocol/household-key.ts `activationSecrets`, the `binding` value). */
  bindingKeys?: Map<string, Uint8Array>;
  /** Ed25519 private key that signs every aggregate seal and stream epoch. */
  signer: KeyObject;
  householdPublic: Map<string, KeyObject>;
  meters: Map<string, MeterInfo>;
}

/** A message to publish at QoS 1; the payload is sealed. */
export interface OutMessage {
  kind: 'neighbourhood' | 'billing' | 'household' | 'policy';
  topic: string;
  payload: Buffer;
}

type Kind = 'neighbourhood' | 'billing';

interface Window {
  id: string;
  kind: Kind;
  key: string;
  /** The neighbourhood whose watermark closes it (its key, or its household's neighbourhood). */
  nb: string;
  /** Created for a reading while not in memory: `acc`/`meters`/`changed` are a delta until {@link PesCore.hydrate}. */
  pending: boolean;
  start: number;
  end: number;
  /**
   * Paillier accumulator per band ('' for a neighbourhood window) of the band's imported and exported energy
   * packed in one plaintext (pes/core/pair.ts); a missing band is 0.
   */
  acc: Map<string, bigint>;
  /** Bands whose ciphertext changed since the last checkpoint (to re-randomise). */
  touched: Set<string>;
  meters: Set<string>;
  /** Meters that contributed since the last released revision. */
  changed: Set<string>;
  /** Last released revision, -1 if never released. */
  revision: number;
  /** Neighbourhood windows: the meters the last released revision covered (sorted), null if never released. */
  released: string[] | null;
  closed: boolean;
  suppressed: boolean;
}

/** Persistent form of a window (ciphertexts as big-endian bytes). */
export interface WindowRecord {
  kind: Kind;
  key: string;
  start: number;
  end: number;
  revision: number;
  closed: boolean;
  suppressed: boolean;
  acc: [string, Uint8Array][];
  meters: string[];
  changed: string[];
  /** The meters of the last released revision (neighbourhood windows; absent in state files from before it). */
  released?: string[] | null;
}

/** Persistent form of a meter's state (the store seals it: it holds registers). */
export interface MeterRecord {
  replay: ReplayState;
  energy: EnergyState | null;
  replayStreak: number;
  /** Generation of the meter key last seen in use (absent: 0, the provisioned key). */
  keyGeneration?: number;
}

/**
 * One line of the DP ledger: the epsilon spent on a neighbourhood's releases, over all time (`day` null: what
 * each release reports as `dp.spent`) or on the windows of one UTC day (`day` = start / 86400, for `dpBudget`).
 */
export interface DpLedgerRow {
  neighbourhood: string;
  day: number | null;
  spent: number;
}

/**
 * A neighbourhood's watermark inputs: the furthest end time any of its meters reached (and which meter), and
 * the furthest among the others. The watermark is `first`, or `second` (`first` while one meter reported) in a
 * neighbourhood of three or more provisioned meters.
 */
export interface NeighbourhoodClock {
  first: number;
  firstMeter: string;
  second: number | null;
}

/** A window's place in the store. */
export interface WindowRef {
  kind: Kind;
  key: string;
  start: number;
}

/**
 * The retention horizon of a neighbourhood: closed windows ending before `before` are deleted, the
 * neighbourhood's own and (when `households` is not empty) its households' billing windows.
 */
export interface Horizon {
  neighbourhood: string;
  households: string[];
  before: number;
}

/** How many closed neighbourhood windows of one UTC day were released with one membership (from the store). */
export interface ReleasedCount {
  neighbourhood: string;
  day: number;
  released: string[];
  windows: number;
}

/** Everything that changed since the previous checkpoint. */
export interface Checkpoint {
  windows: WindowRecord[];
  /** Retention horizons that moved: delete what is behind them. */
  horizons: Horizon[];
  /** Neighbourhood clocks that moved. */
  clocks: [string, NeighbourhoodClock][];
  meters: Map<string, MeterRecord>;
  households: Map<string, Uint8Array | null>;
  outbox: OutMessage[];
  watermark: number | null;
  counters: PesCounters;
  /** DP ledger rows that changed, and per-day rows past the retention horizon. */
  dp: DpLedgerRow[];
  dpEvicted: { neighbourhood: string; day: number }[];
}

/** A state as loaded from the store: its open windows (closed ones stay there), meters, keys and clocks. */
export interface Snapshot {
  /** Open windows (a closed one given here is only counted for the membership guard, not kept). */
  windows: WindowRecord[];
  /** The memberships of the closed, released neighbourhood windows still in the store. */
  released?: ReleasedCount[];
  /** Per-neighbourhood clocks (absent in states from before them: every neighbourhood then starts at `watermark`). */
  clocks?: [string, NeighbourhoodClock][];
  meters: Map<string, MeterRecord>;
  households: Map<string, Uint8Array | null>;
  watermark: number | null;
  counters: Partial<PesCounters>;
  /** Absent in state files from before the ledger. */
  dp?: DpLedgerRow[];
}

/** How a household's current key was bound. */
interface Binding {
  boundAt: number;
  /** Bound with a proof (activation or rotation); provisioned keys are not. */
  activated: boolean;
}

/** Per neighbourhood: its clock, its open windows and how far its retention horizon was applied. */
interface Hood {
  name: string;
  clock: NeighbourhoodClock | null;
  open: Set<Window>;
  /** Earliest end + lateness over `open` (Infinity if none). */
  nextClose: number;
  /** The last retention horizon handed to the store (-Infinity: none since start). */
  horizon: number;
  households: Set<string>;
  /** Three or more provisioned meters: the furthest one alone does not move the watermark. */
  guarded: boolean;
}

const dayOf = (t: number): number => Math.floor(t / 86400);

interface MeterRuntime {
  replay: ReplayWindow;
  energy: EnergyState | null;
  replayStreak: number;
  /** Generation of the key the meter was last seen using: older keys are retired. */
  keyGeneration: number;
}

/** The most the contract lets a ledger report (protocol/aggregate.ts). */
const MAX_SPENT = MAX_EPSILON_SPENT;

/** Largest uplink accepted: 1024 frames (the uplink maximum) of a full link payload each. */
export const MAX_UPLINK_BYTES = 1024 * 2048 + 1024;
const STREAM_KEYS_PER_HOUSEHOLD = 4;

/** Classifies a reading-batch decoding error (protocol/reading.ts messages) into a counter. */
function batchErrorCounter(e: unknown): 'registerDecrease' | 'timeBackwards' | 'malformedFrame' {
  const msg = e instanceof Error ? e.message : '';
  if (msg.includes('decreases without the register-reset flag')) return 'registerDecrease';
  if (msg.includes('goes backwards')) return 'timeBackwards';
  return 'malformedFrame';
}

/**
 * @example
 * ```ts
 * const core = new PesCore(settings, keys, logger);
 * core.ingestUplink(bytes);
 * const cp = core.checkpoint(); // persist cp, then publish cp.outbox
 * ```
 */
export class PesCore {
  readonly counters: PesCounters = newCounters();
  readonly calendar: Calendar;
  /** The furthest neighbourhood watermark (what `--max-skew` checks a neighbourhood's first readings against). */
  private fleetWatermark: number | null = null;

  /** Open windows, and closed or pending ones until the next checkpoint. */
  private readonly windows = new Map<string, Window>();
  private readonly hoods = new Map<string, Hood>();
  private readonly householdHood = new Map<string, string>();
  /** Windows created while not in memory, waiting for {@link hydrate}. */
  private readonly pending = new Set<Window>();
  /** Neighbourhoods whose clock moved in this message. */
  private readonly touchedHoods = new Set<Hood>();
  private readonly dirtyClocks = new Set<Hood>();
  private horizons: Horizon[] = [];
  /** A flush happened since the last checkpoint: pending windows are closed when hydrated. */
  private flushed = false;
  private readonly meterState = new Map<string, MeterRuntime>();
  private readonly householdKeys: Map<string, KeyObject>;
  /** How each bound key was bound (keys from provisioning: at 0, not by activation). */
  private readonly bindings = new Map<string, Binding>();
  private readonly households: Set<string>;
  private readonly streamKeys = new Map<string, StreamKey[]>();
  /** Per neighbourhood, its provisioned meters: the reference membership before anything is released. */
  private readonly provisioned = new Map<string, Set<string>>();
  /** Per neighbourhood, the distinct memberships of its retained released windows, with how many windows have each. */
  private readonly releasedMemberships = new Map<string, Map<string, { meters: Set<string>; windows: number }>>();
  /** The same counts per neighbourhood and UTC day of the window's start: what the retention horizon takes away. */
  private readonly releasedDays = new Map<string, Map<number, Map<string, number>>>();
  /** The DP ledger: epsilon spent per neighbourhood over all time, and per `neighbourhood|day` (retained days). */
  private readonly dpSpent = new Map<string, number>();
  private readonly dpDays = new Map<string, { neighbourhood: string; day: number; spent: number }>();

  // Changes since the last checkpoint.
  private readonly dirtyWindows = new Set<Window>();
  private readonly dirtyMeters = new Set<string>();
  private readonly dirtyHouseholds = new Map<string, Uint8Array | null>();
  private outbox: OutMessage[] = [];
  private readonly dirtyDp = new Map<string, DpLedgerRow>();
  private readonly dpEvicted: Checkpoint['dpEvicted'] = [];
  /** Closed windows changed since their last release evaluation. */
  private readonly toEvaluate = new Set<Window>();

  constructor(
    readonly settings: PesSettings,
    private readonly keys: PesCoreKeys,
    private readonly log: Logger,
  ) {
    this.calendar = new Calendar(settings.intervalS, settings.billing, settings.tz, settings.tariff);
    for (const [id, m] of keys.meters) {
      if (!/^[0-9a-f]{16}$/.test(id)) throw new TypeError(`meter id ${id} is not 16 lower-case hex digits (a system title)`);
      for (const k of [m.key, ...(m.rotated ?? [])]) if (!(k instanceof Uint8Array) || k.length !== 32) throw new TypeError(`meter ${id}: key must be 32 bytes`);
      topicId(m.household, `meter ${id} household`);
      topicId(m.neighbourhood, `meter ${id} neighbourhood`);
    }
    this.householdKeys = new Map(keys.householdPublic);
    for (const hh of this.householdKeys.keys()) this.bindings.set(hh, { boundAt: 0, activated: false });
    this.households = new Set([...keys.meters.values()].map((m) => m.household));
    for (const [id, m] of keys.meters) {
      let set = this.provisioned.get(m.neighbourhood);
      if (!set) this.provisioned.set(m.neighbourhood, (set = new Set()));
      set.add(id);
      this.householdHood.set(m.household, m.neighbourhood);
      this.hood(m.neighbourhood).households.add(m.household);
    }
    for (const [nb, set] of this.provisioned) this.hood(nb).guarded = set.size >= 3;
  }

  /** The watermark of the furthest neighbourhood (null before any reading). */
  get watermark(): number | null {
    return this.fleetWatermark;
  }

  /**
   * A neighbourhood's watermark: the furthest end its meters reached, except that in a neighbourhood of three
   * or more provisioned meters the single furthest meter does not count (the second-furthest does), so that one
   * meter with a clock ahead cannot close its neighbourhood's windows. Null before any reading.
   * @example
   * ```ts
   * core.neighbourhoodWatermark('nb0'); // e.g. 1700003600
   * ```
   */
  neighbourhoodWatermark(nb: string): number | null {
    const h = this.hoods.get(nb);
    return h ? this.wmOf(h) : null;
  }

  private hood(nb: string): Hood {
    let h = this.hoods.get(nb);
    if (!h) this.hoods.set(nb, (h = { name: nb, clock: null, open: new Set(), nextClose: Infinity, horizon: -Infinity, households: new Set(), guarded: false }));
    return h;
  }

  private wmOf(h: Hood): number | null {
    const c = h.clock;
    if (!c) return null;
    return h.guarded ? (c.second ?? c.first) : c.first;
  }

  /** Moves a neighbourhood's clock for a meter that reached `end`. */
  private advance(h: Hood, meter: string, end: number): void {
    const c = h.clock;
    if (!c) h.clock = { first: end, firstMeter: meter, second: null };
    else if (c.firstMeter === meter) {
      if (end <= c.first) return;
      c.first = end;
    } else if (end > c.first) {
      c.second = c.first;
      c.first = end;
      c.firstMeter = meter;
    } else if (c.second === null || end > c.second) c.second = end;
    else return;
    this.dirtyClocks.add(h);
    this.touchedHoods.add(h);
    const wm = this.wmOf(h)!;
    if (this.fleetWatermark === null || wm > this.fleetWatermark) this.fleetWatermark = wm;
  }

  /** Indexes an open window under its neighbourhood (for closing). */
  private indexOpen(w: Window): void {
    const h = this.hood(w.nb);
    h.open.add(w);
    h.nextClose = Math.min(h.nextClose, w.end + this.settings.latenessS);
  }

  private nbOf(kind: Kind, key: string): string {
    return kind === 'neighbourhood' ? key : (this.householdHood.get(key) ?? key);
  }

  private record(r: WindowRecord): Window {
    return {
      id: `${r.kind}|${r.key}|${r.start}`,
      kind: r.kind,
      key: r.key,
      nb: this.nbOf(r.kind, r.key),
      pending: false,
      start: r.start,
      end: r.end,
      acc: new Map(r.acc.map(([b, c]) => [b, ciphertextFromBytes(this.keys.paillier, c)])),
      touched: new Set(),
      meters: new Set(r.meters),
      changed: new Set(r.changed),
      revision: r.revision,
      released: releasedOf(r),
      closed: r.closed,
      suppressed: r.suppressed,
    };
  }

  /** Restores a state loaded from the store (call once, before any ingest). */
  restore(s: Snapshot): void {
    this.fleetWatermark = s.watermark;
    if (s.clocks) {
      for (const [nb, c] of s.clocks) {
        const h = this.hood(nb);
        h.clock = { ...c };
        const wm = this.wmOf(h)!;
        if (this.fleetWatermark === null || wm > this.fleetWatermark) this.fleetWatermark = wm;
      }
    } else if (s.watermark !== null) {
      // A state from before per-neighbourhood clocks: every neighbourhood starts at the global watermark.
      for (const nb of this.provisioned.keys()) this.hood(nb).clock = { first: s.watermark, firstMeter: '', second: s.watermark };
    }
    for (const r of s.released ?? []) this.remember(r.neighbourhood, r.released, r.day, r.windows);
    Object.assign(this.counters, s.counters);
    for (const r of s.dp ?? []) {
      if (r.day === null) this.dpSpent.set(r.neighbourhood, r.spent);
      else this.dpDays.set(`${r.neighbourhood}|${r.day}`, { neighbourhood: r.neighbourhood, day: r.day, spent: r.spent });
    }
    for (const r of s.windows) {
      const w = this.record(r);
      if (w.released) this.remember(w.key, w.released, dayOf(w.start), +1);
      if (w.closed) continue; // stays in the store
      this.windows.set(w.id, w);
      this.indexOpen(w);
    }
    for (const [id, m] of s.meters) this.meterState.set(id, { replay: new ReplayWindow(m.replay), energy: m.energy, replayStreak: m.replayStreak, keyGeneration: m.keyGeneration ?? 0 });
    for (const [hh, stored] of s.households) {
      if (stored === null) {
        this.householdKeys.delete(hh);
        this.bindings.delete(hh);
        continue;
      }
      // Stored is the binding message itself; a bare SPKI is a key from before proofs (bound at 0).
      let spki: Uint8Array = stored;
      let binding: Binding = { boundAt: 0, activated: false };
      try {
        const m = decodeHouseholdKey(topics.householdKey(hh), stored);
        if (m.spki) [spki, binding] = [m.spki, { boundAt: m.boundAt, activated: true }];
      } catch {
        // a bare SPKI
      }
      this.householdKeys.set(hh, createPublicKey({ key: Buffer.from(spki), format: 'der', type: 'spki' }));
      this.bindings.set(hh, binding);
    }
  }

  /**
   * Processes one gateway uplink (CBOR `[1, gateway, [frame, ...]]`). A bad frame never stops the others.
   * `topicGateway`, when given, must equal the gateway named in the payload.
   */
  ingestUplink(bytes: Uint8Array, topicGateway?: string): void {
    let frames: Uint8Array[];
    try {
      if (bytes.length > MAX_UPLINK_BYTES) throw new TypeError(`uplink of ${bytes.length} bytes exceeds ${MAX_UPLINK_BYTES}`);
      const up = decodeUplink(bytes);
      if (topicGateway !== undefined && up.gateway !== topicGateway) throw new TypeError('uplink names another gateway than its topic');
      frames = up.frames;
    } catch (e) {
      this.counters.malformedUplink++;
      this.log.warn({ gateway: topicGateway, err: (e as Error).message }, 'pes: malformed uplink');
      return;
    }
    for (const f of frames) this.ingestFrame(f);
    this.settle();
  }

  /** Processes one ciphered frame (the CBOR bytes a meter sent). Call {@link settle} after a batch of frames. */
  ingestFrame(bytes: Uint8Array): void {
    let frame: CipheredFrame;
    try {
      frame = decodeFrame(bytes);
    } catch {
      this.counters.malformedFrame++;
      return;
    }
    const id = meterId(frame.systemTitle);
    const info = this.keys.meters.get(id);
    if (!info) {
      this.counters.unknownMeter++;
      return;
    }
    const rt = this.runtime(id);
    const fresh = rt.replay.check(frame.ic) === 'ok';
    // The tag is checked for a counter already seen too (one AES-GCM): only a frame made with the meter's key
    // is a replay and counts towards the alarm. A frame that does not authenticate is a forgery (badTag)
    // whatever its counter, so nobody without the key can raise the alarm or have forgeries counted as replays.
    const opened = this.open(info, rt, frame);
    if (opened === 'badTag') {
      this.counters.badTag++;
      return;
    }
    // The first 4 bytes of the GCM tag: the same counter with the same tag is the same frame again.
    const tag = frame.ciphertext.subarray(frame.ciphertext.length - 12);
    const digest = ((tag[0]! << 24) | (tag[1]! << 16) | (tag[2]! << 8) | tag[3]!) >>> 0;
    if (opened === 'retired') {
      // A broker re-delivering a frame accepted before the switch is a duplicate; anything else under a
      // retired key is refused, whatever its counter (the key may have been retired because it leaked).
      if (!fresh && rt.replay.duplicate(frame.ic, digest)) this.counters.duplicateFrame++;
      else {
        this.counters.retiredKey++;
        this.log.warn({ meter: id, ic: frame.ic, keyGeneration: rt.keyGeneration, retired: this.counters.retiredKey }, 'pes: frame under a retired meter key refused');
      }
      return;
    }
    if (opened.generation > rt.keyGeneration) {
      this.counters.keySwitches++;
      this.log.info({ meter: id, from: rt.keyGeneration, to: opened.generation }, 'pes: meter switched to its new key; the old one is retired');
      rt.keyGeneration = opened.generation;
      this.dirtyMeters.add(id);
    }
    const plaintext = opened.plaintext;
    if (!fresh && rt.replay.duplicate(frame.ic, digest)) {
      plaintext.fill(0);
      this.counters.duplicateFrame++;
      return;
    }
    if (!fresh) {
      plaintext.fill(0);
      this.counters.replay++;
      rt.replayStreak++;
      this.dirtyMeters.add(id);
      if (rt.replayStreak === this.settings.replayAlarmAfter) {
        this.counters.replayAlarm++;
        this.log.warn({ meter: id, replays: rt.replayStreak, highestIc: rt.replay.highest }, 'pes: burst of replayed invocation counters (wiped meter store or replay attack?)');
      }
      return;
    }
    rt.replay.mark(frame.ic, digest);
    rt.replayStreak = 0;
    this.dirtyMeters.add(id);
    let batch: ReadingBatch;
    try {
      batch = decodeReadingBatch(plaintext);
    } catch (e) {
      this.counters[batchErrorCounter(e)]++;
      return;
    } finally {
      plaintext.fill(0);
    }
    this.ingestBatch(id, info, rt, batch);
  }

  /**
   * Opens a frame under the meter's key in use, else under a newer one (its first frame there is the switch),
   * else tells whether an older, retired key authenticates it. One AES-GCM open in the common case.
   */
  private open(info: MeterInfo, rt: MeterRuntime, frame: CipheredFrame): { plaintext: Uint8Array; generation: number } | 'retired' | 'badTag' {
    const rotated = info.rotated ?? [];
    const n = 1 + rotated.length;
    for (let g = rt.keyGeneration; g < n; g++) {
      try {
        return { plaintext: openFrame(g === 0 ? info.key : rotated[g - 1]!, frame), generation: g };
      } catch {
        // not under this generation
      }
    }
    for (let g = Math.min(rt.keyGeneration, n) - 1; g >= 0; g--) {
      try {
        openFrame(g === 0 ? info.key : rotated[g - 1]!, frame).fill(0);
        return 'retired';
      } catch {
        // not under this generation
      }
    }
    return 'badTag';
  }

  private ingestBatch(id: string, info: MeterInfo, rt: MeterRuntime, batch: ReadingBatch): void {
    const hood = this.hood(info.neighbourhood);
    const own = this.wmOf(hood);
    // A neighbourhood's first readings are checked against the furthest neighbourhood.
    const wm = own ?? this.fleetWatermark;
    let end = 0;
    for (const r of batch.readings) end = Math.max(end, r.time + r.period);
    if (wm !== null) {
      const skew = this.settings.maxSkewS;
      if (end > wm + skew || batch.readings[0]!.time < wm - skew) {
        this.counters.absurdTime++;
        this.log.debug({ meter: id }, 'pes: reading time absurdly far from the watermark');
        return;
      }
    }
    const a = attribute(rt.energy, batch);
    if (!a.ok) {
      this.counters[a.reason]++;
      if (a.reason === 'registerDecrease' && a.state !== rt.energy) {
        rt.energy = a.state;
        this.log.warn({ meter: id }, 'pes: register decreased without the reset flag; batch rejected, meter re-based');
      }
      return;
    }
    if (a.ops.some((op) => this.gone(op.time, own))) {
      this.counters.tooOld++;
      return;
    }
    rt.energy = a.state;
    if (a.gapOpened) this.counters.gapsOpened++;
    if (a.gapFilled) this.counters.gapsFilled++;
    this.counters.gapsForgotten += a.gapsForgotten;
    this.fold(id, info, a.ops);
    this.counters.framesOk++;
    this.counters.readings += batch.readings.length;
    this.advance(hood, id, end);
    this.stream(id, info.household, batch);
  }

  /** Whether the windows of time `t` are past the retention horizon of a neighbourhood at watermark `wm` (or would be). */
  private gone(t: number, wm: number | null): boolean {
    if (wm === null) return false;
    const r = this.settings.retentionS;
    return this.calendar.intervalStart(t) + this.settings.intervalS + r < wm || this.calendar.billing(t).end + r < wm;
  }

  /** Folds signed energies into the accumulators: one addPlain per (frame, window, band) and register. */
  private fold(meter: string, info: MeterInfo, ops: EnergyOp[]): void {
    const sums = new Map<string, { w: Window; band: string; wh: number; exportWh: number }>();
    for (const op of ops) {
      const nbStart = this.calendar.intervalStart(op.time);
      const nb = this.window('neighbourhood', info.neighbourhood, nbStart, nbStart + this.settings.intervalS, info.neighbourhood);
      const slot = this.calendar.billing(op.time);
      const bill = this.window('billing', info.household, slot.start, slot.end, info.neighbourhood);
      for (const [w, band] of [
        [nb, ''],
        [bill, slot.band],
      ] as const) {
        const key = `${w.id}|${band}`;
        const s = sums.get(key);
        if (s) {
          s.wh += op.wh;
          s.exportWh += op.exportWh;
        } else sums.set(key, { w, band, wh: op.wh, exportWh: op.exportWh });
      }
    }
    for (const s of sums.values()) {
      const { w, band } = s;
      this.add(w, band, packPair(s.wh, s.exportWh));
      w.meters.add(meter);
      w.changed.add(meter);
      if (w.pending) continue; // hydrate() takes it from here
      this.dirtyWindows.add(w);
      if (w.closed) this.toEvaluate.add(w);
    }
  }

  /** Adds a signed plaintext to one accumulator of a window (a new accumulator starts with one encryption). */
  private add(w: Window, band: string, m: bigint): void {
    if (m === 0n) return;
    const pk = this.keys.paillier;
    const c = w.acc.get(band);
    w.acc.set(band, c === undefined ? pk.encrypt(m) : pk.addPlain(c, m));
    w.touched.add(band);
  }

  /** The window in memory, or a pending delta for one that may be in the store (see {@link hydrate}). */
  private window(kind: Kind, key: string, start: number, end: number, nb: string): Window {
    const id = `${kind}|${key}|${start}`;
    let w = this.windows.get(id);
    if (!w) {
      w = { id, kind, key, nb, pending: true, start, end, acc: new Map(), touched: new Set(), meters: new Set(), changed: new Set(), revision: -1, released: null, closed: false, suppressed: false };
      this.windows.set(id, w);
      this.pending.add(w);
    }
    return w;
  }

  /**
   * The windows readings were folded into while they were not in memory: look them up in the store and pass
   * the rows found to {@link hydrate} before the next {@link checkpoint}.
   * @example
   * ```ts
   * const refs = core.coldWanted();
   * if (refs.length) core.hydrate(store.loadWindows(refs));
   * ```
   */
  coldWanted(): WindowRef[] {
    return [...this.pending].map((w) => ({ kind: w.kind, key: w.key, start: w.start }));
  }

  /**
   * Folds every pending delta into its stored window (`records`: the rows found for {@link coldWanted}; a
   * window without a row is new), then closes what its neighbourhood's watermark passed and evaluates the
   * closed ones for release, exactly as if the window had stayed in memory.
   * @example
   * ```ts
   * core.hydrate(await state.loadWindows(core.coldWanted()));
   * ```
   */
  hydrate(records: WindowRecord[]): void {
    const pk = this.keys.paillier;
    const byId = new Map(records.map((r) => [`${r.kind}|${r.key}|${r.start}`, r]));
    for (const w of this.pending) {
      w.pending = false;
      const r = byId.get(w.id);
      if (r) {
        for (const [band, bytes] of r.acc) {
          const base = ciphertextFromBytes(pk, bytes);
          const delta = w.acc.get(band);
          w.acc.set(band, delta === undefined ? base : pk.add(base, delta));
        }
        for (const m of r.meters) w.meters.add(m);
        for (const m of r.changed) w.changed.add(m);
        w.revision = r.revision;
        w.released = releasedOf(r);
        w.closed = r.closed;
        w.suppressed = r.suppressed;
      }
      this.dirtyWindows.add(w);
      const wm = this.wmOf(this.hood(w.nb));
      if (!w.closed && (this.flushed || (wm !== null && wm > w.end + this.settings.latenessS))) w.closed = true;
      if (w.closed) this.toEvaluate.add(w);
      else this.indexOpen(w);
    }
    this.pending.clear();
    this.evaluate();
  }

  private runtime(id: string): MeterRuntime {
    let rt = this.meterState.get(id);
    if (!rt) {
      rt = { replay: new ReplayWindow(), energy: null, replayStreak: 0, keyGeneration: 0 };
      this.meterState.set(id, rt);
    }
    return rt;
  }

  /** Queues the batch on the household's own topic, sealed with the (household, UTC day) stream key. */
  private stream(meter: string, hh: string, batch: ReadingBatch): void {
    const pub = this.householdKeys.get(hh);
    if (!pub) {
      this.counters.noHouseholdKey++;
      return;
    }
    const epoch = Math.floor(batch.readings[0]!.time / 86400);
    let list = this.streamKeys.get(hh);
    if (!list) this.streamKeys.set(hh, (list = []));
    const topic = topics.household(hh);
    let sk = list.find((k) => k.epoch === epoch);
    if (!sk) {
      sk = newStreamKey(pub, epoch, topic, this.keys.signer);
      list.push(sk);
      if (list.length > STREAM_KEYS_PER_HOUSEHOLD) list.shift()!.key.fill(0);
    }
    this.outbox.push({ kind: 'household', topic, payload: sealStream(sk, topic, streamBody(meter, batch)) });
    this.counters.streamMessages++;
  }

  /**
   * Handles a household public key message (protocol/household-key.ts; an empty payload withdraws the key).
   * Returns false (and counts) if rejected.
   */
  householdKey(topic: string, payload: Uint8Array): boolean {
    try {
      const m = decodeHouseholdKey(topic, payload);
      const hh = m.household;
      if (!this.households.has(hh)) throw new TypeError('unknown household');
      if (m.spki === null) {
        this.householdKeys.delete(hh);
        this.bindings.delete(hh);
        this.dropStreamKeys(hh);
        this.dirtyHouseholds.set(hh, null);
        this.log.info({ household: hh, audit: 'household-key.withdrawn' }, 'pes: household key withdrawn');
        return true;
      }
      const key = createPublicKey({ key: Buffer.from(m.spki), format: 'der', type: 'spki' });
      const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
      if (key.asymmetricKeyType !== 'rsa' || bits < 2048) throw new TypeError('household key must be RSA >= 2048 bits');
      this.checkBinding(m, key);
      this.householdKeys.set(hh, key);
      this.bindings.set(hh, { boundAt: m.boundAt, activated: true });
      this.dropStreamKeys(hh);
      this.dirtyHouseholds.set(hh, Uint8Array.from(payload));
      this.counters.householdKeys++;
      this.log.info({ household: hh, kid: keyId(key).toString('hex'), boundAt: m.boundAt, by: m.auth.type, audit: 'household-key.bound' }, 'pes: household key bound');
      return true;
    } catch (e) {
      this.counters.badHouseholdKey++;
      this.log.warn({ topic, err: (e as Error).message }, 'pes: household key message rejected');
      return false;
    }
  }

  /**
   * Throws unless the binding is authorised (docs/protocol.md §10.1): newer than the current one; by the
   * activation code (its binding key) while no key has been bound with a proof, or else by the current key;
   * and signed by the new key.
   */
  private checkBinding(m: Extract<HouseholdKeyMessage, { spki: Uint8Array }>, key: KeyObject): void {
    const hh = m.household;
    const current = this.bindings.get(hh);
    if (current && m.boundAt <= current.boundAt) throw new TypeError('binding is not newer than the bound key (replayed or out of order)');
    const signed = bindingSigned(hh, m.spki, m.boundAt);
    if (m.auth.type === 'activation') {
      if (current?.activated) throw new TypeError('the activation code was already used: only the current key can bind another');
      const bk = this.keys.bindingKeys?.get(hh);
      if (!bk) throw new TypeError('no binding key provisioned for this household');
      const mac = Buffer.from(activationMac(bk, hh, m.spki, m.boundAt));
      if (!timingSafeEqual(mac, Buffer.from(m.auth.mac))) throw new TypeError('activation MAC does not verify (wrong activation code)');
    } else {
      const bound = this.householdKeys.get(hh);
      if (!bound || !current) throw new TypeError('a rotation needs a bound key');
      if (!verify('sha256', signed, { key: bound, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: PSS_SALT_BYTES }, m.auth.sig)) {
        throw new TypeError('rotation signature of the bound key does not verify');
      }
    }
    if (!verify('sha256', popSigned(hh, m.spki, m.boundAt, m.auth), { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: PSS_SALT_BYTES }, m.pop)) {
      throw new TypeError('the new key did not sign the binding (no proof of possession)');
    }
  }

  private dropStreamKeys(hh: string): void {
    for (const k of this.streamKeys.get(hh) ?? []) k.key.fill(0);
    this.streamKeys.delete(hh);
  }

  /**
   * End-of-message work: close windows the watermark passed, evaluate changed closed windows for release,
   * and drop windows past the retention horizon.
   */
  settle(): void {
    const touched = [...this.touchedHoods];
    this.touchedHoods.clear();
    for (const h of touched) {
      const wm = this.wmOf(h);
      if (wm === null || wm <= h.nextClose) continue;
      let next = Infinity;
      for (const w of h.open) {
        const closeAt = w.end + this.settings.latenessS;
        if (wm > closeAt) this.close(h, w);
        else next = Math.min(next, closeAt);
      }
      h.nextClose = next;
    }
    this.evaluate();
    for (const h of touched) this.evict(h);
  }

  private close(h: Hood, w: Window): void {
    w.closed = true;
    h.open.delete(w);
    this.dirtyWindows.add(w);
    this.toEvaluate.add(w);
  }

  /** Closes every open window now (end of a replay) and evaluates them; pending ones close when hydrated. */
  flush(): void {
    for (const h of this.hoods.values()) {
      for (const w of h.open) this.close(h, w);
      h.nextClose = Infinity;
    }
    this.flushed = true;
    this.evaluate();
  }

  private evaluate(): void {
    if (this.toEvaluate.size === 0) return;
    const list = [...this.toEvaluate].sort((a, b) => a.start - b.start || (a.id < b.id ? -1 : 1));
    this.toEvaluate.clear();
    for (const w of list) this.release(w);
  }

  private release(w: Window): void {
    const { k, revisionK } = this.settings;
    if (w.kind === 'neighbourhood') {
      if (w.revision < 0 && w.meters.size < k) {
        if (!w.suppressed) {
          w.suppressed = true;
          this.counters.suppressed++;
          this.dirtyWindows.add(w);
        }
        return;
      }
      if (w.revision >= 0 && w.changed.size < revisionK) {
        this.counters.revisionHeld++;
        return;
      }
      // The differencing guard: held like a revision, re-evaluated whenever the window changes again.
      if (this.settings.membershipGuard !== false && this.differencing(w)) {
        this.counters.membershipHeld++;
        return;
      }
    }
    const eps = w.kind === 'neighbourhood' ? this.settings.dpEpsilon : undefined;
    if (eps !== undefined && this.dpExhausted(w, eps)) {
      this.counters.dpBudgetHeld++;
      this.log.debug({ window: w.id }, 'pes: release held: it would exceed the neighbourhood\'s DP budget');
      return;
    }
    const pk = this.keys.paillier;
    const acc = new Map(w.acc);
    if (eps !== undefined) {
      // Independent noise on import and on export, each of the pair's L1 sensitivity (docs/privacy.md). The
      // noise joins the total as a ciphertext (fresh for every release, never kept in the window), so it needs
      // no plaintext total; negative noisy totals are released as 0 (post-processing).
      const scale = intervalSensitivityWh(this.settings.dpMaxPowerW ?? DP_MAX_POWER_W, this.settings.intervalS);
      const noise = pk.encrypt(packPair(discreteLaplace(eps, scale), discreteLaplace(eps, scale)));
      const c = acc.get('');
      acc.set('', c === undefined ? noise : pk.add(c, noise));
    }
    const imports = new Map<string, number>();
    const exports = new Map<string, number>();
    for (const [band, c] of acc) {
      const pair = unpackPair(decodeSigned(pk.decrypt(c), pk.n));
      for (let i = 0; i < 2; i++) {
        if (eps !== undefined && pair[i]! < 0n) pair[i] = 0n;
        if (pair[i]! < 0n || pair[i]! > BigInt(Number.MAX_SAFE_INTEGER)) {
          this.counters.negativeTotal++;
          this.log.error({ window: w.id, register: i === 0 ? 'import' : 'export' }, 'pes: aggregate decrypts to a negative or oversized total; not released');
          return;
        }
      }
      imports.set(band, Number(pair[0]));
      exports.set(band, Number(pair[1]));
    }
    w.revision++;
    w.changed.clear();
    w.suppressed = false;
    if (w.kind === 'neighbourhood') {
      if (w.released) this.remember(w.key, w.released, dayOf(w.start), -1);
      w.released = [...w.meters].sort();
      this.remember(w.key, w.released, dayOf(w.start), +1);
    }
    this.dirtyWindows.add(w);
    let topic: string;
    let body: NeighbourhoodAggregate | BillingAggregate;
    if (w.kind === 'neighbourhood') {
      topic = topics.neighbourhood(w.key);
      // exportWh always (a v2 PES), so that the utility's series is uniform; dp only on noised releases.
      body = { kind: 'neighbourhood', key: w.key, start: w.start, end: w.end, revision: w.revision, meters: w.meters.size, energyWh: imports.get('') ?? 0, exportWh: exports.get('') ?? 0 };
      if (eps !== undefined) {
        body.dp = { epsilon: eps, spent: this.spend(w, eps) };
        this.counters.dpReleases++;
      }
    } else {
      topic = topics.billing(w.key);
      const bands: Record<string, number> = {};
      for (const b of this.settings.tariff.bands) bands[b.name] = imports.get(b.name) ?? 0;
      body = { kind: 'billing', key: w.key, start: w.start, end: w.end, revision: w.revision, bands };
      // Feed-in lines only for a household that fed in over the period (a billing-level fact, nothing finer).
      if ([...exports.values()].some((v) => v > 0)) {
        const exportBands: Record<string, number> = {};
        for (const b of this.settings.tariff.bands) exportBands[b.name] = exports.get(b.name) ?? 0;
        body.exportBands = exportBands;
      }
    }
    imports.clear();
    exports.clear();
    this.outbox.push({ kind: w.kind, topic, payload: sealAggregate(this.keys.mdmsPublic, topic, body, this.keys.signer) });
    this.counters.released++;
    if (w.revision > 0) this.counters.lateRevisions++;
  }

  /**
   * Whether one more release of `w`'s neighbourhood would exceed its DP budget: `dpBudget` per UTC day of the
   * window's start, and in any case the most a ledger may report (10^6, protocol/aggregate.ts).
   */
  private dpExhausted(w: Window, eps: number): boolean {
    if (addEpsilon(this.dpSpent.get(w.key) ?? 0, eps) > MAX_SPENT) return true;
    const budget = this.settings.dpBudget;
    if (budget === undefined) return false;
    return addEpsilon(this.dpDays.get(`${w.key}|${Math.floor(w.start / 86400)}`)?.spent ?? 0, eps) > budget;
  }

  /** Records one noised release of `w` in the DP ledger; returns the neighbourhood's total spent, this one included. */
  private spend(w: Window, eps: number): number {
    const nb = w.key;
    const day = Math.floor(w.start / 86400);
    const spent = addEpsilon(this.dpSpent.get(nb) ?? 0, eps);
    this.dpSpent.set(nb, spent);
    const id = `${nb}|${day}`;
    const d = this.dpDays.get(id) ?? { neighbourhood: nb, day, spent: 0 };
    d.spent = addEpsilon(d.spent, eps);
    this.dpDays.set(id, d);
    this.dirtyDp.set(`${nb}|`, { neighbourhood: nb, day: null, spent });
    this.dirtyDp.set(id, { ...d });
    return spent;
  }

  /**
   * Queues the PES's policy statement (docs/protocol.md §11.3): its guards and their counters, sealed to the
   * MDMS and signed like an aggregate, on `sm/v1/agg/policy/<pesId>`. Returns the body.
   * @example
   * ```ts
   * core.policyStatement('pes', Math.floor(Date.now() / 1000)); // then checkpoint() and publish its outbox
   * ```
   */
  policyStatement(pesId: string, at: number): PolicyStatement {
    const topic = topics.policy(pesId);
    const { k, revisionK, membershipGuard, dpEpsilon } = this.settings;
    const body: PolicyStatement = {
      kind: 'policy',
      key: pesId,
      at,
      k,
      revisionK,
      membershipGuard: membershipGuard !== false,
      counters: this.guardCounters(),
      ...(dpEpsilon !== undefined ? { dpEpsilon } : {}),
    };
    this.outbox.push({ kind: 'policy', topic, payload: sealAggregate(this.keys.mdmsPublic, topic, body, this.keys.signer) });
    this.counters.policyStatements++;
    return body;
  }

  /**
   * The counters a policy statement reports: how often each guard acted, and how much was released.
   * @example
   * ```ts
   * core.guardCounters().membershipHeld; // releases held by the differencing guard so far
   * ```
   */
  guardCounters(): Record<string, number> {
    return Object.fromEntries(GUARD_COUNTERS.map((n) => [n, this.counters[n]]));
  }

  /**
   * The differencing rule: would releasing `w` now let the MDMS subtract two releases of its neighbourhood
   * that differ by fewer than revision-k meters? Its membership is compared with every distinct membership
   * released for the neighbourhood by another retained window (any interval, earlier or later); before the
   * first release, with the neighbourhood's provisioned meters, so that the first membership released (the one
   * later releases must match) is the full one and not that of an interval a meter happened to miss. A
   * difference of 0 (the same meters) or of at least revision-k meters is allowed: two releases then differ by
   * a sum over at least revision-k households, which is what revision-k already accepts for revisions.
   */
  private differencing(w: Window): boolean {
    const kg = this.settings.revisionK;
    if (kg <= 1) return false;
    const own = w.released?.join(',');
    const refs: Set<string>[] = [];
    for (const [key, m] of this.releasedMemberships.get(w.key) ?? []) if (m.windows > (key === own ? 1 : 0)) refs.push(m.meters);
    if (refs.length === 0) refs.push(this.provisioned.get(w.key) ?? new Set());
    return differsByFew(w.meters, refs, kg);
  }

  /** Counts `delta` windows of a neighbourhood's UTC day released with a membership in (> 0) or out (< 0). */
  private remember(nb: string, meters: string[], day: number, delta: number): void {
    let byKey = this.releasedMemberships.get(nb);
    if (!byKey) this.releasedMemberships.set(nb, (byKey = new Map()));
    const key = meters.join(',');
    const m = byKey.get(key);
    if (m) m.windows += delta;
    else if (delta > 0) byKey.set(key, { meters: new Set(meters), windows: delta });
    if (m && m.windows <= 0) byKey.delete(key);
    let days = this.releasedDays.get(nb);
    if (!days) this.releasedDays.set(nb, (days = new Map()));
    let d = days.get(day);
    if (!d) days.set(day, (d = new Map()));
    const n = (d.get(key) ?? 0) + delta;
    if (n > 0) d.set(key, n);
    else d.delete(key);
    if (d.size === 0) days.delete(day);
  }

  /**
   * Moves a neighbourhood's retention horizon (watermark - retention): the store deletes its closed windows
   * behind it (its households' billing windows once a billing period is behind it), and the membership
   * counts, DP ledger days and remembered gaps behind it go. At most once per interval per neighbourhood.
   */
  private evict(h: Hood): void {
    const wm = this.wmOf(h);
    if (wm === null) return;
    const { retentionS: r, intervalS } = this.settings;
    const before = wm - r;
    if (Math.floor(before / intervalS) <= Math.floor(h.horizon / intervalS)) return;
    // Billing windows ending in [previous horizon, before): the first billing end at or after the previous one.
    const billingDue = h.horizon === -Infinity || this.calendar.billing(h.horizon - 1).end < before;
    h.horizon = before;
    this.horizons.push({ neighbourhood: h.name, households: billingDue ? [...h.households] : [], before });
    const days = this.releasedDays.get(h.name);
    const byKey = this.releasedMemberships.get(h.name);
    for (const [day, counts] of days ?? []) {
      if ((day + 1) * 86400 >= before) continue;
      days!.delete(day);
      for (const [key, n] of counts) {
        const m = byKey?.get(key);
        if (m && (m.windows -= n) <= 0) byKey!.delete(key);
      }
    }
    // A day's ledger line goes when every window of the day has (its last ends at the day's end).
    for (const [id, d] of this.dpDays) {
      if (d.neighbourhood === h.name && (d.day + 1) * 86400 < before) {
        this.dpDays.delete(id);
        this.dirtyDp.delete(id);
        this.dpEvicted.push({ neighbourhood: d.neighbourhood, day: d.day });
      }
    }
    for (const id of this.provisioned.get(h.name) ?? []) {
      const rt = this.meterState.get(id);
      if (!rt?.energy) continue;
      const pruned = pruneGaps(rt.energy, (t) => this.gone(t, wm));
      if (pruned !== rt.energy) {
        rt.energy = pruned;
        this.dirtyMeters.add(id);
      }
    }
  }

  /**
   * Everything changed since the previous checkpoint, ready to persist. Every ciphertext that changed is
   * re-randomised first (in memory too), so two checkpoints of a window never reveal their difference.
   */
  checkpoint(): Checkpoint {
    if (this.pending.size) throw new Error(`${this.pending.size} pending windows: hydrate() them before the checkpoint`);
    const pk = this.keys.paillier;
    const windows: WindowRecord[] = [];
    for (const w of this.dirtyWindows) {
      // A closed window lives in the store only from now on (a late reading loads it back).
      if (w.closed) this.windows.delete(w.id);
      for (const band of w.touched) w.acc.set(band, pk.rerandomize(w.acc.get(band)!));
      w.touched.clear();
      windows.push({
        kind: w.kind,
        key: w.key,
        start: w.start,
        end: w.end,
        revision: w.revision,
        closed: w.closed,
        suppressed: w.suppressed,
        acc: [...w.acc].map(([b, c]) => [b, ciphertextToBytes(pk, c)]),
        meters: [...w.meters],
        changed: [...w.changed],
        released: w.released,
      });
    }
    this.dirtyWindows.clear();
    const meters = new Map<string, MeterRecord>();
    for (const id of this.dirtyMeters) {
      const rt = this.meterState.get(id)!;
      meters.set(id, { replay: rt.replay.state(), energy: rt.energy, replayStreak: rt.replayStreak, ...(rt.keyGeneration > 0 ? { keyGeneration: rt.keyGeneration } : {}) });
    }
    this.dirtyMeters.clear();
    const households = new Map(this.dirtyHouseholds);
    this.dirtyHouseholds.clear();
    const outbox = this.outbox;
    this.outbox = [];
    const horizons = this.horizons;
    this.horizons = [];
    const clocks: [string, NeighbourhoodClock][] = [...this.dirtyClocks].map((h) => [h.name, { ...h.clock! }]);
    this.dirtyClocks.clear();
    this.flushed = false;
    const dp = [...this.dirtyDp.values()];
    this.dirtyDp.clear();
    return { windows, horizons, clocks, meters, households, outbox, watermark: this.fleetWatermark, counters: { ...this.counters }, dp, dpEvicted: this.dpEvicted.splice(0) };
  }

  /** Number of windows held in memory: the open ones (closed ones until the checkpoint that writes them). */
  get windowCount(): number {
    return this.windows.size;
  }
}

/** A stored window's released membership (a state file from before the guard: what changed since is not in it). */
function releasedOf(r: WindowRecord): string[] | null {
  if (r.kind !== 'neighbourhood' || r.revision < 0) return null;
  return (r.released ?? r.meters.filter((m) => !r.changed.includes(m))).slice().sort();
}
