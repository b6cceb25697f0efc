/**
 * Blind windows: the end-to-end mode's aggregation, which the PES and the guardian each run on their own copy
 * of the uplinks (the guardian to recompute what it helps decrypt; neither imports the other, so the shared
 * rule lives here). Pure: uplink bytes in, windows to release out; no key that decrypts.
 *
 * Per frame: decode -> meter lookup -> anti-replay (invocation counter seen before: dropped) -> AES-GCM open
 * (authenticity) -> e2e payload (protocol/e2e.ts) -> per snapshot: the first of a meter is its baseline; each
 * later one contributes Enc(R_at) / Enc(R_prev) to the neighbourhood window of time `at - 1` and to the billing
 * window (household x period) of that time, in time order whatever order the frames arrive in (see `fold`).
 * With differential privacy (`dpEpsilon`) neighbourhood windows fold the snapshots' `noisy` ciphertexts instead
 * (the noised totals, protocol/e2e.ts `packNoisy`) and bills the band registers; a frame whose snapshots lack
 * `noisy` is malformed.
 *
 * A window keeps the product of its snapshots (numerator) and of their predecessors (denominator); its
 * ciphertext is num / den, computed at release (one inversion per release, none per reading). The product is
 * the same whoever computes it from the same uplinks, and it is never re-randomised: the PES's and the
 * guardian's partial decryptions must be of the same ciphertext to combine.
 *
 * Release rules (as the classic PES, pes/core/pes.ts): a window closes when the watermark (latest reading end)
 * passes end + lateness; a closed neighbourhood window is released when it covers >= k distinct meters, and
 * again (a revision) only when >= revision-k meters changed it since; a billing window is released whole
 * (closed), and again whenever it changes; the membership guard (docs/privacy.md) holds a neighbourhood release
 * whose membership differs from a released one (or, before the first, from the provisioned one) by 1 to
 * revision-k - 1 meters. A closed window is evicted once the watermark passes end + retention (default two
 * billing periods, as the classic PES); a snapshot whose window is past that horizon is refused (`tooOld`) and
 * the meter keeps its previous snapshot, so the energy goes forward with its next one instead of being lost.
 *
 * Durable state (lib/e2e-state.ts): {@link BlindWindows.checkpoint} hands out only what changed since the last
 * call (dirty windows, meters, evictions), {@link BlindWindows.restore} loads a saved state into a new
 * instance; a restored instance fed the rest of the uplinks releases exactly what an uninterrupted one would.
 *
 * A frame may also carry its household's stream message, sealed by the meter (docs/protocol.md §11.5): nobody
 * here can open it; with {@link BlindWindows.onStream} set, each one of an accepted frame whose envelope names
 * this frame's meter and counter is handed up unchanged, for the PES to forward (others are counted `badStream`).
 * @module
 */
import { differsByFew } from './policy.js';
import { decodeFrame, meterId, openFrame } from '../protocol/frame.js';
import { decodeE2ePayload, MAX_WINDOW_TERMS, type E2eRequest, type E2eSpan } from '../protocol/e2e.js';
import { parseMeterStream } from '../protocol/envelope.js';
import type { PublicKey } from '../protocol/paillier/keys.js';
import { decodeUplink } from '../protocol/uplink.js';
import { nominalSeconds, type BillingPeriod } from './billing-period.js';
import { Calendar } from './calendar.js';
import type { Tariff } from './tariff.js';

/** What a blind aggregator knows of a provisioned meter. */
export interface BlindMeter {
  key: Uint8Array;
  rotated?: Uint8Array[];
  household: string;
  neighbourhood: string;
}

export interface BlindSettings {
  intervalS: number;
  billing: BillingPeriod;
  tz: string;
  tariff: Tariff;
  latenessS: number;
  k: number;
  revisionK: number;
  /** The differencing guard (docs/privacy.md), as the classic PES's; default true. */
  membershipGuard?: boolean;
  /** Closed windows are kept (for revisions) until the watermark passes end + retention; default two billing periods. */
  retentionS?: number;
  /**
   * Differential privacy (docs/privacy.md): the epsilon the meters' noise shares give each neighbourhood
   * release; neighbourhood windows then sum the noised totals. Absent: no noise.
   */
  dpEpsilon?: number;
  /**
   * A frame whose readings end after watermark + maxSkewS or start before watermark - maxSkewS is refused
   * (`absurdTime`, as the classic PES's `--max-skew`): one meter with a clock far ahead must not move the
   * watermark and close every window. Absent: no bound.
   */
  maxSkewS?: number;
}

/** What the folder did (all only grow). */
export interface BlindCounters {
  frames: number;
  readings: number;
  snapshots: number;
  malformedUplink: number;
  malformedFrame: number;
  unknownMeter: number;
  badTag: number;
  replay: number;
  lateSnapshot: number;
  /** Snapshots dropped because a window they would go into already sums MAX_WINDOW_TERMS differences (a meter flooding snapshots); the energy goes forward with the next. */
  windowFull: number;
  /** Snapshots that arrived after a later one of their meter and were folded into time order (see `fold`). */
  reordered: number;
  /** Snapshots whose window was already past the retention horizon (the energy goes forward with the next). */
  tooOld: number;
  suppressed: number;
  revisionHeld: number;
  membershipHeld: number;
  released: number;
  /** Meter-sealed stream messages whose envelope names another meter or frame counter (not forwarded). */
  badStream: number;
  /** Frames whose reading times are further than `maxSkewS` from the watermark (refused; the classic PES's name). */
  absurdTime: number;
  /** Answer mode (the guardian): requests answered. */
  answered: number;
  /** Answer mode: requests still waiting when their window was evicted (refused, `expired`). */
  expired: number;
}

/** One meter's contribution to a window (protocol/e2e.ts {@link E2eSpan}). */
export type MemberSpan = E2eSpan;

/** What the PES asks the guardian to open (protocol/e2e.ts {@link E2eRequest}; docs/paillier.md "Requests"). */
export type BlindRequest = E2eRequest;

/** Why a request is refused (the guardian's answer mode). */
export type RequestRefusal =
  | 'notInterval'
  | 'notBillingPeriod'
  | 'notMember'
  | 'badSpan'
  | 'underK'
  | 'revisionHeld'
  | 'membershipHeld'
  | 'staleRevision'
  | 'notWhole'
  | 'unknownSnapshot'
  | 'ciphertextMismatch'
  | 'dpBudget'
  | 'expired';

/** A window the rules allow to open now. */
export interface BlindRelease {
  kind: 'neighbourhood' | 'billing';
  key: string;
  start: number;
  end: number;
  revision: number;
  /** Distinct meters that contributed. */
  meters: number;
  /** Their ids, sorted. */
  members: string[];
  /** Each member's span, in member order. */
  spans: MemberSpan[];
  ciphertext: bigint;
}

/** A window as the state file keeps it (lib/e2e-state.ts). */
export interface BlindWindowRecord {
  kind: 'neighbourhood' | 'billing';
  key: string;
  start: number;
  end: number;
  num: bigint;
  den: bigint;
  terms: number;
  meters: string[];
  changed: string[];
  revision: number;
  released: string[] | null;
  closed: boolean;
  suppressed: boolean;
  /**
   * Each contributing meter's snapshot times with their exponent (+1 numerator, -1 denominator; they telescope
   * to one {@link MemberSpan}): what this folder itself computed.
   */
  spans: [string, [number, number][]][];
  /** The guardian: a request waiting for its snapshots or for the window to close. */
  pending: BlindRequest | null;
  /** The guardian, until it first answers the window: each meter's own product (numerator, denominator). */
  parts: [string, bigint, bigint][] | null;
  /** The guardian: the request it answered last (its spans and ciphertext). */
  answer: { spans: MemberSpan[]; ciphertext: bigint } | null;
}

/**
 * A meter's runtime as the state file keeps it: anti-replay (highest counter, bitmap of highest - ic), its last
 * snapshot and the earlier ones still within reach of a snapshot arriving out of order (oldest first).
 */
export interface BlindMeterRecord {
  highest: number;
  seen: Uint8Array;
  /** `noisy`: the snapshot's noised-totals ciphertext, when the meters add DP noise shares. */
  last: { at: number; c: bigint; noisy?: bigint } | null;
  earlier?: { at: number; c: bigint; noisy?: bigint }[];
  /** Whether older snapshots were let go (`earlier[0]` or `last` is then not the meter's first). */
  pruned?: boolean;
}

/** The whole state of a folder (what {@link BlindWindows.restore} takes). */
export interface BlindState {
  windows: BlindWindowRecord[];
  meters: Map<string, BlindMeterRecord>;
  watermark: number | null;
  counters: Partial<BlindCounters>;
}

/** What changed since the previous checkpoint. */
export interface BlindCheckpoint {
  windows: BlindWindowRecord[];
  evicted: { kind: 'neighbourhood' | 'billing'; key: string; start: number }[];
  meters: [string, BlindMeterRecord][];
  watermark: number | null;
  counters: BlindCounters;
}

interface Window {
  kind: 'neighbourhood' | 'billing';
  key: string;
  start: number;
  end: number;
  num: bigint;
  den: bigint;
  terms: number;
  meters: Set<string>;
  changed: Set<string>;
  revision: number;
  /** Neighbourhood windows: the meters of the last released revision (sorted), null before. */
  released: string[] | null;
  closed: boolean;
  suppressed: boolean;
  /** See {@link BlindWindowRecord.spans}. */
  spans: Map<string, Map<number, number>>;
  pending: BlindRequest | null;
  /** See {@link BlindWindowRecord.parts} (answer mode; null once answered, and in decide mode). */
  parts: Map<string, { num: bigint; den: bigint }> | null;
  /** See {@link BlindWindowRecord.answer}. */
  answer: { spans: Map<string, MemberSpan>; ciphertext: bigint } | null;
}

/** A meter's snapshot as folded: its band registers `c` and, with DP, its noised totals. */
interface Snap {
  at: number;
  c: bigint;
  noisy?: bigint;
}

interface MeterRt {
  seen: Set<number>;
  highest: number;
  /** The meter's snapshots by time, oldest first: the newest is its last; see {@link BlindWindows.fold}. */
  snaps: Snap[];
  /** Older snapshots were let go: the oldest held is not the meter's baseline. */
  pruned: boolean;
}

/** How far behind a meter's newest snapshot its earlier ones are kept (at least; at most the retention). */
const HISTORY_MIN_S = 86_400;

const SEEN_KEPT = 4096;

/**
 * @example
 * ```ts
 * const w = new BlindWindows(settings, pub, meters);
 * w.ingestUplink(bytes);
 * for (const r of w.takeReleases()) publish(r);
 * ```
 */
export class BlindWindows {
  readonly counters: BlindCounters = { frames: 0, readings: 0, snapshots: 0, malformedUplink: 0, malformedFrame: 0, unknownMeter: 0, badTag: 0, replay: 0, lateSnapshot: 0, windowFull: 0, reordered: 0, tooOld: 0, suppressed: 0, revisionHeld: 0, membershipHeld: 0, released: 0, badStream: 0, absurdTime: 0, answered: 0, expired: 0 };
  readonly calendar: Calendar;
  readonly retentionS: number;
  watermark: number | null = null;
  /**
   * Receives each accepted frame's meter-sealed household stream message (opaque, unchanged) with the
   * household its meter belongs to. Unset (the guardian): they are dropped.
   */
  onStream: ((household: string, sealed: Uint8Array) => void) | null = null;
  private readonly windows = new Map<string, Window>();
  private readonly rt = new Map<string, MeterRt>();
  private readonly toEvaluate = new Set<Window>();
  /** Answer mode: windows holding a request that waits. */
  private readonly pendingWindows = new Set<Window>();
  /** Answer mode: keys with a request answered since the waiting ones were last tried. */
  private readonly answeredKeys = new Set<string>();
  private out: BlindRelease[] = [];
  private readonly dirtyWindows = new Set<Window>();
  private readonly dirtyMeters = new Set<string>();
  private evicted: BlindCheckpoint['evicted'] = [];
  /** Per household, its provisioned meters (a bill must name each one with readings in the period). */
  private readonly households = new Map<string, string[]>();
  /** Per neighbourhood, its provisioned meters: the reference membership before anything is released. */
  private readonly provisioned = new Map<string, Set<string>>();
  /** Per neighbourhood, the distinct memberships of its released windows, with how many windows have each. */
  private readonly releasedMemberships = new Map<string, Map<string, { meters: Set<string>; windows: number }>>();

  /**
   * `mode`: `'decide'` (the PES: the release rules decide, each release names its members' spans) or
   * `'answer'` (the guardian: nothing is released on its own; {@link request} checks what the PES asks for
   * against this folder's own snapshots and the same rules, and answers it, holds it, or refuses it).
   */
  constructor(
    readonly settings: BlindSettings,
    private readonly pub: PublicKey,
    private readonly meters: Map<string, BlindMeter>,
    readonly mode: 'decide' | 'answer' = 'decide',
  ) {
    this.calendar = new Calendar(settings.intervalS, settings.billing, settings.tz, settings.tariff);
    this.retentionS = settings.retentionS ?? 2 * nominalSeconds(settings.billing);
    if (!Number.isSafeInteger(this.retentionS) || this.retentionS <= settings.latenessS) throw new RangeError('retention must be a whole number of seconds longer than the allowed lateness');
    for (const [id, m] of meters) {
      let set = this.provisioned.get(m.neighbourhood);
      if (!set) this.provisioned.set(m.neighbourhood, (set = new Set()));
      set.add(id);
      const hh = this.households.get(m.household);
      if (hh) hh.push(id);
      else this.households.set(m.household, [id]);
    }
  }

  /** One gateway uplink (CBOR `[1, gateway, [frame, ...]]`); a bad frame never stops the others. */
  ingestUplink(bytes: Uint8Array, topicGateway?: string): void {
    let frames: Uint8Array[];
    try {
      const up = decodeUplink(bytes);
      if (topicGateway !== undefined && up.gateway !== topicGateway) throw new TypeError('uplink names another gateway than its topic');
      frames = up.frames;
    } catch {
      this.counters.malformedUplink++;
      return;
    }
    for (const f of frames) this.ingestFrame(f);
    this.settle();
  }

  /** One ciphered frame; call {@link settle} after a batch of them. */
  ingestFrame(bytes: Uint8Array): void {
    let id: string;
    let plaintext: Uint8Array;
    let ic: number;
    try {
      const frame = decodeFrame(bytes);
      id = meterId(frame.systemTitle);
      ic = frame.ic;
      const info = this.meters.get(id);
      if (!info) {
        this.counters.unknownMeter++;
        return;
      }
      const rt = this.runtime(id);
      if (rt.seen.has(ic) || (rt.highest - ic >= SEEN_KEPT && rt.highest >= 0)) {
        this.counters.replay++;
        return;
      }
      const opened = [info.key, ...(info.rotated ?? [])].map((k) => {
        try {
          return openFrame(k, frame);
        } catch {
          return null;
        }
      }).find((p) => p !== null);
      if (!opened) {
        this.counters.badTag++;
        return;
      }
      plaintext = opened;
    } catch {
      this.counters.malformedFrame++;
      return;
    }
    let payload;
    try {
      payload = decodeE2ePayload(this.pub, plaintext);
      if (this.settings.dpEpsilon !== undefined && payload.snapshots.some((s) => s.noisy === undefined)) throw new TypeError('a snapshot without its noised totals while differential privacy is on');
    } catch {
      this.counters.malformedFrame++;
      return;
    }
    const rt = this.runtime(id);
    this.dirtyMeters.add(id);
    rt.seen.add(ic);
    rt.highest = Math.max(rt.highest, ic);
    if (rt.seen.size > SEEN_KEPT) for (const old of rt.seen) if (rt.highest - old >= SEEN_KEPT) rt.seen.delete(old);
    let end = 0;
    for (const r of payload.readings) end = Math.max(end, r.time + r.period);
    const skew = this.settings.maxSkewS;
    // As the classic PES: the counter is spent, nothing of the frame is folded or forwarded, the watermark stays.
    if (skew !== undefined && this.watermark !== null && (end > this.watermark + skew || payload.readings[0]!.time < this.watermark - skew)) {
      this.counters.absurdTime++;
      return;
    }
    const info = this.meters.get(id)!;
    if (payload.stream && this.onStream) {
      const e = parseMeterStream(payload.stream); // decodeE2ePayload checked its shape
      if (meterId(e.systemTitle) === id && e.ic === ic) this.onStream(info.household, payload.stream);
      else this.counters.badStream++;
    }
    for (const s of payload.snapshots) {
      this.counters.snapshots++;
      this.fold(id, info, rt, { at: s.at, c: s.ciphertext, ...(s.noisy !== undefined ? { noisy: s.noisy } : {}) });
    }
    this.counters.frames++;
    this.counters.readings += payload.readings.length;
    if (this.watermark === null || end > this.watermark) this.watermark = end;
  }

  private runtime(id: string): MeterRt {
    let rt = this.rt.get(id);
    if (!rt) this.rt.set(id, (rt = { seen: new Set(), highest: -1, snaps: [], pruned: false }));
    return rt;
  }

  /**
   * Folds one snapshot S of a meter, whatever order the uplinks arrive in (a broker redelivers what a killed
   * subscriber had not acknowledged beside new messages, so the PES and the guardian may each see a meter's
   * frames in another order): the windows must end up with the same ciphertexts as in time order, or the two
   * parties' partials would be of different ciphertexts and never combine. In time order S contributes S / P
   * (P its predecessor) to the windows of time `S.at - 1`; arriving after its successor N, which contributed
   * N / P, S contributes S / P to its own windows and P / S to N's (which then hold N / S: the same group
   * element, so the same ciphertext, as in time order; N's windows change and may be revised). Arriving before
   * the meter's first, S is the new baseline and N's windows get N / S. The meter keeps its snapshots of the
   * last max(lateness, 1 day) behind its newest, and not past the retention horizon (plus the newest one
   * older than that, as a predecessor): one ciphertext per meter and interval, not months of them. A snapshot
   * whose windows are past the horizon is refused (`tooOld`); one older than the meter's kept snapshots, or at
   * a time already held (a repeat), is dropped (`lateSnapshot`): its energy stays with its successor, so
   * nothing is lost or counted twice, but it lands in a later interval, and the PES and the guardian may then
   * hold different ciphertexts for that window (an unpaired revision).
   */
  private fold(id: string, info: BlindMeter, rt: MeterRt, s: Snap): void {
    const snaps = rt.snaps;
    if (snaps.length === 0) {
      snaps.push(s); // the meter's baseline
      return;
    }
    let i = snaps.length;
    while (i > 0 && snaps[i - 1]!.at >= s.at) i--;
    if (this.gone(s.at - 1)) {
      this.counters.tooOld++;
      return;
    }
    if (snaps[i]?.at === s.at || (i === 0 && rt.pruned)) {
      this.counters.lateSnapshot++;
      return;
    }
    const p = snaps[i - 1];
    const n = snaps[i];
    if ((p && this.full(info, s.at - 1)) || (n && this.full(info, n.at - 1))) {
      this.counters.windowFull++; // refused before anything changed: no crash loop on a redelivered uplink
      return;
    }
    if (p) this.contribute(id, info, s.at - 1, s, p);
    if (n) {
      this.counters.reordered++;
      this.contribute(id, info, n.at - 1, p ?? n, s);
    }
    snaps.splice(i, 0, s);
    // Keep the newest snapshot before the history (a predecessor still needed) and everything after it.
    const history = Math.min(this.retentionS, Math.max(this.settings.latenessS, HISTORY_MIN_S));
    const newest = snaps[snaps.length - 1]!.at;
    while (snaps.length > 1 && (this.gone(snaps[1]!.at - 1) || snaps[1]!.at < newest - history)) {
      snaps.shift();
      rt.pruned = true;
    }
  }

  /**
   * Multiplies num / den into the neighbourhood and billing windows of time `t` of a meter: the band-register
   * ciphertexts, or with DP the noised totals for the neighbourhood window.
   */
  private contribute(id: string, info: BlindMeter, t: number, num: Snap, den: Snap): void {
    const nbStart = this.calendar.intervalStart(t);
    const slot = this.calendar.billing(t);
    for (const w of [this.window('neighbourhood', info.neighbourhood, nbStart, nbStart + this.settings.intervalS), this.window('billing', info.household, slot.start, slot.end)]) {
      if (w.terms >= MAX_WINDOW_TERMS) throw new RangeError('window packing budget exhausted');
      w.terms++;
      w.meters.add(id);
      const noised = w.kind === 'neighbourhood' && this.settings.dpEpsilon !== undefined;
      const n = noised ? num.noisy! : num.c;
      const d = noised ? den.noisy! : den.c;
      if (this.mode === 'decide') {
        w.num = (w.num * n) % this.pub.n2;
        w.den = (w.den * d) % this.pub.n2;
      } else if (w.parts) {
        // The guardian, until it answers the window: per meter, so that it can open the members the PES names.
        const p = w.parts.get(id);
        if (p) {
          p.num = (p.num * n) % this.pub.n2;
          p.den = (p.den * d) % this.pub.n2;
        } else w.parts.set(id, { num: n, den: d });
      }
      let t = w.spans.get(id);
      if (!t) w.spans.set(id, (t = new Map()));
      for (const [at, e] of [[num.at, 1], [den.at, -1]] as const) {
        const v = (t.get(at) ?? 0) + e;
        if (v === 0) t.delete(at);
        else t.set(at, v);
      }
      w.changed.add(id);
      this.dirtyWindows.add(w);
      if (w.closed) this.toEvaluate.add(w);
    }
  }

  /** Whether a window of time `t` of this meter already sums the most differences the packing allows. */
  private full(info: BlindMeter, t: number): boolean {
    const nb = this.windows.get(`neighbourhood|${info.neighbourhood}|${this.calendar.intervalStart(t)}`);
    const bill = this.windows.get(`billing|${info.household}|${this.calendar.billing(t).start}`);
    return (nb?.terms ?? 0) + 2 > MAX_WINDOW_TERMS || (bill?.terms ?? 0) + 2 > MAX_WINDOW_TERMS; // a reordered snapshot adds two
  }

  /** Whether the windows of time `t` are past the retention horizon (as the classic PES's rule). */
  private gone(t: number): boolean {
    const wm = this.watermark;
    if (wm === null) return false;
    return this.calendar.intervalStart(t) + this.settings.intervalS + this.retentionS < wm || this.calendar.billing(t).end + this.retentionS < wm;
  }

  private window(kind: Window['kind'], key: string, start: number, end: number): Window {
    const id = `${kind}|${key}|${start}`;
    let w = this.windows.get(id);
    if (!w) {
      const closed = this.watermark !== null && this.watermark > end + this.settings.latenessS;
      w = { kind, key, start, end, num: 1n, den: 1n, terms: 0, meters: new Set(), changed: new Set(), revision: -1, released: null, closed, suppressed: false, spans: new Map(), pending: null, parts: this.mode === 'answer' ? new Map() : null, answer: null };
      this.windows.set(id, w);
    }
    return w;
  }

  /** Closes the windows the watermark passed and evaluates what changed. */
  settle(): void {
    const wm = this.watermark;
    if (wm !== null) {
      for (const w of this.windows.values()) {
        if (!w.closed && wm > w.end + this.settings.latenessS) {
          w.closed = true;
          this.dirtyWindows.add(w);
          this.toEvaluate.add(w);
        }
      }
    }
    this.evaluate();
    if (wm !== null) this.evict(wm);
  }

  /** Windows held in memory (open and retained). */
  get windowCount(): number {
    return this.windows.size;
  }

  /** Drops closed windows past the retention horizon (the classic PES's rule). */
  private evict(wm: number): void {
    for (const [id, w] of this.windows) {
      if (!w.closed || w.end + this.retentionS >= wm) continue;
      this.windows.delete(id);
      this.dirtyWindows.delete(w);
      this.toEvaluate.delete(w);
      this.evicted.push({ kind: w.kind, key: w.key, start: w.start });
      if (w.released) this.remember(w.key, w.released, -1);
      if (w.pending) {
        this.counters.expired++;
        this.pendingWindows.delete(w);
        this.onRefusal?.(w.pending, 'expired', 'still waiting when its window passed the retention horizon');
      }
    }
  }

  /**
   * Everything that changed since the previous call, ready to persist (lib/e2e-state.ts); call it after
   * {@link takeReleases}, in the same transaction as the releases.
   * @example
   * ```ts
   * w.ingestUplink(bytes);
   * store.commit(w.checkpoint(), outbox(w.takeReleases()));
   * ```
   */
  checkpoint(): BlindCheckpoint {
    const windows = [...this.dirtyWindows].map((w) => ({ kind: w.kind, key: w.key, start: w.start, end: w.end, num: w.num, den: w.den, terms: w.terms, meters: [...w.meters], changed: [...w.changed], revision: w.revision, released: w.released, closed: w.closed, suppressed: w.suppressed, spans: [...w.spans].map(([id, t]): [string, [number, number][]] => [id, [...t]]), pending: w.pending, parts: w.parts ? [...w.parts].map(([id, p]): [string, bigint, bigint] => [id, p.num, p.den]) : null, answer: w.answer ? { spans: [...w.answer.spans.values()], ciphertext: w.answer.ciphertext } : null }));
    const meters: [string, BlindMeterRecord][] = [...this.dirtyMeters].map((id) => {
      const rt = this.rt.get(id)!;
      const seen = new Uint8Array(SEEN_KEPT / 8);
      for (const ic of rt.seen) {
        const d = rt.highest - ic;
        if (d >= 0 && d < SEEN_KEPT) seen[d >> 3]! |= 1 << (d & 7);
      }
      return [id, { highest: rt.highest, seen, last: rt.snaps.at(-1) ?? null, ...(rt.snaps.length > 1 ? { earlier: rt.snaps.slice(0, -1) } : {}), ...(rt.pruned ? { pruned: true } : {}) }];
    });
    const evicted = this.evicted;
    this.dirtyWindows.clear();
    this.dirtyMeters.clear();
    this.evicted = [];
    return { windows, evicted, meters, watermark: this.watermark, counters: { ...this.counters } };
  }

  /**
   * Loads a saved state into this (new) instance: windows, meters' anti-replay and last snapshots, watermark,
   * counters; the released memberships the membership guard compares with are rebuilt from the windows.
   * @example
   * ```ts
   * const w = new BlindWindows(settings, pub, meters);
   * w.restore(store.load());
   * ```
   */
  restore(state: BlindState): void {
    if (this.windows.size > 0 || this.rt.size > 0) throw new Error('restore() needs a new BlindWindows');
    for (const r of state.windows) {
      const w: Window = { kind: r.kind, key: r.key, start: r.start, end: r.end, num: r.num, den: r.den, terms: r.terms, meters: new Set(r.meters), changed: new Set(r.changed), revision: r.revision, released: r.released, closed: r.closed, suppressed: r.suppressed, spans: new Map(r.spans.map(([id, t]) => [id, new Map(t)])), pending: r.pending, parts: r.parts ? new Map(r.parts.map(([id, num, den]) => [id, { num, den }])) : null, answer: r.answer ? { spans: new Map(r.answer.spans.map((sp) => [sp.meter, sp])), ciphertext: r.answer.ciphertext } : null };
      this.windows.set(`${w.kind}|${w.key}|${w.start}`, w);
      if (w.released) this.remember(w.key, w.released, +1);
      if (w.pending) this.pendingWindows.add(w);
    }
    for (const [id, m] of state.meters) {
      const seen = new Set<number>();
      for (let d = 0; d < SEEN_KEPT; d++) if ((m.seen[d >> 3]! >> (d & 7)) & 1) seen.add(m.highest - d);
      this.rt.set(id, { seen, highest: m.highest, snaps: [...(m.earlier ?? []), ...(m.last ? [m.last] : [])], pruned: m.pruned === true });
    }
    this.watermark = state.watermark;
    for (const k of Object.keys(this.counters) as (keyof BlindCounters)[]) {
      const v = state.counters[k];
      if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) this.counters[k] = v;
    }
  }

  /** Closes every window (end of a replay) and evaluates them. */
  flush(): void {
    for (const w of this.windows.values()) {
      if (w.closed) continue;
      w.closed = true;
      this.dirtyWindows.add(w);
      this.toEvaluate.add(w);
    }
    this.evaluate();
  }

  /** The releases decided since the last call. */
  takeReleases(): BlindRelease[] {
    const out = this.out;
    this.out = [];
    return out;
  }

  /**
   * Receives every refusal of a request, the ones decided later for a request that waited included (the
   * guardian counts and logs them). Unset: refusals are only returned.
   */
  onRefusal: ((req: BlindRequest, refused: RequestRefusal, reason: string) => void) | null = null;

  /**
   * Answer mode: the last check before a new revision is answered, after every rule above (the guardian's DP
   * ledger): returns why it must be refused (`dpBudget`), or null to answer (and then charges it).
   */
  admit: ((req: BlindRequest) => string | null) | null = null;

  /**
   * Answer mode (the guardian; docs/paillier.md "Requests"): checks what the PES asks to open against this
   * folder's own snapshots and the release rules, and either answers (the window's ciphertext, recomputed here
   * from the meters' own snapshots as the request's spans name them, queued for {@link takeReleases}), holds
   * the request (the window is still open here, or a snapshot it names has not arrived yet: tried again with
   * every uplink, refused `expired` if its window is evicted first), or refuses it. The rules: the window is one
   * interval or one whole billing period; every span is of a provisioned meter of that neighbourhood or
   * household and anchored in the window (its `to` in it, its `from` at or before its start); a neighbourhood
   * window names >= k meters and, after a first answer, changes >= revision-k of them (the membership guard as
   * the PES's); a bill names every meter of the household with readings in the period, from its last snapshot
   * before the period to its last in it, as this folder holds them. The same request again (same revision and
   * spans, e.g. re-published after a crash) is answered again.
   * @example
   * ```ts
   * const g = new BlindWindows(settings, pub, meters, 'answer');
   * g.ingestUplink(bytes);
   * const a = g.request(parseRequest(pub, body)); // { answered: true } | { pending } | { refused, reason }
   * for (const r of g.takeReleases()) publish(partialOf(r.ciphertext));
   * ```
   */
  request(req: BlindRequest): { answered: true } | { pending: string } | { refused: RequestRefusal; reason: string } {
    if (this.mode !== 'answer') throw new Error("request() is the answer mode's (the guardian)");
    const existing = this.windows.get(`${req.kind}|${req.key}|${req.start}`);
    const waiting = existing?.pending && sameRequest(existing.pending, req) ? existing.pending : null;
    const refuse = (refused: RequestRefusal, reason: string) => {
      if (existing && waiting) {
        existing.pending = null;
        this.pendingWindows.delete(existing);
        this.dirtyWindows.add(existing);
      }
      this.onRefusal?.(req, refused, reason);
      return { refused, reason };
    };
    const cal = this.calendar;
    if (req.kind === 'neighbourhood') {
      if (req.start !== cal.intervalStart(req.start) || req.end !== req.start + this.settings.intervalS) return refuse('notInterval', 'not one neighbourhood interval');
    } else {
      const slot = cal.billing(req.start);
      if (slot.start !== req.start || slot.end !== req.end) return refuse('notBillingPeriod', 'not one whole billing period');
    }
    // Only windows this folder may still hold: not past the retention horizon (an evicted window answered again
    // would have no history to judge a revision by), not beyond the watermark's skew bound.
    const wm = this.watermark;
    if (wm !== null && req.end + this.retentionS < wm) return refuse('expired', 'the window is past the retention horizon');
    if (wm !== null && req.start > wm + (this.settings.maxSkewS ?? 7 * 86_400)) return refuse('badSpan', 'the window lies beyond the watermark by more than the allowed skew');
    if (req.spans.length === 0) return refuse('badSpan', 'the request names no meter');
    const named = new Map<string, MemberSpan>();
    for (const sp of req.spans) {
      const m = this.meters.get(sp.meter);
      if (!m || (req.kind === 'neighbourhood' ? m.neighbourhood : m.household) !== req.key) return refuse('notMember', `meter ${sp.meter} is not a provisioned meter of ${req.kind} ${req.key}`);
      if (named.has(sp.meter)) return refuse('badSpan', `meter ${sp.meter} is named twice`);
      named.set(sp.meter, sp);
      if (!(sp.from < sp.to) || sp.to <= req.start || sp.to > req.end) return refuse('badSpan', `the span ${sp.from}..${sp.to} of meter ${sp.meter} does not end in the window`);
    }
    if (req.kind === 'neighbourhood' && named.size < this.settings.k) return refuse('underK', `the request names ${named.size} meters, fewer than k`);
    const w = existing ?? this.window(req.kind, req.key, req.start, req.end);
    const again = w.answer !== null && req.revision === w.revision && req.ciphertext === w.answer.ciphertext && sameMembers(w.answer.spans, req.spans);
    if (req.revision <= w.revision && !again) return refuse('staleRevision', `revision ${req.revision} is not after the one answered (${w.revision})`);
    const hold = (reason: string) => {
      if (w.pending && !waiting && w.pending.revision > req.revision) return refuse('staleRevision', `a later revision (${w.pending.revision}) is waiting`);
      if (!waiting) {
        if (w.pending) this.onRefusal?.(w.pending, 'staleRevision', `superseded by revision ${req.revision} before it could be answered`);
        w.pending = req;
        this.pendingWindows.add(w);
        this.dirtyWindows.add(w);
      }
      return { pending: reason };
    };
    if (again) return this.answer(w, req, w.answer!.ciphertext, false);
    if (!w.closed) return hold('the window is still open here');
    // Each member's span must be the one this folder's own fold gives the window (its last snapshot at or before
    // the start to its last in the window): a snapshot difference belongs to exactly one window, so no request
    // can reach back over intervals another window opened, or move spans between revisions at will.
    for (const sp of req.spans) {
      const own = spanOrNull(w.spans.get(sp.meter));
      if (own && own.from === sp.from && own.to === sp.to) continue;
      // An end that differs from this folder's own: if it names a snapshot not here (yet), wait for it.
      const rt = this.rt.get(sp.meter);
      const snaps = rt?.snaps ?? [];
      const differing = [sp.from, sp.to].filter((at, i) => at !== (i === 0 ? own?.from : own?.to));
      const missing = differing.find((at) => !snaps.some((x) => x.at === at) && !(rt?.pruned && at < snaps[0]!.at));
      if (missing !== undefined) return hold(`meter ${sp.meter}'s snapshot at ${missing} has not arrived here`);
      return refuse('notWhole', `meter ${sp.meter}'s span ${sp.from}..${sp.to} is not its span in this window here; the PES revises the window when it has the same snapshots`);
    }
    if (req.kind === 'billing') {
      for (const [id, t] of w.spans) if (t.size > 0 && !named.has(id)) return refuse('notWhole', `meter ${id} of the household has readings in the period and is not named`);
    } else {
      if (w.answer !== null) {
        let changed = 0;
        for (const sp of req.spans) {
          const old = w.answer.spans.get(sp.meter);
          if (!old || old.from !== sp.from || old.to !== sp.to) changed++;
        }
        for (const id of w.answer.spans.keys()) if (!named.has(id)) changed++;
        if (changed < this.settings.revisionK) return refuse('revisionHeld', `revision ${req.revision} changes ${changed} meters, fewer than revision-k`);
      }
      if (this.settings.membershipGuard !== false && this.differencing(req.key, new Set(named.keys()), w.released)) {
        // Judged against what was answered so far: while another request of the neighbourhood waits, the
        // answer may yet change that reference, so this one waits too (the PES judged both in its order).
        if ([...this.pendingWindows].some((o) => o !== w && o.key === req.key && o.kind === 'neighbourhood')) return hold('another request of the neighbourhood waits, which the membership guard may compare with');
        return refuse('membershipHeld', 'its membership differs from a released one by fewer than revision-k meters');
      }
    }
    // The ciphertext, recomputed here: each member's own product until the first answer (the spans are this
    // folder's own); then the answered ciphertext times each changed member's new span over its answered one.
    const terms = new Map<string, Map<number, number>>();
    const add = (meter: string, at: number, e: number) => {
      let t = terms.get(meter);
      if (!t) terms.set(meter, (t = new Map()));
      const v = (t.get(at) ?? 0) + e;
      if (v === 0) t.delete(at);
      else t.set(at, v);
    };
    let num = 1n;
    let den = 1n;
    const n2 = this.pub.n2;
    if (w.answer === null) {
      for (const sp of req.spans) {
        const part = w.parts?.get(sp.meter);
        if (part) {
          num = (num * part.num) % n2;
          den = (den * part.den) % n2;
        } else {
          add(sp.meter, sp.to, 1);
          add(sp.meter, sp.from, -1);
        }
      }
    } else {
      num = w.answer.ciphertext;
      for (const sp of req.spans) {
        const old = w.answer.spans.get(sp.meter);
        if (old && old.from === sp.from && old.to === sp.to) continue;
        add(sp.meter, sp.to, 1);
        add(sp.meter, sp.from, -1);
        if (old) {
          add(old.meter, old.to, -1);
          add(old.meter, old.from, 1);
        }
      }
      for (const old of w.answer.spans.values()) {
        if (named.has(old.meter)) continue;
        add(old.meter, old.to, -1);
        add(old.meter, old.from, 1);
      }
    }
    const noised = req.kind === 'neighbourhood' && this.settings.dpEpsilon !== undefined;
    for (const [meter, t] of terms) {
      const snaps = this.rt.get(meter)?.snaps ?? [];
      for (const [at, e] of t) {
        const snap = snaps.find((x) => x.at === at);
        if (!snap) return refuse('unknownSnapshot', `meter ${meter}'s snapshot at ${at} is no longer kept here`);
        const c = noised ? snap.noisy! : snap.c;
        for (let k = 0; k < Math.abs(e); k++) {
          if (e > 0) num = (num * c) % n2;
          else den = (den * c) % n2;
        }
      }
    }
    const ciphertext = this.pub.add(num, this.pub.mulPlain(den, -1n));
    if (ciphertext !== req.ciphertext) return refuse('ciphertextMismatch', 'the ciphertext is not the product of the named snapshots');
    const over = this.admit?.(req) ?? null;
    if (over !== null) return refuse('dpBudget', over);
    if (req.kind === 'neighbourhood') {
      if (w.released) this.remember(w.key, w.released, -1);
      w.released = [...named.keys()].sort();
      this.remember(w.key, w.released, +1);
    }
    w.answer = { spans: named, ciphertext };
    w.parts = null;
    return this.answer(w, req, ciphertext, true);
  }

  /** Queues the answer; a waiting request of an older revision is superseded (refused), a newer one stays. */
  private answer(w: Window, req: BlindRequest, ciphertext: bigint, fresh: boolean): { answered: true } {
    w.revision = Math.max(w.revision, req.revision);
    if (w.pending && (sameRequest(w.pending, req) || w.pending.revision < req.revision)) {
      if (!sameRequest(w.pending, req)) this.onRefusal?.(w.pending, 'staleRevision', `superseded by revision ${req.revision}`);
      w.pending = null;
      this.pendingWindows.delete(w);
    }
    this.dirtyWindows.add(w);
    this.counters.answered++;
    if (fresh) this.answeredKeys.add(w.key);
    const members = req.spans.map((sp) => sp.meter).sort();
    this.out.push({ kind: req.kind, key: req.key, start: req.start, end: req.end, revision: req.revision, meters: members.length, members, spans: req.spans, ciphertext });
    return { answered: true };
  }

  /** Answer mode: requests waiting (for snapshots, or for their window to close here). */
  get pendingRequests(): number {
    return this.pendingWindows.size;
  }

  private ciphertext(w: Window): bigint {
    return this.pub.add(w.num, this.pub.mulPlain(w.den, -1n));
  }

  private evaluate(): void {
    if (this.mode === 'answer') {
      // A waiting request is tried again when its window closed or changed here, a meter it names brought a
      // snapshot, or another request of its key was answered (the membership guard's reference moved).
      let retry = [...this.pendingWindows].filter((w) => this.toEvaluate.has(w) || w.pending!.spans.some((sp) => this.dirtyMeters.has(sp.meter)));
      this.toEvaluate.clear();
      this.answeredKeys.clear();
      while (retry.length > 0) {
        for (const w of retry) if (w.pending) this.request(w.pending);
        retry = [...this.pendingWindows].filter((w) => this.answeredKeys.has(w.key));
        this.answeredKeys.clear();
      }
      return;
    }
    if (this.toEvaluate.size === 0) return;
    const list = [...this.toEvaluate].sort((a, b) => a.start - b.start || (a.kind + a.key < b.kind + b.key ? -1 : 1));
    this.toEvaluate.clear();
    for (const w of list) this.release(w);
  }

  private release(w: Window): void {
    const { k, revisionK } = this.settings;
    if (w.kind === 'neighbourhood') {
      if (w.revision < 0 && w.meters.size < k) {
        if (!w.suppressed) {
          w.suppressed = true;
          this.dirtyWindows.add(w);
          this.counters.suppressed++;
        }
        return;
      }
      if (w.revision >= 0 && w.changed.size < revisionK) {
        this.counters.revisionHeld++;
        return;
      }
      if (this.settings.membershipGuard !== false && this.differencing(w.key, w.meters, w.released)) {
        this.counters.membershipHeld++;
        return;
      }
    } else if (w.changed.size === 0) return;
    w.revision++;
    this.dirtyWindows.add(w);
    w.changed.clear();
    w.suppressed = false;
    if (w.kind === 'neighbourhood') {
      if (w.released) this.remember(w.key, w.released, -1);
      w.released = [...w.meters].sort();
      this.remember(w.key, w.released, +1);
    }
    this.counters.released++;
    const members = [...w.meters].sort();
    this.out.push({ kind: w.kind, key: w.key, start: w.start, end: w.end, revision: w.revision, meters: members.length, members, spans: members.map((m) => spanOf(m, w.spans.get(m))), ciphertext: this.ciphertext(w) });
  }

  /**
   * The differencing rule, as the classic PES's (pes/core/pes.ts): would releasing `w` let the MDMS subtract two
   * releases of its neighbourhood that differ by 1 to revision-k - 1 meters? Compared with every distinct
   * membership released for the neighbourhood by another window; before the first release, with the
   * neighbourhood's provisioned meters.
   */
  private differencing(nb: string, members: Set<string>, released: string[] | null): boolean {
    const kg = this.settings.revisionK;
    if (kg <= 1) return false;
    const own = released?.join(',');
    const refs: Set<string>[] = [];
    for (const [key, m] of this.releasedMemberships.get(nb) ?? []) if (m.windows > (key === own ? 1 : 0)) refs.push(m.meters);
    if (refs.length === 0) refs.push(this.provisioned.get(nb) ?? new Set());
    return differsByFew(members, refs, kg);
  }

  private remember(nb: string, meters: string[], delta: 1 | -1): void {
    let byKey = this.releasedMemberships.get(nb);
    if (!byKey) this.releasedMemberships.set(nb, (byKey = new Map()));
    const key = meters.join(',');
    const m = byKey.get(key);
    if (m) m.windows += delta;
    else if (delta > 0) byKey.set(key, { meters: new Set(meters), windows: 1 });
    if (m && m.windows <= 0) byKey.delete(key);
  }
}

/** A member's span from its snapshot times and exponents (they telescope to one `to` over one `from`). */
function spanOf(meter: string, terms: Map<number, number> | undefined): MemberSpan {
  const span = spanOrNull(terms);
  if (!span) throw new Error(`internal: meter ${meter}'s snapshot differences in a window do not telescope (${JSON.stringify([...(terms ?? [])])})`);
  return { meter, ...span };
}

/** A member's span from its terms, or null when they do not (yet) telescope to one. */
function spanOrNull(terms: Map<number, number> | undefined): { from: number; to: number } | null {
  if (!terms || terms.size !== 2) return null;
  let from: number | undefined;
  let to: number | undefined;
  for (const [at, e] of terms) {
    if (e === 1) to = at;
    else if (e === -1) from = at;
  }
  return from !== undefined && to !== undefined ? { from, to } : null;
}

function sameRequest(a: BlindRequest, b: BlindRequest): boolean {
  return a === b || (a.kind === b.kind && a.key === b.key && a.start === b.start && a.revision === b.revision && a.ciphertext === b.ciphertext && a.spans.length === b.spans.length && a.spans.every((sp, i) => sp.meter === b.spans[i]!.meter && sp.from === b.spans[i]!.from && sp.to === b.spans[i]!.to));
}

function sameMembers(answered: Map<string, MemberSpan>, spans: MemberSpan[]): boolean {
  return answered.size === spans.length && spans.every((sp) => answered.get(sp.meter)?.from === sp.from && answered.get(sp.meter)?.to === sp.to);
}

/** The release flags the blind PES and the guardian share (their commands take the same names). */
export interface BlindFlags {
  interval: number;
  tz?: string;
  lateness: number;
  k: number;
  revisionK?: number;
  membershipGuard: boolean;
  dpEpsilon?: number;
  retention?: number;
  /** Seconds (`--max-skew`). */
  maxSkew?: number;
}

/**
 * The settings of a blind aggregator from its command's flags: revision-k defaults to k, the zone to the
 * tariff's. Both parties must run with the same settings or their ciphertexts do not pair.
 * @example
 * ```ts
 * const settings = blindSettingsOf(flags, parseBillingPeriod('1d'), FLAT_TARIFF);
 * ```
 */
export function blindSettingsOf(f: BlindFlags, billing: BillingPeriod, tariff: Tariff): BlindSettings {
  return {
    intervalS: f.interval,
    billing,
    tz: f.tz ?? tariff.tz,
    tariff,
    latenessS: f.lateness,
    k: f.k,
    revisionK: f.revisionK ?? f.k,
    membershipGuard: f.membershipGuard,
    ...(f.dpEpsilon !== undefined ? { dpEpsilon: f.dpEpsilon } : {}),
    ...(f.retention !== undefined ? { retentionS: f.retention } : {}),
    ...(f.maxSkew !== undefined ? { maxSkewS: f.maxSkew } : {}),
  };
}
