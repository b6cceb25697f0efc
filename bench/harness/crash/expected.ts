/**
 * The ground truth of a crash run, computed from the synthetic sources alone, independently of the
 * components under test: each meter integrates its model's per-minute power exactly (mW·s in a bigint,
 * starting from an empty register, as a fresh meter's NV store does), its register reads
 * floor(total / 3.6e6) Wh at the end of every minute, and a reading's energy is the register delta. A
 * household's bill per billing period is the sum of its meters' deltas in that period; a neighbourhood's
 * interval total is the sum over its meters. With nothing lost and nothing counted twice, the MDMS export
 * must equal these numbers exactly.
 * @module
 */
import { SyntheticModel, SYNTHETIC_PERIOD } from '../../../firmware/sources/synthetic.js';

const MILLIWS_PER_WH = 3_600_000n;

/** What a crash run is checked against. */
export interface Expected {
  /** Readings the meters produce in all (one per minute per meter). */
  readings: number;
  /** Metered Wh per household over the whole run (register at the end minus at the start). */
  meteredWh: Map<string, number>;
  /** Wh per household, per billing-period start (Unix s). */
  billing: Map<string, Map<number, number>>;
  /** Wh per neighbourhood, per interval start (Unix s). */
  neighbourhood: Map<string, Map<number, number>>;
}

/** One meter of the fleet as the harness sees it. */
export interface ExpectedMeter {
  seed: number;
  household: string;
  neighbourhood: string;
}

function add<K>(m: Map<K, number>, k: K, v: number): void {
  m.set(k, (m.get(k) ?? 0) + v);
}

function inner<K, V>(m: Map<K, Map<number, V>>, k: K): Map<number, V> {
  let x = m.get(k);
  if (!x) m.set(k, (x = new Map()));
  return x;
}

/**
 * Per-minute register deltas (Wh) of one synthetic meter over `[start, start + days)`, in time order.
 * @example
 * ```ts
 * const deltas = registerDeltas(7, 1704067200, 2); // 2880 integers
 * ```
 */
export function registerDeltas(seed: number, start: number, days: number, tz = 'UTC'): number[] {
  const model = new SyntheticModel(seed, tz);
  const out: number[] = [];
  let total = 0n;
  let prevWh = 0n;
  for (let t = start; t < start + days * 86400; t += SYNTHETIC_PERIOD) {
    total += BigInt(model.powerMilliW(t)) * BigInt(SYNTHETIC_PERIOD);
    const wh = total / MILLIWS_PER_WH;
    out.push(Number(wh - prevWh));
    prevWh = wh;
  }
  return out;
}

/**
 * The expected export of a run: UTC billing days of `billingS` seconds (a divisor of a day) and
 * neighbourhood intervals of `intervalS` seconds, both aligned to the Unix epoch (as the PES aligns them
 * in UTC).
 * @example
 * ```ts
 * const e = expectedTotals(meters, { start, days: 2, intervalS: 900, billingS: 86400 });
 * e.billing.get('hh1')!.get(start); // Wh billed for the first day
 * ```
 */
export function expectedTotals(meters: ExpectedMeter[], o: { start: number; days: number; intervalS: number; billingS: number }): Expected {
  const e: Expected = { readings: 0, meteredWh: new Map(), billing: new Map(), neighbourhood: new Map() };
  for (const m of meters) {
    const deltas = registerDeltas(m.seed, o.start, o.days);
    const bill = inner(e.billing, m.household);
    const nb = inner(e.neighbourhood, m.neighbourhood);
    deltas.forEach((wh, i) => {
      const t = o.start + i * SYNTHETIC_PERIOD;
      add(bill, t - (t % o.billingS), wh);
      add(nb, t - (t % o.intervalS), wh);
      add(e.meteredWh, m.household, wh);
    });
    e.readings += deltas.length;
  }
  return e;
}
