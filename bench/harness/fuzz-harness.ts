/**
 * The fuzz runner shared by `npm run fuzz` (bench/fuzz.ts, millions of inputs) and the bounded samples in
 * `npm test` (test/security/fuzz-*.test.ts). A target generates inputs with fast-check and runs each through
 * the real code with an oracle; the runner counts, per target:
 * - crashes: an exception the code under test was not supposed to throw (or no verdict at all);
 * - violations: the oracle disagrees (a decoder accepts what the spec refuses or the reverse, an input that
 *   is not counted, a lost intact frame, ...);
 * - forged: tampered or replayed input accepted as authentic (a frame, a reading, an aggregate, a seal);
 * - memory: heap growth after a full GC (when `gc` is exposed) and growth of the process's peak RSS
 *   (`process.resourceUsage().maxRSS`, a high-water mark, so a single input that allocates a gigabyte for a
 *   lying length header shows even if it is freed at once).
 * @module
 */
import { runInNewContext } from 'node:vm';
import { setFlagsFromString } from 'node:v8';
import fc from 'fast-check';

/** What the code under test did with one input. */
export type Verdict = 'accepted' | 'rejected' | 'forged';

/** Thrown by a target's oracle when the code under test behaved wrongly without crashing. */
export class Violation extends Error {
  override name = 'Violation';
}

/** One opened target: its input generator, the run of one input, final checks and cleanup. */
export interface TargetRun<I> {
  arbitrary: fc.Arbitrary<I>;
  /** Runs one input through the code under test; throws {@link Violation} on an oracle failure, anything else is a crash. */
  run(input: I): Verdict | Promise<Verdict>;
  /** Checks at the end (e.g. everything published is authentic); returns problems as violations. */
  finish?(): Promise<string[]> | string[];
  close(): Promise<void> | void;
  /** A short reproduction of an input (hex), for reports. */
  show(input: I): string;
  /** Figures of the target's own (counters of the code under test), for the report. */
  figures?(): Record<string, number>;
}

export interface FuzzTarget<I = unknown> {
  name: string;
  /** One line: what code is fed and how. */
  what: string;
  /** Share of the script's total inputs (relative weight). */
  weight: number;
  /** Whether `run` returns promises (asyncProperty) or not (property; faster). */
  async: boolean;
  /**
   * For targets driving live services (an MQTT client, a broker): give the event loop a turn every this many
   * inputs, so that keep-alives and publishes proceed as they would in production. Needs `async`.
   */
  yieldEvery?: number;
  open(): Promise<TargetRun<I>>;
}

export interface FuzzResult {
  target: string;
  inputs: number;
  accepted: number;
  rejected: number;
  forged: number;
  crashes: number;
  violations: number;
  /** Heap used after a full GC at the end minus at the start, MB (null if gc is not exposed). */
  heapGrowthMB: number | null;
  /** Growth of the process's peak RSS while this target ran, MB. */
  peakRssGrowthMB: number;
  seconds: number;
  inputsPerSecond: number;
  examples: string[];
  figures: Record<string, number>;
}

let gcFn: (() => void) | null | undefined;
/**
 * A full GC, if the runtime lets us expose one (V8 flag set at run time, then fetched from a fresh context).
 * @example
 * ```ts
 * if (fullGc()) console.log(process.memoryUsage().heapUsed);
 * ```
 */
export function fullGc(): boolean {
  if (gcFn === undefined) {
    try {
      setFlagsFromString('--expose-gc');
      gcFn = runInNewContext('gc') as () => void;
    } catch {
      gcFn = null;
    }
  }
  if (!gcFn) return false;
  gcFn();
  gcFn();
  return true;
}

const maxRssMB = () => process.resourceUsage().maxRSS / 1024;

/**
 * Runs `runs` inputs of `target` (seeded) and reports; never throws for findings (they are counted).
 * @example
 * ```ts
 * const r = await runTarget(linkTarget, { runs: 10_000, seed: 42 });
 * if (r.crashes || r.forged || r.violations) process.exitCode = 1;
 * ```
 */
export async function runTarget<I>(target: FuzzTarget<I>, o: { runs: number; seed: number; onProgress?: (done: number) => void }): Promise<FuzzResult> {
  const t = await target.open();
  const res: FuzzResult = {
    target: target.name,
    inputs: 0,
    accepted: 0,
    rejected: 0,
    forged: 0,
    crashes: 0,
    violations: 0,
    heapGrowthMB: null,
    peakRssGrowthMB: 0,
    seconds: 0,
    inputsPerSecond: 0,
    examples: [],
    figures: {},
  };
  const note = (kind: string, input: I, detail: string) => {
    if (res.examples.length < 8) res.examples.push(`${kind}: ${detail.slice(0, 300)} <- ${t.show(input).slice(0, 600)}`);
  };
  const tally = (input: I, v: Verdict) => {
    res.inputs++;
    if (v === 'accepted') res.accepted++;
    else if (v === 'rejected') res.rejected++;
    else {
      res.forged++;
      note('forged', input, 'tampered input accepted');
    }
    if (o.onProgress && res.inputs % 10_000 === 0) o.onProgress(res.inputs);
  };
  const fail = (input: I, e: unknown) => {
    res.inputs++;
    if (e instanceof Violation) {
      res.violations++;
      note('violation', input, e.message);
    } else {
      res.crashes++;
      note('crash', input, e instanceof Error ? `${e.name}: ${e.message}` : String(e));
    }
  };
  const hasGc = fullGc();
  const heap0 = process.memoryUsage().heapUsed;
  const rss0 = maxRssMB();
  const t0 = performance.now();
  try {
    if (target.async) {
      await fc.assert(
        fc.asyncProperty(t.arbitrary, async (input) => {
          if (target.yieldEvery && res.inputs % target.yieldEvery === 0) await new Promise((r) => setImmediate(r));
          try {
            tally(input, await t.run(input));
          } catch (e) {
            fail(input, e);
          }
        }),
        { numRuns: o.runs, seed: o.seed },
      );
    } else {
      fc.assert(
        fc.property(t.arbitrary, (input) => {
          try {
            tally(input, t.run(input) as Verdict);
          } catch (e) {
            fail(input, e);
          }
        }),
        { numRuns: o.runs, seed: o.seed },
      );
    }
    for (const p of (await t.finish?.()) ?? []) {
      res.violations++;
      if (res.examples.length < 8) res.examples.push(`violation at the end: ${p}`);
    }
    res.figures = t.figures?.() ?? {};
  } finally {
    await t.close();
  }
  res.seconds = (performance.now() - t0) / 1000;
  res.inputsPerSecond = Math.round(res.inputs / res.seconds);
  if (hasGc) {
    fullGc();
    res.heapGrowthMB = Math.round(((process.memoryUsage().heapUsed - heap0) / 2 ** 20) * 10) / 10;
  }
  res.peakRssGrowthMB = Math.round((maxRssMB() - rss0) * 10) / 10;
  return res;
}
