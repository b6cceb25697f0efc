/**
 * Command-line wiring of the MDMS web app, added to the `mdms` command that mdms/cli.ts registers:
 * - `mdms [ingest] --keys k --db d --http <port> [--http-host h] [--tls-cert c --tls-key k]`: the ingest and the web app in one process
 *   (the flags go on the `ingest` subcommand, the default one; the web app starts before the ingest's action
 *   and stops after it);
 * - `mdms web --http <port>`: the web app alone (no MQTT), e.g. on another host reading the same PostgreSQL;
 * - `--privacy-report DIR` on either: the Privacy page shows DIR/summary.json and serves DIR/report.html;
 * - `mdms user add --role admin|analyst|billing|privacy[,...] [--username x] [--password-stdin]`: creates a user;
 *   without --password-stdin a password is generated and printed once (the only time it exists in clear);
 * - `mdms user passwd --username x [--password-stdin]`: sets a new password (recovery), ending the user's sessions;
 * - `mdms user list`.
 * The subcommands take their own `--db` / `--db-schema` (default `mdms.sqlite`, like the ingest).
 * @module
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pino, type Logger } from 'pino';
import { intOption, readTlsFlags } from '../../lib/flags.js';
import { loadFleet, type Fleet } from '../../lib/keyset.js';
import { isPostgresUrl } from '../store/index.js';
import { openPostgres } from '../store/postgres.js';
import { openSqlite } from '../store/sqlite.js';
import type { Driver } from '../store/driver.js';
import { openWebDb } from './db.js';
import { parseRoles, ROLES, type Role } from './roles.js';
import { startMdmsWeb, type MdmsWeb } from './server.js';
import { generatePassword, normaliseUsername, UserError } from './users.js';

interface DbFlags {
  db?: string;
  dbSchema?: string;
}
interface HttpFlags extends DbFlags {
  http?: number;
  httpHost: string;
  keys?: string;
  metricsTokenFile?: string;
  trustProxy?: boolean;
  secureCookies?: boolean;
  tlsCert?: string;
  tlsKey?: string;
  privacyReport?: string;
}

const SCHEMA = /^[a-z_][a-z0-9_]{0,62}$/;

function schemaOption(): Option {
  return new Option('--db-schema <name>', 'PostgreSQL schema (default: the server search_path)').argParser((v) => {
    if (!SCHEMA.test(v)) throw new InvalidArgumentError('--db-schema must be a lower-case SQL identifier');
    return v;
  });
}

/** The database of a command: its flags, default `mdms.sqlite` (the ingest's default). */
function dbOf(flags: DbFlags): { db: string; schema?: string } {
  const db = flags.db ?? 'mdms.sqlite';
  const schema = flags.dbSchema;
  if (schema && !isPostgresUrl(db)) throw new InvalidArgumentError('--db-schema only applies to a postgres:// database');
  return { db, ...(schema ? { schema } : {}) };
}

function openDriver(db: string, schema?: string, create = false): Driver {
  if (!create && !isPostgresUrl(db) && !existsSync(db)) throw new Error(`no MDMS database at ${db} (run the MDMS once, or give --db)`);
  return isPostgresUrl(db) ? openPostgres(db, schema ? { schema } : {}) : openSqlite(db);
}

/** Reads a password from stdin (first line; trailing newline removed). */
async function readStdinPassword(stdin: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of stdin) {
    chunks.push(Buffer.from(c as Buffer));
    if (Buffer.concat(chunks).includes(10)) break;
  }
  const line = Buffer.concat(chunks).toString('utf8').split(/\r?\n/)[0] ?? '';
  if (!line) throw new InvalidArgumentError('--password-stdin: no password on standard input');
  return line;
}

function fleetOf(keys: string | undefined, log: Logger): Fleet | null {
  if (!keys) return null;
  if (!existsSync(join(keys, 'fleet.json'))) {
    log.warn({ keys }, 'no fleet.json in the key set: the meter list will be empty');
    return null;
  }
  return loadFleet(keys);
}

async function startFromFlags(flags: HttpFlags, log: Logger): Promise<MdmsWeb> {
  const { db, schema } = dbOf(flags);
  const keys = flags.keys;
  let metricsToken: string | null = null;
  if (flags.metricsTokenFile) {
    try {
      metricsToken = readFileSync(flags.metricsTokenFile, 'utf8').trim();
    } catch (e) {
      throw new Error(`cannot read --metrics-token-file ${flags.metricsTokenFile}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    if (metricsToken.length < 16) throw new InvalidArgumentError('the metrics token must have at least 16 characters');
  }
  const https = readTlsFlags(flags);
  const privacyReport = flags.privacyReport === undefined ? null : resolve(flags.privacyReport);
  if (privacyReport !== null) {
    if (!existsSync(privacyReport)) log.warn({ privacyReport }, 'the --privacy-report directory does not exist yet: the Privacy page says so until smartermeter privacy-report --out writes it');
    else if (!statSync(privacyReport).isDirectory()) throw new InvalidArgumentError(`--privacy-report must be the directory smartermeter privacy-report --out wrote, not a file: ${flags.privacyReport}`);
  }
  const web = await startMdmsWeb({
    ...(https ? { https } : {}),
    db,
    ...(schema ? { dbSchema: schema } : {}),
    fleet: fleetOf(keys, log),
    port: flags.http ?? 8080,
    host: flags.httpHost,
    logger: log,
    metricsToken,
    privacyReport,
    trustProxy: flags.trustProxy ?? false,
    secureCookies: flags.secureCookies ? 'always' : 'auto',
  });
  if ((await web.web.users.count()) === 0) log.warn('no users yet: create the first administrator with `smartermeter mdms user add --role admin`');
  const loopback = ['127.0.0.1', 'localhost', '::1'].includes(flags.httpHost);
  if (!loopback && !flags.trustProxy && !https) log.warn('serving plain HTTP beyond loopback: put the MDMS behind a TLS proxy (--trust-proxy); cookies are marked Secure, so browsers will not send them over plain HTTP');
  log.info({ url: web.url }, 'MDMS web app listening');
  return web;
}

function httpOptions(c: Command, withHttp: boolean): Command {
  if (withHttp) c.addOption(new Option('--http <port>', 'serve the web app on this port').argParser(intOption('--http', 0, 65_535)));
  return c
    .option('--http-host <host>', 'address the web app listens on', '127.0.0.1')
    .option('--metrics-token-file <path>', 'file with the bearer token /metrics requires (default: loopback clients only)')
    .option('--trust-proxy', 'trust X-Forwarded-* from a TLS-terminating proxy in front of the web app')
    .option('--secure-cookies', 'mark cookies Secure even on plain HTTP to loopback (default: Secure except there)')
    .option('--tls-cert <pem>', 'TLS certificate chain: serve HTTPS (with --tls-key)')
    .option('--tls-key <pem>', 'TLS private key (with --tls-cert)')
    .option('--privacy-report <dir>', 'directory smartermeter privacy-report --out wrote: the Privacy page shows its summary.json and serves its report.html');
}

/**
 * Adds `--http` to `mdms ingest` (the default subcommand; or to `mdms` itself if it has none), and the
 * `mdms web` and `mdms user` subcommands.
 * @example
 * ```ts
 * registerMdmsCommand(program);
 * registerMdmsWebCommands(program.commands.find((c) => c.name() === 'mdms')!);
 * ```
 */
export function registerMdmsWebCommands(mdms: Command, io: { stdout?: NodeJS.WritableStream; stdin?: NodeJS.ReadableStream; logger?: Logger } = {}): void {
  const out = io.stdout ?? process.stdout;
  const log = io.logger ?? pino({ name: 'mdms-web' });
  // Flags on `mdms` itself would swallow its subcommands' flags (commander parses a parent's options after
  // the subcommand name), so they go where the ingest's own flags are.
  const ingest = mdms.commands.find((c) => c.name() === 'ingest') ?? mdms;
  httpOptions(ingest, true);

  // `mdms [ingest] --http <port>`: the web app around the ingest's action.
  let running: MdmsWeb | null = null;
  ingest.hook('preAction', async (_self, action) => {
    if (action !== ingest) return;
    const flags = ingest.opts() as HttpFlags;
    if (flags.http === undefined) return;
    running = await startFromFlags(flags, log);
  });
  ingest.hook('postAction', async (_self, action) => {
    if (action !== ingest || !running) return;
    await running.close();
    running = null;
  });

  httpOptions(
    mdms
      .command('web')
      .description('serve the MDMS web app alone (no ingest): dashboards, billing, API, audit')
      .option('--db <path|url>', 'SQLite file or postgres:// URL', 'mdms.sqlite')
      .addOption(schemaOption())
      .option('--keys <dir>', 'key set directory, for the fleet (meter list)'),
    true,
  ).action(async (flags: HttpFlags) => {
    const web = await startFromFlags(flags, log);
    await new Promise<void>((resolve) => {
      process.once('SIGINT', resolve);
      process.once('SIGTERM', resolve);
    });
    await web.close();
  });

  const user = mdms.command('user').description('web app users: add, passwd, list');
  user
    .command('add')
    .description('create a user; without --password-stdin a password is generated and printed once')
    .requiredOption('--role <roles>', `one or more of ${ROLES.join(', ')} (comma-separated)`, (v) => {
      try {
        return parseRoles(v);
      } catch (e) {
        throw new InvalidArgumentError((e as Error).message);
      }
    })
    .option('--username <name>', 'login name (default: the first role)')
    .option('--password-stdin', 'read the password from standard input instead of generating one')
    .option('--db <path|url>', 'SQLite file or postgres:// URL (default mdms.sqlite)')
    .addOption(schemaOption())
    .action(async (flags: DbFlags & { role: Role[]; username?: string; passwordStdin?: boolean }) => {
      const { db, schema } = dbOf(flags);
      const username = normaliseUsername(flags.username ?? flags.role[0]!);
      const password = flags.passwordStdin ? await readStdinPassword(io.stdin ?? process.stdin) : generatePassword();
      const driver = openDriver(db, schema, true); // the first admin may come before the first ingest
      try {
        const web = await openWebDb(driver);
        const u = await web.users.create({ username, roles: flags.role, password });
        await web.audit.record({ userId: u.id, username: 'cli', action: 'user.create', target: u.username, outcome: 'ok', ip: 'local', detail: { roles: u.roles.join(',') } });
        out.write(`created user ${u.username} (${u.roles.join(', ')})\n`);
        if (!flags.passwordStdin) out.write(`password (shown once): ${password}\n`);
      } catch (e) {
        if (e instanceof UserError) throw new InvalidArgumentError(e.message);
        throw e;
      } finally {
        await driver.close();
      }
    });

  user
    .command('passwd')
    .description("set a user's password (recovery); ends their sessions")
    .requiredOption('--username <name>', 'login name')
    .option('--password-stdin', 'read the password from standard input instead of generating one')
    .option('--db <path|url>', 'SQLite file or postgres:// URL (default mdms.sqlite)')
    .addOption(schemaOption())
    .action(async (flags: DbFlags & { username: string; passwordStdin?: boolean }) => {
      const { db, schema } = dbOf(flags);
      const password = flags.passwordStdin ? await readStdinPassword(io.stdin ?? process.stdin) : generatePassword();
      const driver = openDriver(db, schema);
      try {
        const web = await openWebDb(driver);
        const u = await web.users.byUsername(flags.username);
        if (!u) throw new InvalidArgumentError(`no user "${flags.username}"`);
        await web.users.setPassword(u.id, password);
        await web.audit.record({ userId: u.id, username: 'cli', action: 'password.change', target: u.username, outcome: 'ok', ip: 'local', detail: { reset: true } });
        out.write(`password of ${u.username} changed; their sessions ended\n`);
        if (!flags.passwordStdin) out.write(`password (shown once): ${password}\n`);
      } catch (e) {
        if (e instanceof UserError) throw new InvalidArgumentError(e.message);
        throw e;
      } finally {
        await driver.close();
      }
    });

  user
    .command('list')
    .description('list users and their roles')
    .option('--db <path|url>', 'SQLite file or postgres:// URL (default mdms.sqlite)')
    .addOption(schemaOption())
    .action(async (flags: DbFlags) => {
      const { db, schema } = dbOf(flags);
      const driver = openDriver(db, schema);
      try {
        const web = await openWebDb(driver);
        for (const u of await web.users.list()) out.write(`${u.username}\t${u.roles.join(',')}\t${u.disabled ? 'disabled' : 'active'}\n`);
      } finally {
        await driver.close();
      }
    });
}
