/**
 * One crash run against the clustered deployment (issue 14): a 3-node NATS cluster serving MQTT with its
 * sessions in JetStream (broker/nats-cluster.ts, the fleet's users from the key set), the PES as one partition
 * with an active and a standby instance over a PostgreSQL state (a fresh schema per run; the lease decides who
 * is active), two MDMS ingest workers on one PostgreSQL store (a fresh schema per run; each worker its own
 * persistent session, each storing every aggregate idempotently), one gateway per neighbourhood and one meter
 * per fleet entry on socat pty cables; every component is given all three MQTT URLs. Mid-stream, in turn:
 * `kill -9` of one NATS node (the one holding the most client connections; it stays dead, the two others keep
 * the quorum), of
 * the active PES (the standby takes the partition over: the takeover time is measured, kill to the standby's
 * subscription; the killed one comes back as the new standby), and of one MDMS worker (it comes back on its
 * session). At the end the meters drain, the active PES closes every window (SIGUSR2), and the MDMS export
 * must equal the totals computed independently from the sources (expected.ts, check.ts): 0 lost, 0 counted
 * twice, and exactly one row per aggregate released.
 * @module
 */
import { get as httpGet } from 'node:http';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { parseSyntheticSpec } from '../../../firmware/sources/synthetic.js';
import { startNatsCluster, type NatsCluster } from '../../../broker/nats-cluster.js';
import { provision } from '../../../provision/keys.js';
import { compareExport, type Comparison } from './check.js';
import { expectedTotals } from './expected.js';
import { lastLogLine, meterSamples, parseExport, probeMdmsPg, probePesPg } from './probes.js';
import { Proc, sleep, socatPair } from './procs.js';
import { runCli } from './scenario.js';

/** A component the cluster run kills: one NATS node, the active PES of the partition, one MDMS worker. */
export type ClusterVictim = 'nats' | 'pes' | 'mdms';

export interface ClusterCrashOptions {
  /** PostgreSQL for the PES state and the MDMS store (a fresh schema each). Default `MDMS_TEST_PG` or the local `test` database. */
  pgUrl?: string;
  /** Meters in all (one household each), spread over `neighbourhoods`. Default 6 over 2. */
  meters?: number;
  neighbourhoods?: number;
  /** Days of synthetic data per meter. Default 1. */
  days?: number;
  /** Simulated seconds per real second. Default 1800 (a day in 48 s). */
  speed?: number;
  /** First sample, ISO date (UTC). Default 2024-01-01. */
  start?: string;
  /** Victims in the order they are killed. Default `['nats', 'pes', 'mdms']`; `nats` at most twice (2 of 3 nodes must stay). */
  kills?: ClusterVictim[];
  /** How long a killed PES or MDMS worker stays dead, ms. Default 1000. */
  downMs?: number;
  /** Seconds from the start of the stream to the first kill (default 3), and between kills (default 2). */
  firstKillS?: number;
  gapS?: number;
  /** PES partition lease ttl, s (the standby takes over after at most this). Default 2. */
  leaseTtlS?: number;
  /** The cluster's MQTT ack wait, s (an unacknowledged QoS 1 delivery is resent after it). Default 5. */
  ackWaitS?: number;
  /** PES k. Default 2. */
  k?: number;
  /** Paillier modulus bits of the throwaway key set. Default 1024. */
  paillierBits?: number;
  log?: (line: string) => void;
  /** Keep the run directory and the two schemas. Also kept when the run fails. */
  keep?: boolean;
}

/** One kill and what the chain was doing when it landed. */
export interface ClusterKillRecord {
  victim: ClusterVictim;
  process: string;
  /** Seconds since the meters started. */
  atS: number;
  metersRunning: number;
  producedAtKill: number;
  foldedAtKill: number;
  /** Unfinished work when it died: readings framed and not yet folded (NATS node, PES), aggregates released and not yet stored (MDMS). */
  inFlight: number;
  /** Milliseconds from the restart to the process's readiness (null: a NATS node is not restarted). */
  restartMs: number | null;
  /** NATS only: the client connections the killed node held (every one of them had to fail over). */
  clients?: number;
  /** NATS only: seconds from the kill until every gateway was connected to another node. */
  failoverS?: number;
  /** PES only: seconds from the kill to the standby's subscription on the partition's session. */
  takeoverS?: number;
  /** PES only: seconds from the kill to the standby's taking the lease (the rest of `takeoverS` is loading the state and resuming the session). */
  leaseS?: number;
}

export interface ClusterCrashReport {
  runId: string;
  nodes: number;
  meters: number;
  days: number;
  speed: number;
  kills: ClusterKillRecord[];
  /** Seconds from the kill -9 of the active PES to the standby's subscription (the first PES kill). */
  takeoverS: number | null;
  readingsExpected: number;
  readingsProduced: number;
  readingsFolded: number;
  duplicatesRejected: number;
  rejected: Record<string, number>;
  released: number;
  lateRevisions: number;
  mdmsRows: number;
  /** Per MDMS worker (client id): aggregates stored and duplicates seen, from its clean-stop line (its last process only). */
  mdmsWorkers: Record<string, { stored: number; duplicates: number } | null>;
  households: Comparison['households'];
  neighbourhoods: Comparison['neighbourhoods'];
  billingPeriodsChecked: number;
  neighbourhoodWindowsChecked: number;
  seconds: number;
  problems: string[];
  ok: boolean;
  dir: string;
}

/** PES counters that mean a reading was refused or an aggregate withheld: each must stay 0. */
const PES_FAIL_COUNTERS = ['badTag', 'malformedFrame', 'malformedUplink', 'timeBackwards', 'registerDecrease', 'absurdTime', 'tooOld', 'negativeTotal'] as const;
const PARTITION = 'p1';
const READY = {
  mdms: /^MDMS ingest subscribed$/,
  active: /^pes: subscribed$/,
  standby: /^pes: standby, waiting for the partition lease$/,
  activeOrStandby: /^pes: (subscribed|standby, waiting for the partition lease)$/,
  gateway: /^gateway: connected to broker$/,
  meter: /^meter booted$/,
};

/** Client connections (the MQTT clients) a node's monitoring endpoint `/connz` counts; 0 if it does not answer. */
function connections(host: string, http: number): Promise<number> {
  return new Promise((resolve) => {
    const req = httpGet({ host, port: http, path: '/connz', agent: false, timeout: 2000 }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => {
        try {
          resolve(Number((JSON.parse(text) as { num_connections?: number }).num_connections ?? 0));
        } catch {
          resolve(0);
        }
      });
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(0));
  });
}

/** The time (ms) of the first pino line of `file` after `afterMs` whose `msg` matches; undefined if none. */
function firstLogTime(file: string, msg: RegExp, afterMs: number): number | undefined {
  for (const l of readFileSync(file, 'utf8').split('\n')) {
    if (!l.startsWith('{')) continue;
    try {
      const o = JSON.parse(l) as { time?: unknown; msg?: unknown };
      if (typeof o.time === 'number' && o.time > afterMs && typeof o.msg === 'string' && msg.test(o.msg)) return o.time;
    } catch {
      // a line cut by a kill -9
    }
  }
  return undefined;
}

/** The broker URL a gateway last dialled before `beforeMs` (its `gateway: connecting to broker` lines). */
function urlBefore(file: string, beforeMs: number): string | undefined {
  let url: string | undefined;
  for (const l of readFileSync(file, 'utf8').split('\n')) {
    if (!l.startsWith('{')) continue;
    try {
      const o = JSON.parse(l) as { time?: unknown; msg?: unknown; url?: unknown };
      if (typeof o.time === 'number' && o.time < beforeMs && o.msg === 'gateway: connecting to broker' && typeof o.url === 'string') url = o.url;
    } catch {
      // a line cut by a kill -9
    }
  }
  return url;
}

/** Polls an async `check` until it returns something other than `undefined`; throws after `timeoutMs`. */
async function until<T>(check: () => Promise<T | undefined>, what: () => string, timeoutMs: number, everyMs = 200): Promise<T> {
  const t0 = Date.now();
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what()}`);
    await sleep(everyMs);
  }
}

/**
 * Runs the cluster crash scenario and returns its report; never throws for a failed check (see `problems`),
 * only for a harness failure (a process that never becomes ready, nats-server or PostgreSQL missing).
 * @example
 * ```ts
 * const r = await runClusterCrash({ kills: ['nats', 'pes', 'mdms'] });
 * console.log(r.ok, r.takeoverS, r.problems);
 * ```
 */
export async function runClusterCrash(o: ClusterCrashOptions = {}): Promise<ClusterCrashReport> {
  const pgUrl = o.pgUrl ?? process.env.MDMS_TEST_PG ?? 'postgres://postgres@127.0.0.1:5432/test';
  const nMeters = o.meters ?? 6;
  const nNb = o.neighbourhoods ?? 2;
  const days = o.days ?? 1;
  const speed = o.speed ?? 1800;
  const startIso = o.start ?? '2024-01-01';
  const kills = o.kills ?? ['nats', 'pes', 'mdms'];
  const downMs = o.downMs ?? 1000;
  const leaseTtlS = o.leaseTtlS ?? 2;
  const log = o.log ?? (() => undefined);
  if (kills.filter((k) => k === 'nats').length > 1) throw new Error('one NATS node may be killed: a second would leave the JetStream streams without a quorum');
  const runId = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
  const pesSchema = `pes_crash_${runId}`;
  const mdmsSchema = `mdms_crash_${runId}`;
  const dir = mkdtempSync(join(tmpdir(), 'sm-cluster-crash-'));
  const logs = join(dir, 'logs');
  mkdirSync(logs);
  mkdirSync(join(dir, 'nv'));
  const t0 = performance.now();
  const procs: Proc[] = [];
  const cables: { close(): Promise<void> }[] = [];
  const db = new pg.Pool({ connectionString: pgUrl, max: 2, connectionTimeoutMillis: 5000 });
  let cluster: NatsCluster | undefined;
  let failed = true;
  try {
    await db.query('SELECT 1'); // PostgreSQL must answer before anything starts
    const rows = ['meter,household,neighbourhood,source'];
    for (let i = 0; i < nMeters; i++) rows.push(`m${i + 1},hh-${runId}-${i + 1},nb-${runId}-${String.fromCharCode(97 + (i % nNb))},synthetic:${2000 + i}`);
    writeFileSync(join(dir, 'fleet.csv'), rows.join('\n') + '\n');
    const keys = join(dir, 'keys');
    const fleet = await provision({ fleetCsv: join(dir, 'fleet.csv'), out: keys, rsaBits: 2048, paillierBits: o.paillierBits ?? 1024 });
    const start = Date.parse(`${startIso}T00:00:00Z`) / 1000;
    const expected = expectedTotals(
      fleet.meters.map((m) => ({ seed: parseSyntheticSpec(m.source)!, household: m.household, neighbourhood: m.neighbourhood })),
      { start, days, intervalS: 900, billingS: 86400 },
    );
    log(`run ${runId} in ${dir}: ${nMeters} meters, ${days} day(s) at x${speed}, ${expected.readings} readings expected`);

    cluster = await startNatsCluster({
      dir: join(dir, 'cluster'),
      nodes: 3,
      keysDir: keys,
      ackWaitS: o.ackWaitS ?? 5,
      onNodeExit: (node, code, signal) => log(`NATS node ${node} exited (${signal ?? `code ${code}`})`),
    });
    const urls = cluster.mqttUrls;
    log(`NATS cluster up: ${urls} (meta leader ${cluster.metaLeader})`);

    const pesArgs = [
      'pes', '--keys', keys, '--mqtt', urls, '--state', pgUrl, '--state-schema', pesSchema,
      '--partition', PARTITION, '--neighbourhoods', fleet.neighbourhoods.join(','), '--lease-ttl', `${leaseTtlS}s`,
      '--k', String(o.k ?? 2), '--revision-k', '1', '--interval', '900s', '--billing-period', '1d', '--lateness', '3600s',
      // A killed component's readings arrive late; retention and skew cover the whole run (scenario.ts says why).
      '--retention', `${days + 2}d`, '--max-skew', `${days + 2}d`,
    ];
    const pesA = new Proc('pes-a', pesArgs, logs);
    const pesB = new Proc('pes-b', pesArgs, logs);
    const workers = ['mdms-1', 'mdms-2'].map((id) => new Proc(id, ['mdms', '--keys', keys, '--db', pgUrl, '--db-schema', mdmsSchema, '--mqtt', urls, '--client-id', id, '--k', String(o.k ?? 2)], logs));
    procs.push(pesA, pesB, ...workers);
    const gateways: Proc[] = [];
    const meters: Proc[] = [];
    const nvFiles: string[] = [];
    for (const gw of fleet.gateways) {
      const lines: string[] = [];
      for (const m of fleet.meters.filter((x) => x.gateway === gw)) {
        const cable = await socatPair(join(dir, `${m.label}.meter`), join(dir, `${m.label}.gw`), join(logs, `socat-${m.label}.log`));
        cables.push(cable);
        lines.push('--line', cable.b);
        const nv = join(dir, 'nv', `${m.meter}.cbor`);
        nvFiles.push(nv);
        meters.push(new Proc(`meter-${m.label}`, ['meter', '--keys', keys, '--meter', m.meter, '--port', cable.a, '--nv', nv, '--speed', String(speed), '--start', startIso, '--days', String(days)], logs));
      }
      gateways.push(new Proc(gw, ['gateway', '--keys', keys, '--id', gw, ...lines, '--mqtt', urls, '--queue', join(dir, `${gw}.queue.sqlite`), '--stats', '5s'], logs));
    }
    procs.push(...gateways, ...meters);

    // The MDMS workers and the first PES (it takes the lease), then the standby, then the stream.
    for (const w of workers) w.start();
    pesA.start();
    await Promise.all([...workers.map((w) => w.ready(READY.mdms, 90_000)), pesA.ready(READY.active, 90_000)]);
    pesB.start();
    await pesB.ready(READY.standby, 90_000);
    for (const p of [...gateways, ...meters]) p.start();
    await Promise.all([...gateways.map((g) => g.ready(READY.gateway, 90_000)), ...meters.map((m) => m.ready(READY.meter, 90_000))]);
    const tStream = performance.now();
    log(`all ${procs.length} processes up after ${((tStream - t0) / 1000).toFixed(1)} s; stream lasts ~${((days * 86400) / speed).toFixed(0)} s`);

    const produced = () => nvFiles.reduce((s, f) => s + meterSamples(f), 0);
    const pesCounters = async () => (await probePesPg(db, pesSchema, PARTITION))?.counters ?? {};
    const folded = async () => (await pesCounters()).readings ?? 0;
    const mdmsRows = async () => (await probeMdmsPg(db, mdmsSchema))?.rows ?? 0;
    let active = pesA;
    let standby = pesB;
    const holding = async (v: ClusterVictim): Promise<number> => (v === 'mdms' ? ((await pesCounters()).released ?? 0) - (await mdmsRows()) : produced() - (await folded()));

    const records: ClusterKillRecord[] = [];
    let natsKilledAt = 0;
    let natsKilledPort = 0;
    // The gateways the node's death cut off (each client starts at its own node: lib/broker-url.ts startAt), and
    // when each was connected again; a gateway on another node was never cut off.
    const gatewaysBack = () =>
      gateways
        .filter((g) => new RegExp(`:${natsKilledPort}/?$`).test(urlBefore(g.log, natsKilledAt) ?? ''))
        .map((g) => firstLogTime(g.log, READY.gateway, natsKilledAt));
    for (let i = 0; i < kills.length; i++) {
      await sleep(i === 0 ? (o.firstKillS ?? 3) * 1000 : (o.gapS ?? 2) * 1000);
      // After a node's kill, the next victim dies only once the broker has failed over (every gateway connected
      // again), so that each kill is measured on its own: a PES takeover during the failover would time both.
      if (natsKilledAt) await until(async () => (gatewaysBack().every((t) => t !== undefined) ? true : undefined), () => 'the gateways to reconnect after the node kill', 90_000, 250);
      const victim = kills[i]!;
      // Aim at a moment the victim's part of the chain holds unfinished work (at most 3 s).
      const inFlight = await until(async () => {
        const n = await holding(victim);
        return n > 0 ? n : undefined;
      }, () => '', 3000, 50).catch(() => 0);
      const rec: ClusterKillRecord = {
        victim, process: '', atS: (performance.now() - tStream) / 1000, metersRunning: meters.filter((m) => m.running).length,
        producedAtKill: produced(), foldedAtKill: await folded(), inFlight, restartMs: null,
      };
      if (victim === 'nats') {
        // The node holding the most client connections (the components connect to the first URL they reach).
        const host = cluster.layout.host;
        const counts = await Promise.all(cluster.nodes.map((n) => (n.running ? connections(host, n.ports.http) : -1)));
        const node = counts.indexOf(Math.max(...counts));
        rec.process = `nats ${cluster.nodes[node]!.name}`;
        rec.clients = counts[node]!;
        natsKilledAt = Date.now();
        natsKilledPort = cluster.nodes[node]!.ports.mqtt;
        await cluster.kill(node, 'SIGKILL');
        log(`kill -9 NATS node ${cluster.nodes[node]!.name} holding ${counts[node]} of ${counts.filter((c) => c > 0).reduce((a, b) => a + b, 0)} client connections at ${rec.atS.toFixed(1)} s, ${inFlight} readings in flight`);
      } else if (victim === 'pes') {
        rec.process = active.name;
        const killedAt = Date.now();
        await active.kill9();
        log(`kill -9 ${active.name} (active) at ${rec.atS.toFixed(1)} s, ${inFlight} readings in flight`);
        await standby.ready(READY.active, 60_000);
        const at = (msg: RegExp) => ((lastLogLine(standby.log, msg) as { time?: number } | undefined)?.time ?? Date.now()) - killedAt;
        rec.takeoverS = at(READY.active) / 1000;
        rec.leaseS = at(/^pes: partition lease acquired; active$/) / 1000;
        log(`${standby.name} took the partition over in ${rec.takeoverS.toFixed(2)} s: the lease after ${rec.leaseS.toFixed(2)} s (ttl ${leaseTtlS} s), then the state and the session`);
        [active, standby] = [standby, active];
        await sleep(downMs);
        const tr = performance.now();
        standby.start();
        await standby.ready(READY.activeOrStandby, 90_000);
        rec.restartMs = Math.round(performance.now() - tr);
      } else {
        const w = workers[0]!;
        rec.process = w.name;
        await w.kill9();
        log(`kill -9 ${w.name} at ${rec.atS.toFixed(1)} s, ${inFlight} aggregates released and not yet stored`);
        await sleep(downMs);
        const tr = performance.now();
        w.start();
        await w.ready(READY.mdms, 90_000);
        rec.restartMs = Math.round(performance.now() - tr);
      }
      records.push(rec);
    }

    // Drain: meters finish, the PES folds everything, closes every window, the MDMS stores every release.
    const problems: string[] = [];
    const streamS = (days * 86400) / speed;
    for (const m of meters) {
      const e = await until(async () => (m.running ? undefined : m.exited), () => `${m.name} to finish`, streamS * 3000 + 180_000, 250);
      if (e.code !== 0) problems.push(`${m.name} exited with ${e.code ?? e.signal}`);
    }
    log(`meters done after ${((performance.now() - tStream) / 1000).toFixed(1)} s`);
    /** Waits until `value` reaches `target`, or has not changed for `stallMs` (a stall is reported by the check, not waited out). */
    const settled = async (value: () => Promise<number>, target: () => Promise<number>, stallMs: number): Promise<void> => {
      let last = -1;
      let changedAt = performance.now();
      await until(
        async () => {
          const v = await value();
          if (v !== last) [last, changedAt] = [v, performance.now()];
          return v >= (await target()) || performance.now() - changedAt > stallMs ? true : undefined;
        },
        () => 'the drain',
        600_000,
      );
    };
    await settled(folded, async () => expected.readings, 30_000);
    if ((await folded()) < expected.readings) problems.push(`the PES stalled at ${await folded()} of ${expected.readings} readings`);
    active.signal('SIGUSR2');
    await active.ready(/^pes: flushed on SIGUSR2/, 60_000);
    await settled(mdmsRows, async () => Math.max(1, (await pesCounters()).released ?? 0), 20_000);
    await sleep(500); // a last message in flight would show up as an extra row
    for (const group of [[standby], [active, ...gateways, ...workers]]) {
      for (const { p, e } of await Promise.all(group.map(async (p) => ({ p, e: await p.stop() })))) {
        if (e.code !== 0) problems.push(`${p.name} did not stop cleanly on SIGTERM (${e.code ?? e.signal})`);
      }
    }
    await cluster.stop();

    // The broker's failover: from the node's kill until every gateway is connected again (their log lines' times).
    const natsRec = records.find((r) => r.victim === 'nats');
    if (natsRec) {
      const back = gatewaysBack();
      natsRec.failoverS = back.length > 0 && back.every((t) => t !== undefined) ? (Math.max(...(back as number[])) - natsKilledAt) / 1000 : undefined;
      if (back.length === 0) log('broker failover: no gateway was on the killed node');
      else log(`broker failover: the ${back.length} gateway(s) on the killed node connected again ${natsRec.failoverS?.toFixed(1) ?? '(never)'} s after its kill`);
    }

    // The check.
    const c = await pesCounters();
    const rowsEnd = await mdmsRows();
    const exportArgs = ['mdms', 'export', '--db', pgUrl, '--db-schema', mdmsSchema, '--what'];
    const cmp = compareExport(expected, parseExport(await runCli([...exportArgs, 'billing']), 'billing'), parseExport(await runCli([...exportArgs, 'neighbourhood']), 'neighbourhood'));
    const readingsProduced = produced();
    if (readingsProduced !== expected.readings) problems.push(`meters framed ${readingsProduced} readings, the dataset has ${expected.readings}`);
    if (c.readings !== expected.readings) problems.push(`the PES folded ${c.readings} readings, the meters produced ${expected.readings}`);
    const rejected = Object.fromEntries(PES_FAIL_COUNTERS.map((n) => [n, c[n] ?? 0]));
    for (const [n, v] of Object.entries(rejected)) if (v !== 0) problems.push(`PES counter ${n} = ${v}`);
    if (rowsEnd !== c.released) problems.push(`the PES released ${c.released} aggregates, the MDMS holds ${rowsEnd} rows`);
    problems.push(...cmp.problems);
    for (const k of records) if (k.metersRunning === 0) problems.push(`the kill of ${k.process} landed after the stream ended`);
    const mdmsWorkers = Object.fromEntries(
      workers.map((w) => {
        const line = lastLogLine(w.log, /^MDMS ingest stopped$/) as { counters?: { stored?: number; duplicates?: number } } | undefined;
        return [w.name, line?.counters ? { stored: line.counters.stored ?? 0, duplicates: line.counters.duplicates ?? 0 } : null];
      }),
    );
    const report: ClusterCrashReport = {
      runId,
      nodes: 3,
      meters: nMeters,
      days,
      speed,
      kills: records,
      takeoverS: records.find((r) => r.takeoverS !== undefined)?.takeoverS ?? null,
      readingsExpected: expected.readings,
      readingsProduced,
      readingsFolded: c.readings ?? 0,
      duplicatesRejected: c.replay ?? 0,
      rejected,
      released: c.released ?? 0,
      lateRevisions: c.lateRevisions ?? 0,
      mdmsRows: rowsEnd,
      mdmsWorkers,
      households: cmp.households,
      neighbourhoods: cmp.neighbourhoods,
      billingPeriodsChecked: cmp.billingPeriodsChecked,
      neighbourhoodWindowsChecked: cmp.neighbourhoodWindowsChecked,
      seconds: (performance.now() - t0) / 1000,
      problems,
      ok: problems.length === 0,
      dir,
    };
    failed = !report.ok;
    writeFileSync(join(dir, 'report.json'), JSON.stringify(report, null, 1) + '\n');
    return report;
  } finally {
    await Promise.all(procs.map((p) => p.stop(5000)));
    await Promise.all(cables.map((c) => c.close()));
    await cluster?.stop().catch(() => undefined);
    if (!o.keep && !failed) {
      for (const s of [pesSchema, mdmsSchema]) await db.query(`DROP SCHEMA IF EXISTS ${s} CASCADE`).catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    } else log(`run directory kept: ${dir} (schemas ${pesSchema}, ${mdmsSchema})`);
    await db.end();
  }
}
