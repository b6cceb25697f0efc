/**
 * One crash run: a small provisioned fleet, every component in its own OS process (broker, MDMS ingest,
 * PES, one gateway per neighbourhood, one meter per fleet entry, socat pty pairs as serial cables), the
 * meters streaming a synthetic dataset at a chosen speed. Mid-stream, each victim in turn is killed with
 * SIGKILL, left dead for a moment, and started again with the same command line and state files. At the
 * end the meters finish and drain, the PES is told to close every window (SIGUSR2), the MDMS export is
 * compared with the totals computed independently from the sources (harness/expected.ts).
 *
 * With an external broker (Mosquitto), the broker is not a victim (it belongs to the machine) and the
 * components connect anonymously (the key set carries no broker credentials); gateway ids, households,
 * neighbourhoods and the PES/MDMS client ids carry a run id, so runs sharing the broker do not collide.
 * With `broker: 'mosquitto'` the run starts its own Mosquitto from the provisioned files (users, ACL,
 * persistence: provision/mosquitto.ts) on a free port; the components use their credentials, and Mosquitto
 * can be a victim like the embedded broker.
 *
 * With `e2e: true` the run is the end-to-end mode's (docs/paillier.md): the fleet is provisioned with `--e2e`,
 * the meters send Paillier snapshots (`meter --e2e`, the encoder in their NV), the PES folds blind
 * (`pes --e2e`), the guardian runs as its own process from its own key folder (`guardian --state`, a victim
 * too) and the MDMS combines the two parties' halves (`mdms --e2e`). The check is the same: the export equals
 * the independent sums exactly; both blind aggregators must have folded every reading.
 * @module
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import mqtt from 'mqtt';
import { parseSyntheticSpec } from '../../../firmware/sources/synthetic.js';
import { MOSQUITTO_CONF, type Fleet } from '../../../lib/keyset.js';
import { provision } from '../../../provision/keys.js';
import { compareExport } from './check.js';
import { expectedTotals, type Expected } from './expected.js';
import { lastLogLine, meterRing, meterSamples, parseExport, probeBroker, probeGatewayQueue, probeMdms, probeMdmsWaiting, probePes, type PesProbe } from './probes.js';
import { accepts, MOSQUITTO_BIN } from './mosquitto.js';
import { poll, Proc, sleep, socatPair } from './procs.js';

/** A component the harness kills. */
export type Component = 'meter' | 'gateway' | 'broker' | 'pes' | 'mdms' | 'guardian';
/**
 * One kill of the schedule: a component, or `'pes+broker'`: the PES is killed, and while it is down (the
 * broker holding its uplinks for its offline session) the broker is killed too; both come back.
 */
export type Victim = Component | 'pes+broker';

export interface CrashOptions {
  /**
   * `'embedded'`: our broker as a process with a state file (a victim too); `'mosquitto'`: Mosquitto started
   * from the key set's provisioned files (`broker/mosquitto/mosquitto.conf`, its users and ACL, its
   * persistence; a victim too); else an external broker URL (anonymous, not ours to kill).
   */
  broker: 'embedded' | 'mosquitto' | { url: string };
  /**
   * Give the embedded broker its state file (default true). `false` is the control experiment: sessions in
   * memory, as aedes keeps them by default, so that a broker kill is expected to lose readings.
   */
  brokerState?: boolean;
  /** Meters in all (one household each), spread over `neighbourhoods`. Default 6. */
  meters?: number;
  neighbourhoods?: number;
  /** Days of synthetic data per meter. Default 2. */
  days?: number;
  /** Simulated seconds per real second. Default 7200 (two hours per second). */
  speed?: number;
  /** First sample, ISO date (UTC). Default 2024-01-01. */
  start?: string;
  /** Victims in the order they are killed, one kill each (a victim may repeat). */
  kills: Victim[];
  /** How long a victim stays dead before it is started again, ms. Default 1000. */
  downMs?: number;
  /** Seconds from the start of the stream to the first kill (default 3), and from a victim's readiness to the next kill (default 2). */
  firstKillS?: number;
  gapS?: number;
  /** Neighbourhood interval, s. Default 900. */
  intervalS?: number;
  /** PES allowed lateness, s. Default 3600: a restarted meter's readings arrive late and make revisions. */
  latenessS?: number;
  /** PES k. Default 2. */
  k?: number;
  /** Paillier modulus bits of the throwaway key set. Default 1024. */
  paillierBits?: number;
  /** Progress lines (default: none). */
  log?: (line: string) => void;
  /** Keep the run directory (logs, state files) instead of deleting it. Also kept when the run fails. */
  keep?: boolean;
  /** The end-to-end mode: provision --e2e, meters/PES/MDMS with --e2e, the guardian as a process (a victim: `'guardian'`). */
  e2e?: boolean;
}

/** One kill and what the chain had done when it landed. */
export interface KillRecord {
  victim: Victim;
  process: string;
  /** Seconds since the meters started. */
  atS: number;
  /** Meters still streaming when the kill landed (> 0: mid-stream). */
  metersRunning: number;
  /** Readings framed by the meters (their NV stores) and folded by the PES (its state file) at the kill. */
  producedAtKill: number;
  foldedAtKill: number;
  /**
   * What the victim was holding unfinished when it died (the harness aims each kill at such a moment, for up
   * to 3 s): meter - frames unacknowledged in its ring; gateway - frames in its queue not yet PUBACKed;
   * broker - messages queued or in flight to persistent sessions, plus journaled publishes; PES - uplinks
   * the broker holds for it unacknowledged (Mosquitto: readings framed and not yet folded); MDMS -
   * aggregates released by the PES and not yet stored.
   */
  inFlight: number;
  /** Milliseconds from the restart to the component's readiness line. */
  restartMs: number;
}

export interface CrashReport {
  broker: string;
  runId: string;
  meters: number;
  days: number;
  speed: number;
  kills: KillRecord[];
  /** Kills per component (a `'pes+broker'` kill counts for both). */
  killsByVictim: Partial<Record<Component, number>>;
  readingsExpected: number;
  readingsProduced: number;
  readingsFolded: number;
  /** Frames the PES discarded as already seen (retransmissions and re-publications after the kills). */
  duplicatesRejected: number;
  /**
   * End-to-end mode: readings the guardian folded (as `readingsFolded` for the PES), the partials it released,
   * and the halves (PES releases or guardian partials) left without a counterpart in the MDMS.
   */
  guardian?: { readingsFolded: number; released: number; duplicatesRejected: number; unpaired: number; reorderedPes: number; reorderedGuardian: number };
  /** PES counters that mean loss or trouble (all must be 0). */
  rejected: Record<string, number>;
  /** Aggregates the PES released (all revisions) and rows the MDMS holds. */
  released: number;
  lateRevisions: number;
  mdmsRows: number;
  /** Deliveries the last MDMS process found already stored (from its clean-stop log line). */
  mdmsDuplicates: number | null;
  households: { household: string; meteredWh: number; billedWh: number }[];
  billingPeriodsChecked: number;
  neighbourhoodWindowsChecked: number;
  neighbourhoods: { neighbourhood: string; expectedWh: number; exportedWh: number }[];
  seconds: number;
  problems: string[];
  ok: boolean;
  dir: string;
}

/** PES counters that mean a reading was refused or an aggregate withheld: each must stay 0. */
const PES_FAIL_COUNTERS = ['badTag', 'malformedFrame', 'malformedUplink', 'timeBackwards', 'registerDecrease', 'absurdTime', 'tooOld', 'negativeTotal'] as const;
/**
 * The blind aggregators' (PES and guardian, end-to-end mode) counters that mean a reading refused or its energy
 * moved to a later window (`lateSnapshot`: a snapshot older than the meter's latest): each must stay 0.
 */
const BLIND_FAIL_COUNTERS = ['badTag', 'malformedFrame', 'malformedUplink', 'unknownMeter', 'tooOld', 'lateSnapshot'] as const;

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const port = (srv.address() as AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

/**
 * Runs `smartermeter <args>` to completion; rejects with its output on a non-zero exit.
 * @example
 * ```ts
 * const csv = await runCli(['mdms', 'export', '--db', 'run/mdms.sqlite', '--what', 'billing']);
 * ```
 */
export function runCli(args: string[]): Promise<string> {
  const root = resolve(import.meta.dirname, '../../..');
  return new Promise((ok, fail) => {
    const c = spawn(process.execPath, [join(root, 'bin/smartermeter.js'), ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    c.stdout.on('data', (d) => (out += String(d)));
    c.stderr.on('data', (d) => (out += String(d)));
    c.once('exit', (code) => (code === 0 ? ok(out) : fail(new Error(`smartermeter ${args.join(' ')} exited ${code}: ${out}`))));
  });
}

/** Resolves once `p` (Mosquitto, which logs no pino lines) accepts connections on `port`. */
async function listening(p: Proc, port: number): Promise<void> {
  const t0 = Date.now();
  while (!(await accepts('127.0.0.1', port))) {
    if (!p.running) throw new Error(`${p.name} exited before listening; see ${p.log}:\n${p.output().slice(-2000)}`);
    if (Date.now() - t0 > 30_000) throw new Error(`${p.name} did not listen on ${port} in 30 s; see ${p.log}`);
    await sleep(50);
  }
}

/** Removes persistent sessions a run left on an external broker (connect with clean: true, disconnect). */
async function dropSessions(url: string, clientIds: string[]): Promise<void> {
  for (const clientId of clientIds) {
    try {
      const c = await mqtt.connectAsync(url, { clientId, clean: true, protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 5000 });
      await c.endAsync();
    } catch {
      // best effort: the broker expires them by its own rules otherwise
    }
  }
}

/**
 * Runs one crash scenario and returns its report; never throws for a failed check (see `problems`), only
 * for a harness failure (a process that never becomes ready, a stalled drain).
 * @example
 * ```ts
 * const r = await runCrashScenario({ broker: 'embedded', kills: ['meter', 'gateway', 'broker', 'broker', 'pes', 'mdms'] });
 * console.log(r.ok, r.problems);
 * ```
 */
export async function runCrashScenario(o: CrashOptions): Promise<CrashReport> {
  const nMeters = o.meters ?? 6;
  const nNb = o.neighbourhoods ?? 2;
  const days = o.days ?? 2;
  const speed = o.speed ?? 7200;
  const startIso = o.start ?? '2024-01-01';
  const intervalS = o.intervalS ?? 900;
  const latenessS = o.latenessS ?? 3600;
  const downMs = o.downMs ?? 1000;
  const log = o.log ?? (() => undefined);
  const embedded = o.broker === 'embedded';
  const mosquitto = o.broker === 'mosquitto';
  /** A broker the run starts (and may kill), with the provisioned users; else a shared external one. */
  const ours = embedded || mosquitto;
  if (!ours && o.kills.some((k) => k.includes('broker'))) throw new Error('an external broker is not ours to kill');
  const e2e = o.e2e === true;
  if (!e2e && o.kills.includes('guardian')) throw new Error('the guardian runs in the end-to-end mode only (e2e: true)');
  const runId = `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
  const dir = mkdtempSync(join(tmpdir(), 'sm-crash-'));
  const logs = join(dir, 'logs');
  mkdirSync(logs);
  mkdirSync(join(dir, 'nv'));
  const t0 = performance.now();
  const procs: Proc[] = [];
  const cables: { close(): Promise<void> }[] = [];
  let pesClient: string | undefined;
  let mdmsClient: string | undefined;
  let guardianClient: string | undefined;
  const gatewayClients: string[] = [];
  let url = '';
  let failed = true;
  try {
    // The fleet: unique names per run, deterministic seeds.
    const rows = ['meter,household,neighbourhood,source'];
    for (let i = 0; i < nMeters; i++) {
      rows.push(`m${i + 1},hh-${runId}-${i + 1},nb-${runId}-${String.fromCharCode(97 + (i % nNb))},synthetic:${1000 + i}`);
    }
    writeFileSync(join(dir, 'fleet.csv'), rows.join('\n') + '\n');
    const keys = join(dir, 'keys');
    const brokerPort = ours ? await freePort() : 0;
    const fleet: Fleet = await provision({ fleetCsv: join(dir, 'fleet.csv'), out: keys, rsaBits: 2048, paillierBits: o.paillierBits ?? 1024, ...(mosquitto ? { mosquitto: { port: brokerPort } } : {}), ...(e2e ? { e2e: true } : {}) });
    if (!ours) {
      rmSync(join(keys, 'credentials'), { recursive: true, force: true }); // anonymous on the shared Mosquitto
      rmSync(join(keys, 'guardian', 'credentials'), { recursive: true, force: true });
    }
    const start = Date.parse(`${startIso}T00:00:00Z`) / 1000;
    const expected: Expected = expectedTotals(
      fleet.meters.map((m) => ({ seed: parseSyntheticSpec(m.source)!, household: m.household, neighbourhood: m.neighbourhood })),
      { start, days, intervalS, billingS: 86400 },
    );
    log(`run ${runId} in ${dir}: ${nMeters} meters, ${days} days at x${speed}, ${expected.readings} readings expected`);

    // Processes.
    let broker: Proc | undefined;
    if (embedded) {
      url = `mqtt://127.0.0.1:${brokerPort}`;
      const state = o.brokerState === false ? [] : ['--state', join(dir, 'broker.sqlite')];
      broker = new Proc('broker', ['broker', '--keys', keys, '--port', String(brokerPort), '--ws-port', '0', ...state], logs);
      procs.push(broker);
    } else if (mosquitto) {
      url = `mqtt://127.0.0.1:${brokerPort}`;
      broker = new Proc('broker', ['-c', join(keys, MOSQUITTO_CONF)], logs, MOSQUITTO_BIN);
      procs.push(broker);
    } else {
      url = (o.broker as { url: string }).url;
      pesClient = `pes-${runId}`;
      mdmsClient = `mdms-${runId}`;
      if (e2e) guardianClient = `guardian-${runId}`;
    }
    const mdmsDb = join(dir, 'mdms.sqlite');
    const pesState = join(dir, 'pes.sqlite');
    const guardianState = join(dir, 'guardian.sqlite');
    // On a shared broker this run's PES and MDMS take this run's traffic only (its gateways, its aggregates).
    const own = ours
      ? { pes: [], mdms: [], guardian: [] }
      : {
          pes: ['--client-id', pesClient!, ...fleet.gateways.flatMap((g) => ['--gateway', g])],
          guardian: ['--client-id', guardianClient ?? 'guardian', ...fleet.gateways.flatMap((g) => ['--gateway', g])],
          mdms: ['--client-id', mdmsClient!, ...fleet.neighbourhoods.flatMap((n) => ['--topic', `sm/v1/agg/neighbourhood/${n}`]), ...fleet.households.flatMap((h) => ['--topic', `sm/v1/agg/billing/${h}`])],
        };
    if (e2e && !ours) throw new Error('the end-to-end mode runs on a broker the run starts (embedded or mosquitto): the MDMS takes every release and partial');
    const mdms = new Proc('mdms', ['mdms', '--keys', keys, '--db', mdmsDb, '--mqtt', url, '--k', String(o.k ?? 2), ...(e2e ? ['--e2e'] : []), ...own.mdms], logs);
    // The release settings the PES and the guardian share (the guardian recomputes the PES's windows).
    const windowFlags = [
      '--k', String(o.k ?? 2), '--revision-k', '1', '--interval', `${intervalS}s`, '--billing-period', '1d', '--lateness', `${latenessS}s`,
      // A killed meter falls behind by (dead + restart time) x speed and stays behind; retention (and skew)
      // cover the whole run, so that no reading is refused as too old (a policy, not a crash, would lose it).
      '--retention', `${days + 2}d`,
    ];
    const pes = new Proc('pes', ['pes', '--keys', keys, '--state', pesState, '--mqtt', url, ...windowFlags, ...(e2e ? ['--e2e'] : ['--max-skew', `${days + 2}d`]), ...own.pes], logs);
    const guardian = e2e ? new Proc('guardian', ['guardian', '--keys', join(keys, 'guardian'), '--state', guardianState, '--mqtt', url, ...windowFlags, ...own.guardian], logs) : undefined;
    procs.push(mdms, pes, ...(guardian ? [guardian] : []));
    const gateways = new Map<string, Proc>();
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
        meters.push(new Proc(`meter-${m.label}`, ['meter', '--keys', keys, '--meter', m.meter, '--port', cable.a, '--nv', nv, '--speed', String(speed), '--start', startIso, '--days', String(days), ...(e2e ? ['--e2e', '--interval', `${intervalS}s`] : [])], logs));
      }
      gatewayClients.push(`gateway-${gw}`);
      gateways.set(gw, new Proc(gw, ['gateway', ...(ours ? ['--keys', keys] : []), '--id', gw, ...lines, '--mqtt', url, '--queue', join(dir, `${gw}.queue.sqlite`), '--stats', '5s'], logs));
    }
    procs.push(...gateways.values(), ...meters);
    const readyLine: Record<string, RegExp> = { broker: /^broker: listening$/, mdms: /^MDMS ingest subscribed$/, pes: /^pes: subscribed$/, guardian: /^guardian: subscribed$/ };
    const ready = (p: Proc) =>
      mosquitto && p === broker
        ? listening(p, brokerPort)
        : p.ready(readyLine[p.name] ?? (p.name.startsWith('gw-') ? /^gateway: connected to broker$/ : /^meter booted$/), 90_000);

    if (broker) {
      broker.start();
      await ready(broker);
    }
    mdms.start();
    pes.start();
    guardian?.start();
    await Promise.all([ready(mdms), ready(pes), ...(guardian ? [ready(guardian)] : [])]);
    // Gateways and meters together: a meter retransmits until its gateway is up.
    for (const p of [...gateways.values(), ...meters]) p.start();
    await Promise.all([...gateways.values(), ...meters].map(ready));
    const tStream = performance.now();
    const streamS = (days * 86400) / speed;
    log(`all ${procs.length} processes up after ${((tStream - t0) / 1000).toFixed(1)} s; stream lasts ~${streamS.toFixed(0)} s`);

    // The kill schedule: the victims one after another, each while the meters stream.
    const produced = () => nvFiles.reduce((s, f) => s + meterSamples(f), 0);
    const folded = () => probePes(pesState)?.counters.readings ?? 0;
    const guardianFolded = () => probePes(guardianState)?.counters.readings ?? 0;
    const victimProc = (v: Victim): Proc => {
      if (v === 'pes+broker') return pes;
      if (v === 'meter') return meters[0]!;
      if (v === 'gateway') return gateways.values().next().value!;
      if (v === 'broker') return broker!;
      if (v === 'guardian') return guardian!;
      return v === 'pes' ? pes : mdms;
    };
    const brokerState = join(dir, 'broker.sqlite');
    const firstGateway = fleet.gateways[0]!;
    /** What the victim holds unfinished right now (see KillRecord.inFlight). */
    const holding = (v: Victim): number => {
      if (v === 'meter') return meterRing(nvFiles[0]!);
      if (v === 'gateway') return probeGatewayQueue(join(dir, `${firstGateway}.queue.sqlite`));
      if (mosquitto && v.includes('broker')) return produced() - folded(); // Mosquitto's queues are not ours to read
      if (v === 'broker') {
        const b = probeBroker(brokerState, 'pes');
        return b.queued + b.journal;
      }
      if (v === 'pes' || v === 'pes+broker') return embedded ? probeBroker(brokerState, 'pes').queuedFor : produced() - folded();
      if (v === 'guardian') return embedded ? probeBroker(brokerState, 'guardian').queuedFor : produced() - guardianFolded();
      return (probePes(pesState)?.counters.released ?? 0) - (probeMdms(mdmsDb)?.rows ?? 0);
    };
    const kills: KillRecord[] = [];
    for (let i = 0; i < o.kills.length; i++) {
      // The first kill a few seconds into the stream, each later one a little after the last victim is back.
      await sleep(i === 0 ? (o.firstKillS ?? 3) * 1000 : (o.gapS ?? 2) * 1000);
      const victim = o.kills[i]!;
      const p = victimProc(victim);
      const inFlight = await poll(() => {
        const n = holding(victim);
        return n > 0 ? n : undefined;
      }, () => '', 3000, 5).catch(() => 0);
      const running = meters.filter((m) => m.running).length;
      const rec: KillRecord = { victim, process: p.name, atS: (performance.now() - tStream) / 1000, metersRunning: running, producedAtKill: produced(), foldedAtKill: folded(), inFlight, restartMs: 0 };
      await p.kill9();
      log(`kill -9 ${p.name} at ${rec.atS.toFixed(1)} s holding ${inFlight} unfinished (${running} meters streaming, ${rec.producedAtKill} readings framed, ${rec.foldedAtKill} folded)`);
      await sleep(downMs);
      if (victim === 'pes+broker') {
        if (!broker) throw new Error('pes+broker needs the embedded broker');
        // The PES is down: the broker acknowledges uplinks and queues them for its session. Kill it holding some.
        rec.process = 'pes+broker';
        rec.inFlight = await poll(() => {
          const n = mosquitto ? produced() - folded() : probeBroker(brokerState, 'pes').queuedFor;
          return n > 0 ? n : undefined;
        }, () => '', 3000, 5).catch(() => 0);
        await broker.kill9();
        log(`kill -9 broker while the PES is down, holding ${rec.inFlight} uplinks for it`);
        await sleep(downMs);
        broker.start();
        await ready(broker);
      }
      const tr = performance.now();
      p.start();
      await ready(p);
      rec.restartMs = Math.round(performance.now() - tr);
      kills.push(rec);
    }

    // Drain: meters finish (every frame acknowledged), the PES folds everything, then closes every window.
    const exits = await Promise.all(meters.map((m) => poll(() => (m.running ? undefined : m.exited), () => `${m.name} to finish`, streamS * 3000 + 180_000, 250)));
    const problems: string[] = [];
    exits.forEach((e, i) => {
      if (e.code !== 0) problems.push(`${meters[i]!.name} exited with ${e.code ?? e.signal}`);
    });
    log(`meters done after ${((performance.now() - tStream) / 1000).toFixed(1)} s`);
    // The PES folds what is still on its way; a stall (nothing new for 30 s) means readings were lost
    // somewhere: the run goes on to the export, so the report shows where.
    let lastFolded = -1;
    let lastChange = performance.now();
    await poll(
      () => {
        const f = folded();
        if (f !== lastFolded) {
          lastFolded = f;
          lastChange = performance.now();
        }
        if (f >= expected.readings || performance.now() - lastChange > 30_000) return true;
        return undefined;
      },
      () => `the PES to fold ${expected.readings} readings (has ${folded()})`,
      600_000,
    );
    if (folded() < expected.readings) problems.push(`the PES stalled at ${folded()} of ${expected.readings} readings`);
    if (guardian) {
      // The guardian folds the same uplinks on its own session: the same wait, the same stall rule.
      let lastG = -1;
      let gChange = performance.now();
      await poll(
        () => {
          const f = guardianFolded();
          if (f !== lastG) {
            lastG = f;
            gChange = performance.now();
          }
          return f >= expected.readings || performance.now() - gChange > 30_000 ? true : undefined;
        },
        () => `the guardian to fold ${expected.readings} readings (has ${guardianFolded()})`,
        600_000,
      );
      if (guardianFolded() < expected.readings) problems.push(`the guardian stalled at ${guardianFolded()} of ${expected.readings} readings`);
      guardian.signal('SIGUSR2');
      await guardian.ready(/^guardian: flushed on SIGUSR2/, 60_000);
    }
    pes.signal('SIGUSR2');
    await pes.ready(/^pes: flushed on SIGUSR2/, 60_000); // committed: its releases are counted from here on
    // The MDMS stores what the flush released; a stall (no new row for 20 s) is reported, not waited out.
    let lastRows = -1;
    let rowsChanged = performance.now();
    await poll(
      () => {
        const released = probePes(pesState)?.counters.released ?? 0;
        const rows = probeMdms(mdmsDb)?.rows ?? 0;
        if (rows !== lastRows) {
          lastRows = rows;
          rowsChanged = performance.now();
        }
        // The outbox shrinks in the file only at the PES's next commit, so the MDMS rows are the measure.
        return (released > 0 && rows >= released) || performance.now() - rowsChanged > 20_000 ? true : undefined;
      },
      () => `the MDMS to store every released aggregate`,
      600_000,
    );
    await sleep(500); // a last message in flight would show up as an extra row
    const stops = await Promise.all([...gateways.values(), pes, mdms, ...(guardian ? [guardian] : [])].map(async (p) => ({ p, e: await p.stop() })));
    for (const { p, e } of stops) if (e.code !== 0) problems.push(`${p.name} did not stop cleanly on SIGTERM (${e.code ?? e.signal})`);
    if (broker) await broker.stop();

    // The check.
    const pesEnd = probePes(pesState) as PesProbe;
    const c = pesEnd.counters;
    const mdmsEnd = probeMdms(mdmsDb)!;
    const billingCsv = await runCli(['mdms', 'export', '--db', mdmsDb, '--what', 'billing']);
    const nbCsv = await runCli(['mdms', 'export', '--db', mdmsDb, '--what', 'neighbourhood']);
    const billed = parseExport(billingCsv, 'billing');
    const nbs = parseExport(nbCsv, 'neighbourhood');
    const readingsProduced = produced();
    if (readingsProduced !== expected.readings) problems.push(`meters framed ${readingsProduced} readings, the dataset has ${expected.readings}`);
    if (c.readings !== expected.readings) problems.push(`the PES folded ${c.readings} readings, the meters produced ${expected.readings}`);
    const rejected = Object.fromEntries((e2e ? BLIND_FAIL_COUNTERS : PES_FAIL_COUNTERS).map((n) => [n, c[n] ?? 0]));
    for (const [n, v] of Object.entries(rejected)) if (v !== 0) problems.push(`PES counter ${n} = ${v}`);
    const g = guardian ? (probePes(guardianState)?.counters ?? {}) : undefined;
    if (g) {
      if (g.readings !== expected.readings) problems.push(`the guardian folded ${g.readings ?? 0} readings, the meters produced ${expected.readings}`);
      for (const n of BLIND_FAIL_COUNTERS) if ((g[n] ?? 0) !== 0) problems.push(`guardian counter ${n} = ${g[n]}`);
    }
    // End-to-end mode: the PES and the guardian may see a meter's frames in another order (redeliveries after a
    // kill) and so revise a window at other moments; their final ciphertexts are the same, so the latest
    // revision pairs, but an intermediate one of one party may have no counterpart (left waiting in the MDMS).
    if (e2e ? mdmsEnd.rows > (c.released ?? 0) : mdmsEnd.rows !== c.released) problems.push(`the PES released ${c.released} aggregates, the MDMS holds ${mdmsEnd.rows} rows`);
    const cmp = compareExport(expected, billed, nbs);
    problems.push(...cmp.problems);
    for (const k of kills) if (k.metersRunning === 0) problems.push(`the kill of ${k.process} landed after the stream ended`);
    // Killed MDMS processes log nothing at the end: the counters are those of the last, cleanly stopped one.
    const mdmsStop = lastLogLine(mdms.log, /^MDMS ingest stopped$/) as { counters?: { duplicates?: number } } | undefined;
    const mdmsDuplicates = mdmsStop?.counters?.duplicates ?? null;
    const killsByVictim: Partial<Record<Component, number>> = {};
    for (const k of kills) for (const c of (k.victim === 'pes+broker' ? ['pes', 'broker'] : [k.victim]) as Component[]) killsByVictim[c] = (killsByVictim[c] ?? 0) + 1;
    const report: CrashReport = {
      broker: (embedded ? 'embedded' : mosquitto ? 'mosquitto (provisioned files)' : url) + (e2e ? ', end-to-end mode' : ''),
      runId,
      meters: nMeters,
      days,
      speed,
      kills,
      killsByVictim,
      readingsExpected: expected.readings,
      readingsProduced,
      readingsFolded: c.readings ?? 0,
      duplicatesRejected: c.replay ?? 0,
      ...(g ? { guardian: { readingsFolded: g.readings ?? 0, released: g.released ?? 0, duplicatesRejected: g.replay ?? 0, unpaired: probeMdmsWaiting(mdmsDb), reorderedPes: c.reordered ?? 0, reorderedGuardian: g.reordered ?? 0 } } : {}),
      rejected,
      released: c.released ?? 0,
      lateRevisions: c.lateRevisions ?? 0,
      mdmsRows: mdmsEnd.rows,
      mdmsDuplicates,
      households: cmp.households,
      billingPeriodsChecked: cmp.billingPeriodsChecked,
      neighbourhoodWindowsChecked: cmp.neighbourhoodWindowsChecked,
      neighbourhoods: cmp.neighbourhoods,
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
    if (!ours && url) await dropSessions(url, [...(pesClient ? [pesClient] : []), ...(mdmsClient ? [mdmsClient] : []), ...gatewayClients]);
    if (!o.keep && !failed) rmSync(dir, { recursive: true, force: true });
    else log(`run directory kept: ${dir}`);
  }
}
