/**
 * `smartermeter privacy-report`: what an attacker learns from the raw series vs from what the MDMS holds
 * (issue 13). Reads the raw series through the firmware's sources, the MDMS database as an insider would, and
 * runs the differencing experiment itself (two replays of the fleet with one household silenced, membership
 * guard off and on). Methods and seeds: docs/privacy.md.
 * @module
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { InvalidArgumentError, type Command } from 'commander';
import { DateTime } from 'luxon';
import { DEFAULT_K } from '../lib/policy.js';
import { durationOption, intOption, zoneOption } from '../lib/flags.js';
import { openSource } from '../firmware/sources/open.js';
import { formatKw, parseSyntheticSource, syntheticGroundTruth, type GroundTruth } from '../firmware/sources/synthetic.js';
import { pvShareOption } from '../firmware/cli.js';
import { UmassSource } from '../firmware/sources/umass.js';
import { openStore } from '../mdms/store/index.js';
import type { BillingRow, NeighbourhoodRow } from '../mdms/store/types.js';
import { parseFleetCsv } from '../provision/keys.js';
import { chanceF1, hartEvents, HART_THRESHOLD_W, scoreEvents, truthEvents, type ApplianceEvent } from '../privacy/events.js';
import { ACTIVE_MARGIN_W, guessOccupancy, NIGHT_FROM_H, NIGHT_TO_H, scoreOccupancy, slotMeans, trueOccupancy } from '../privacy/occupancy.js';
import { differencingAttack, type Release } from '../privacy/differencing.js';
import { renderReport, type AttackResult, type DayView, type PrivacySummary } from '../privacy/report.js';
import { loadTruth, netPower, readSource, type IntervalEnergy, type MinuteSeries } from '../privacy/series.js';
import { replay } from './replay.js';
import { epsilonOption } from '../lib/flags.js';

export interface PrivacyReportOptions {
  fleetCsv: string;
  db: string;
  out: string;
  /** Folder of `<source name>.truth.json` files (default: beside each source). */
  truthDir?: string;
  tz: string;
  intervalS: number;
  /** k of the differencing replays. */
  k: number;
  /** Synthetic sources: first day (Unix s) and number of days. */
  start: number;
  days: number;
  /** Synthetic sources: share of households with solar panels, as the replay that wrote `db` had (default 0). */
  pvShare?: number;
  /** Seed of the chance baselines. */
  seed: number;
  /** Run the differencing replays (default true). */
  differencing?: boolean;
  /** Epsilons of the differential-privacy sweep (one replay each; default none). */
  dpEpsilons?: number[];
  /** Run the DP sweep in the end-to-end mode: the meters add the noise in shares of 1/k (docs/privacy.md). */
  dpE2e?: boolean;
  paillierBits?: number;
}

/** Every this many seconds from 02:00 of the first day, the differencing target's meter is silent for one interval. */
const SILENT_EVERY_S = 4 * 3600;

interface HouseholdData {
  meter: string;
  household: string;
  neighbourhood: string;
  source: string;
  series: MinuteSeries;
  energy: IntervalEnergy;
  truth: GroundTruth | null;
}

function truthFile(source: string, truthDir: string | undefined): string {
  const name = `${basename(source).replace(/\.csv$/i, '')}.truth.json`;
  return join(truthDir ?? dirname(source), name);
}

const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0);

/**
 * Mean power (W) of each interval of [from, to) from latest neighbourhood rows; NaN where nothing was released.
 * `import` (default) from the imported energy; `net` import minus export, what the events attack reads.
 */
function releasedPower(rows: NeighbourhoodRow[], from: number, to: number, intervalS: number, register: 'import' | 'net' = 'import'): number[] {
  const out = new Array<number>(Math.ceil((to - from) / intervalS)).fill(NaN);
  for (const r of rows) {
    const i = (r.start - from) / intervalS;
    const wh = register === 'net' ? r.energyWh - r.exportWh : r.energyWh;
    if (Number.isInteger(i) && i >= 0 && i < out.length && r.end - r.start === intervalS) out[i] = (wh * 3600) / intervalS;
  }
  return out;
}

/** The synthetic sources' options of a report: its days and the replay's share of households with panels. */
const syntheticOf = (o: PrivacyReportOptions) => ({ start: o.start, days: o.days, pv: { share: o.pvShare ?? 0 } });

/** Per day start (UTC), the household's billed Wh (all bands). */
function billedPerDay(rows: BillingRow[]): Map<number, number> {
  const out = new Map<number, number>();
  for (const r of rows) {
    const day = r.start - (r.start % 86400);
    out.set(day, (out.get(day) ?? 0) + r.energyWh);
  }
  return out;
}

/**
 * Writes `dir/fleet.csv` and one UTC UMass CSV per meter, from the samples of each source, leaving out the
 * target's samples that start in `silent` intervals (its meter then sends nothing for them; the sample before
 * covers the hole, as a meter's register would).
 */
async function silencedFleet(dir: string, hh: HouseholdData[], target: string, silent: Set<number>, o: PrivacyReportOptions, from: number, to: number): Promise<string> {
  const lines = ['meter,household,neighbourhood,source'];
  for (const h of hh) {
    // A UMass CSV carries import only: a household with panels replays its import series (the attack's).
    const src = openSource(h.source, { tz: o.tz, synthetic: syntheticOf(o) });
    const out: string[] = [];
    for await (const s of src.samples(from)) {
      if (s.time >= to) break;
      if (h.meter === target && silent.has(s.time - (s.time % o.intervalS))) continue;
      out.push(`${new Date(s.time * 1000).toISOString().slice(0, 19).replace('T', ' ')},${formatKw(s.powerMilliW)}`);
    }
    writeFileSync(join(dir, `${h.meter}.csv`), out.join('\n') + '\n');
    lines.push(`${h.meter},${h.household},${h.neighbourhood},${h.meter}.csv`);
  }
  const fleet = join(dir, 'fleet.csv');
  writeFileSync(fleet, lines.join('\n') + '\n');
  return fleet;
}

/**
 * Builds the report: raw and released attacks for every household, the differencing experiment, summary and page.
 * @example
 * ```ts
 * const summary = await privacyReport({ fleetCsv: 'data/sample/fleet.csv', db: 'mdms.sqlite', out: 'report', tz: 'UTC', intervalS: 900, k: 2, start, days: 2, seed: 13 });
 * ```
 */
export async function privacyReport(o: PrivacyReportOptions): Promise<PrivacySummary> {
  const fleet = parseFleetCsv(o.fleetCsv);
  const store = await openStore(o.db);
  let nbRows: NeighbourhoodRow[];
  let billRows: BillingRow[];
  try {
    nbRows = await store.latestNeighbourhood();
    billRows = await store.latestBilling();
  } finally {
    await store.close();
  }
  if (nbRows.length === 0) throw new Error(`${o.db} holds no neighbourhood aggregate: replay the fleet into it first`);
  const from = nbRows.reduce((a, r) => Math.min(a, r.start), Infinity);
  const to = nbRows.reduce((a, r) => Math.max(a, r.end), -Infinity);
  const steps = Math.round((to - from) / o.intervalS);

  const hh: HouseholdData[] = [];
  for (const m of fleet) {
    const { series, energy } = await readSource(openSource(m.source, { tz: o.tz, synthetic: syntheticOf(o) }), from, to, o.intervalS);
    const synthetic = parseSyntheticSource(m.source);
    let truth: GroundTruth | null = null;
    if (synthetic !== undefined) {
      const pv = synthetic.kWp === undefined ? syntheticOf(o).pv : { kWp: synthetic.kWp };
      truth = syntheticGroundTruth({ seed: synthetic.seed, start: o.start, days: o.days, tz: o.tz, pv });
    }
    else if (existsSync(truthFile(m.source, o.truthDir))) truth = loadTruth(truthFile(m.source, o.truthDir));
    hh.push({ meter: m.label, household: m.household, neighbourhood: m.neighbourhood, source: m.source, series, energy, truth });
  }

  const per: PrivacySummary['per_household'] = [];
  const scores = { rawF1: [] as number[], rawChance: [] as number[], relF1: [] as number[], relChance: [] as number[], occRaw: [] as number[], occRawChance: [] as number[], occRel: [] as number[], occRelChance: [] as number[] };
  for (const h of hh) {
    const nb = nbRows.filter((r) => r.neighbourhood === h.neighbourhood);
    const agg = releasedPower(nb, from, to, o.intervalS);
    // Events on net power (import - export): the attacker holds both registers, and the load's edges show in
    // the net whatever the panels produce; without panels it is the import series itself.
    const rawDetected = hartEvents(netPower(h.series), h.series.start, 60);
    // Without a ground truth, the events in the raw series itself are the truth (the raw attack then scores 1 by construction).
    const truth: ApplianceEvent[] = h.truth ? truthEvents(h.truth, HART_THRESHOLD_W, from, to) : rawDetected;
    const raw = scoreEvents(rawDetected, truth, 60);
    const rawChance = chanceF1(rawDetected.length, truth, h.series.start, 60, h.series.powerW.length, 60, o.seed);
    const relDetected = hartEvents(releasedPower(nb, from, to, o.intervalS, 'net'), from, o.intervalS);
    const rel = scoreEvents(relDetected, truth, o.intervalS);
    const relChance = chanceF1(relDetected.length, truth, from, o.intervalS, steps, o.intervalS, o.seed);
    scores.rawF1.push(raw.f1);
    scores.rawChance.push(rawChance);
    scores.relF1.push(rel.f1);
    scores.relChance.push(relChance);
    const row: PrivacySummary['per_household'][number] = {
      household: h.household,
      truth: h.truth ? 'ground truth' : 'raw-series events',
      true_events: truth.length,
      events_raw_f1: raw.f1,
      events_raw_chance_f1: rawChance,
      events_released_f1: rel.f1,
      events_released_chance_f1: relChance,
      occupancy_raw_accuracy: null,
      occupancy_released_accuracy: null,
      occupancy_chance: null,
    };
    if (h.truth) {
      const t = trueOccupancy(h.truth, from, o.intervalS, steps);
      const occRaw = scoreOccupancy(guessOccupancy(slotMeans(h.series.powerW, o.intervalS / 60), from, o.intervalS), t);
      const occRel = scoreOccupancy(guessOccupancy(agg, from, o.intervalS), t);
      scores.occRaw.push(occRaw.accuracy);
      scores.occRawChance.push(occRaw.chance);
      scores.occRel.push(occRel.accuracy);
      scores.occRelChance.push(occRel.chance);
      Object.assign(row, { occupancy_raw_accuracy: occRaw.accuracy, occupancy_released_accuracy: occRel.accuracy, occupancy_chance: occRaw.chance });
    }
    per.push(row);
  }

  const attacks: AttackResult[] = [
    { attack: 'events', data: 'raw', f1: mean(scores.rawF1), chance_f1: mean(scores.rawChance) },
    { attack: 'events', data: 'released', f1: mean(scores.relF1), chance_f1: mean(scores.relChance) },
  ];
  if (scores.occRaw.length) {
    attacks.push({ attack: 'occupancy', data: 'raw', accuracy: mean(scores.occRaw), chance: mean(scores.occRawChance) });
    attacks.push({ attack: 'occupancy', data: 'released', accuracy: mean(scores.occRel), chance: mean(scores.occRelChance) });
  }

  // Differencing: the first household of a neighbourhood of at least two meters, silent every 4 h from 02:00.
  let target: HouseholdData | undefined;
  const silent: number[] = [];
  if (o.differencing !== false) {
    target = hh.find((h) => !h.source.startsWith('p1:') && hh.filter((x) => x.neighbourhood === h.neighbourhood).length >= 2);
    const day0 = from - (from % 86400);
    for (let t = day0 + 2 * 3600; t < to - o.intervalS; t += SILENT_EVERY_S) if (t - o.intervalS >= from) silent.push(t);
  }
  if (target && silent.length) {
    const scratch = mkdtempSync(join(tmpdir(), 'smartermeter-privacy-'));
    try {
      const fleetCsv = await silencedFleet(scratch, hh, target.meter, new Set(silent), o, from, to);
      const { energy: truthWh } = await readSource(new UmassSource(join(scratch, `${target.meter}.csv`)), from, to, o.intervalS);
      for (const guard of [false, true]) {
        const db = join(scratch, `guard-${guard}.sqlite`);
        const r = await replay({ fleetCsv, db, intervalS: o.intervalS, billing: '1d', k: o.k, membershipGuard: guard, tz: 'UTC', latenessS: 1800, start: from, days: Math.ceil((to - from) / 86400), paillierBits: o.paillierBits ?? 2048 });
        if (!r.ok) throw new Error(`differencing replay (guard ${guard}) failed: ${r.problems.join('; ')}`);
        const s = await openStore(db);
        let releases: Release[];
        let bills: Map<number, number>;
        try {
          releases = (await s.latestNeighbourhood({ neighbourhood: target.neighbourhood })).map((x) => ({ start: x.start, meters: x.meters, energyWh: x.energyWh }));
          bills = billedPerDay(await s.latestBilling({ household: target.household }));
        } finally {
          await s.close();
        }
        const perDay = 86400 / o.intervalS;
        const score = differencingAttack(releases, silent, o.intervalS, truthWh, (t) => (bills.get(t - (t % 86400)) ?? 0) / perDay);
        attacks.push({
          attack: 'differencing',
          guard,
          mae_wh: score.maeWh,
          baseline_mae_wh: score.baselineMaeWh,
          intervals: score.intervals,
          subtracted: score.subtracted,
          membership_held: r.membershipHeld,
          released: releases.length,
          errors_wh: score.errorsWh.map((e) => Math.round(e.errorWh * 10) / 10),
        });
      }
    } finally {
      rmSync(scratch, { recursive: true, force: true });
    }
  }

  // Differential privacy: one replay of the fleet per epsilon; error against the noise-free database, and the
  // released-events attack on the noisy aggregates.
  const dp: PrivacySummary['dp'] = [];
  if (o.dpEpsilons?.length) {
    const scratch = mkdtempSync(join(tmpdir(), 'smartermeter-privacy-dp-'));
    try {
      const fleetCsv = await silencedFleet(scratch, hh, '', new Set(), o, from, to);
      const exact = new Map(nbRows.map((r) => [`${r.neighbourhood}|${r.start}`, r.energyWh]));
      for (const epsilon of o.dpEpsilons) {
        const db = join(scratch, `dp-${epsilon}.sqlite`);
        const r = await replay({ fleetCsv, db, intervalS: o.intervalS, billing: '1d', k: o.k, dpEpsilon: epsilon, tz: 'UTC', latenessS: 1800, start: from, days: Math.ceil((to - from) / 86400), paillierBits: o.paillierBits ?? 2048, e2e: o.dpE2e === true });
        if (!r.ok) throw new Error(`DP replay (epsilon ${epsilon}) failed: ${r.problems.join('; ')}`);
        const s = await openStore(db);
        let noisy: NeighbourhoodRow[];
        try {
          noisy = await s.latestNeighbourhood();
        } finally {
          await s.close();
        }
        const ape: number[] = [];
        for (const n of noisy) {
          const t = exact.get(`${n.neighbourhood}|${n.start}`);
          if (t !== undefined && t > 0) ape.push(Math.abs(n.energyWh - t) / t);
        }
        const f1s = hh.map((h) => {
          const truth = h.truth ? truthEvents(h.truth, HART_THRESHOLD_W, from, to) : hartEvents(netPower(h.series), h.series.start, 60);
          const agg = releasedPower(noisy.filter((x) => x.neighbourhood === h.neighbourhood), from, to, o.intervalS, 'net');
          return scoreEvents(hartEvents(agg, from, o.intervalS), truth, o.intervalS).f1;
        });
        dp.push({ epsilon, aggregate_mape: mean(ape), events_f1: mean(f1s) });
      }
    } finally {
      rmSync(scratch, { recursive: true, force: true });
    }
  }

  const summary: PrivacySummary = {
    households: new Set(fleet.map((m) => m.household)).size,
    attacks,
    dp,
    method: {
      data_from: new Date(from * 1000).toISOString(),
      data_to: new Date(to * 1000).toISOString(),
      interval_s: o.intervalS,
      events_threshold_w: HART_THRESHOLD_W,
      events_tolerance_raw_s: 60,
      events_tolerance_released_s: o.intervalS,
      events_series: 'net power, import minus export (households without panels: import); occupancy and differencing read import',
      events_truth: 'on/off edges of appliances >= threshold in *.truth.json (synthetic sources: the model); without one, the raw series\' own events',
      chance_f1: `mean F1 of as many uniformly random guesses (fair-coin direction), 200 trials of mulberry32(${o.seed})`,
      chance_seed: o.seed,
      occupancy_margin_w: ACTIVE_MARGIN_W,
      occupancy_night: `${NIGHT_FROM_H}:00-${NIGHT_TO_H}:00 UTC`,
      occupancy_slot_s: o.intervalS,
      differencing_target: target?.household ?? null,
      differencing_silent: target ? `one interval every ${SILENT_EVERY_S / 3600} h from 02:00 UTC (${silent.length} intervals)` : 'not run',
      differencing_k: o.k,
      dp_mechanism: o.dpE2e
        ? `end-to-end mode: each meter adds Pólya(1/k, a) - Pólya(1/k, a) per interval (k = ${o.k}), a window of n >= k meters gets discrete Laplace noise of variance n/k times the classic one, sensitivity = 7360 W x interval, one replay per epsilon; MAPE against the --db aggregates over intervals with energy > 0`
        : 'discrete Laplace (two-sided geometric), sensitivity = 7360 W x interval, fresh noise per release, one replay per epsilon; MAPE against the --db aggregates over intervals with energy > 0',
      scores_are: 'means over households',
    },
    per_household: per,
  };

  mkdirSync(o.out, { recursive: true });
  writeFileSync(join(o.out, 'summary.json'), JSON.stringify(summary, null, 1) + '\n');
  const shown = hh[0]!;
  const day = from - (from % 86400);
  const dayRows = nbRows.filter((r) => r.neighbourhood === shown.neighbourhood && r.start >= day && r.start < day + 86400);
  const views: DayView[] = [
    {
      household: shown.household,
      day,
      rawW: shown.series.powerW.subarray(Math.max(0, (day - shown.series.start) / 60), (day + 86400 - shown.series.start) / 60),
      releasedW: releasedPower(dayRows, day, day + 86400, o.intervalS),
      releasedMeters: Math.max(0, ...dayRows.map((r) => r.meters)),
      billedWh: billedPerDay(billRows.filter((r) => r.household === shown.household)).get(day) ?? null,
      intervalS: o.intervalS,
    },
  ];
  writeFileSync(join(o.out, 'report.html'), renderReport(summary, views));
  return summary;
}

/** Registers `smartermeter privacy-report`. */
export function registerPrivacyReportCommand(program: Command): void {
  program
    .command('privacy-report')
    .description('measure what an attacker learns from the raw series vs from what the MDMS holds (appliance events, occupancy, differencing); writes DIR/report.html and DIR/summary.json')
    .requiredOption('--fleet <csv>', 'fleet file: meter,household,neighbourhood,source (the raw series)')
    .requiredOption('--db <path|url>', 'the MDMS database a replay of that fleet wrote (SQLite file or postgres:// URL)')
    .requiredOption('--out <dir>', 'where to write report.html and summary.json')
    .option('--truth <dir>', 'folder of <source>.truth.json ground truths (default: beside each source)')
    .option('--tz <zone>', 'time zone of the source CSVs', zoneOption, 'UTC')
    .option('--interval <d>', 'neighbourhood interval of the database', durationOption('--interval'), 900)
    .option('--k <n>', 'k of the differencing replays', intOption('--k', 1, 1_000_000), DEFAULT_K)
    .option('--start <date>', 'first day of synthetic sources (ISO date, in --tz)', '2024-01-01')
    .option('--days <n>', 'days of synthetic sources', intOption('--days', 1, 3660), 7)
    .option('--pv-share <0..1>', 'synthetic sources: share of households with solar panels, as given to the replay', pvShareOption, 0)
    .option('--seed <n>', 'seed of the chance baselines', intOption('--seed', 0, 0xffffffff), 13)
    .option('--no-differencing', 'skip the differencing replays')
    .option('--dp-epsilon <e...>', 'epsilons of the differential-privacy sweep (one replay each)')
    .option('--dp-e2e', 'run the sweep in the end-to-end mode: the meters add the noise in shares of 1/k (with --dp-epsilon)')
    .option('--paillier-bits <n>', 'Paillier modulus of the differencing replays', intOption('--paillier-bits', 1024, 4096), 2048)
    .action(async (f) => {
      const start = DateTime.fromISO(f.start, { zone: f.tz });
      if (!start.isValid) throw new InvalidArgumentError(`--start must be an ISO date, got "${f.start}"`);
      if (f.dpE2e && !f.dpEpsilon) throw new InvalidArgumentError('--dp-e2e needs --dp-epsilon');
      const s = await privacyReport({
        fleetCsv: resolve(f.fleet),
        db: f.db,
        out: resolve(f.out),
        truthDir: f.truth ? resolve(f.truth) : undefined,
        tz: f.tz,
        intervalS: f.interval,
        k: f.k,
        start: Math.floor(start.toSeconds() / 60) * 60,
        days: f.days,
        pvShare: f.pvShare,
        seed: f.seed,
        differencing: f.differencing,
        dpEpsilons: ((f.dpEpsilon as string[] | undefined) ?? []).map(epsilonOption),
        dpE2e: f.dpE2e === true,
        paillierBits: f.paillierBits,
      });
      for (const a of s.attacks) console.log(JSON.stringify(a));
      console.log(`wrote ${join(resolve(f.out), 'report.html')} and summary.json`);
    });
}
