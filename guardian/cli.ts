/**
 * `smartermeter guardian --keys keys/guardian --mqtt URL --state FILE [--k 20] ...`: the guardian's MQTT
 * service (guardian/service.ts) from its own key folder, which it may hold alone (share, meter keys wrapped to
 * its RSA key, signing key, MDMS public key, fleet, broker credentials). Kill -9 safe with its `--state` file
 * (lib/e2e-state.ts). Its release settings must equal the PES's (interval, billing period, tariff, zone,
 * lateness, k, revision-k, membership guard): it recomputes the same windows and refuses the others.
 * Log lines: `guardian: subscribed` once ready, `guardian: flushed on SIGUSR2: every window closed` after
 * SIGUSR2 (closes every window: end of a replay), `guardian: stopped` after SIGINT/SIGTERM.
 * @module
 */
import { readFileSync } from 'node:fs';
import { InvalidArgumentError, type Command } from 'commander';
import { pino } from 'pino';
import { parseBillingPeriod } from '../lib/billing-period.js';
import { brokerUrlsOption } from '../lib/broker-url.js';
import { runBlindCommand } from '../lib/blind-service.js';
import { blindSettingsOf } from '../lib/e2e-windows.js';
import { budgetOption, durationOption, epsilonOption, intOption, parseDuration, zoneOption } from '../lib/flags.js';
import { loadCredentials, loadFleet, loadGuardianKeys } from '../lib/keyset.js';
import { DEFAULT_K } from '../lib/policy.js';
import { FLAT_TARIFF, loadTariff } from '../lib/tariff.js';
import { topicId } from '../protocol/topics.js';
import { startGuardianService } from './service.js';

/** Default state file (in the working directory). */
export const DEFAULT_GUARDIAN_STATE = 'guardian-state.sqlite';

interface GuardianFlags {
  keys: string;
  mqtt: string;
  username?: string;
  passwordFile?: string;
  state: string;
  clientId: string;
  gateway: string[];
  interval: number;
  billingPeriod: string;
  tariff?: string;
  tz?: string;
  lateness: number;
  k: number;
  revisionK?: number;
  membershipGuard: boolean;
  retention?: number;
  dpEpsilon?: number;
  dpBudget?: number;
  maxSkew: number;
}

function credentials(f: GuardianFlags): { username?: string; password?: string } {
  if (f.username === undefined && f.passwordFile === undefined) return loadCredentials(f.keys, 'guardian');
  if (!f.username || !f.passwordFile) throw new InvalidArgumentError('--username and --password-file go together');
  try {
    return { username: f.username, password: readFileSync(f.passwordFile, 'utf8').trim() };
  } catch (e) {
    throw new Error(`cannot read --password-file ${f.passwordFile}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

function idOption(flag: string) {
  return (v: string): string => {
    try {
      return topicId(v, flag);
    } catch (e) {
      throw new InvalidArgumentError((e as Error).message);
    }
  };
}

/** `--interval`, as the PES's: 1m to 1d, dividing a day. */
function intervalOption(v: string): number {
  const s = parseDuration(v, '--interval');
  if (s < 60 || s > 86400 || 86400 % s !== 0) throw new InvalidArgumentError(`--interval must be between 1m and 1d and divide a day (e.g. 5m, 15m, 1h), got "${v}"`);
  return s;
}

/** `--lateness`, as the PES's: a duration or 0. */
function latenessOption(v: string): number {
  return /^0[smhdw]?$/.test(v) ? 0 : parseDuration(v, '--lateness');
}

async function run(f: GuardianFlags): Promise<void> {
  if (f.retention !== undefined && f.retention <= f.lateness) throw new InvalidArgumentError(`--retention must be longer than --lateness (${f.lateness} s)`);
  if (f.maxSkew < 60) throw new InvalidArgumentError('--max-skew must be at least 1m');
  if (f.dpBudget !== undefined && f.dpEpsilon === undefined) throw new InvalidArgumentError('--dp-budget needs --dp-epsilon');
  if (f.dpBudget !== undefined && f.dpBudget < f.dpEpsilon!) throw new InvalidArgumentError(`--dp-budget must be at least --dp-epsilon (${f.dpEpsilon})`);
  let billing;
  try {
    billing = parseBillingPeriod(f.billingPeriod, '--billing-period');
  } catch (e) {
    throw new InvalidArgumentError((e as Error).message);
  }
  const creds = credentials(f);
  const log = pino({ name: 'guardian' });
  const keys = loadGuardianKeys(f.keys);
  const fleet = loadFleet(f.keys);
  const meters = new Map(
    fleet.meters.map((m) => {
      const key = keys.meterKeys.get(m.meter);
      if (!key) throw new Error(`the guardian's key folder has no key for meter ${m.meter}`);
      const rotated = keys.meterRotations.get(m.meter);
      return [m.meter, { key, household: m.household, neighbourhood: m.neighbourhood, ...(rotated?.length ? { rotated } : {}) }];
    }),
  );
  const tariff = f.tariff ? loadTariff(f.tariff) : FLAT_TARIFF;
  const svc = startGuardianService({
    settings: blindSettingsOf(f, billing, tariff),
    keys: { share: keys.paillierShare, meters, signer: keys.signer, mdmsPublic: keys.mdmsPublic },
    mqtt: { url: f.mqtt, ...creds, clientId: f.clientId },
    stateFile: f.state,
    ...(f.gateway.length ? { gateways: f.gateway } : {}),
    ...(f.dpBudget !== undefined ? { dpBudget: f.dpBudget } : {}),
    logger: log,
  });
  await runBlindCommand(svc, { tag: 'guardian', log, subscribed: { url: f.mqtt, k: f.k, intervalS: f.interval, state: f.state }, stopped: () => ({ counters: svc.core.windows.counters, refusals: svc.core.refusals }) });
}

/**
 * Adds `guardian` to the program.
 * @example
 * ```ts
 * registerGuardianCommand(program);
 * await program.parseAsync(['node', 'smartermeter', 'guardian', '--keys', 'keys/guardian', '--k', '20']);
 * ```
 */
export function registerGuardianCommand(program: Command): void {
  program
    .command('guardian')
    .description("end-to-end mode: the guardian answers the PES's requests, recomputing each from its own copy of the uplinks, with its partial decryption only for >= k meters or a household's whole billing period")
    .requiredOption('--keys <dir>', "the guardian's own key folder (keys/guardian from `provision --e2e`)")
    .option('--mqtt <urls>', 'broker URL, or several comma-separated (the nodes of a cluster)', brokerUrlsOption('--mqtt'), 'mqtt://127.0.0.1:1883')
    .option('--username <name>', "broker username (default: from the guardian's key folder)")
    .option('--password-file <path>', 'file holding the broker password (with --username)')
    .option('--state <file>', 'SQLite state file (blind windows: Paillier ciphertexts, meter ids, anti-replay counters; 0600)', DEFAULT_GUARDIAN_STATE)
    .option('--client-id <id>', 'MQTT client id of its persistent session', idOption('--client-id'), 'guardian')
    .option('--gateway <id>', 'take the uplinks of this gateway only (repeatable; the PES\'s; default: every gateway)', (v: string, acc: string[]) => [...acc, idOption('--gateway')(v)], [] as string[])
    .option('--interval <duration>', "neighbourhood aggregation interval (the PES's)", intervalOption, 900)
    .option('--billing-period <period>', "billing period: 1d, 1mo or Nh (the PES's)", '1d')
    .option('--tariff <file.json>', "time-of-use bands (the PES's; default one flat band)")
    .option('--tz <zone>', "time zone of billing periods (the PES's)", zoneOption)
    .option('--lateness <duration>', "allowed lateness before a window closes (the PES's)", latenessOption, 1800)
    .option('--k <n>', 'fewest meters in a neighbourhood window it helps open', intOption('--k', 1, 1_000_000), DEFAULT_K)
    .option('--revision-k <n>', 'fewest meters that must change a window before it opens a revision (default: k)', intOption('--revision-k', 1, 1_000_000))
    .option('--no-membership-guard', "release neighbourhood windows whose membership differs from a released one by 1 to revision-k - 1 meters (the PES's setting; docs/privacy.md)")
    .option('--dp-epsilon <e>', "the PES's --dp-epsilon: neighbourhood windows fold the meters' noised totals (docs/privacy.md)", epsilonOption)
    .option('--dp-budget <e>', 'most epsilon per neighbourhood per UTC day it helps open, whatever the PES asks (its own ledger; docs/privacy.md)', budgetOption)
    .option('--retention <duration>', 'how long closed windows are kept for revisions (default: 2 billing periods)', durationOption('--retention'))
    .option('--max-skew <duration>', "refuse a frame whose readings are further than this from the watermark, so that one meter's clock far ahead does not close every window (the PES's)", durationOption('--max-skew'), 7 * 86400)
    .action((f: GuardianFlags) => run(f));
}
