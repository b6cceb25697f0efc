/**
 * `smartermeter guardian --keys keys/guardian --mqtt URL [--k 20] ...`: the guardian's MQTT service
 * (guardian/service.ts) from its own key folder, which it may hold alone (share, meter keys wrapped to its RSA
 * key, signing key, MDMS public key, fleet, broker credentials). Its release settings must equal the PES's
 * (interval, billing period, tariff, zone, lateness, k): it recomputes the same windows and refuses the others.
 * SIGUSR2 closes every window (end of a replay); SIGINT/SIGTERM stop it.
 * @module
 */
import { type Command } from 'commander';
import { pino } from 'pino';
import { parseBillingPeriod } from '../lib/billing-period.js';
import { durationOption, intOption, zoneOption } from '../lib/flags.js';
import { loadCredentials, loadFleet, loadGuardianKeys } from '../lib/keyset.js';
import { DEFAULT_K } from '../lib/policy.js';
import { FLAT_TARIFF, loadTariff } from '../lib/tariff.js';
import { startGuardianService } from './service.js';

interface GuardianFlags {
  keys: string;
  mqtt: string;
  interval: number;
  billingPeriod: string;
  tariff?: string;
  tz?: string;
  lateness: number;
  k: number;
  revisionK?: number;
}

async function run(f: GuardianFlags): Promise<void> {
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
    settings: { intervalS: f.interval, billing: parseBillingPeriod(f.billingPeriod), tz: f.tz ?? tariff.tz, tariff, latenessS: f.lateness, k: f.k, revisionK: f.revisionK ?? f.k },
    keys: { share: keys.paillierShare, meters, signer: keys.signer, mdmsPublic: keys.mdmsPublic },
    mqtt: { url: f.mqtt, ...loadCredentials(f.keys, 'guardian') },
    logger: log,
  });
  const onFlush = () => {
    svc.flush();
    log.info({ counters: svc.core.windows.counters }, 'guardian: flushed on SIGUSR2: every window closed');
  };
  process.on('SIGUSR2', onFlush);
  await svc.ready;
  log.info({ url: f.mqtt, k: f.k, intervalS: f.interval }, 'guardian: subscribed');
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  process.off('SIGUSR2', onFlush);
  await svc.close();
  log.info({ counters: svc.core.windows.counters, refusals: svc.core.refusals }, 'guardian: stopped');
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
    .description("end-to-end mode: the guardian recomputes every window from the uplinks and adds its partial decryption only for >= k meters or a household's whole billing period")
    .requiredOption('--keys <dir>', "the guardian's own key folder (keys/guardian from `provision --e2e`)")
    .option('--mqtt <url>', 'broker URL', 'mqtt://127.0.0.1:1883')
    .option('--interval <duration>', "neighbourhood aggregation interval (the PES's)", durationOption('--interval'), 900)
    .option('--billing-period <period>', "billing period: 1d, 1mo or Nh (the PES's)", '1d')
    .option('--tariff <file.json>', "time-of-use bands (the PES's; default one flat band)")
    .option('--tz <zone>', "time zone of billing periods (the PES's)", zoneOption)
    .option('--lateness <duration>', "allowed lateness before a window closes (the PES's)", durationOption('--lateness'), 1800)
    .option('--k <n>', 'fewest meters in a neighbourhood window it helps open', intOption('--k', 1, 1_000_000), DEFAULT_K)
    .option('--revision-k <n>', 'fewest meters that must change a window before it opens a revision (default: k)', intOption('--revision-k', 1, 1_000_000))
    .action((f: GuardianFlags) => run(f));
}
