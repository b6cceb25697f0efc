/**
 * `npm run bench -- cli`: cold start of `smartermeter --help`, a new process each time, with the compiled CLI
 * (bin/build.js into test-output/bench-cli-dist, the current sources) beside the TypeScript sources under tsx
 * (the `_baseline`, what every start cost before dist/), alternating so both see the same machine. Also the
 * cold start of a command that loads its actor (`meter synth --help`) and the build itself.
 * @module
 */
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { measure, measurePair, progress } from './index.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

function cli(args: string[], env: Record<string, string>): () => void {
  return () => {
    const r = spawnSync(process.execPath, [join(ROOT, 'bin/smartermeter.js'), ...args], { cwd: ROOT, env: { ...process.env, ...env }, encoding: 'utf8' });
    if (r.status !== 0 || !r.stdout.includes('Usage: smartermeter')) throw new Error(`smartermeter ${args.join(' ')} failed: ${r.stderr}`);
  };
}

/**
 * The `cli` section of `npm run bench`.
 * @example
 * ```ts
 * const section = await run(); // { help_ms, help_ms_baseline, ... }
 * ```
 */
export async function run(): Promise<Record<string, unknown>> {
  const dist = join(ROOT, 'test-output', 'bench-cli-dist');
  progress('cli: build');
  const build = measure(
    () => {
      const r = spawnSync(process.execPath, [join(ROOT, 'bin/build.js'), '--outdir', dist, '--quiet'], { cwd: ROOT, encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`bin/build.js failed: ${r.stderr}`);
    },
    { unit: 'ms', minReps: 1, minMs: 0, warmup: 0 },
  );
  const compiled = { SM_DIST: dist, SM_DEBUG: '' };
  const source = { SM_FROM_SOURCE: '1', SM_DEBUG: '' };
  const opts = { unit: 'ms' as const, minReps: 5, minMs: 2000, warmup: 1 };
  try {
    progress('cli: --help, compiled vs tsx');
    const help = measurePair(cli(['--help'], compiled), cli(['--help'], source), opts);
    progress('cli: meter synth --help, compiled vs tsx');
    const synth = measurePair(cli(['meter', 'synth', '--help'], compiled), cli(['meter', 'synth', '--help'], source), opts);
    return {
      help_ms: help.ours.median,
      help_ms_baseline: help.baseline.median,
      meter_synth_help_ms: synth.ours.median,
      meter_synth_help_ms_baseline: synth.baseline.median,
      build_ms: build.median,
      reps: help.ours.reps,
    };
  } finally {
    rmSync(dist, { recursive: true, force: true });
  }
}
