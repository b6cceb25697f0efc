/**
 * `npm run bench [-- section ...]`: runs every benchmark of the project, each beside its baseline in the same
 * process, prints a table per section for people and, as the LAST line of stdout, one JSON object
 * `{"<section>": {...}, ...}` for machines. Progress goes to stderr.
 *
 * A section is a module bench/<name>.ts exporting `run(): Promise<Record<string, unknown>>` that returns its
 * JSON section (every bench/*.ts that exports run() is a section). Convention: a figure `x` with a baseline measured in the same run has a sibling
 * `x_baseline`; the table shows both and the ratio baseline / x ("x faster" when above 1). Nested objects
 * are printed as sub-tables. {@link SECTIONS} fixes the order; other section files run after them.
 * Medians over adaptive repetitions ({@link measure}); nothing here asserts a timing.
 * @module
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

/**
 * Preferred run order of the sections; a listed file that does not exist is skipped, and any other
 * bench/<name>.ts is run after these (in name order), so a new section needs no edit here.
 * e.g. SECTIONS.includes('pes').
 */
export const SECTIONS = ['paillier', 'aead', 'firmware', 'pipeline', 'pes', 'replay'] as const;

export interface Timing {
  /** Median time of one call, in the unit asked for. */
  median: number;
  p10: number;
  p90: number;
  reps: number;
}

export interface MeasureOptions {
  /** Result unit (default 'us'). */
  unit?: 'ns' | 'us' | 'ms';
  /** At least this many timed calls (default 15). */
  minReps?: number;
  /** ... and at least this much timed time in ms (default 1000). */
  minMs?: number;
  /** At most this many timed calls (default 100000). */
  maxReps?: number;
  /** Untimed warm-up calls (default 3). */
  warmup?: number;
  /**
   * 'wall' (default): elapsed time. 'cpu': the process's user + system CPU time (process.cpuUsage, all its
   * threads): on a shared machine a long call is preempted many times while a short one often runs in one
   * slice, so wall-clock medians flatter short operations; CPU time does not. Do not use 'cpu' while a
   * worker thread of the same process is busy (its CPU would be counted).
   */
  clock?: 'wall' | 'cpu';
}

function clockNs(clock: 'wall' | 'cpu'): () => number {
  if (clock === 'wall') return () => Number(process.hrtime.bigint());
  return () => {
    const u = process.cpuUsage();
    return (u.user + u.system) * 1000;
  };
}

/**
 * Times `fn` call by call (process.hrtime.bigint), adaptively: at least `minReps` calls and `minMs` of timed
 * work, then reports the median and the 10th/90th percentiles.
 * @example
 * ```ts
 * const t = measure(() => key.add(a, b), { unit: 'us' }); // t.median
 * ```
 */
export function measure(fn: () => unknown, options: MeasureOptions = {}): Timing {
  const { unit = 'us', minReps = 15, minMs = 1000, maxReps = 100_000, warmup = 3, clock = 'wall' } = options;
  const scale = unit === 'ns' ? 1 : unit === 'us' ? 1e3 : 1e6;
  const now = clockNs(clock);
  for (let i = 0; i < warmup; i++) fn();
  const times: number[] = [];
  let total = 0;
  while (times.length < maxReps && (times.length < minReps || total < minMs * 1e6)) {
    const t0 = now();
    fn();
    const dt = now() - t0;
    times.push(dt);
    total += dt;
  }
  times.sort((a, b) => a - b);
  const at = (q: number): number => round(times[Math.min(times.length - 1, Math.floor(q * times.length))]! / scale);
  return { median: at(0.5), p10: at(0.1), p90: at(0.9), reps: times.length };
}

/**
 * Times `ours` and `baseline` in alternating rounds (a few calls of one, then of the other, until both have
 * `minReps` calls and `minMs` of timed work), so that both see the same machine: on a shared machine whose
 * load drifts, back-to-back measurement would skew the ratio.
 * @example
 * ```ts
 * const { ours, baseline } = measurePair(() => key.decrypt(c), () => theirs.decrypt(c), { unit: 'ms' });
 * ```
 */
export function measurePair(ours: () => unknown, baseline: () => unknown, options: MeasureOptions = {}): { ours: Timing; baseline: Timing } {
  const { unit = 'us', minReps = 15, minMs = 1000, maxReps = 100_000, warmup = 3, clock = 'wall' } = options;
  const now = clockNs(clock);
  const sides = [ours, baseline].map((fn) => ({ fn, times: [] as number[], total: 0 }));
  for (const s of sides) for (let i = 0; i < warmup; i++) s.fn();
  const done = (s: (typeof sides)[number]): boolean => s.times.length >= maxReps || (s.times.length >= minReps && s.total >= minMs * 1e6);
  while (!sides.every(done)) {
    for (const s of sides) {
      if (done(s)) continue;
      // A round lasts ~20 ms or 3 calls, whichever is more.
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < 3 || Number(process.hrtime.bigint() - t0) < 20e6; i++) {
        const a = now();
        s.fn();
        const dt = now() - a;
        s.times.push(dt);
        s.total += dt;
        if (s.times.length >= maxReps) break;
      }
    }
  }
  const scale = unit === 'ns' ? 1 : unit === 'us' ? 1e3 : 1e6;
  const summary = (times: number[]): Timing => {
    times.sort((a, b) => a - b);
    const at = (q: number): number => round(times[Math.min(times.length - 1, Math.floor(q * times.length))]! / scale);
    return { median: at(0.5), p10: at(0.1), p90: at(0.9), reps: times.length };
  };
  return { ours: summary(sides[0]!.times), baseline: summary(sides[1]!.times) };
}

/**
 * Rounds to 3 significant digits (enough for benchmark figures, keeps the JSON readable).
 * @example
 * ```ts
 * round(12.3456); // 12.3
 * ```
 */
export function round(x: number): number {
  return x === 0 || !Number.isFinite(x) ? x : Number(x.toPrecision(3));
}

/**
 * Prints progress to stderr (stdout is reserved for the tables and the final JSON line).
 * @example
 * ```ts
 * progress('pes: ingest 10k frames');
 * ```
 */
export function progress(message: string): void {
  process.stderr.write(`[bench] ${message}\n`);
}

function fmt(v: unknown): string {
  if (typeof v === 'number') return Number.isInteger(v) ? String(v) : String(round(v));
  if (typeof v === 'string') return v;
  return JSON.stringify(v);
}

/**
 * Renders one section as aligned rows: figure | value | baseline | ratio.
 * @example
 * ```ts
 * console.log(table('aead', { encrypt_us: 4, encrypt_us_baseline: 16 })); // ... 4x
 * ```
 */
export function table(title: string, section: Record<string, unknown>): string {
  const rows: string[][] = [['figure', 'value', 'baseline', 'baseline/value']];
  const nested: string[] = [];
  for (const [k, v] of Object.entries(section)) {
    if (k.endsWith('_baseline')) continue;
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
      nested.push(table(`${title}.${k}`, v as Record<string, unknown>));
      continue;
    }
    const base = section[`${k}_baseline`];
    const ratio = typeof v === 'number' && typeof base === 'number' && v > 0 ? `${fmt(base / v)}x` : '';
    rows.push([k, fmt(v), base === undefined ? '' : fmt(base), ratio]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const line = (r: string[]): string => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  const out = [`== ${title}`, line(rows[0]!), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.slice(1).map(line)];
  return [out.join('\n'), ...nested].join('\n\n');
}

/**
 * Runs the named sections (all existing ones by default); returns the JSON object.
 * @example
 * ```ts
 * const { results } = await runBenchmarks(['aead']);
 * ```
 */
export async function runBenchmarks(names: readonly string[] = []): Promise<{ results: Record<string, unknown>; failed: boolean }> {
  const here = dirname(fileURLToPath(import.meta.url));
  // A section is a bench/*.ts whose source exports run(); other scripts there (e.g. fuzz.ts, which runs on
  // import) are not imported.
  const found = readdirSync(here)
    .filter((f) => /^[a-z][a-z0-9-]*\.ts$/.test(f) && f !== 'index.ts')
    .filter((f) => /export\s+(async\s+)?function\s+run\s*\(|export\s*\{[^}]*\brun\b[^}]*\}/.test(readFileSync(join(here, f), 'utf8')))
    .map((f) => f.slice(0, -3))
    .sort();
  for (const name of names) {
    if (!found.includes(name)) throw new Error(`unknown benchmark section '${name}' (known: ${found.join(', ')})`);
  }
  const ordered: string[] = [...SECTIONS.filter((s) => found.includes(s)), ...found.filter((f) => !(SECTIONS as readonly string[]).includes(f))];
  const chosen = names.length > 0 ? names : ordered;
  const results: Record<string, unknown> = {};
  let failed = false;
  for (const name of chosen) {
    progress(`section ${name}`);
    try {
      const mod = (await import(pathToFileURL(join(here, `${name}.ts`)).href)) as { run?: () => Promise<Record<string, unknown>> };
      if (typeof mod.run !== 'function') throw new Error(`bench/${name}.ts does not export run()`);
      const section = await mod.run();
      results[name] = section;
      process.stdout.write(table(name, section) + '\n\n');
    } catch (e) {
      failed = true;
      results[name] = { error: (e as Error).message };
      process.stderr.write(`[bench] section ${name} failed: ${(e as Error).stack ?? String(e)}\n`);
    }
  }
  return { results, failed };
}

async function main(names: string[]): Promise<void> {
  try {
    const { results, failed } = await runBenchmarks(names);
    process.stdout.write(JSON.stringify(results) + '\n');
    if (failed) process.exitCode = 1;
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n`);
    process.exitCode = 2;
  }
}

// No top-level await: the section modules import measure() from this module, which must have finished
// evaluating by then (a pending top-level await here would deadlock the import cycle).
const entry = process.argv[1];
if (entry && pathToFileURL(entry).href === import.meta.url) void main(process.argv.slice(2).filter((a) => !a.startsWith('-')));
