/**
 * `smartermeter replay`: runs the real components over a whole dataset as fast as they go, then checks that
 * every reading is accounted for in the MDMS store. A user feature (backfilling) and the end-to-end benchmark.
 * @module
 */
import { DEFAULT_K } from '../lib/policy.js';
import { createReadStream, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { isPostgresUrl, openStore } from '../mdms/store/index.js';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { InvalidArgumentError, type Command } from 'commander';
import { SingleBar, Presets } from 'cli-progress';
import { DateTime } from 'luxon';
import { parseSyntheticSpec } from '../firmware/sources/synthetic.js';
import { pvShareOption } from '../firmware/cli.js';
import { loadTariff, type Tariff } from '../lib/tariff.js';
import { loadFleet, type Fleet } from '../lib/keyset.js';
import { parseFleetCsv, provision } from '../provision/keys.js';
import { durationOption, intOption, zoneOption } from '../lib/flags.js';
import { brokerUrlsOption } from '../lib/broker-url.js';
import { billedEnergy, startSystem, type SystemHandle } from './system.js';
import { epsilonOption } from '../pes/cli.js';

export interface ReplayOptions {
  fleetCsv: string;
  db: string;
  /** Add to a database that already holds aggregates (default: refuse it, so that a re-run is not mistaken for a fresh one). */
  append?: boolean;
  keysDir?: string;
  stateDir?: string;
  intervalS: number;
  billing: string;
  k: number;
  /** The PES's differencing guard (docs/privacy.md); default on. */
  membershipGuard?: boolean;
  /** Differential privacy on neighbourhood releases (docs/privacy.md); default none. */
  dpEpsilon?: number;
  tz: string;
  latenessS: number;
  tariff?: Tariff;
  /** Synthetic sources: first day (Unix s) and number of days. */
  start: number;
  days: number;
  /** Synthetic sources: share of households with solar panels, 0..1 (default 0). */
  pvShare?: number;
  batch?: number;
  paillierBits?: number;
  mqttUrl?: string;
  progress?: boolean;
  pool?: boolean;
}

export interface ReplaySummary {
  meters: number;
  readings: number;
  readingsFolded: number;
  frames: number;
  retransmits: number;
  released: number;
  suppressed: number;
  /** Neighbourhood release evaluations held by the membership guard (docs/privacy.md). */
  membershipHeld: number;
  stored: number;
  seconds: number;
  readingsPerSecond: number;
  /** Wh per household: metered (register deltas) and billed (latest revisions in the store). */
  households: { household: string; meteredWh: number; billedWh: number }[];
  /** PES rejections by counter name (all should be zero on a clean dataset). */
  rejected: Record<string, number>;
  ok: boolean;
  problems: string[];
}

async function countLines(file: string, counts: (line: string) => boolean = (l) => l.trim() !== ''): Promise<number> {
  let n = 0;
  for await (const line of createInterface({ input: createReadStream(file), crlfDelay: Infinity })) if (counts(line)) n++;
  return n;
}

/** Readings the fleet's sources will produce (for the progress bar only). */
async function expectedReadings(fleet: Fleet, days: number): Promise<number> {
  let n = 0;
  for (const m of fleet.meters) {
    if (parseSyntheticSpec(m.source) !== undefined) n += days * 1440;
    else if (m.source.startsWith('p1:')) n += m.source.startsWith('p1:/dev/') ? 0 : await countLines(m.source.slice(3), (l) => l.startsWith('/')); // a telegram per "/" line
    else n += await countLines(m.source);
  }
  return n;
}

function sameFleet(fromKeys: Fleet, csv: string): void {
  const rows = parseFleetCsv(csv);
  const a = rows.map((r) => `${r.label}/${r.household}/${r.neighbourhood}`).join(',');
  const b = fromKeys.meters.map((m) => `${m.label}/${m.household}/${m.neighbourhood}`).join(',');
  if (a !== b) throw new Error(`the key set's fleet does not match ${csv} (meters, households or neighbourhoods differ)`);
}

/**
 * Replays a fleet through every component and checks the result.
 * @example
 * ```ts
 * const summary = await replay({ fleetCsv: 'data/sample/fleet.csv', db: 'out.sqlite', intervalS: 900, billing: '1d', k: 1, ... });
 * ```
 */
export async function replay(o: ReplayOptions): Promise<ReplaySummary> {
  if (!o.append) await refuseNonEmpty(o.db);
  const scratch = mkdtempSync(join(tmpdir(), 'smartermeter-replay-'));
  let keysDir = o.keysDir;
  let sys: SystemHandle | undefined;
  let bar: SingleBar | undefined;
  try {
    let fleet: Fleet;
    if (keysDir) {
      fleet = loadFleet(keysDir);
      sameFleet(fleet, o.fleetCsv);
    } else {
      keysDir = join(scratch, 'keys');
      fleet = await provision({ fleetCsv: o.fleetCsv, out: keysDir, rsaBits: 2048, paillierBits: o.paillierBits ?? 2048 });
    }
    const total = await expectedReadings(fleet, o.days);
    const t0 = performance.now();
    sys = await startSystem({
      keysDir,
      fleet,
      db: o.db,
      stateDir: o.stateDir ?? join(scratch, 'state'),
      intervalS: o.intervalS,
      billing: o.billing,
      k: o.k,
      membershipGuard: o.membershipGuard,
      dpEpsilon: o.dpEpsilon,
      latenessS: o.latenessS,
      tz: o.tz,
      tariff: o.tariff,
      speed: 'max',
      synthetic: { start: o.start, days: o.days, ...(o.pvShare ? { pv: { share: o.pvShare } } : {}) },
      batch: o.batch,
      mqttUrl: o.mqttUrl,
      pool: o.pool,
      // A throwaway state directory cannot be resumed, so the meters need not fsync their NV stores.
      volatileMeters: o.stateDir === undefined,
    });
    const s = sys;
    const pc = s.pes.pes.counters;
    if (o.progress) {
      bar = new SingleBar({ format: 'replay |{bar}| {percentage}% {value}/{total} readings folded | {rate}/s | {eta_formatted} left', hideCursor: true }, Presets.shades_classic);
      bar.start(total, 0, { rate: 0 });
    }
    const tick = () => bar?.update(pc.readings, { rate: Math.round(pc.readings / ((performance.now() - t0) / 1000)) });
    const timer = setInterval(tick, 200);
    try {
      await s.metersDone();
      await s.drain({ onProgress: tick });
    } finally {
      clearInterval(timer);
      tick();
      bar?.stop();
      bar = undefined;
    }
    const seconds = (performance.now() - t0) / 1000;

    const metered = new Map<string, number>();
    const byId = new Map(fleet.meters.map((m) => [m.meter, m]));
    for (const m of s.meters) {
      const hh = byId.get(m.id)!.household;
      metered.set(hh, (metered.get(hh) ?? 0) + m.registerWh - m.startWh);
    }
    const billed = await billedEnergy(s.store);
    const households = fleet.households.map((h) => ({ household: h, meteredWh: metered.get(h) ?? 0, billedWh: billed.get(h) ?? 0 }));
    const readings = s.meters.reduce((a, m) => a + m.counters.readings, 0);
    const rejectedNames = ['badTag', 'unknownMeter', 'malformedFrame', 'malformedUplink', 'timeBackwards', 'registerDecrease', 'absurdTime', 'tooOld', 'negativeTotal'] as const;
    const rejected = Object.fromEntries(rejectedNames.map((n) => [n, pc[n]]));
    const problems: string[] = [];
    for (const h of households) if (h.meteredWh !== h.billedWh) problems.push(`household ${h.household}: metered ${h.meteredWh} Wh, billed ${h.billedWh} Wh`);
    if (pc.readings !== readings) problems.push(`meters produced ${readings} readings, the PES folded ${pc.readings}`);
    for (const [n, v] of Object.entries(rejected)) if (v > 0) problems.push(`PES rejected ${v} (${n})`);
    return {
      meters: fleet.meters.length,
      readings,
      readingsFolded: pc.readings,
      frames: s.meters.reduce((a, m) => a + m.counters.frames, 0),
      retransmits: s.meters.reduce((a, m) => a + m.counters.retransmits, 0),
      released: pc.released,
      suppressed: pc.suppressed,
      membershipHeld: pc.membershipHeld,
      stored: s.mdms.counters.stored,
      seconds,
      readingsPerSecond: Math.round(readings / seconds),
      households,
      rejected,
      ok: problems.length === 0,
      problems,
    };
  } finally {
    bar?.stop();
    await sys?.close();
    rmSync(scratch, { recursive: true, force: true });
  }
}

/** Prints a summary for people. */
export function formatSummary(s: ReplaySummary): string {
  const lines = [
    `meters            ${s.meters}`,
    `readings          ${s.readings} produced, ${s.readingsFolded} folded into encrypted aggregates`,
    `frames            ${s.frames} (${s.retransmits} retransmissions)`,
    `aggregates        ${s.released} released, ${s.suppressed} neighbourhood windows suppressed (< k meters), ${s.stored} stored by the MDMS`,
    `time              ${s.seconds.toFixed(1)} s, ${s.readingsPerSecond} readings/s`,
    `energy            ${s.households.reduce((a, h) => a + h.billedWh, 0)} Wh billed over ${s.households.length} households`,
  ];
  lines.push(s.ok ? 'check             every reading accounted for: billed energy equals the register deltas for every household' : `check             FAILED:\n  ${s.problems.join('\n  ')}`);
  return lines.join('\n');
}

/**
 * Throws if the MDMS database already holds aggregates: re-running a replay into it would store nothing new
 * (every aggregate a duplicate) and look like a run that did nothing.
 */
async function refuseNonEmpty(db: string): Promise<void> {
  if (!isPostgresUrl(db) && !existsSync(db)) return;
  const store = await openStore(db);
  try {
    const [nbs, hhs] = [await store.listNeighbourhoods(), await store.listHouseholds()];
    if (nbs.length || hhs.length) {
      const n = (k: number, what: string) => `${k} ${what}${k === 1 ? '' : 's'}`;
      throw new Error(`${db} already holds aggregates (${n(nbs.length, 'neighbourhood')}, ${n(hhs.length, 'household')}): pass --append to add to it, or give a new --db`);
    }
  } finally {
    await store.close();
  }
}

/** Registers `smartermeter replay`. */
export function registerReplayCommand(program: Command): void {
  program
    .command('replay')
    .description('replay a fleet through meters, gateways, broker, PES and MDMS as fast as they go; exits 0 only if every reading is accounted for')
    .requiredOption('--fleet <csv>', 'fleet file: meter,household,neighbourhood,source')
    .requiredOption('--db <path|url>', 'MDMS database: SQLite file or postgres:// URL')
    .option('--keys <dir>', 'key set from `smartermeter provision` (default: a throwaway one)')
    .option('--state <dir>', 'keep PES state, gateway queues and meter NV stores here (default: a temporary directory)')
    .option('--interval <d>', 'neighbourhood interval', durationOption('--interval'), 900)
    .option('--billing-period <p>', 'billing period: 1d, 1mo or Nh', '1d')
    .option('--k <n>', 'fewest meters in a released neighbourhood aggregate', intOption('--k', 1, 1_000_000), DEFAULT_K)
    .option('--no-membership-guard', 'release neighbourhood aggregates whose membership differs from a released one by fewer than k meters (the differencing attack: for measuring it only, docs/privacy.md)')
    .option('--dp-epsilon <e>', 'differential privacy: discrete Laplace noise on every neighbourhood release, epsilon per release (docs/privacy.md)', epsilonOption)
    .option('--lateness <d>', 'allowed lateness before a window closes', durationOption('--lateness'), 1800)
    .option('--tz <zone>', 'time zone of the source CSVs and of billing days', zoneOption, 'UTC')
    .option('--tariff <file>', 'tariff bands (JSON); default flat')
    .option('--start <date>', 'first day of synthetic sources (ISO date, in --tz)', '2024-01-01')
    .option('--days <n>', 'days of synthetic sources', intOption('--days', 1, 3660), 7)
    .option('--pv-share <0..1>', 'share of synthetic households with solar panels, drawn per seed (synthetic:<seed>:pv=<kWp> sets one)', pvShareOption, 0)
    .option('--batch <n>', 'readings per frame', intOption('--batch', 1, 60), 15)
    .option('--paillier-bits <n>', 'Paillier modulus of a throwaway key set', intOption('--paillier-bits', 1024, 4096), 2048)
    .option('--mqtt <urls>', 'use this broker (or cluster: URLs comma-separated) instead of an embedded one', brokerUrlsOption('--mqtt'))
    .option('--append', 'add to a database that already holds aggregates (default: refuse it)')
    .option('--no-progress', 'no progress bar')
    .action(async (f) => {
      const start = DateTime.fromISO(f.start, { zone: f.tz });
      if (!start.isValid) throw new InvalidArgumentError(`--start must be an ISO date, got "${f.start}"`);
      const summary = await replay({
        fleetCsv: resolve(f.fleet),
        db: f.db,
        append: f.append === true,
        keysDir: f.keys,
        stateDir: f.state,
        intervalS: f.interval,
        billing: f.billingPeriod,
        k: f.k,
        membershipGuard: f.membershipGuard,
        dpEpsilon: f.dpEpsilon,
        tz: f.tz,
        latenessS: f.lateness,
        tariff: f.tariff ? loadTariff(f.tariff) : undefined,
        start: Math.floor(start.toSeconds() / 60) * 60,
        days: f.days,
        pvShare: f.pvShare,
        batch: f.batch,
        paillierBits: f.paillierBits,
        mqttUrl: f.mqtt,
        progress: f.progress && process.stderr.isTTY,
        pool: true,
      });
      console.log(formatSummary(summary));
      console.log(JSON.stringify({ replay: { ...summary, households: undefined } }));
      if (!summary.ok) process.exitCode = 1;
    });
}
