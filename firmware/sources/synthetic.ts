/**
 * `synthetic:<seed>`: a deterministic appliance-level household load model at 1-minute resolution.
 *
 * Each household (seed) has fixed appliance ratings; each local day gets a plan drawn from a PRNG seeded by
 * (seed, local date), so any minute can be computed without replaying the ones before it (a meter resumes
 * anywhere) and the same seed always gives the same series. A day plan has:
 * - occupancy: asleep until waking, home, away at work on weekdays (most households) or on an outing on
 *   some weekend days, home in the evening, asleep from bedtime;
 * - a fridge compressor cycling all day; a kettle in the morning and often in the evening; an oven on some
 *   evenings; a washing machine on some days; lighting while someone is home, awake and it is dark
 *   (before 07:00 and after 18:30 local);
 * - a base load with ±15 W of uniform noise per minute.
 * Invariants (tested): kettle, oven, washer and lighting run only while the occupancy state is `home`;
 * every minute's power minus the appliances on in that minute lies within the base load ± 15 W; occupancy
 * intervals tile the time range. Appliance switching happens on whole minutes.
 *
 * Minutes of a day are counted from local midnight in absolute time, so on a DST day the schedule's wall
 * times are one hour off after the change, and a day has 1380 or 1500 minutes; this is a model, not a clock.
 *
 * PRNG: mulberry32 by Tommy Ettinger (public domain), as listed in bryc/code "PRNGs.md"; seeds are mixed
 * with the MurmurHash3 32-bit finaliser (fmix32, Austin Appleby, public domain).
 * @module
 */
import { createWriteStream } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { once } from 'node:events';
import { DateTime, IANAZone } from 'luxon';
import type { Sample, Source } from '../hal/source.js';

/** Sample period of the model, seconds. */
export const SYNTHETIC_PERIOD = 60;
/** Half-width of the base-load noise, mW. */
export const BASE_NOISE_MILLIW = 15_000;
const DARK_BEFORE = 7 * 60;
const DARK_FROM = 18 * 60 + 30;

export type Appliance = 'fridge' | 'kettle' | 'oven' | 'washer' | 'lighting';
export type Occupancy = 'asleep' | 'home' | 'away';

/** An appliance running at constant `powerW` over `[start, end)` (Unix s). */
export interface ApplianceInterval {
  appliance: Appliance;
  start: number;
  end: number;
  powerW: number;
}

/** The household's occupancy over `[start, end)` (Unix s). */
export interface OccupancyInterval {
  state: Occupancy;
  start: number;
  end: number;
}

/** Fixed ratings of one synthetic household. */
export interface Household {
  baseW: number;
  fridgeW: number;
  fridgeOnMin: number;
  fridgeOffMin: number;
  kettleW: number;
  ovenW: number;
  washerW: number;
  lightingW: number;
  /** Whether the household is away at work on weekdays. */
  commutes: boolean;
}

/** What the model did over a time range: the answer a privacy attack tries to recover. */
export interface GroundTruth {
  version: 1;
  model: 'synthetic-v1';
  seed: number;
  tz: string;
  start: number;
  end: number;
  periodS: number;
  household: Household;
  occupancy: OccupancyInterval[];
  appliances: ApplianceInterval[];
}

export interface SyntheticOptions {
  /** Household seed, an unsigned 32-bit integer. */
  seed: number;
  /** First sample time, Unix seconds, on a whole minute. */
  start: number;
  /** Length in days of 86400 s; omitted = endless. */
  days?: number;
  /** IANA zone of the household's daily routine (default UTC). */
  tz?: string;
}

/**
 * mulberry32 PRNG: uniform floats in [0, 1) from a 32-bit state.
 * @example
 * ```ts
 * const rnd = mulberry32(42); rnd(); // 0.6011037519201636
 * ```
 */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Mixes two 32-bit values into one seed (MurmurHash3 fmix32 over a ^ rotated b). */
function mix(a: number, b: number): number {
  let h = (a ^ Math.imul(b, 0x9e3779b1) ^ (b >>> 16)) >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * Parses a `synthetic:<seed>` source spec; returns the seed, or `undefined` if `spec` is not one.
 * Throws if it is one with a bad seed.
 * @example
 * ```ts
 * parseSyntheticSpec('synthetic:42'); // 42
 * parseSyntheticSpec('data/apt.csv'); // undefined
 * ```
 */
export function parseSyntheticSpec(spec: string): number | undefined {
  if (!spec.startsWith('synthetic:')) return undefined;
  const text = spec.slice('synthetic:'.length);
  const seed = Number(text);
  if (!/^\d{1,10}$/.test(text) || seed > 0xffffffff) throw new RangeError(`synthetic seed must be an integer in 0..4294967295, got "${text}"`);
  return seed;
}

/** One local day's plan, in minutes from local midnight. */
interface DayPlan {
  midnight: number;
  next: number;
  occupancy: { state: Occupancy; from: number; to: number }[];
  appliances: { appliance: Appliance; from: number; to: number; powerW: number }[];
  /** Total power per minute, mW. */
  power: Int32Array;
}

/**
 * The household load model of one seed.
 * @example
 * ```ts
 * const model = new SyntheticModel(7, 'Europe/London');
 * model.powerMilliW(1_700_000_040); // power of the minute starting then
 * ```
 */
export class SyntheticModel {
  readonly household: Household;
  private readonly zone: IANAZone;
  private plan: DayPlan | undefined;

  constructor(readonly seed: number, readonly tz = 'UTC') {
    if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw new RangeError('synthetic seed must be an integer in 0..4294967295');
    if (!IANAZone.isValidZone(tz)) throw new RangeError(`unknown time zone "${tz}"`);
    this.zone = IANAZone.create(tz);
    const r = mulberry32(mix(seed, 0x48485348));
    const int = (lo: number, span: number) => lo + Math.floor(r() * span);
    this.household = {
      baseW: int(60, 90),
      fridgeW: int(80, 50),
      fridgeOnMin: int(12, 8),
      fridgeOffMin: int(25, 15),
      kettleW: int(1800, 1200),
      ovenW: int(2000, 600),
      washerW: int(400, 300),
      lightingW: int(60, 180),
      commutes: r() < 0.85,
    };
  }

  /** Power of the minute starting at `time` (Unix s, on a whole minute), mW. */
  powerMilliW(time: number): number {
    const plan = this.dayPlan(time);
    return plan.power[Math.floor((time - plan.midnight) / 60)]!;
  }

  /** Ground truth (occupancy and appliance intervals) clipped to `[start, end)`. */
  groundTruth(start: number, end: number): Pick<GroundTruth, 'occupancy' | 'appliances'> {
    const occupancy: OccupancyInterval[] = [];
    const appliances: ApplianceInterval[] = [];
    for (let t = start; t < end; ) {
      const plan = this.dayPlan(t);
      const clip = (from: number, to: number) => [Math.max(plan.midnight + from * 60, start), Math.min(plan.midnight + to * 60, end)] as const;
      for (const o of plan.occupancy) {
        const [s, e] = clip(o.from, o.to);
        if (s >= e) continue;
        const last = occupancy[occupancy.length - 1];
        if (last && last.state === o.state && last.end === s) last.end = e;
        else occupancy.push({ state: o.state, start: s, end: e });
      }
      for (const a of plan.appliances) {
        const [s, e] = clip(a.from, a.to);
        if (s < e) appliances.push({ appliance: a.appliance, start: s, end: e, powerW: a.powerW });
      }
      t = plan.next;
    }
    appliances.sort((a, b) => a.start - b.start || a.appliance.localeCompare(b.appliance));
    return { occupancy, appliances };
  }

  private dayPlan(time: number): DayPlan {
    if (this.plan && time >= this.plan.midnight && time < this.plan.next) return this.plan;
    const day = DateTime.fromSeconds(time, { zone: this.zone }).startOf('day');
    const midnight = day.toSeconds();
    const next = day.plus({ days: 1 }).toSeconds();
    this.plan = this.drawDay(midnight, next, Date.UTC(day.year, day.month - 1, day.day) / 86_400_000, day.weekday >= 6);
    return this.plan;
  }

  private drawDay(midnight: number, next: number, ordinal: number, weekend: boolean): DayPlan {
    const h = this.household;
    const r = mulberry32(mix(this.seed, ordinal >>> 0));
    const int = (lo: number, span: number) => lo + Math.floor(r() * span);
    const len = (next - midnight) / 60;

    const wake = weekend ? int(450, 120) : int(360, 60);
    const sleep = Math.min(len - 1, weekend ? int(1380, 50) : int(1350, 60));
    let away: [number, number] | undefined;
    if (!weekend && h.commutes) {
      const leave = wake + int(45, 45);
      away = [leave, int(1020, 90)];
    } else if (weekend && r() < 0.5) {
      const leave = int(600, 240);
      away = [leave, leave + int(120, 180)];
    }
    const occupancy: DayPlan['occupancy'] = [{ state: 'asleep', from: 0, to: wake }];
    if (away) occupancy.push({ state: 'home', from: wake, to: away[0] }, { state: 'away', from: away[0], to: away[1] }, { state: 'home', from: away[1], to: sleep });
    else occupancy.push({ state: 'home', from: wake, to: sleep });
    occupancy.push({ state: 'asleep', from: sleep, to: len });
    const home = occupancy.filter((o) => o.state === 'home');

    const appliances: DayPlan['appliances'] = [];
    const place = (appliance: Appliance, powerW: number, from: number, minutes: number) => {
      const to = from + minutes;
      if (home.some((o) => from >= o.from && to <= o.to)) appliances.push({ appliance, from, to, powerW });
    };
    const evening = away ? away[1] : 960;
    place('kettle', h.kettleW, wake + int(5, 15), int(3, 2));
    if (r() < 0.7) place('kettle', h.kettleW, evening + int(10, 60), 3);
    if (r() < 0.5) place('oven', h.ovenW, Math.max(evening + 20, 1080) + int(0, 60), int(30, 30));
    if (r() < 0.3) place('washer', h.washerW, weekend ? wake + int(60, 120) : evening + int(30, 60), int(60, 30));
    for (const o of home) {
      for (const [from, to] of [[o.from, Math.min(o.to, DARK_BEFORE)], [Math.max(o.from, DARK_FROM), o.to]] as const) {
        if (from < to) appliances.push({ appliance: 'lighting', from, to, powerW: h.lightingW });
      }
    }
    for (let t = -int(0, h.fridgeOnMin + h.fridgeOffMin); t < len; ) {
      const on = h.fridgeOnMin + int(-2, 5);
      if (t + on > 0) appliances.push({ appliance: 'fridge', from: Math.max(t, 0), to: Math.min(t + on, len), powerW: h.fridgeW });
      t += on + h.fridgeOffMin + int(-3, 7);
    }

    const power = new Int32Array(len);
    for (let m = 0; m < len; m++) power[m] = h.baseW * 1000 + int(-BASE_NOISE_MILLIW, 2 * BASE_NOISE_MILLIW + 1);
    for (const a of appliances) for (let m = a.from; m < a.to; m++) power[m] = power[m]! + a.powerW * 1000;
    return { midnight, next, occupancy, appliances, power };
  }
}

function checkOptions(o: SyntheticOptions): { end: number; tz: string } {
  if (!Number.isSafeInteger(o.start) || o.start % SYNTHETIC_PERIOD !== 0) throw new RangeError('synthetic start must be a Unix time on a whole minute');
  if (o.days !== undefined && !(Number.isSafeInteger(o.days) && o.days > 0 && o.days <= 36600)) throw new RangeError('synthetic days must be an integer in 1..36600');
  return { end: o.days === undefined ? Infinity : o.start + o.days * 86400, tz: o.tz ?? 'UTC' };
}

/**
 * The model as a meter {@link Source}: one sample per minute from `start`, for `days` days (or forever).
 * @example
 * ```ts
 * const source = new SyntheticSource({ seed: 42, start: Date.UTC(2016, 4, 1) / 1000, days: 2 });
 * ```
 */
export class SyntheticSource implements Source {
  readonly name: string;
  private readonly end: number;

  constructor(private readonly options: SyntheticOptions) {
    const { end, tz } = checkOptions(options);
    new SyntheticModel(options.seed, tz); // validates seed and zone now
    this.end = end;
    this.name = `synthetic:${options.seed}`;
  }

  async *samples(from = -Infinity): AsyncGenerator<Sample> {
    const model = new SyntheticModel(this.options.seed, this.options.tz);
    const { start } = this.options;
    const first = from > start ? start + Math.ceil((from - start) / SYNTHETIC_PERIOD) * SYNTHETIC_PERIOD : start;
    for (let t = first; t < this.end; t += SYNTHETIC_PERIOD) {
      yield { time: t, period: SYNTHETIC_PERIOD, powerMilliW: model.powerMilliW(t) };
    }
  }
}

/**
 * The ground truth of a finite synthetic run.
 * @example
 * ```ts
 * const truth = syntheticGroundTruth({ seed: 42, start, days: 2 });
 * truth.appliances.filter((a) => a.appliance === 'kettle');
 * ```
 */
export function syntheticGroundTruth(options: SyntheticOptions): GroundTruth {
  const { end, tz } = checkOptions(options);
  if (end === Infinity) throw new RangeError('ground truth needs a finite number of days');
  const model = new SyntheticModel(options.seed, tz);
  return { version: 1, model: 'synthetic-v1', seed: options.seed, tz, start: options.start, end, periodS: SYNTHETIC_PERIOD, household: model.household, ...model.groundTruth(options.start, end) };
}

/**
 * Writes the ground truth of a finite run as JSON.
 * @example
 * ```ts
 * await writeGroundTruth('truth.json', { seed: 42, start, days: 2 });
 * ```
 */
export async function writeGroundTruth(file: string, options: SyntheticOptions): Promise<GroundTruth> {
  const truth = syntheticGroundTruth(options);
  await writeFile(file, JSON.stringify(truth, null, 1) + '\n');
  return truth;
}

/**
 * Formats integer mW as an exact kW decimal (6 places).
 * @example
 * ```ts
 * formatKw(1_234_567); // '1.234567'
 * ```
 */
export function formatKw(milliW: number): string {
  return `${Math.floor(milliW / 1e6)}.${String(milliW % 1e6).padStart(6, '0')}`;
}

/**
 * Writes a finite run in the UMass Smart* apartment format (`YYYY-MM-DD HH:MM:SS,<kW>`, local time in
 * `tz`, no header); returns the number of lines.
 * @example
 * ```ts
 * await writeSyntheticCsv('apt-01.csv', { seed: 1, start: Date.UTC(2016, 4, 2) / 1000, days: 2 });
 * ```
 */
export async function writeSyntheticCsv(file: string, options: SyntheticOptions): Promise<number> {
  const { end, tz } = checkOptions(options);
  if (end === Infinity) throw new RangeError('a CSV needs a finite number of days');
  const out = createWriteStream(file);
  const done = once(out, 'finish');
  let lines = 0;
  for await (const s of new SyntheticSource(options).samples()) {
    const local = DateTime.fromSeconds(s.time, { zone: tz }).toFormat('yyyy-MM-dd HH:mm:ss');
    if (!out.write(`${local},${formatKw(s.powerMilliW)}\n`)) await once(out, 'drain');
    lines++;
  }
  out.end();
  await done;
  return lines;
}
