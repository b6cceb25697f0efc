/**
 * Raw series as the meter sees them: a household's power per minute, read through the firmware's own sources
 * (UMass Smart* CSV, synthetic, P1 captures), and the ground truth the synthetic model writes beside it.
 * @module
 */
import { readFileSync } from 'node:fs';
import type { Source } from '../firmware/hal/source.js';
import type { GroundTruth, OccupancyInterval, ApplianceInterval } from '../firmware/sources/synthetic.js';

/**
 * Power per minute over `[start, start + 60 * powerW.length)`; NaN where the source has no sample. `powerW` is
 * the import (what the meter's import register counts), `exportW` the export of a household with panels (0
 * without; the model nets load and production per minute, so one of the two is 0).
 */
export interface MinuteSeries {
  start: number;
  powerW: Float64Array;
  exportW: Float64Array;
}

/**
 * Net power per minute, import minus export (W): what an attacker holding both registers sees; the load's
 * appliance edges show in it whatever the panels produce. Equal to `powerW` for a household without panels.
 * @example
 * ```ts
 * netPower({ start: 0, powerW: Float64Array.of(500, 0), exportW: Float64Array.of(0, 1200) }); // [500, -1200]
 * ```
 */
export function netPower(series: MinuteSeries): Float64Array {
  return series.powerW.map((w, i) => w - series.exportW[i]!);
}

/** Energy (Wh, as the meter's samples give it) per interval, keyed by interval start. */
export type IntervalEnergy = Map<number, number>;

/**
 * Reads a source over `[from, to)` into per-minute import and export power series and the import energy of
 * its samples per interval of `intervalS` (a sample counts towards the interval it starts in, as the PES
 * attributes a reading).
 * @example
 * ```ts
 * const { series, energy } = await readSource(new UmassSource('apt-01.csv'), from, to, 900);
 * ```
 */
export async function readSource(source: Source, from: number, to: number, intervalS: number): Promise<{ series: MinuteSeries; energy: IntervalEnergy }> {
  const start = Math.floor(from / 60) * 60;
  const powerW = new Float64Array(Math.ceil((to - start) / 60)).fill(NaN);
  const exportW = new Float64Array(powerW.length).fill(NaN);
  const energy: IntervalEnergy = new Map();
  for await (const s of source.samples(from)) {
    if (s.time >= to) break;
    const w = s.powerMilliW / 1000;
    const x = (s.exportMilliW ?? 0) / 1000;
    for (let t = s.time; t < s.time + s.period && t < to; t += 60) {
      powerW[Math.floor((t - start) / 60)] = w;
      exportW[Math.floor((t - start) / 60)] = x;
    }
    const slot = s.time - (s.time % intervalS);
    energy.set(slot, (energy.get(slot) ?? 0) + (w * s.period) / 3600);
  }
  return { series: { start, powerW, exportW }, energy };
}

const isInt = (v: unknown): v is number => Number.isSafeInteger(v);

/**
 * Parses and validates a `*.truth.json` file (`meter synth --ground-truth`); throws naming the file.
 * @example
 * ```ts
 * const truth = loadTruth('data/sample/apt-01.truth.json');
 * ```
 */
export function loadTruth(file: string): GroundTruth {
  let t: GroundTruth;
  try {
    t = JSON.parse(readFileSync(file, 'utf8')) as GroundTruth;
  } catch (e) {
    throw new Error(`cannot read ground truth ${file}: ${(e as Error).message}`);
  }
  const bad = (what: string) => new Error(`ground truth ${file}: ${what}`);
  if (t === null || typeof t !== 'object' || t.version !== 1) throw bad('version must be 1');
  if (!isInt(t.start) || !isInt(t.end) || t.end <= t.start) throw bad('start and end must be Unix seconds, start < end');
  const states = new Set(['asleep', 'home', 'away']);
  if (!Array.isArray(t.occupancy) || !t.occupancy.every((o: OccupancyInterval) => states.has(o?.state) && isInt(o.start) && isInt(o.end) && o.start < o.end)) {
    throw bad('occupancy must be a list of {state: asleep|home|away, start, end}');
  }
  if (!Array.isArray(t.appliances) || !t.appliances.every((a: ApplianceInterval) => typeof a?.appliance === 'string' && isInt(a.start) && isInt(a.end) && a.start < a.end && Number.isFinite(a.powerW))) {
    throw bad('appliances must be a list of {appliance, start, end, powerW}');
  }
  return t;
}
