/**
 * `smartermeter mdms` (ingest), `smartermeter mdms export` (CSV) and `smartermeter mdms forecast` (forecasts, back-tests).
 * @module
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { createLogger } from '../lib/log.js';
import { isValidFilter } from '../protocol/acl.js';
import { AGGREGATE_PREFIX, topics } from '../protocol/topics.js';
import { durationOption, intOption } from '../lib/flags.js';
import { brokerUrlsOption } from '../lib/broker-url.js';
import type { KeyObject } from 'node:crypto';
import { type Fleet, keySetMode, loadCredentials, loadFleet, loadGuardianVerifyKey, loadMdmsKey, loadMeterPaillierKey, loadPesVerifyKey } from '../lib/keyset.js';
import { DEFAULT_K } from '../lib/policy.js';
import { auditRefusals } from './refusal-audit.js';
import { openPostgres } from './store/postgres.js';
import { openSqlite } from './store/sqlite.js';
import { openWebDb } from './web/db.js';
import { NAME_PATTERN } from './web/schemas.js';
import { EXPORT_WHATS, exportCsvFile, writeCsv, type ExportWhat } from './export.js';
import { startMdmsE2eIngest } from './e2e-ingest.js';
import { startMdmsIngest } from './ingest.js';
import { isPostgresUrl, openStore, type OpenStoreOptions } from './store/index.js';
import type { Store } from './store/types.js';
import { ForecastError } from './analytics/forecast.js';
import { backtestCsv, backtestNeighbourhood, forecastCsv, forecastNeighbourhood, MAX_HORIZON_S } from './analytics/neighbourhood.js';

/** Default SQLite file of the MDMS (in the working directory). */
export const DEFAULT_DB = 'mdms.sqlite';

interface IngestFlags {
  keys: string;
  db: string;
  dbSchema?: string;
  mqtt: string;
  username?: string;
  passwordFile?: string;
  minBillingPeriod: number;
  k: number;
  clientId?: string;
  topic: string[];
  e2e?: boolean;
  /** Seconds (--retention, with --e2e only). */
  retention?: number;
}

interface ExportFlags {
  db: string;
  dbSchema?: string;
  what: ExportWhat;
  format: 'csv';
  out?: string;
}

function dbOption(): Option {
  return new Option('--db <path|url>', 'SQLite file, or postgres://user@host:5432/db');
}

function schemaOption(): Option {
  return new Option('--db-schema <name>', 'PostgreSQL schema to use (created if missing); default the server search_path').argParser((v) => {
    if (!/^[a-z_][a-z0-9_]{0,62}$/.test(v)) throw new InvalidArgumentError('--db-schema must be a lower-case SQL identifier');
    return v;
  });
}

function storeOptions(flags: { db: string; dbSchema?: string }, log?: Logger): OpenStoreOptions {
  if (flags.dbSchema && !isPostgresUrl(flags.db)) throw new Error('--db-schema only applies to a postgres:// database');
  return {
    ...(flags.dbSchema ? { schema: flags.dbSchema } : {}),
    ...(log ? { onIdleError: (e: Error) => log.warn({ error: e.message }, 'database connection lost (idle)') } : {}),
  };
}

/** Opens the store, waiting and retrying (with backoff, logged) while the database is unreachable. */
async function openStoreRetrying(db: string, opts: OpenStoreOptions, log: Logger, stopped: () => boolean): Promise<Store | null> {
  let wait = 500;
  for (let attempt = 1; !stopped(); attempt++) {
    try {
      return await openStore(db, opts);
    } catch (e) {
      log.warn({ attempt, retryInMs: wait, error: (e as Error).message }, 'database unreachable: waiting');
      await new Promise((r) => setTimeout(r, wait));
      wait = Math.min(wait * 2, 30_000);
    }
  }
  return null;
}

function mqttCredentials(flags: IngestFlags): { username?: string; password?: string } {
  if (flags.username !== undefined || flags.passwordFile !== undefined) {
    if (!flags.username || !flags.passwordFile) throw new Error('--username and --password-file go together');
    let password: string;
    try {
      password = readFileSync(flags.passwordFile, 'utf8').trim();
    } catch (e) {
      throw new Error(`cannot read --password-file ${flags.passwordFile}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    return { username: flags.username, password };
  }
  if (existsSync(join(flags.keys, 'credentials', 'mdms.json'))) return loadCredentials(flags.keys, 'mdms');
  return {};
}

/**
 * The end-to-end mode's combining ingest (mdms/e2e-ingest.ts): releases from the PES and partials from the
 * guardian, combined, checked by the same policy, stored as the classic ingest stores; its readiness logged as
 * the classic ingest's, and a handler failure (the database) ends the process to be restarted.
 */
function startE2e(flags: IngestFlags, store: Store, privateKey: KeyObject, mqtt: { url: string; username?: string; password?: string; clientId?: string }, fleet: Fleet | null, log: Logger): { ready: Promise<void>; counters: unknown; close(): Promise<void> } {
  const ingest = startMdmsE2eIngest({
    store,
    privateKey,
    pesVerifyKey: loadPesVerifyKey(flags.keys),
    guardianVerifyKey: loadGuardianVerifyKey(flags.keys),
    paillier: loadMeterPaillierKey(flags.keys),
    mqtt,
    k: flags.k,
    minBillingPeriodS: flags.minBillingPeriod,
    ...(flags.retention !== undefined ? { retentionMs: flags.retention * 1000 } : {}),
    ...(fleet ? { fleet } : {}),
    log,
  });
  const ready = ingest.ready.then(() => {
    log.info({ url: mqtt.url, k: flags.k, minBillingPeriodS: flags.minBillingPeriod, store: store.location, waiting: ingest.combiner.waiting }, 'MDMS ingest subscribed');
    // A throwing handler stops the subscriber: reject so that the process ends with the error.
    return Promise.race([ingest.failed.then((e) => Promise.reject(e)), new Promise<void>(() => undefined)]);
  });
  return { ready, counters: ingest.counters, close: () => ingest.close() };
}

async function runIngest(flags: IngestFlags): Promise<void> {
  const log = createLogger('mdms');
  if (flags.e2e) {
    if (keySetMode(flags.keys) !== 'e2e') throw new Error(`${flags.keys} is a classic key set: --e2e needs one from provision --e2e`);
    if (flags.topic.length) throw new Error('--topic is not available with --e2e: the end-to-end ingest takes every release and partial');
  } else if (flags.retention !== undefined) throw new Error('--retention is for the end-to-end ingest (--e2e): the classic ingest keeps nothing waiting');
  const privateKey = loadMdmsKey(flags.keys);
  const credentials = mqttCredentials(flags);
  let stopping = false;
  let stop: () => void = () => undefined;
  const stopped = new Promise<void>((resolve) => (stop = resolve));
  const onSignal = (): void => {
    stopping = true;
    stop();
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const store = await openStoreRetrying(flags.db, storeOptions(flags, log), log, () => stopping);
  if (!store) return;
  // Refusals go to the web app's audit log in the same database (its tables are created if missing).
  const auditDriver = isPostgresUrl(flags.db) ? openPostgres(flags.db, storeOptions(flags, log)) : openSqlite(flags.db);
  const audit = (await openWebDb(auditDriver)).audit;
  const fleetFile = join(flags.keys, 'fleet.json');
  const fleet = existsSync(fleetFile) ? loadFleet(flags.keys) : null;
  if (!fleet) log.warn({ fleetFile }, 'no fleet.json in the key set: aggregates for unknown households and neighbourhoods are not refused');
  const mqttOptions = { url: flags.mqtt, ...credentials, ...(flags.clientId !== undefined ? { clientId: flags.clientId } : {}) };
  const ingest = flags.e2e
    ? startE2e(flags, store, privateKey, mqttOptions, fleet, log)
    : startMdmsIngest({
        store,
        privateKey,
        pesVerifyKey: loadPesVerifyKey(flags.keys),
        mqtt: mqttOptions,
        ...(flags.topic.length ? { topics: flags.topic } : {}),
        minBillingPeriodS: flags.minBillingPeriod,
        k: flags.k,
        ...(fleet ? { fleet } : {}),
        onRefused: auditRefusals(audit),
        log,
      });
  // A refused login or subscription will not fix itself: stop with a clear error.
  const failure = ingest.ready.then(
    () => new Promise<never>(() => undefined),
    (e: Error) => e,
  );
  const outcome = await Promise.race([stopped.then(() => null), failure]);
  await ingest.close();
  await store.close();
  await auditDriver.close();
  log.info({ counters: ingest.counters }, 'MDMS ingest stopped');
  if (outcome instanceof Error) throw outcome;
}

async function runExport(flags: ExportFlags): Promise<void> {
  if (!isPostgresUrl(flags.db) && !existsSync(flags.db)) throw new Error(`no MDMS database at ${flags.db}`);
  const store = await openStore(flags.db, storeOptions(flags));
  try {
    if (flags.out) await exportCsvFile(store, flags.what, flags.out);
    else await writeCsv(store, flags.what, process.stdout);
  } finally {
    await store.close();
  }
}

interface ForecastFlags {
  db: string;
  dbSchema?: string;
  neighbourhood: string[];
  horizon: number;
  until?: number;
  level: number;
  format: 'csv' | 'json';
  backtest?: boolean;
  days: number;
}

function untilOption(v: string): number {
  const s = /^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,3})?)?(Z|[+-]\d{2}:\d{2}))?$/.test(v) ? Date.parse(v.length === 10 ? `${v}T00:00:00Z` : v) / 1000 : NaN;
  if (!Number.isInteger(s) || s < 0) throw new InvalidArgumentError(`--until must be a date (YYYY-MM-DD, UTC midnight) or an ISO 8601 time with an offset, got "${v.slice(0, 40)}"`);
  return s;
}

function levelOption(v: string): number {
  const x = Number(v);
  if (!/^0\.\d+$/.test(v) || !(x > 0 && x < 1)) throw new InvalidArgumentError(`--level must be a decimal between 0 and 1 such as 0.8, got "${v.slice(0, 20)}"`);
  return x;
}

async function runForecast(flags: ForecastFlags): Promise<void> {
  if (!isPostgresUrl(flags.db) && !existsSync(flags.db)) throw new Error(`no MDMS database at ${flags.db}`);
  if (flags.horizon > MAX_HORIZON_S) throw new Error(`--horizon may be at most ${MAX_HORIZON_S / 86_400}d`);
  const store = await openStore(flags.db, storeOptions(flags));
  try {
    const known = await store.listNeighbourhoods();
    const nbs = flags.neighbourhood.length ? [...new Set(flags.neighbourhood)] : known;
    for (const nb of nbs) if (!known.includes(nb)) throw new Error(`no stored aggregate of neighbourhood "${nb.slice(0, 64)}"`);
    const until = flags.until === undefined ? {} : { until: flags.until };
    try {
      if (flags.backtest) {
        const results = [];
        for (const nb of nbs) results.push(await backtestNeighbourhood(store, nb, { days: flags.days, level: flags.level, ...until }));
        process.stdout.write(flags.format === 'json' ? JSON.stringify(results) + '\n' : backtestCsv(results).join('\n') + '\n');
      } else {
        const results = [];
        for (const nb of nbs) results.push(await forecastNeighbourhood(store, nb, { horizonS: flags.horizon, level: flags.level, ...until }));
        process.stdout.write(flags.format === 'json' ? JSON.stringify(results) + '\n' : forecastCsv(results).join('\n') + '\n');
      }
    } catch (e) {
      if (e instanceof ForecastError) throw new Error(e.message);
      throw e;
    }
  } finally {
    await store.close();
  }
}

/**
 * Adds `mdms` (ingest) and `mdms export` to the program.
 * @example
 * ```ts
 * registerMdmsCommand(program);
 * await program.parseAsync(['node', 'smartermeter', 'mdms', 'export', '--db', 'mdms.sqlite', '--what', 'billing', '--format', 'csv']);
 * ```
 */
export function registerMdmsCommand(program: Command): void {
  const mdms = program
    .command('mdms')
    .description('MDMS: receive the sealed aggregates, unseal them with the MDMS key and store them (SQLite or PostgreSQL); export them');
  // The ingest is the default subcommand, so `smartermeter mdms --keys k --db d` runs it. Its flags live on
  // the subcommand: flags on `mdms` itself would also swallow `mdms export --db ...` (commander parses a
  // parent's options after its subcommand unless the root program enables positional options).
  mdms
    .command('ingest', { isDefault: true })
    .description('receive, unseal, validate and store the sealed aggregates (the default)')
    .requiredOption('--keys <dir>', 'key set directory (mdms/mdms.key.pem, credentials/mdms.json)')
    .addOption(dbOption().default(DEFAULT_DB))
    .addOption(schemaOption())
    .option('--mqtt <urls>', 'broker URL, or several comma-separated (the nodes of a cluster; reconnects to the next)', brokerUrlsOption('--mqtt'), 'mqtt://127.0.0.1:1883')
    .option('--username <name>', 'broker username (default: from the key set)')
    .option('--password-file <path>', 'file holding the broker password (with --username)')
    .option(
      '--min-billing-period <duration>',
      'refuse billing aggregates covering less than this (production: 28d)',
      durationOption('--min-billing-period'),
      86_400,
    )
    .option('--k <n>', 'refuse neighbourhood aggregates of fewer meters: the same k as the PES', intOption('--k', 1, 1_000_000), DEFAULT_K)
    .option('--client-id <id>', 'MQTT client id of the persistent session (default: mdms); unique per MDMS on a shared broker, and per ingest worker (mdms-1, mdms-2, ...: each stores every aggregate, idempotently; docs/operations.md)')
    .option('--topic <filter>', `subscribe to this filter under ${AGGREGATE_PREFIX} only (repeatable; default ${topics.aggregatesAll})`, (v: string, acc: string[]) => {
      if (!v.startsWith(AGGREGATE_PREFIX) || !isValidFilter(v)) throw new InvalidArgumentError(`--topic must be an MQTT topic filter under ${AGGREGATE_PREFIX}, got "${v}"`);
      return [...acc, v];
    }, [] as string[])
    .option('--e2e', 'end-to-end mode (key set from provision --e2e): combine the PES\'s releases with the guardian\'s partial decryptions before storing; halves waiting for their counterpart are kept in the database')
    .option('--retention <duration>', 'with --e2e: how long a combined pair\'s marker (so that a half published again is a duplicate) and a half whose counterpart never came are kept (default 62d: two billing periods of a month)', durationOption('--retention'))
    .action((flags: IngestFlags) => runIngest(flags));

  mdms
    .command('export')
    .description('write the latest revision of every aggregate as CSV (times ISO 8601 UTC, energy in Wh)')
    .addOption(dbOption().makeOptionMandatory())
    .addOption(schemaOption())
    .addOption(new Option('--what <kind>', 'neighbourhood or billing').choices(EXPORT_WHATS).makeOptionMandatory())
    .addOption(new Option('--format <format>', 'output format').choices(['csv']).default('csv'))
    .option('--out <file>', 'write to this file (mode 0600) instead of stdout')
    .action((flags: ExportFlags) => runExport(flags));

  mdms
    .command('forecast')
    .description('forecast neighbourhood demand from the released aggregates (MSTL + ETS, 80 % interval), or back-test it against seasonal naive')
    .addOption(dbOption().makeOptionMandatory())
    .addOption(schemaOption())
    .option('--neighbourhood <name>', 'neighbourhood to forecast (repeatable; default: every stored one)', (v: string, acc: string[]) => {
      if (!new RegExp(NAME_PATTERN).test(v)) throw new InvalidArgumentError(`--neighbourhood must be a neighbourhood id, got "${v.slice(0, 64)}"`);
      return [...acc, v];
    }, [] as string[])
    .option('--horizon <duration>', 'how far ahead (e.g. 24h, 7d)', durationOption('--horizon'), 86_400)
    .option('--until <time>', 'cut-off: use only data before this time (default: the latest stored interval)', untilOption)
    .option('--level <p>', 'coverage of the prediction interval', levelOption, 0.8)
    .addOption(new Option('--format <format>', 'output format').choices(['csv', 'json']).default('csv'))
    .option('--backtest', 'report MAPE and MASE of the day-ahead forecast over the last --days days, beside seasonal naive')
    .option('--days <n>', 'back-test days', intOption('--days', 1, 60), 7)
    .action((flags: ForecastFlags) => runForecast(flags));
}
