/**
 * `npm run soak [-- options]`: the long crash run. Every component in its own OS process (test/crash/harness),
 * killed with SIGKILL mid-stream over and over, restarted on its state files; at the end the MDMS export is
 * compared with the totals computed from the sources. Prints a table per run and, as the LAST line of stdout,
 * one JSON object with the figures. Exits 1 if any run lost or double-counted a reading.
 *
 * Options (all optional):
 *   --broker embedded|mosquitto|both   (default both; mosquitto = a Mosquitto the run starts from the key set's
 *                 provisioned files (users, ACL, persistence: provision/mosquitto.ts), skipped if not installed)
 *   --meters N (default 10)  --neighbourhoods N (default 2)  --days N (default 7)  --speed N (default 4800)
 *   --rounds N    times the kill sequence is repeated within one run (default 3)
 *   --runs N      runs per broker (default 1)
 *   --keep        keep the run directories (logs, state files)
 *   --e2e         the end-to-end mode (provision --e2e, meters/PES/MDMS with --e2e, the guardian as a process and
 *                 a victim too); on the embedded broker only (the MDMS takes every release and partial)
 *   --control     also run the control experiment: the embedded broker WITHOUT its state file (sessions in
 *                 memory, aedes' default), killed twice, once while the PES is down: the uplinks it held for
 *                 the PES are lost, which shows the check can fail
 *   --cluster     instead: the cluster run (bench/harness/crash/cluster.ts): 3 NATS nodes, an active and a
 *                 standby PES on a PostgreSQL state, two MDMS workers on a PostgreSQL store; one NATS node
 *                 killed, then the active PES and an MDMS worker killed `--rounds` times (`--pg URL`, default
 *                 MDMS_TEST_PG or the local `test` database); reports the takeover times
 * Progress goes to stderr. Nothing here asserts a timing.
 * @module
 */
import { existsSync } from 'node:fs';
import { table } from './index.js';
import { MOSQUITTO_BIN } from './harness/crash/mosquitto.js';
import { runClusterCrash, type ClusterCrashReport, type ClusterVictim } from './harness/crash/cluster.js';
import { runCrashScenario, type CrashReport, type Victim } from './harness/crash/scenario.js';

function args(argv: string[]): Record<string, string | true> {
  const out: Record<string, string | true> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${a}`);
    const next = argv[i + 1];
    if (next === undefined || next.startsWith('--')) out[a.slice(2)] = true;
    else out[a.slice(2)] = argv[++i]!;
  }
  return out;
}

function int(v: string | true | undefined, def: number, name: string): number {
  if (v === undefined) return def;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer`);
  return n;
}

/** The figures of one run, flat, for the table and the JSON line. */
function figures(r: CrashReport): Record<string, unknown> {
  return {
    ok: r.ok,
    kills: Object.entries(r.killsByVictim)
      .map(([v, n]) => `${v} x${n}`)
      .join(', '),
    kills_total: r.kills.length,
    readings_expected: r.readingsExpected,
    readings_produced: r.readingsProduced,
    readings_folded: r.readingsFolded,
    duplicates_rejected_pes: r.duplicatesRejected,
    duplicates_mdms_last_process: r.mdmsDuplicates,
    billed_wh: r.households.reduce((a, h) => a + h.billedWh, 0),
    metered_wh: r.households.reduce((a, h) => a + h.meteredWh, 0),
    billing_periods_checked: r.billingPeriodsChecked,
    neighbourhood_windows_checked: r.neighbourhoodWindowsChecked,
    aggregates_released: r.released,
    ...(r.guardian ? { guardian_readings_folded: r.guardian.readingsFolded, guardian_partials_released: r.guardian.released, halves_unpaired: r.guardian.unpaired, reordered_pes: r.guardian.reorderedPes, reordered_guardian: r.guardian.reorderedGuardian } : {}),
    late_revisions: r.lateRevisions,
    mdms_rows: r.mdmsRows,
    restart_ms_max: Math.max(0, ...r.kills.map((k) => k.restartMs)),
    seconds: Math.round(r.seconds),
    problems: r.problems.length ? r.problems.slice(0, 5).join(' | ') : 'none',
  };
}

/** The figures of one cluster run, flat. */
function clusterFigures(r: ClusterCrashReport): Record<string, unknown> {
  const takeovers = r.kills.flatMap((k) => (k.takeoverS === undefined ? [] : [k.takeoverS]));
  return {
    ok: r.ok,
    kills: r.kills.map((k) => k.process).join(', '),
    kills_total: r.kills.length,
    nats_node_clients_failed_over: r.kills.find((k) => k.clients !== undefined)?.clients ?? 0,
    nats_failover_s: r.kills.find((k) => k.failoverS !== undefined)?.failoverS ?? null,
    takeover_s: r.takeoverS === null ? null : Number(r.takeoverS.toFixed(2)),
    takeover_s_max: takeovers.length ? Number(Math.max(...takeovers).toFixed(2)) : null,
    lease_s_max: Number(Math.max(0, ...r.kills.map((k) => k.leaseS ?? 0)).toFixed(2)),
    readings_expected: r.readingsExpected,
    readings_folded: r.readingsFolded,
    duplicates_rejected_pes: r.duplicatesRejected,
    billed_wh: r.households.reduce((x, h) => x + h.billedWh, 0),
    metered_wh: r.households.reduce((x, h) => x + h.meteredWh, 0),
    billing_periods_checked: r.billingPeriodsChecked,
    neighbourhood_windows_checked: r.neighbourhoodWindowsChecked,
    aggregates_released: r.released,
    mdms_rows: r.mdmsRows,
    mdms_workers_last_process: JSON.stringify(r.mdmsWorkers),
    seconds: Math.round(r.seconds),
    problems: r.problems.length ? r.problems.slice(0, 5).join(' | ') : 'none',
  };
}

async function soakCluster(a: Record<string, string | true>): Promise<void> {
  const rounds = int(a.rounds, 3, 'rounds');
  const runs = int(a.runs, 1, 'runs');
  if (a.pg !== undefined && (a.pg === true || !/^postgres(ql)?:\/\//.test(a.pg))) throw new Error('--pg must be a postgres:// URL');
  const kills: ClusterVictim[] = ['nats', ...Array.from({ length: rounds }, () => ['pes', 'mdms'] as ClusterVictim[]).flat()];
  const results: Record<string, unknown> = {};
  let failed = false;
  for (let i = 0; i < runs; i++) {
    const name = runs > 1 ? `cluster_${i + 1}` : 'cluster';
    const r = await runClusterCrash({
      ...(typeof a.pg === 'string' ? { pgUrl: a.pg } : {}),
      meters: int(a.meters, 10, 'meters'),
      neighbourhoods: int(a.neighbourhoods, 2, 'neighbourhoods'),
      days: int(a.days, 7, 'days'),
      speed: int(a.speed, 4800, 'speed'),
      kills,
      keep: a.keep === true,
      log: (l) => process.stderr.write(`[soak ${name}] ${l}\n`),
    });
    const f = clusterFigures(r);
    results[name] = f;
    process.stdout.write(table(name, f) + '\n\n');
    if (!r.ok) {
      failed = true;
      process.stderr.write(`[soak ${name}] FAILED, run directory kept: ${r.dir}\n  ${r.problems.join('\n  ')}\n`);
    }
  }
  process.stdout.write(JSON.stringify({ soak: results }) + '\n');
  if (failed) process.exitCode = 1;
}

async function main(): Promise<void> {
  const a = args(process.argv.slice(2));
  if (a.cluster !== undefined) {
    if (a.cluster !== true) throw new Error('--cluster takes no value');
    if (a.broker !== undefined || a.control !== undefined || a.e2e !== undefined) throw new Error('--cluster runs its own NATS cluster: without --broker, --control or --e2e');
    return soakCluster(a);
  }
  if (a.pg !== undefined) throw new Error('--pg goes with --cluster');
  const e2e = a.e2e === true;
  const which = (a.broker as string | undefined) ?? (e2e ? 'embedded' : 'both');
  if (e2e && which !== 'embedded') throw new Error('--e2e runs on the embedded broker only (--broker embedded)');
  if (!['embedded', 'mosquitto', 'both'].includes(which)) throw new Error('--broker must be embedded, mosquitto or both');
  const rounds = int(a.rounds, 3, 'rounds');
  const runs = int(a.runs, 1, 'runs');
  const base = { meters: int(a.meters, 10, 'meters'), neighbourhoods: int(a.neighbourhoods, 2, 'neighbourhoods'), days: int(a.days, 7, 'days'), speed: int(a.speed, 4800, 'speed') };
  const brokers: ('embedded' | 'mosquitto')[] = which === 'both' ? ['embedded', 'mosquitto'] : [which as 'embedded' | 'mosquitto'];
  const results: Record<string, unknown> = {};
  let failed = false;
  for (const b of brokers) {
    if (b === 'mosquitto' && !existsSync(MOSQUITTO_BIN)) {
      process.stderr.write(`[soak] Mosquitto is not installed at ${MOSQUITTO_BIN}: skipped\n`);
      results.mosquitto = { skipped: 'not installed' };
      continue;
    }
    const one: Victim[] = b === 'embedded' ? ['meter', 'gateway', 'broker', 'pes+broker', 'pes', 'broker', ...(e2e ? (['guardian'] as Victim[]) : []), 'mdms'] : ['meter', 'gateway', 'pes', 'mdms'];
    const kills = Array.from({ length: rounds }, () => one).flat();
    for (let i = 0; i < runs; i++) {
      const name = `${b}${e2e ? '_e2e' : ''}${runs > 1 ? `_${i + 1}` : ''}`;
      const r = await runCrashScenario({
        ...base,
        broker: b,
        kills,
        e2e,
        keep: a.keep === true,
        log: (l) => process.stderr.write(`[soak ${name}] ${l}\n`),
      });
      const f = figures(r);
      results[name] = f;
      process.stdout.write(table(name, f) + '\n\n');
      if (!r.ok) {
        failed = true;
        process.stderr.write(`[soak ${name}] FAILED, run directory kept: ${r.dir}\n  ${r.problems.join('\n  ')}\n`);
      }
    }
  }
  if (a.control === true) {
    const r = await runCrashScenario({
      ...base,
      broker: 'embedded',
      brokerState: false,
      kills: ['pes+broker', 'broker'],
      log: (l) => process.stderr.write(`[soak control] ${l}\n`),
    });
    const f = figures(r);
    results.control_broker_in_memory = { ...f, expected: 'readings lost', as_expected: !r.ok };
    process.stdout.write(table('control: embedded broker without --state, killed twice, once while the PES is down (loss expected)', f) + '\n\n');
    if (r.ok) process.stderr.write('[soak control] the control run lost nothing this time (the kills found no message in flight)\n');
  }
  process.stdout.write(JSON.stringify({ soak: results }) + '\n');
  if (failed) process.exitCode = 1;
}

main().catch((e: Error) => {
  process.stderr.write(`[soak] ${e.stack ?? e.message}\n`);
  process.exitCode = 2;
});
