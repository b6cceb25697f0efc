/**
 * What an activation code costs (protocol/household-key.ts): derivation 2 (one scrypt, then HKDF) against
 * derivation 1 (one scrypt per value; the `_baseline` figures), in the same run.
 * - `provision_*`: provisioning's own derivation (provision/keys.ts `codeSecrets`, Node's native scrypt on the
 *   libuv threadpool) over {@link HOUSEHOLDS} households, as many at once as provisioning runs (twice the
 *   threadpool); per household, wall and CPU (process.cpuUsage: all threads) milliseconds; classic key sets
 *   (verifier and binding key: 2 scrypts before, 1 now) and the end-to-end mode (and the stream key: 3 before).
 *   Rounds alternate the two derivations so a shared machine's load falls on both alike; medians of {@link ROUNDS}.
 * - `browser_ms`: the household's browser at registration, @noble/hashes' pure-JavaScript scrypt on one thread
 *   (here in Node's V8), all three values (3 scrypts before, 1 now).
 * @module
 */
import { activationSecrets } from '../protocol/household-key.js';
import { codeSecrets } from '../provision/keys.js';
import { progress, round } from './index.js';

/** Households derived per round. */
export const HOUSEHOLDS = 200;
/** Rounds per figure (each runs both derivations). */
export const ROUNDS = 3;

const codes = Array.from({ length: HOUSEHOLDS }, (_, i) => ({ hh: `hh${i}`, code: `ABCD-EFGH-${String(i).padStart(4, '0')}` }));

/** Wall and CPU milliseconds per household of deriving every household's values, `lanes` at once. */
async function perHousehold(e2e: boolean, derivation: 1 | 2): Promise<{ wall: number; cpu: number }> {
  const lanes = 2 * (Number(process.env.UV_THREADPOOL_SIZE) || 4); // as provision/keys.ts inParallel
  let next = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: lanes }, async () => {
      while (next < codes.length) {
        const { hh, code } = codes[next++]!;
        await codeSecrets(code, hh, e2e, derivation);
      }
    }),
  );
  const wall = performance.now() - t0;
  const c = process.cpuUsage(cpu0);
  return { wall: wall / codes.length, cpu: (c.user + c.system) / 1000 / codes.length };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/**
 * The `activation` section of `npm run bench`.
 * @example
 * ```ts
 * const section = await run(); // { provision_classic_wall_ms, provision_classic_wall_ms_baseline, ... }
 * ```
 */
export async function run(): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = { households: HOUSEHOLDS, rounds: ROUNDS, threadpool: Number(process.env.UV_THREADPOOL_SIZE) || 4 };
  for (const [mode, e2e] of [
    ['classic', false],
    ['e2e', true],
  ] as const) {
    const r: Record<1 | 2, { wall: number[]; cpu: number[] }> = { 1: { wall: [], cpu: [] }, 2: { wall: [], cpu: [] } };
    for (let i = 0; i < ROUNDS; i++) {
      for (const d of i % 2 === 0 ? ([1, 2] as const) : ([2, 1] as const)) {
        progress(`activation provision ${mode} derivation ${d} round ${i + 1}/${ROUNDS}`);
        const m = await perHousehold(e2e, d);
        r[d].wall.push(m.wall);
        r[d].cpu.push(m.cpu);
      }
    }
    out[`provision_${mode}_wall_ms`] = round(median(r[2].wall));
    out[`provision_${mode}_wall_ms_baseline`] = round(median(r[1].wall));
    out[`provision_${mode}_cpu_ms`] = round(median(r[2].cpu));
    out[`provision_${mode}_cpu_ms_baseline`] = round(median(r[1].cpu));
  }
  progress('activation browser (pure-JavaScript scrypt)');
  const { ours, baseline } = await measurePairAsync(
    () => activationSecrets('ABCD-EFGH-JKLM', 'hh1', 2),
    () => activationSecrets('ABCD-EFGH-JKLM', 'hh1', 1),
  );
  out.browser_ms = round(ours);
  out.browser_ms_baseline = round(baseline);
  return out;
}

/** Medians of 5 alternating timed calls of each (after one untimed call each), in ms. */
async function measurePairAsync(ours: () => Promise<unknown>, baseline: () => Promise<unknown>): Promise<{ ours: number; baseline: number }> {
  await ours();
  await baseline();
  const t: { ours: number[]; baseline: number[] } = { ours: [], baseline: [] };
  for (let i = 0; i < 5; i++) {
    for (const [k, fn] of [
      ['ours', ours],
      ['baseline', baseline],
    ] as const) {
      const t0 = performance.now();
      await fn();
      t[k].push(performance.now() - t0);
    }
  }
  return { ours: median(t.ours), baseline: median(t.baseline) };
}
