/**
 * `npm run fuzz [-- --total N] [--seed S] [--only a,b] [--rsa-bits B]`: the long fuzz run of every parser of
 * outside input (targets and oracles in test/security/fuzz-targets.ts; `npm test` runs a bounded sample).
 *
 * Prints one table row per target — inputs, accepted, rejected, crashes, oracle violations, forged inputs
 * accepted, heap growth after GC, peak RSS growth, inputs/s — then, as the LAST line of stdout, one JSON
 * object with the same figures. Exits 1 if any target crashed, had a violation, accepted a forged input, or
 * grew its heap (after GC) by more than 64 MB or the process's peak RSS by more than 512 MB.
 * Default total: 1,200,000 inputs, split by each target's weight; seed: random (printed, to replay a run).
 * @module
 */
import { allTargets } from './harness/fuzz-targets.js';
import { fullGc, runTarget, type FuzzResult } from './harness/fuzz-harness.js';

const HEAP_LIMIT_MB = 64;
const RSS_LIMIT_MB = 512;

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}
function intArg(name: string, dflt: number): number {
  const v = arg(name);
  if (v === undefined) return dflt;
  const n = Number(v.replace(/_/g, ''));
  if (!Number.isSafeInteger(n) || n < 1) {
    console.error(`fuzz: --${name} must be a positive integer`);
    process.exit(2);
  }
  return n;
}

const total = intArg('total', 1_200_000);
const seed = intArg('seed', (Date.now() ^ (process.pid << 8)) >>> 1);
const rsaBits = intArg('rsa-bits', 2048);
const only = arg('only')?.split(',');
const targets = allTargets({ rsaBits }).filter((t) => !only || only.includes(t.name));
if (targets.length === 0) {
  console.error(`fuzz: no target named ${only?.join(', ')}`);
  process.exit(2);
}
const weights = targets.reduce((s, t) => s + t.weight, 0);
console.error(`fuzz: ${total} inputs over ${targets.length} targets, seed ${seed}${fullGc() ? '' : ' (no gc: heap growth not measured)'}`);

const results: FuzzResult[] = [];
let assigned = 0;
for (const [i, t] of targets.entries()) {
  // Shares by weight; the last target takes the rounding remainder, so the total is exact.
  const runs = i === targets.length - 1 ? Math.max(1, total - assigned) : Math.max(1, Math.round((total * t.weight) / weights));
  assigned += runs;
  process.stderr.write(`fuzz: ${t.name}: ${runs} inputs — ${t.what}\n`);
  const r = await runTarget(t, { runs, seed, onProgress: (n) => process.stderr.write(`\r  ${t.name}: ${n}/${runs}`) });
  process.stderr.write(`\r  ${t.name}: ${r.inputs} inputs in ${r.seconds.toFixed(1)} s\n`);
  results.push(r);
}

const bad = (r: FuzzResult) =>
  r.crashes > 0 || r.violations > 0 || r.forged > 0 || (r.heapGrowthMB ?? 0) > HEAP_LIMIT_MB || r.peakRssGrowthMB > RSS_LIMIT_MB;
const rows = results.map((r) => ({
  target: r.target,
  inputs: r.inputs,
  accepted: r.accepted,
  rejected: r.rejected,
  crashes: r.crashes,
  violations: r.violations,
  forged: r.forged,
  'heap+ MB': r.heapGrowthMB ?? '-',
  'peak RSS+ MB': r.peakRssGrowthMB as number | string,
  'inputs/s': r.inputsPerSecond,
  result: bad(r) ? 'FAIL' : 'ok',
}));
const sum = (k: 'inputs' | 'accepted' | 'rejected' | 'crashes' | 'violations' | 'forged') => results.reduce((s, r) => s + r[k], 0);
rows.push({
  target: 'TOTAL',
  inputs: sum('inputs'),
  accepted: sum('accepted'),
  rejected: sum('rejected'),
  crashes: sum('crashes'),
  violations: sum('violations'),
  forged: sum('forged'),
  'heap+ MB': '-',
  'peak RSS+ MB': '-',
  'inputs/s': Math.round(sum('inputs') / results.reduce((s, r) => s + r.seconds, 0)),
  result: results.some(bad) ? 'FAIL' : 'ok',
});
console.table(rows);
const peakRssMB = Math.round((process.resourceUsage().maxRSS / 1024) * 10) / 10;
console.log(`peak RSS of the process: ${peakRssMB} MB; seed ${seed} (--seed ${seed} replays this run)`);
for (const r of results) {
  if (Object.keys(r.figures).length) console.log(`${r.target} figures: ${JSON.stringify(r.figures)}`);
  for (const e of r.examples) console.log(`${r.target} ${e}`);
}
console.log(JSON.stringify({ seed, total: sum('inputs'), peakRssMB, limits: { heapMB: HEAP_LIMIT_MB, peakRssMB: RSS_LIMIT_MB }, targets: results }));
if (results.some(bad)) process.exitCode = 1;
