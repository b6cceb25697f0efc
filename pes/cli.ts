/**
 * `smartermeter pes`: the Privacy Enhancing System as an MQTT service.
 * @module
 */
import { DEFAULT_K } from '../lib/policy.js';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { InvalidArgumentError, type Command } from 'commander';
import { IANAZone } from 'luxon';
import { pino } from 'pino';
import { intOption, parseDuration } from '../lib/flags.js';
import { brokerUrlsOption } from '../lib/broker-url.js';
import { loadCredentials, loadFleet, loadPesKeys } from '../lib/keyset.js';
import { topicId } from '../protocol/topics.js';
import { parseBillingPeriod, type BillingPeriod } from './duration.js';
import { startPesService } from './mqtt.js';
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
  pesId: string;
  retention?: number;
  maxSkew: number;
  clientId?: string;
  gateway: string[];
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

function zone(v: string): string {
  if (!IANAZone.isValidZone(v)) throw new InvalidArgumentError(`--tz must be an IANA time zone such as UTC or Europe/London, got "${v}"`);
  return v;
}

function credentials(flags: PesFlags): { username?: string; password?: string } {
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

async function run(flags: PesFlags): Promise<void> {
  const log = pino({ name: 'pes' });
  const keys = loadPesKeys(flags.keys);
  const meters = fleetMeters(loadFleet(flags.keys).meters, keys.meterKeys, keys.meterRotations);
  const tariff = flags.tariff ? loadTariff(flags.tariff) : FLAT_TARIFF;
  if (flags.k < 20) log.warn({ k: flags.k }, 'pes: k below 20 — aggregates of fewer households leak individual behaviour (Buescher et al., PoPETs 2017)');
  if (!flags.membershipGuard) log.warn('pes: membership guard off — two releases differing by one meter reveal that household (docs/privacy.md)');
  const svc = startPesService({
    keys: { rsa: keys.rsa, paillier: keys.paillier, mdmsPublic: keys.mdmsPublic, signer: keys.signer, bindingKeys: keys.bindingKeys, householdPublic: keys.householdPublic, meters },
    stateFile: flags.state,
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
    pesId: flags.pesId,
    ...(flags.retention !== undefined ? { retentionS: flags.retention } : {}),
    maxSkewS: flags.maxSkew,
    pool: true,
    logger: log,
    mqtt: { url: flags.mqtt, ...credentials(flags), ...(flags.clientId !== undefined ? { clientId: flags.clientId } : {}) },
    ...(flags.gateway.length ? { gateways: flags.gateway } : {}),
  });
  // End of stream (replays, tests): SIGUSR2 closes every open window now and releases what may be released.
  // Messages are handled synchronously, so this runs between two of them; later readings make revisions.
  const onFlush = () => {
    try {
      svc.pes.flush();
      log.info({ counters: svc.pes.counters }, 'pes: flushed on SIGUSR2: every window closed');
    } catch (e) {
      log.error({ err: (e as Error).message }, 'pes: flush failed');
    }
  };
  process.on('SIGUSR2', onFlush);
  let stop!: () => void;
  const stopped = new Promise<null>((resolve) => (stop = () => resolve(null)));
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  const refused = svc.ready.then(
    () => new Promise<never>(() => undefined),
    (e: Error) => e,
  );
  const outcome = await Promise.race([stopped, refused, svc.failed]);
  process.off('SIGUSR2', onFlush);
  if (outcome instanceof Error) {
    await svc.kill();
    throw outcome;
  }
  await svc.close();
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
    .option('--state <file>', 'SQLite state file (Paillier ciphertexts, sealed counters)', DEFAULT_STATE)
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
    .option('--pes-id <id>', 'this PES\'s id, the topic of its policy statement sm/v1/agg/policy/<id>', pesIdOption, 'pes')
    .option('--retention <duration>', 'how long closed windows accept late readings (default: 2 billing periods)', duration('--retention'))
    .option('--max-skew <duration>', 'reject readings further than this from the watermark', duration('--max-skew'), 7 * 86400)
    .option('--client-id <id>', 'MQTT client id of the persistent session (default: pes); unique per PES on a shared broker')
    .option('--gateway <id>', 'take the uplinks of this gateway only (repeatable; default: every gateway)', gatewayOption, [] as string[])
    .action((flags: PesFlags) => run(flags));
}
