/**
 * The verdict of a crash run, as a pure function: the MDMS export against the expected totals
 * (harness/expected.ts). Billing must match per household and billing period to the Wh; neighbourhoods per
 * interval, and over all intervals; nothing may be billed for a period without readings.
 * @module
 */
import type { Expected } from './expected.js';

/** Key -> period start (Unix s) -> Wh, as {@link parseExport} reads an export. */
export type Totals = Map<string, Map<number, number>>;

export interface Comparison {
  households: { household: string; meteredWh: number; billedWh: number }[];
  neighbourhoods: { neighbourhood: string; expectedWh: number; exportedWh: number }[];
  billingPeriodsChecked: number;
  neighbourhoodWindowsChecked: number;
  /** One line per difference; empty when the export is exact. */
  problems: string[];
}

const sum = (m: Map<number, number>): number => [...m.values()].reduce((a, b) => a + b, 0);
const day = (t: number): string => new Date(t * 1000).toISOString().slice(0, 16).replace('T00:00', '');

/**
 * Compares an export with the expected totals.
 * @example
 * ```ts
 * const c = compareExport(expected, parseExport(billingCsv, 'billing'), parseExport(nbCsv, 'neighbourhood'));
 * c.problems; // [] when nothing was lost or counted twice
 * ```
 */
export function compareExport(expected: Expected, billed: Totals, neighbourhoods: Totals): Comparison {
  const problems: string[] = [];
  let billingPeriodsChecked = 0;
  let neighbourhoodWindowsChecked = 0;
  const households = [...expected.billing.keys()].map((hh) => {
    const want = expected.billing.get(hh)!;
    const got = billed.get(hh) ?? new Map<number, number>();
    for (const [t, wh] of want) {
      billingPeriodsChecked++;
      if (got.get(t) !== wh) problems.push(`household ${hh}, period ${day(t)}: billed ${got.get(t) ?? 'nothing'}, metered ${wh} Wh`);
    }
    for (const t of got.keys()) if (!want.has(t)) problems.push(`household ${hh}: billed ${got.get(t)} Wh for ${day(t)}, a period without readings`);
    return { household: hh, meteredWh: expected.meteredWh.get(hh) ?? 0, billedWh: sum(got) };
  });
  for (const hh of billed.keys()) if (!expected.billing.has(hh)) problems.push(`billed an unknown household ${hh}`);
  const nbs = [...expected.neighbourhood.keys()].map((nb) => {
    const want = expected.neighbourhood.get(nb)!;
    const got = neighbourhoods.get(nb) ?? new Map<number, number>();
    let differ = 0;
    for (const [t, wh] of want) {
      neighbourhoodWindowsChecked++;
      if (got.get(t) !== wh) differ++;
    }
    for (const t of got.keys()) if (!want.has(t)) differ++;
    const expectedWh = sum(want);
    const exportedWh = sum(got);
    if (differ) problems.push(`neighbourhood ${nb}: ${differ} of ${want.size} intervals differ from the register deltas`);
    if (expectedWh !== exportedWh) problems.push(`neighbourhood ${nb}: ${exportedWh} Wh exported over all intervals, ${expectedWh} Wh metered`);
    return { neighbourhood: nb, expectedWh, exportedWh };
  });
  for (const nb of neighbourhoods.keys()) if (!expected.neighbourhood.has(nb)) problems.push(`exported an unknown neighbourhood ${nb}`);
  return { households, neighbourhoods: nbs, billingPeriodsChecked, neighbourhoodWindowsChecked, problems };
}
