/**
 * `smartermeter pes`: the Privacy Enhancing System as an MQTT service.
 * @module
 */
import { DEFAULT_K } from '../lib/policy.js';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { InvalidArgumentError, type Command } from 'commander';
import { IANAZone } from 'luxon';
import { createLogger } from '../lib/log.js';
import { intOption, parseDuration } from '../lib/flags.js';
import { brokerUrlsOption } from '../lib/broker-url.js';
import { loadCredentials, loadFleet, loadPesKeys } from '../lib/keyset.js';
import { topicId } from '../protocol/topics.js';
import { parseBillingPeriod, type BillingPeriod } from './duration.js';
import { openPesService, startPesService, type PesService } from './mqtt.js';
import { Lease } from './lease.js';
import { PgPesState, isPostgresUrl, migratePesState, pgPool } from './pg-state.js';
import { selectPartition, type Partition } from './partition.js';
import type { MeterInfo } from './core/pes.js';
import { FLAT_TARIFF, loadTariff } from '../lib/tariff.js';

/** Default state file (in the working directory). */
export const DEFAULT_STATE = 'pes-state.sqlite';

export interface PesFlags {
  keys: string;
  mqtt: string;
  username?: string;
  passwordFile?: string;
  state: string;
  interval: number;
  billingPeriod?: BillingPeriod;
  tariff?: string;
  tz?: string;
  lateness: number;
  k: number;
  revisionK?: number;
  membershipGuard: boolean;
  dpEpsilon?: number;
  dpMaxPower?: number;
  dpBudget?: number;
  pesId?: string;
  retention?: number;
  maxSkew: number;
  clientId?: string;
  gateway: string[];
  stateSchema: string;
  partition?: string;
  neighbourhoods?: string[];
  partitions?: number;
  leaseTtl: number;
  /** The blind PES of the end-to-end mode (pes/e2e-cli.ts). */
  e2e?: boolean;
}

const duration = (flag: string, allowZero = false) => (v: string) => (allowZero && /^0[smhdw]?$/.test(v) ? 0 : parseDuration(v, flag));

function interval(v: string): number {
  const s = parseDuration(v, '--interval');
  if (s < 60 || s > 86400 || 86400 % s !== 0) throw new InvalidArgumentError(`--interval must be between 1m and 1d and divide a day (e.g. 5m, 15m, 1h), got "${v}"`);
  return s;
}

function billingPeriod(v: string): BillingPeriod {
  try {
    return parseBillingPeriod(v, '--billing-period');
  } catch (e) {
    throw new InvalidArgumentError((e as Error).message);
  }
}

function gatewayOption(v: string, acc: string[]): string[] {
  try {
    return [...acc, topicId(v, '--gateway')];
  } catch (e) {
    throw new InvalidArgumentError((e as Error).message);
  }
}

/**
 * Parses `--dp-epsilon`: a positive decimal.
 * @example
 * ```ts
 * epsilonOption('0.5'); // 0.5
 * ```
 */
export function epsilonOption(v: string): number {
  const e = Number(v);
  if (!/^\d+(\.\d+)?$/.test(v) || !(e > 0) || e > 1000) throw new InvalidArgumentError(`--dp-epsilon must be a positive number up to 1000, got "${v}"`);
  return e;
}

/**
 * Parses `--dp-budget`: a positive decimal (epsilon per neighbourhood per day).
 * @example
 * ```ts
 * budgetOption('10'); // 10
 * ```
 */
export function budgetOption(v: string): number {
  const b = Number(v);
  if (!/^\d+(\.\d+)?$/.test(v) || !(b > 0) || b > 1_000_000) throw new InvalidArgumentError(`--dp-budget must be a positive number up to 1000000, got "${v}"`);
  return b;
}

function pesIdOption(v: string): string {
  try {
    return topicId(v, '--pes-id');
  } catch (e) {
    throw new InvalidArgumentError((e as Error).message);
  }
}

function idList(flag: string) {
  return (v: string): string[] => {
    try {
      const ids = v.split(',').map((x) => topicId(x.trim(), flag));
      if (new Set(ids).size !== ids.length) throw new TypeError(`${flag} lists a neighbourhood twice`);
      return ids;
    } catch (e) {
      throw new InvalidArgumentError((e as Error).message);
    }
  };
}

function leaseTtl(v: string): number {
  const s = parseDuration(v, '--lease-ttl');
  if (s < 1 || s > 600) throw new InvalidArgumentError(`--lease-ttl must be between 1s and 10m, got "${v}"`);
  return s;
}

/**
 * The partition the flags name, resolved against the fleet, or null for the whole fleet; throws an
 * `InvalidArgumentError` for flags that do not go together.
 * @example
 * ```ts
 * partitionOf({ partition: 'north', neighbourhoods: ['nb1'] }, fleet.meters)?.gateways; // ['gw-nb1']
 * ```
 */
export function partitionOf(flags: Pick<PesFlags, 'partition' | 'neighbourhoods' | 'partitions'>, fleet: { meter: string; neighbourhood: string; gateway: string }[]): Partition | null {
  const { partition, neighbourhoods, partitions } = flags;
  if (partition === undefined) {
    if (neighbourhoods !== undefined || partitions !== undefined) throw new InvalidArgumentError('--neighbourhoods and --partitions need --partition');
    return null;
  }
  if ((neighbourhoods === undefined) === (partitions === undefined)) throw new InvalidArgumentError('--partition needs either --neighbourhoods nb1,nb2 or --partitions N');
  try {
    if (neighbourhoods !== undefined) return selectPartition(fleet, { name: topicId(partition, '--partition'), neighbourhoods });
    if (!/^\d+$/.test(partition)) throw new RangeError(`with --partitions, --partition is a number from 0 to ${partitions! - 1}, got "${partition}"`);
    return selectPartition(fleet, { index: Number(partition), of: partitions! });
  } catch (e) {
    throw new InvalidArgumentError((e as Error).message);
  }
}

function zone(v: string): string {
  if (!IANAZone.isValidZone(v)) throw new InvalidArgumentError(`--tz must be an IANA time zone such as UTC or Europe/London, got "${v}"`);
  return v;
}

/**
 * The broker credentials the flags name (`--username` with `--password-file`), else the key set's.
 * @example
 * ```ts
 * const { username, password } = credentials(flags);
 * ```
 */
export function credentials(flags: Pick<PesFlags, 'keys' | 'username' | 'passwordFile'>): { username?: string; password?: string } {
  if (flags.username !== undefined || flags.passwordFile !== undefined) {
    if (!flags.username || !flags.passwordFile) throw new InvalidArgumentError('--username and --password-file go together');
    try {
      return { username: flags.username, password: readFileSync(flags.passwordFile, 'utf8').trim() };
    } catch (e) {
      throw new Error(`cannot read --password-file ${flags.passwordFile}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
  }
  return existsSync(join(flags.keys, 'credentials', 'pes.json')) ? loadCredentials(flags.keys, 'pes') : {};
}

/**
 * Builds the meter table (id -> keys, household, neighbourhood) from a provisioned key set; `rotations` are the
 * keys `provision rotate` made, generation 1, 2, ... per meter.
 * @example
 * ```ts
 * const meters = fleetMeters(fleet.meters, keys.meterKeys, keys.meterRotations);
 * ```
 */
export function fleetMeters(fleet: { meter: string; household: string; neighbourhood: string }[], meterKeys: Map<string, Buffer>, rotations?: Map<string, Buffer[]>): Map<string, MeterInfo> {
  const meters = new Map<string, MeterInfo>();
  for (const m of fleet) {
    const key = meterKeys.get(m.meter);
    if (!key) throw new Error(`the key set has no key for meter ${m.meter}`);
    const rotated = rotations?.get(m.meter);
    meters.set(m.meter, { key, household: m.household, neighbourhood: m.neighbourhood, ...(rotated?.length ? { rotated } : {}) });
  }
  return meters;
}

async function run(flags: PesFlags, cmd: Command): Promise<void> {
  if (flags.e2e) return (await import('./e2e-cli.js')).runPesE2e(flags, cmd);
  const log = createLogger('pes');
  const keys = loadPesKeys(flags.keys);
  const fleet = loadFleet(flags.keys).meters;
  const part = partitionOf(flags, fleet);
  const meters = fleetMeters(part ? fleet.filter((m) => part.meters.has(m.meter)) : fleet, keys.meterKeys, keys.meterRotations);
  const tariff = flags.tariff ? loadTariff(flags.tariff) : FLAT_TARIFF;
  if (flags.k < 20) log.warn({ k: flags.k }, 'pes: k below 20 — aggregates of fewer households leak individual behaviour (Buescher et al., PoPETs 2017)');
  if (!flags.membershipGuard) log.warn('pes: membership guard off — two releases differing by one meter reveal that household (docs/privacy.md)');
  if (part) {
    log.info({ partition: part.name, neighbourhoods: part.neighbourhoods.length, meters: part.meters.size, gateways: part.gateways.length }, 'pes: partition');
    if (part.sharedGateways.length) log.warn({ gateways: part.sharedGateways }, 'pes: these gateways also serve other partitions; their frames for other partitions count as unknownMeter here');
  }
  const options = {
    keys: { rsa: keys.rsa, paillier: keys.paillier, mdmsPublic: keys.mdmsPublic, signer: keys.signer, bindingKeys: keys.bindingKeys, householdPublic: keys.householdPublic, meters },
    intervalS: flags.interval,
    billing: flags.billingPeriod ?? parseBillingPeriod('1d'),
    tariff,
    tz: flags.tz ?? tariff.tz,
    latenessS: flags.lateness,
    k: flags.k,
    ...(flags.revisionK !== undefined ? { revisionK: flags.revisionK } : {}),
    membershipGuard: flags.membershipGuard,
    ...(flags.dpEpsilon !== undefined ? { dpEpsilon: flags.dpEpsilon } : {}),
    ...(flags.dpMaxPower !== undefined ? { dpMaxPowerW: flags.dpMaxPower } : {}),
    ...(flags.dpBudget !== undefined ? { dpBudget: flags.dpBudget } : {}),
    pesId: flags.pesId ?? (part ? `pes-${part.name}` : 'pes'),
    ...(flags.retention !== undefined ? { retentionS: flags.retention } : {}),
    maxSkewS: flags.maxSkew,
    pool: true,
    logger: log,
    // One persistent session per partition (not per instance): whoever holds the lease resumes it.
    mqtt: { url: flags.mqtt, ...credentials(flags), clientId: flags.clientId ?? (part ? `pes-${part.name}` : 'pes') },
    ...(flags.gateway.length ? { gateways: flags.gateway } : part ? { gateways: part.gateways } : {}),
  };
  let stop!: () => void;
  const stopped = new Promise<null>((resolve) => (stop = () => resolve(null)));
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);

  let svc: PesService;
  let lease: Lease | undefined;
  let lost: Promise<Error> = new Promise<never>(() => undefined);
  let closePool = async () => undefined as void;
  if (isPostgresUrl(flags.state)) {
    const pool = await pgPool(flags.state, flags.stateSchema, { idleInTransactionMs: flags.leaseTtl * 1000 });
    closePool = () => pool.end();
    try {
      await migratePesState(pool);
      const l = (lease = new Lease(pool, part?.name ?? 'all', { ttlMs: flags.leaseTtl * 1000 }));
      // A standby waits for the lease before it opens the state or connects: only the holder may resume the
      // partition's session (a second client with its id would make the broker drop the first).
      let waiting = false;
      let isStopped = false;
      void stopped.then(() => (isStopped = true));
      const tryAcquire = () =>
        l.acquire().catch((e: Error) => {
          log.warn({ partition: l.partition, err: e.message }, 'pes: cannot reach the lease; retrying');
          return null;
        });
      while ((await tryAcquire()) === null) {
        if (!waiting) log.info({ partition: l.partition, holder: l.holder }, 'pes: standby, waiting for the partition lease');
        waiting = true;
        await Promise.race([stopped, new Promise((r) => setTimeout(r, l.pollMs))]);
        if (isStopped) return await closePool();
      }
      log.info({ partition: l.partition, epoch: l.epoch, holder: l.holder }, 'pes: partition lease acquired; active');
      lost = new Promise<Error>((resolve) => l.keep(resolve));
      svc = await openPesService({ ...options, state: (id) => PgPesState.open(pool, { ...id, lease: l }) });
    } catch (e) {
      lease?.stop();
      await closePool();
      throw e;
    }
  } else {
    svc = startPesService({ ...options, stateFile: flags.state });
  }
  // End of stream (replays, tests): SIGUSR2 closes every open window now and releases what may be released.
  // Messages are handled synchronously, so this runs between two of them; later readings make revisions.
  const onFlush = async () => {
    try {
      svc.pes.flush();
      if (svc.pes.asyncState) await svc.pes.commitAsync(); // the line below means durable
      log.info({ counters: svc.pes.counters }, 'pes: flushed on SIGUSR2: every window closed');
    } catch (e) {
      log.error({ err: (e as Error).message }, 'pes: flush failed');
    }
  };
  const usr2 = () => void onFlush();
  process.on('SIGUSR2', usr2);
  const refused = svc.ready.then(
    () => new Promise<never>(() => undefined),
    (e: Error) => e,
  );
  const outcome = await Promise.race([stopped, refused, svc.failed, lost]);
  process.off('SIGUSR2', usr2);
  if (outcome instanceof Error) {
    // Lease lost (another instance is active) or a commit refused: step down at once, write nothing more.
    lease?.stop();
    await svc.kill();
    await closePool();
    throw outcome;
  }
  try {
    await svc.close();
    await lease?.release(); // hands the partition over at once
  } finally {
    await closePool();
  }
  log.info({ counters: svc.pes.counters }, 'pes: stopped');
}

/**
 * Adds `pes` to the program.
 * @example
 * ```ts
 * registerPesCommand(program);
 * await program.parseAsync(['node', 'smartermeter', 'pes', '--keys', 'keys', '--k', '20']);
 * ```
 */
export function registerPesCommand(program: Command): void {
  program
    .command('pes')
    .description('run the Privacy Enhancing System: verify frames, fold readings into Paillier aggregates, release sealed aggregates of >= k meters and household streams')
    .requiredOption('--keys <dir>', 'key set made by `smartermeter provision`')
    .option('--mqtt <urls>', 'broker URL, or several comma-separated (the nodes of a cluster; reconnects to the next)', brokerUrlsOption('--mqtt'), 'mqtt://127.0.0.1:1883')
    .option('--username <name>', 'broker username (default: from the key set)')
    .option('--password-file <path>', 'file holding the broker password (with --username)')
    .option('--state <file|url>', 'SQLite state file, or postgres://… (Paillier ciphertexts, sealed counters; PostgreSQL lets a standby take over)', DEFAULT_STATE)
    .option('--state-schema <name>', 'PostgreSQL schema of the PES state (one per deployment)', 'pes')
    .option('--partition <name|i>', 'run one partition of the fleet: a name (with --neighbourhoods) or a number (with --partitions); one active instance per partition with a PostgreSQL state')
    .option('--neighbourhoods <list>', 'with --partition <name>: its neighbourhoods, comma-separated', idList('--neighbourhoods'))
    .option('--partitions <n>', 'with --partition <i>: split the fleet into n partitions by neighbourhood hash', intOption('--partitions', 1, 10_000))
    .option('--lease-ttl <duration>', 'PostgreSQL state: the partition lease expires this long after its last renewal (renewed every third of it); a standby takes over after at most this', leaseTtl, 10)
    .option('--interval <duration>', 'neighbourhood aggregation interval', interval, 900)
    .option('--billing-period <period>', 'household billing period: 1d, 1mo or Nh (N divides 24) (default: 1d)', billingPeriod)
    .option('--tariff <file.json>', 'time-of-use bands (default: one flat band)')
    .option('--tz <zone>', 'time zone of billing periods (default: the tariff\'s, else UTC)', zone)
    .option('--lateness <duration>', 'allowed lateness before a window closes', duration('--lateness', true), 1800)
    .option('--k <n>', 'fewest meters in a released neighbourhood aggregate', intOption('--k', 1, 1_000_000), DEFAULT_K)
    .option('--revision-k <n>', 'fewest meters that must change a released neighbourhood window before a revision is released (default: k)', intOption('--revision-k', 1, 1_000_000))
    .option('--no-membership-guard', 'release neighbourhood aggregates whose membership differs from a released one by 1 to revision-k - 1 meters (lets the MDMS subtract a household out: docs/privacy.md)')
    .option('--dp-epsilon <e>', 'differential privacy: discrete Laplace noise on every neighbourhood release, epsilon per release (docs/privacy.md; default none)', epsilonOption)
    .option('--dp-max-power <W>', 'most power one meter draws, the DP sensitivity per interval (default 7360)', intOption('--dp-max-power', 1, 1_000_000))
    .option('--dp-budget <e>', 'with --dp-epsilon: most epsilon spent per neighbourhood per UTC day; releases beyond it are held (default none)', budgetOption)
    .option('--pes-id <id>', 'this PES\'s id, the topic of its policy statement sm/v1/agg/policy/<id> (default: pes, or pes-<partition>)', pesIdOption)
    .option('--retention <duration>', 'how long closed windows accept late readings (default: 2 billing periods)', duration('--retention'))
    .option('--max-skew <duration>', 'reject readings further than this from the watermark', duration('--max-skew'), 7 * 86400)
    .option('--client-id <id>', 'MQTT client id of the persistent session (default: pes, or pes-<partition>); one per partition, shared by its instances')
    .option('--gateway <id>', 'take the uplinks of this gateway only (repeatable; default: every gateway)', gatewayOption, [] as string[])
    .option('--e2e', 'end-to-end mode: the blind PES folds the meters\' Paillier snapshots and adds only its share of each decryption (keys from `provision --e2e`; default --state pes-e2e-state.sqlite; docs/paillier.md)')
    .action((flags: PesFlags, cmd: Command) => run(flags, cmd));
}
