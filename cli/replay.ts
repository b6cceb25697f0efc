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
import { keySetMode, loadFleet, type Fleet } from '../lib/keyset.js';
import { parseFleetCsv, provision } from '../provision/keys.js';
import { durationOption, intOption, zoneOption } from '../lib/flags.js';
import { brokerUrlsOption } from '../lib/broker-url.js';
import { billedTotals, releasedTotals, startSystem, type EnergyPair, type SystemHandle } from './system.js';
import { budgetOption, epsilonOption } from '../lib/flags.js';
import { topicId } from '../protocol/topics.js';
import { count } from '../lib/words.js';

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
  /** With `dpEpsilon`: most epsilon spent per neighbourhood per UTC day; default none. */
  dpBudget?: number;
  /** The PES's id (its policy statement's topic); default `pes`. */
  pesId?: string;
  /** How often the PES checks whether a policy statement is due, ms (default a minute; tests make it flow). */
  policyIntervalMs?: number;
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
  /** The end-to-end mode (docs/paillier.md): meters encrypt under Paillier, the guardian co-decrypts. */
  e2e?: boolean;
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
  /**
   * Wh per household: metered (register deltas, import 1-0:1.8.0 and export 1-0:2.8.0) and billed (latest
   * revisions in the store, all bands).
   */
  households: { household: string; meteredWh: number; billedWh: number; meteredExportWh: number; billedExportWh: number }[];
  /**
   * Wh per neighbourhood: metered (its meters' register deltas) and released (latest neighbourhood aggregates
   * in the store), and whether the two had to be equal (`checked`) or why not.
   */
  neighbourhoods: NeighbourhoodCheck[];
  /** Policy statements the MDMS kept (the PES's guards and counters, docs/protocol.md §11.3). */
  policyStored: number;
  /** PES rejections by counter name (all should be zero on a clean dataset). */
  rejected: Record<string, number>;
  ok: boolean;
  problems: string[];
}

/** One neighbourhood's metered and released energy, see {@link ReplaySummary.neighbourhoods}. */
export interface NeighbourhoodCheck {
  neighbourhood: string;
  meters: number;
  meteredWh: number;
  meteredExportWh: number;
  releasedWh: number;
  releasedExportWh: number;
  /** Windows the MDMS holds (latest revisions) and windows in which the neighbourhood's meters had readings. */
  releasedWindows: number;
  windows: number;
  /**
   * `true`: released had to equal metered exactly, import and export, window for window count (every window
   * had every meter, nothing noised or held). Otherwise why the PES rightly released less or other: `below k`
   * (nothing may be stored), `noised` (--dp-epsilon), `revisions held`, `windows below k` or `partial windows`
   * (a meter missing from a window: suppressed, or held by the membership guard).
   */
  checked: true | 'below k' | 'noised' | 'revisions held' | 'windows below k' | 'partial windows';
}

/**
 * Decides, for one neighbourhood, whether released energy must equal metered energy, and says what is wrong if
 * it does not (pure: the inputs are counts and sums).
 * @example
 * ```ts
 * const { check, problems } = checkNeighbourhood({ neighbourhood: 'nb-1', meters: 3, k: 3, windowMeters: new Map([[0, 3]]), metered: { importWh: 40, exportWh: 0 }, released: { importWh: 40, exportWh: 0, windows: 1 }, noised: false, revisionsHeld: false });
 * check.checked; // true
 * ```
 */
export function checkNeighbourhood(o: {
  neighbourhood: string;
  meters: number;
  k: number;
  windowMeters: ReadonlyMap<number, number>;
  metered: EnergyPair;
  released: EnergyPair & { windows: number };
  noised: boolean;
  revisionsHeld: boolean;
}): { check: NeighbourhoodCheck; problems: string[] } {
  const counts = [...o.windowMeters.values()];
  const checked: NeighbourhoodCheck['checked'] =
    o.meters < o.k ? 'below k' : o.noised ? 'noised' : o.revisionsHeld ? 'revisions held' : counts.some((n) => n < o.k) ? 'windows below k' : counts.some((n) => n < o.meters) ? 'partial windows' : true;
  const check: NeighbourhoodCheck = {
    neighbourhood: o.neighbourhood,
    meters: o.meters,
    meteredWh: o.metered.importWh,
    meteredExportWh: o.metered.exportWh,
    releasedWh: o.released.importWh,
    releasedExportWh: o.released.exportWh,
    releasedWindows: o.released.windows,
    windows: o.windowMeters.size,
    checked,
  };
  const problems: string[] = [];
  const nb = `neighbourhood ${o.neighbourhood}`;
  if (checked === 'below k' && o.released.windows > 0) problems.push(`${nb} has ${o.meters} meters (< k = ${o.k}), yet the MDMS holds ${o.released.windows} of its aggregates`);
  if (checked === true) {
    if (o.released.windows !== o.windowMeters.size) problems.push(`${nb}: ${o.windowMeters.size} windows had readings, the MDMS holds ${o.released.windows}`);
    if (o.released.importWh !== o.metered.importWh) problems.push(`${nb}: metered ${o.metered.importWh} Wh, released ${o.released.importWh} Wh`);
    if (o.released.exportWh !== o.metered.exportWh) problems.push(`${nb}: metered export ${o.metered.exportWh} Wh, released export ${o.released.exportWh} Wh`);
  }
  return { check, problems };
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
  checkDp(o.dpEpsilon, o.dpBudget);
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
      if ((keySetMode(keysDir) === 'e2e') !== (o.e2e === true)) throw new Error(`${keysDir} is a ${keySetMode(keysDir)} key set: ${o.e2e ? 'provision it with --e2e' : 'pass --e2e'}`);
    } else {
      keysDir = join(scratch, 'keys');
      fleet = await provision({ fleetCsv: o.fleetCsv, out: keysDir, rsaBits: 2048, paillierBits: o.paillierBits ?? 2048, e2e: o.e2e === true });
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
      dpBudget: o.dpBudget,
      pesId: o.pesId,
      policyIntervalMs: o.policyIntervalMs,
      latenessS: o.latenessS,
      tz: o.tz,
      tariff: o.tariff,
      speed: 'max',
      synthetic: { start: o.start, days: o.days, ...(o.pvShare ? { pv: { share: o.pvShare } } : {}) },
      batch: o.batch,
      mqttUrl: o.mqttUrl,
      pool: o.pool,
      e2e: o.e2e === true,
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

    // Metered: each meter's register deltas since it booted, import and export, per household and per neighbourhood.
    const perHousehold = new Map<string, EnergyPair>();
    const perNeighbourhood = new Map<string, EnergyPair>();
    const add = (into: Map<string, EnergyPair>, key: string, importWh: number, exportWh: number) => {
      const t = into.get(key) ?? { importWh: 0, exportWh: 0 };
      t.importWh += importWh;
      t.exportWh += exportWh;
      into.set(key, t);
    };
    const byId = new Map(fleet.meters.map((m) => [m.meter, m]));
    for (const m of s.meters) {
      const { household, neighbourhood } = byId.get(m.id)!;
      add(perHousehold, household, m.registerWh - m.startWh, m.exportRegisterWh - m.startExportWh);
      add(perNeighbourhood, neighbourhood, m.registerWh - m.startWh, m.exportRegisterWh - m.startExportWh);
    }
    const billed = await billedTotals(s.store);
    const released = await releasedTotals(s.store);
    const zero: EnergyPair = { importWh: 0, exportWh: 0 };
    const households = fleet.households.map((h) => {
      const [m, b] = [perHousehold.get(h) ?? zero, billed.get(h) ?? zero];
      return { household: h, meteredWh: m.importWh, billedWh: b.importWh, meteredExportWh: m.exportWh, billedExportWh: b.exportWh };
    });
    const readings = s.meters.reduce((a, m) => a + m.counters.readings, 0);
    const rejectedNames = ['badTag', 'unknownMeter', 'malformedFrame', 'malformedUplink', 'timeBackwards', 'registerDecrease', 'absurdTime', 'tooOld', 'negativeTotal'] as const;
    const rejected = Object.fromEntries(rejectedNames.map((n) => [n, pc[n]]));
    const problems: string[] = [];
    for (const h of households) {
      if (h.meteredWh !== h.billedWh) problems.push(`household ${h.household}: metered ${h.meteredWh} Wh, billed ${h.billedWh} Wh`);
      if (h.meteredExportWh !== h.billedExportWh) problems.push(`household ${h.household}: metered export ${h.meteredExportWh} Wh, billed export ${h.billedExportWh} Wh`);
    }
    const neighbourhoods = fleet.neighbourhoods.map((nb) => {
      const r = checkNeighbourhood({
        neighbourhood: nb,
        meters: fleet.meters.filter((m) => m.neighbourhood === nb).length,
        k: o.k,
        windowMeters: s.windowMeters.get(nb) ?? new Map(),
        metered: perNeighbourhood.get(nb) ?? zero,
        released: released.get(nb) ?? { ...zero, windows: 0 },
        noised: pc.dpReleases > 0,
        revisionsHeld: pc.revisionHeld > 0,
      });
      problems.push(...r.problems);
      return r.check;
    });
    if (pc.readings !== readings) problems.push(`meters produced ${readings} readings, the PES folded ${pc.readings}`);
    if (s.guardian && s.guardian.core.windows.counters.readings !== readings) problems.push(`meters produced ${readings} readings, the guardian took ${s.guardian.core.windows.counters.readings}`);
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
      neighbourhoods,
      policyStored: 'policyStored' in s.mdms.counters ? s.mdms.counters.policyStored : 0,
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

const sum = <T>(xs: T[], f: (x: T) => number) => xs.reduce((a, x) => a + f(x), 0);

/** "nb-2 below k" for one or two neighbourhoods, else counts per reason ("12 partial windows, 1 below k"). */
function reasons(ns: NeighbourhoodCheck[]): string {
  if (ns.length <= 2) return ns.map((n) => `${n.neighbourhood} ${n.checked}`).join(', ');
  const by = new Map<string, number>();
  for (const n of ns) by.set(String(n.checked), (by.get(String(n.checked)) ?? 0) + 1);
  return [...by].map(([why, n]) => `${n} ${why}`).join(', ');
}

/**
 * Prints a summary for people.
 * @example
 * ```ts
 * console.log(formatSummary(await replay(options)));
 * ```
 */
export function formatSummary(s: ReplaySummary): string {
  const checked = s.neighbourhoods.filter((n) => n.checked === true);
  const unchecked = s.neighbourhoods.filter((n) => n.checked !== true);
  const lines = [
    `meters            ${s.meters}`,
    `readings          ${s.readings} produced, ${s.readingsFolded} folded into encrypted aggregates`,
    `frames            ${s.frames} (${s.retransmits} retransmissions)`,
    `aggregates        ${s.released} released, ${s.suppressed} neighbourhood windows suppressed (< k meters), ${s.stored} stored by the MDMS`,
    `time              ${s.seconds.toFixed(1)} s, ${s.readingsPerSecond} readings/s`,
    `energy            ${sum(s.households, (h) => h.meteredWh)} Wh metered, ${sum(s.households, (h) => h.billedWh)} Wh billed over ${count(s.households.length, 'household')}`,
    `export            ${sum(s.households, (h) => h.meteredExportWh)} Wh metered, ${sum(s.households, (h) => h.billedExportWh)} Wh billed (${s.households.filter((h) => h.meteredExportWh > 0).length} households fed in)`,
    `neighbourhoods    ${checked.length} of ${s.neighbourhoods.length} released exactly their meters' import and export${unchecked.length ? ` (not comparable: ${reasons(unchecked)})` : ''}`,
  ];
  lines.push(
    s.ok
      ? 'check             every reading accounted for: billed import and export equal the register deltas for every household, and every neighbourhood released in full equals its meters\' deltas'
      : `check             FAILED:\n  ${s.problems.join('\n  ')}`,
  );
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

/**
 * Refuses a DP budget without an epsilon, or below it, before anything is provisioned (the PES would refuse it
 * only once started).
 * @example
 * ```ts
 * checkDp(0.5, 10); // fine
 * checkDp(undefined, 10); // throws InvalidArgumentError
 * ```
 */
export function checkDp(epsilon: number | undefined, budget: number | undefined): void {
  if (budget === undefined) return;
  if (epsilon === undefined) throw new InvalidArgumentError('--dp-budget needs --dp-epsilon');
  if (budget < epsilon) throw new InvalidArgumentError(`--dp-budget (${budget}) must be at least --dp-epsilon (${epsilon})`);
}

/**
 * Parses `--pes-id`: a topic id (as `pes --pes-id`).
 * @example
 * ```ts
 * pesIdOption('pes-east'); // 'pes-east'
 * ```
 */
export function pesIdOption(v: string): string {
  try {
    return topicId(v, '--pes-id');
  } catch (e) {
    throw new InvalidArgumentError((e as Error).message);
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
    .option('--dp-epsilon <e>', 'differential privacy: discrete Laplace noise on every neighbourhood release, epsilon per release (docs/privacy.md); with --e2e the meters add it in shares of 1/k', epsilonOption)
    .option('--dp-budget <e>', 'with --dp-epsilon: most epsilon spent per neighbourhood per UTC day; releases beyond it are held', budgetOption)
    .option('--pes-id <id>', "the PES's id, the topic of its policy statement sm/v1/agg/policy/<id>", pesIdOption, 'pes')
    .option('--lateness <d>', 'allowed lateness before a window closes', durationOption('--lateness'), 1800)
    .option('--tz <zone>', 'time zone of the source CSVs and of billing days', zoneOption, 'UTC')
    .option('--tariff <file>', 'tariff bands (JSON); default flat')
    .option('--start <date>', 'first day of synthetic sources (ISO date, in --tz)', '2024-01-01')
    .option('--days <n>', 'days of synthetic sources', intOption('--days', 1, 3660), 7)
    .option('--pv-share <0..1>', 'share of synthetic households with solar panels, drawn per seed (synthetic:<seed>:pv=<kWp> sets one)', pvShareOption, 0)
    .option('--batch <n>', 'readings per frame', intOption('--batch', 1, 60), 15)
    .option('--paillier-bits <n>', 'Paillier modulus of a throwaway key set', intOption('--paillier-bits', 1024, 4096), 2048)
    .option('--mqtt <urls>', 'use this broker (or cluster: URLs comma-separated) instead of an embedded one', brokerUrlsOption('--mqtt'))
    .option('--e2e', 'end-to-end mode: meters encrypt under Paillier, the PES folds blind, the guardian recomputes and co-decrypts, the MDMS combines (docs/paillier.md); needs a key set from `provision --e2e` or none')
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
        dpBudget: f.dpBudget,
        pesId: f.pesId,
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
        e2e: f.e2e === true,
      });
      console.log(formatSummary(summary));
      console.log(JSON.stringify({ replay: { ...summary, households: undefined } }));
      if (!summary.ok) process.exitCode = 1;
    });
}
