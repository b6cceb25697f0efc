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
 * Solar panels (a prosumer): a seeded share of households (`pv.share`, or `pv.kWp` for one household) have
 * a PV array of 2–8 kWp with a factor of 0.70–0.95 that lumps orientation, tilt, shading, temperature and
 * inverter losses. Its power in a minute is `kWp × factor × GHI / 1000 W/m² × clearness`, where:
 * - GHI is the clear-sky global horizontal irradiance of Haurwitz (1945), `1098 cos z · exp(-0.057 / cos z)`
 *   W/m² (0 with the sun below the horizon), at the middle of the minute;
 * - the solar zenith z comes from the date, the time and the site (`latitude`, `longitude`; default
 *   Utrecht, 52.09 N 5.12 E) with NOAA's "General Solar Position Calculations" (Spencer's 1971 series for the
 *   declination and the equation of time);
 * - clearness is the day's weather, seeded by the date only (a neighbourhood shares its sky): clear
 *   (30 % of days, 0.92–1), broken clouds (45 %: sunny spells and cloud passages of random, exponentially
 *   distributed lengths, the clouds letting 25–55 % through) or overcast (25 %: 0.12–0.37, drifting per
 *   half hour).
 * The meter measures the net of load and production per minute: the positive part is imported, the negative
 * part exported (`Sample.powerMilliW` and `Sample.exportMilliW`). A household without panels gives exactly
 * the samples it gave before panels existed in the model.
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

/** Default site of the panels: Utrecht, the Netherlands. */
export const DEFAULT_PV_SITE = { latitude: 52.09, longitude: 5.12 } as const;

/** A household's solar panels. */
export interface PvArray {
  /** Peak power, kWp. */
  kWp: number;
  /** Orientation, tilt, shading, temperature and inverter losses in one factor (0.70..0.95). */
  factor: number;
  /** Site, degrees (north and east positive). */
  latitude: number;
  longitude: number;
}

/** Which synthetic households have panels, and where the sun is. */
export interface PvOptions {
  /** Share of households with panels, 0..1, drawn per seed (default 0). A household drawn at 0.3 has them at 0.5 too. */
  share?: number;
  /** This household's panels, kWp (overrides `share`; 0: none). */
  kWp?: number;
  /** Site, degrees (default {@link DEFAULT_PV_SITE}). */
  latitude?: number;
  longitude?: number;
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
  /** The household's panels and what they produced over `[start, end)` (absent: no panels). */
  pv?: PvTruth;
}

/** A PV household's panels and production, per local day and in total (floor of the exact mW·s, in Wh). */
export interface PvTruth extends PvArray {
  productionWh: number;
  days: { start: number; productionWh: number }[];
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
  /** Solar panels (default: none). */
  pv?: PvOptions;
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
 * Parses a `synthetic:<seed>` or `synthetic:<seed>:pv=<kWp>` source spec (the second gives this household
 * panels of that size, 0 none, whatever the share); returns the seed and the panels, or `undefined` if `spec`
 * is not a synthetic one. Throws if it is one with a bad seed or size.
 * @example
 * ```ts
 * parseSyntheticSource('synthetic:42:pv=4.5'); // { seed: 42, kWp: 4.5 }
 * parseSyntheticSource('synthetic:42'); // { seed: 42 }
 * ```
 */
export function parseSyntheticSource(spec: string): { seed: number; kWp?: number } | undefined {
  if (!spec.startsWith('synthetic:')) return undefined;
  const [text = '', ...rest] = spec.slice('synthetic:'.length).split(':');
  const seed = Number(text);
  if (!/^\d{1,10}$/.test(text) || seed > 0xffffffff) throw new RangeError(`synthetic seed must be an integer in 0..4294967295, got "${text}"`);
  if (rest.length === 0) return { seed };
  const pv = /^pv=(\d{1,3}(?:\.\d{1,2})?)$/.exec(rest.join(':'));
  if (!pv) throw new RangeError(`synthetic source must be synthetic:<seed> or synthetic:<seed>:pv=<kWp> (kWp 0..999.99), got "${spec}"`);
  return { seed, kWp: Number(pv[1]) };
}

/**
 * The seed of a synthetic source spec (see {@link parseSyntheticSource}), or `undefined` if `spec` is not one.
 * @example
 * ```ts
 * parseSyntheticSpec('synthetic:42'); // 42
 * parseSyntheticSpec('data/apt.csv'); // undefined
 * ```
 */
export function parseSyntheticSpec(spec: string): number | undefined {
  return parseSyntheticSource(spec)?.seed;
}

/**
 * Cosine of the solar zenith angle at `time` (Unix s) seen from `latitude`, `longitude` (degrees): NOAA's
 * "General Solar Position Calculations" (fractional year, Spencer's series for declination and equation of
 * time, true solar time, hour angle). Negative with the sun below the horizon.
 * @example
 * ```ts
 * sunCosZenith(Date.UTC(2024, 5, 21, 11, 40) / 1000, 52.09, 5.12); // ~0.88 (solar noon at midsummer)
 * ```
 */
export function sunCosZenith(time: number, latitude: number, longitude: number): number {
  const d = new Date(time * 1000);
  const year = d.getUTCFullYear();
  const dayOfYear = Math.floor((Date.UTC(year, d.getUTCMonth(), d.getUTCDate()) - Date.UTC(year, 0, 1)) / 86_400_000);
  const hours = d.getUTCHours() + d.getUTCMinutes() / 60 + d.getUTCSeconds() / 3600;
  const daysInYear = (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0 ? 366 : 365;
  const g = ((2 * Math.PI) / daysInYear) * (dayOfYear + (hours - 12) / 24);
  const eqTimeMin = 229.18 * (0.000075 + 0.001868 * Math.cos(g) - 0.032077 * Math.sin(g) - 0.014615 * Math.cos(2 * g) - 0.040849 * Math.sin(2 * g));
  const decl = 0.006918 - 0.399912 * Math.cos(g) + 0.070257 * Math.sin(g) - 0.006758 * Math.cos(2 * g) + 0.000907 * Math.sin(2 * g) - 0.002697 * Math.cos(3 * g) + 0.00148 * Math.sin(3 * g);
  const solarMin = hours * 60 + eqTimeMin + 4 * longitude;
  const hourAngle = ((solarMin / 4 - 180) * Math.PI) / 180;
  const lat = (latitude * Math.PI) / 180;
  return Math.sin(lat) * Math.sin(decl) + Math.cos(lat) * Math.cos(decl) * Math.cos(hourAngle);
}

/**
 * Clear-sky global horizontal irradiance, W/m², from the cosine of the solar zenith: Haurwitz (1945),
 * `1098 cos z · exp(-0.057 / cos z)`; 0 with the sun at or below the horizon.
 * @example
 * ```ts
 * clearSkyGhi(0.88); // ~905
 * ```
 */
export function clearSkyGhi(cosZenith: number): number {
  return cosZenith <= 0 ? 0 : 1098 * cosZenith * Math.exp(-0.057 / cosZenith);
}

/** Seed of the weather: the same for every household (a neighbourhood shares its sky). */
const WEATHER_SEED = 0x57584552;

/** The clearness of each minute of a local day (0..1): clear, broken clouds or overcast (see the module doc). */
function weatherDay(ordinal: number, len: number): Float64Array {
  const r = mulberry32(mix(WEATHER_SEED, ordinal >>> 0));
  const out = new Float64Array(len);
  const kind = r();
  if (kind < 0.3) {
    out.fill(0.92 + 0.08 * r());
  } else if (kind < 0.75) {
    const meanSun = 10 + 30 * r();
    const meanCloud = 5 + 20 * r();
    const spell = (mean: number) => 3 + Math.floor(-Math.log(1 - r()) * mean);
    let cloudy = r() < 0.5;
    for (let m = 0; m < len; cloudy = !cloudy) {
      const to = Math.min(len, m + spell(cloudy ? meanCloud : meanSun));
      const k = cloudy ? 0.25 + 0.3 * r() : 0.9 + 0.1 * r();
      out.fill(k, m, to);
      m = to;
    }
  } else {
    const base = 0.12 + 0.25 * r();
    for (let m = 0; m < len; m += 30) out.fill(base * (0.8 + 0.4 * r()), m, Math.min(len, m + 30));
  }
  return out;
}

/** One local day's plan, in minutes from local midnight. */
interface DayPlan {
  midnight: number;
  next: number;
  occupancy: { state: Occupancy; from: number; to: number }[];
  appliances: { appliance: Appliance; from: number; to: number; powerW: number }[];
  /** Total power per minute, mW. */
  power: Int32Array;
  /** PV production per minute, mW (households with panels). */
  pv?: Int32Array;
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
  /** The household's panels, if it has any. */
  readonly pv: PvArray | undefined;
  private readonly zone: IANAZone;
  private plan: DayPlan | undefined;

  constructor(readonly seed: number, readonly tz = 'UTC', pv: PvOptions = {}) {
    if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw new RangeError('synthetic seed must be an integer in 0..4294967295');
    if (!IANAZone.isValidZone(tz)) throw new RangeError(`unknown time zone "${tz}"`);
    this.pv = drawPv(seed, pv);
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

  /** The household's load (consumption) in the minute starting at `time` (Unix s, on a whole minute), mW. */
  powerMilliW(time: number): number {
    const plan = this.dayPlan(time);
    return plan.power[Math.floor((time - plan.midnight) / 60)]!;
  }

  /** PV production in the minute starting at `time`, mW (0 without panels). */
  pvMilliW(time: number): number {
    const plan = this.dayPlan(time);
    return plan.pv?.[Math.floor((time - plan.midnight) / 60)] ?? 0;
  }

  /**
   * What the meter sees in the minute starting at `time`: the net of load and production, its positive part
   * imported, its negative part exported (one of the two is 0), mW.
   * @example
   * ```ts
   * const { importMilliW, exportMilliW } = model.flows(noon); // a sunny noon: { importMilliW: 0, exportMilliW: 2_400_000 }
   * ```
   */
  flows(time: number): { importMilliW: number; exportMilliW: number } {
    const net = this.powerMilliW(time) - this.pvMilliW(time);
    return net >= 0 ? { importMilliW: net, exportMilliW: 0 } : { importMilliW: 0, exportMilliW: -net };
  }

  /** The panels and their production over `[start, end)` (undefined without panels). */
  pvTruth(start: number, end: number): PvTruth | undefined {
    if (!this.pv) return undefined;
    const days: { start: number; milliWs: bigint }[] = [];
    for (let t = start; t < end; t += SYNTHETIC_PERIOD) {
      const midnight = this.dayPlan(t).midnight;
      if (days.at(-1)?.start !== Math.max(midnight, start)) days.push({ start: Math.max(midnight, start), milliWs: 0n });
      days.at(-1)!.milliWs += BigInt(this.pvMilliW(t) * SYNTHETIC_PERIOD);
    }
    const total = days.reduce((a, d) => a + d.milliWs, 0n);
    return { ...this.pv, productionWh: Number(total / 3_600_000n), days: days.map((d) => ({ start: d.start, productionWh: Number(d.milliWs / 3_600_000n) })) };
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
    return { midnight, next, occupancy, appliances, power, ...(this.pv ? { pv: this.production(midnight, len, ordinal) } : {}) };
  }

  /** PV production per minute of a day, mW (see the module doc). */
  private production(midnight: number, len: number, ordinal: number): Int32Array {
    const { kWp, factor, latitude, longitude } = this.pv!;
    const clearness = weatherDay(ordinal, len);
    const out = new Int32Array(len);
    // kWp x factor x GHI/1000 W/m², in mW: kWp x 1e6 mW x factor x GHI/1000 = kWp x factor x GHI x 1000.
    for (let m = 0; m < len; m++) out[m] = Math.round(kWp * factor * clearSkyGhi(sunCosZenith(midnight + m * 60 + 30, latitude, longitude)) * 1000 * clearness[m]!);
    return out;
  }
}

/** The panels of household `seed` under `o` (a PRNG of their own: the load model's draws are untouched). */
function drawPv(seed: number, o: PvOptions): PvArray | undefined {
  const share = o.share ?? 0;
  if (!(share >= 0 && share <= 1)) throw new RangeError('pv share must be in 0..1');
  if (o.kWp !== undefined && !(Number.isFinite(o.kWp) && o.kWp >= 0 && o.kWp < 1000)) throw new RangeError('pv kWp must be in 0..999.99');
  const latitude = o.latitude ?? DEFAULT_PV_SITE.latitude;
  const longitude = o.longitude ?? DEFAULT_PV_SITE.longitude;
  if (!(Math.abs(latitude) <= 90 && Math.abs(longitude) <= 180)) throw new RangeError('pv site must be a latitude in -90..90 and a longitude in -180..180');
  const r = mulberry32(mix(seed, 0x50563031));
  const has = r() < share;
  const kWp = 2 + Math.floor(r() * 25) * 0.25;
  const factor = (70 + Math.floor(r() * 26)) / 100;
  if (o.kWp !== undefined ? o.kWp === 0 : !has) return undefined;
  return { kWp: o.kWp ?? kWp, factor, latitude, longitude };
}

function checkOptions(o: SyntheticOptions): { end: number; tz: string } {
  if (o.pv !== undefined && (typeof o.pv !== 'object' || o.pv === null)) throw new TypeError('synthetic pv must be an object');
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
    new SyntheticModel(options.seed, tz, options.pv); // validates seed, zone and panels now
    this.end = end;
    this.name = `synthetic:${options.seed}`;
  }

  async *samples(from = -Infinity): AsyncGenerator<Sample> {
    const model = new SyntheticModel(this.options.seed, this.options.tz, this.options.pv);
    const { start } = this.options;
    const first = from > start ? start + Math.ceil((from - start) / SYNTHETIC_PERIOD) * SYNTHETIC_PERIOD : start;
    for (let t = first; t < this.end; t += SYNTHETIC_PERIOD) {
      if (!model.pv) yield { time: t, period: SYNTHETIC_PERIOD, powerMilliW: model.powerMilliW(t) };
      else {
        const { importMilliW, exportMilliW } = model.flows(t);
        yield { time: t, period: SYNTHETIC_PERIOD, powerMilliW: importMilliW, exportMilliW };
      }
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
  const model = new SyntheticModel(options.seed, tz, options.pv);
  const pv = model.pvTruth(options.start, end);
  return { version: 1, model: 'synthetic-v1', seed: options.seed, tz, start: options.start, end, periodS: SYNTHETIC_PERIOD, household: model.household, ...model.groundTruth(options.start, end), ...(pv ? { pv } : {}) };
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
  if (new SyntheticModel(options.seed, tz, options.pv).pv) throw new RangeError('a UMass-format CSV carries import only: a household with panels cannot be written as one');
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
