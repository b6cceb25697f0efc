/**
 * Opens a meter's measurement source from its spec, the one place that knows every kind: `meter --source`
 * and the fleet file's `source` column (`replay`, `demo`) both come here.
 *
 * | spec | source |
 * |---|---|
 * | `synthetic:<seed>` | the synthetic household model (needs `synthetic.start`); panels per `synthetic.pv.share` |
 * | `synthetic:<seed>:pv=<kWp>` | the same household with panels of that size (0: none), whatever the share |
 * | `p1:<device or capture file>` | a real meter's P1 port, live or captured (firmware/sources/p1/) |
 * | anything else | a UMass Smart*-format CSV file |
 * @module
 */
import { resolve } from 'node:path';
import type { Source } from '../hal/source.js';
import { P1Source, parseP1Spec, type P1SourceOptions } from './p1/source.js';
import { parseSyntheticSource, SyntheticSource, type PvOptions } from './synthetic.js';
import { UmassSource } from './umass.js';

export interface OpenSourceOptions {
  /** IANA zone of CSV timestamps, of the synthetic routine and of a P1 meter's clock. */
  tz: string;
  /** Synthetic sources: first sample (Unix s), length in days (omitted = endless), solar panels (default none). */
  synthetic?: { start: number; days?: number; pv?: PvOptions };
  /** P1 sources: dialect, serial settings, keys, logger (the zone is `tz`). */
  p1?: Omit<P1SourceOptions, 'tz'>;
}

/**
 * Builds the source a spec names; throws with a clear message if it cannot.
 * @example
 * ```ts
 * openSource('p1:capture.p1', { tz: 'Europe/Amsterdam', p1: { dialect: 'dsmr5' } });
 * openSource('synthetic:7', { tz: 'UTC', synthetic: { start: 1714521600, days: 2, pv: { share: 0.3 } } });
 * ```
 */
export function openSource(spec: string, opts: OpenSourceOptions): Source {
  const synthetic = parseSyntheticSource(spec);
  if (synthetic !== undefined) {
    if (!opts.synthetic) throw new TypeError(`${spec}: a synthetic source needs a start time`);
    const { seed, kWp } = synthetic;
    const pv = kWp === undefined ? opts.synthetic.pv : { ...opts.synthetic.pv, kWp };
    return new SyntheticSource({ seed, start: opts.synthetic.start, days: opts.synthetic.days, tz: opts.tz, ...(pv ? { pv } : {}) });
  }
  const p1 = parseP1Spec(spec);
  if (p1 !== undefined) return new P1Source(p1.startsWith('/dev/') ? p1 : resolve(p1), { ...opts.p1, tz: opts.tz });
  return new UmassSource(resolve(spec), { tz: opts.tz });
}
