/**
 * Source over a UMass Smart* apartment electricity CSV (UMass Trace Repository, Smart* data set).
 *
 * Format: no header; one line per sample, `YYYY-MM-DD HH:MM:SS,<kW>`, local time in the zone given by
 * `tz` (default UTC). A sample stamped `t` covers `[t, next sample's time)`; the last sample keeps the
 * previous period. Rules (documented in data/README.md):
 * - kW is parsed exactly from its decimal text (plain or with an exponent) into integer mW, rounding half
 *   up on the first dropped digit (the 4th decimal of a watt); no floating point is involved.
 * - Local times are converted with the zone rules of luxon (IANA tzdb). A non-existent local time (spring
 *   forward) is shifted forward by the gap, as luxon does. An ambiguous local time (fall back) is read as
 *   the earliest of its possible instants that is still after the previous sample; luxon alone would
 *   always take the later one, which would make the repeated hour of a fall-back day go backwards.
 * - A malformed line (bad date, bad number, negative or absurd power, wrong field count) is skipped and
 *   counted in {@link UmassStats} with the first offending line number (`malformed: 'skip'`, the default),
 *   or aborts the stream with an error naming file and line (`malformed: 'fail'`). Blank lines are ignored.
 * - A timestamp that does not increase is an error naming file and line.
 * - A gap longer than `maxPeriod` seconds (default 3600) is missing data, not a long sample: the sample
 *   before it keeps the previous period and the gap is counted.
 * The file is streamed line by line; resuming at time `from` re-reads and skips earlier lines.
 * @module
 */
import { createReadStream, statSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { IANAZone } from 'luxon';
import type { Sample, Source } from '../hal/source.js';

/** Largest accepted power, mW (1 GW): anything above is a corrupt line, not a household. */
export const MAX_POWER_MILLIW = 1e12;
/** Period used for a file holding a single sample (no neighbour to measure from), seconds. */
export const FALLBACK_PERIOD = 60;
const MAX_PERIOD = 86400;

/** Counters of one pass over a file. */
export interface UmassStats {
  /** Lines read (including blank and malformed ones). */
  lines: number;
  /** Samples yielded. */
  samples: number;
  /** Malformed lines skipped. */
  malformed: number;
  /** Line number of the first malformed line, if any. */
  firstMalformedLine?: number;
  /** Gaps longer than `maxPeriod` treated as missing data. */
  gaps: number;
}

export interface UmassOptions {
  /** IANA zone of the local timestamps (default `UTC`). */
  tz?: string;
  /** What to do with a malformed line: skip and count (default) or fail. */
  malformed?: 'skip' | 'fail';
  /** Longest period a sample may cover before the gap counts as missing data, seconds (default 3600). */
  maxPeriod?: number;
}

/**
 * Parses a non-negative decimal kW text exactly into integer mW, rounding half up on the first dropped digit.
 * Returns `undefined` if the text is not such a number.
 * @example
 * ```ts
 * parseKwToMilliW('0.0052166666'); // 5217
 * parseKwToMilliW('1.5e-3'); // 1500
 * ```
 */
export function parseKwToMilliW(text: string): number | undefined {
  if (text.length > 64) return undefined;
  const m = /^\+?(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d{1,4}))?$/.exec(text.trim());
  if (!m) return undefined;
  const [, int = '', frac = '', exp = '0'] = m;
  if (int.length === 0 && frac.length === 0) return undefined;
  const digits = BigInt(int + frac || '0');
  const shift = Number(exp) - frac.length + 6; // value in mW = digits * 10^shift
  let mw: bigint;
  if (shift >= 0) {
    if (shift > 20) return digits === 0n ? 0 : undefined;
    mw = digits * 10n ** BigInt(shift);
  } else {
    if (-shift > 80) return 0; // at most 64 digits: far below half of the divisor
    const div = 10n ** BigInt(-shift);
    mw = digits / div + ((digits % div) * 2n >= div ? 1n : 0n);
  }
  return mw <= BigInt(MAX_POWER_MILLIW) ? Number(mw) : undefined;
}

const LINE = /^(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2}),([^,]+)$/;

/**
 * Converts local wall-clock fields in `zone` to Unix seconds, choosing among the possible instants as the
 * module documentation says (earliest after `after`; luxon's forward shift for a gap).
 * @example
 * ```ts
 * const r = new LocalTimeResolver('America/New_York');
 * r.resolve(LocalTimeResolver.wallSeconds(2016, 11, 6, 1, 30, 0)!); // 01:30 EDT = 1478410200
 * ```
 */
export class LocalTimeResolver {
  private readonly zone: IANAZone;
  private readonly cache = new Map<number, number[]>(); // local hour (as UTC seconds) -> offsets (s), latest instant last

  constructor(tz: string) {
    if (!IANAZone.isValidZone(tz)) throw new RangeError(`unknown time zone "${tz}"`);
    this.zone = IANAZone.create(tz);
  }

  /** Local fields as if they were UTC, in seconds, or `undefined` if they are not a real date and time. */
  static wallSeconds(y: number, mo: number, d: number, h: number, mi: number, s: number): number | undefined {
    const ms = Date.UTC(y, mo - 1, d, h, mi, s);
    const t = new Date(ms);
    if (t.getUTCFullYear() !== y || t.getUTCMonth() !== mo - 1 || t.getUTCDate() !== d || h > 23 || mi > 59 || s > 59) return undefined;
    return ms / 1000;
  }

  /** Unix seconds of the wall time `wall` (local fields as UTC seconds), preferring instants after `after`. */
  resolve(wall: number, after = -Infinity): number {
    const hour = wall - (wall % 3600);
    let offsets = this.cache.get(hour);
    if (!offsets) {
      offsets = this.offsetsAt(hour + 1800);
      if (this.cache.size > 64) this.cache.clear();
      this.cache.set(hour, offsets);
    }
    // Offsets are sorted so that instants (wall - offset) increase; take the first one after `after`.
    for (const off of offsets) if (wall - off > after) return wall - off;
    return wall - offsets[offsets.length - 1]!;
  }

  /** Candidate UTC offsets (s) of a wall time, instants increasing; for a gap, the pre-transition offset. */
  private offsetsAt(wall: number): number[] {
    const probe = (offSec: number) => this.zone.offset((wall - offSec) * 1000) * 60;
    const before = this.zone.offset((wall - 86400) * 1000) * 60;
    const after = this.zone.offset((wall + 86400) * 1000) * 60;
    const valid = [...new Set([before, after])].filter((o) => probe(o) === o).sort((a, b) => b - a);
    return valid.length > 0 ? valid : [before];
  }
}

/**
 * A {@link Source} over a UMass-format CSV. Throws at construction if the file cannot be read.
 * @example
 * ```ts
 * const source = new UmassSource('data/sample/apt-01.csv', { tz: 'America/New_York' });
 * for await (const s of source.samples()) console.log(s.time, s.period);
 * console.log(source.stats.malformed);
 * ```
 */
export class UmassSource implements Source {
  readonly name: string;
  /** Counters of the latest pass (reset when {@link samples} starts a new pass). */
  stats: UmassStats = { lines: 0, samples: 0, malformed: 0, gaps: 0 };
  private readonly tz: string;
  private readonly onMalformed: 'skip' | 'fail';
  private readonly maxPeriod: number;

  constructor(readonly file: string, options: UmassOptions = {}) {
    const { tz = 'UTC', malformed = 'skip', maxPeriod = 3600 } = options;
    if (malformed !== 'skip' && malformed !== 'fail') throw new TypeError('"malformed" must be "skip" or "fail"');
    if (!Number.isSafeInteger(maxPeriod) || maxPeriod < 1 || maxPeriod > MAX_PERIOD) throw new RangeError(`"maxPeriod" must be an integer in 1..${MAX_PERIOD}`);
    new LocalTimeResolver(tz); // validates the zone now
    let isFile = false;
    try {
      isFile = statSync(file).isFile();
    } catch (e) {
      throw new Error(`cannot read UMass CSV ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    if (!isFile) throw new Error(`cannot read UMass CSV ${file}: not a regular file`);
    this.name = file;
    this.tz = tz;
    this.onMalformed = malformed;
    this.maxPeriod = maxPeriod;
  }

  async *samples(from = -Infinity): AsyncGenerator<Sample> {
    const stats: UmassStats = (this.stats = { lines: 0, samples: 0, malformed: 0, gaps: 0 });
    const resolver = new LocalTimeResolver(this.tz);
    const input = createReadStream(this.file);
    const lines = createInterface({ input, crlfDelay: Infinity });
    let prev: { time: number; powerMilliW: number; line: number } | undefined;
    let prevPeriod = FALLBACK_PERIOD;
    const emit = (period: number): Sample | undefined => {
      const s = { time: prev!.time, period, powerMilliW: prev!.powerMilliW };
      prevPeriod = period;
      return s.time >= from ? s : undefined;
    };
    try {
      for await (const raw of lines) {
        const lineNo = ++stats.lines;
        const text = raw.trim();
        if (text.length === 0) continue;
        const parsed = this.parseLine(text, resolver, prev?.time);
        if (!parsed) {
          if (this.onMalformed === 'fail') throw new Error(`${this.file}:${lineNo}: malformed line (expected "YYYY-MM-DD HH:MM:SS,<kW>")`);
          stats.malformed++;
          stats.firstMalformedLine ??= lineNo;
          continue;
        }
        if (prev) {
          if (parsed.time <= prev.time) {
            throw new Error(`${this.file}:${lineNo}: timestamp does not increase (previous sample at line ${prev.line})`);
          }
          let period = parsed.time - prev.time;
          if (period > this.maxPeriod) {
            stats.gaps++;
            period = Math.min(prevPeriod, this.maxPeriod);
          }
          const s = emit(period);
          if (s) {
            stats.samples++;
            yield s;
          }
        }
        prev = { ...parsed, line: lineNo };
      }
      if (prev) {
        const s = emit(prevPeriod);
        if (s) {
          stats.samples++;
          yield s;
        }
      }
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      if (err.code) throw new Error(`cannot read UMass CSV ${this.file}: ${err.code}`);
      throw e;
    } finally {
      lines.close();
      input.destroy();
    }
  }

  private parseLine(text: string, resolver: LocalTimeResolver, after?: number): { time: number; powerMilliW: number } | undefined {
    const m = LINE.exec(text);
    if (!m) return undefined;
    const f = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
    const wall = LocalTimeResolver.wallSeconds(...f);
    const powerMilliW = parseKwToMilliW(m[7]!);
    if (wall === undefined || powerMilliW === undefined) return undefined;
    return { time: resolver.resolve(wall, after), powerMilliW };
  }
}
