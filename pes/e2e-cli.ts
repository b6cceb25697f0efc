/**
 * `smartermeter pes --e2e`: the blind PES (docs/paillier.md) as a standalone command, kill -9 safe with its
 * `--state` file (lib/e2e-state.ts). It takes the classic PES's release flags (interval, billing period,
 * tariff, zone, lateness, k, revision-k, membership guard, retention, max-skew (the guardian must run with the
 * same), pes-id, client-id, gateway, broker and credentials; `--dp-epsilon` is the epsilon the meters' noise
 * shares give: the blind PES folds the noised totals and keeps the ledger; `--dp-budget` withholds a release
 * beyond it, pes/e2e.ts) and refuses, each with a clear error, those it cannot honour (the DP sensitivity, which
 * is the meters', a PostgreSQL state, partitions). Same log lines as the classic `pes`: `pes: subscribed` once
 * ready, `pes: flushed on SIGUSR2: every window closed` after SIGUSR2 (closes every window), `pes: stopped`.
 * @module
 */
import { InvalidArgumentError, type Command } from 'commander';
import { createLogger } from '../lib/log.js';
import { loadFleet, loadPesKeys } from '../lib/keyset.js';
import { FLAT_TARIFF, loadTariff } from '../lib/tariff.js';
import { credentials, fleetMeters, type PesFlags } from './cli.js';
import { parseBillingPeriod } from './duration.js';
import { startPesE2eService } from './e2e-mqtt.js';
import { runBlindCommand } from '../lib/blind-service.js';
import { blindSettingsOf } from '../lib/e2e-windows.js';
import { isPostgresUrl } from './pg-state.js';

/** Default state file of the blind PES (in the working directory; never the classic PES's). */
export const DEFAULT_E2E_STATE = 'pes-e2e-state.sqlite';

/** Flags the blind PES cannot honour, and why. */
const REFUSED: [keyof PesFlags, string, string][] = [
  ['dpMaxPower', '--dp-max-power', 'the sensitivity is the meters\' in the end-to-end mode (they draw the noise shares)'],
  ['partition', '--partition', 'the blind PES runs the whole fleet (no partitions yet)'],
  ['neighbourhoods', '--neighbourhoods', 'the blind PES runs the whole fleet (no partitions yet)'],
  ['partitions', '--partitions', 'the blind PES runs the whole fleet (no partitions yet)'],
  ['stateSchema', '--state-schema', 'the blind PES keeps a SQLite state file only'],
  ['leaseTtl', '--lease-ttl', 'the blind PES keeps a SQLite state file only (no standby)'],
];

/**
 * Runs the blind PES until SIGINT/SIGTERM (or a failing commit: then it throws, the supervisor restarts it).
 * @example
 * ```ts
 * await runPesE2e(flags, command); // from `smartermeter pes --e2e --keys keys/pes --state pes-e2e.sqlite`
 * ```
 */
export async function runPesE2e(flags: PesFlags, cmd: Command): Promise<void> {
  for (const [name, flag, why] of REFUSED) {
    if (cmd.getOptionValueSource(name) === 'cli') throw new InvalidArgumentError(`${flag} cannot be used with --e2e: ${why}`);
  }
  const stateFile = cmd.getOptionValueSource('state') === 'cli' ? flags.state : DEFAULT_E2E_STATE;
  if (isPostgresUrl(stateFile)) throw new InvalidArgumentError('--state with --e2e must be a SQLite file: the blind PES has no PostgreSQL state yet');
  const billing = flags.billingPeriod ?? parseBillingPeriod('1d');
  if (flags.retention !== undefined && flags.retention <= flags.lateness) throw new InvalidArgumentError(`--retention must be longer than --lateness (${flags.lateness} s)`);
  if (flags.maxSkew < 60) throw new InvalidArgumentError('--max-skew must be at least 1m');
  if (flags.dpBudget !== undefined && flags.dpEpsilon === undefined) throw new InvalidArgumentError('--dp-budget needs --dp-epsilon');
  if (flags.dpBudget !== undefined && flags.dpBudget < flags.dpEpsilon!) throw new InvalidArgumentError(`--dp-budget must be at least --dp-epsilon (${flags.dpEpsilon})`);
  const log = createLogger('pes');
  const keys = loadPesKeys(flags.keys, { e2e: true });
  const meters = fleetMeters(loadFleet(flags.keys).meters, keys.meterKeys, keys.meterRotations);
  const tariff = flags.tariff ? loadTariff(flags.tariff) : FLAT_TARIFF;
  if (flags.k < 20) log.warn({ k: flags.k }, 'pes: k below 20 — aggregates of fewer households leak individual behaviour (Buescher et al., PoPETs 2017)');
  if (!flags.membershipGuard) log.warn('pes: membership guard off — two releases differing by one meter reveal that household (docs/privacy.md)');
  const pesId = flags.pesId ?? 'pes';
  const svc = startPesE2eService({
    settings: blindSettingsOf(flags, billing, tariff),
    keys: { share: keys.paillierShare, mdmsPublic: keys.mdmsPublic, signer: keys.signer, meters },
    mqtt: { url: flags.mqtt, ...credentials(flags), clientId: flags.clientId ?? 'pes' },
    stateFile,
    ...(flags.gateway.length ? { gateways: flags.gateway } : {}),
    ...(flags.dpBudget !== undefined ? { dpBudget: flags.dpBudget } : {}),
    logger: log,
  });
  await runBlindCommand(
    { ready: svc.ready, failed: svc.failed, flush: () => svc.pes.flush(), close: () => svc.close(), kill: () => svc.kill() },
    { tag: 'pes', log, subscribed: { url: flags.mqtt, k: flags.k, intervalS: flags.interval, pesId, mode: 'e2e', state: stateFile }, stopped: () => ({ counters: svc.core.windows.counters }) },
  );
}
