import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable, Writable } from 'node:stream';
import { Command } from 'commander';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { registerMdmsCommand } from '../../../mdms/cli.js';
import { openSqlite } from '../../../mdms/store/sqlite.js';
import { registerMdmsWebCommands } from '../../../mdms/web/cli.js';
import { openWebDb } from '../../../mdms/web/db.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'mdms-web-cli-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/**
 * The real `mdms` command (mdms/cli.ts) with the web commands added, or — to control the ingest's action,
 * which needs a broker — a stand-in with the same shape (`mdms` with a default `ingest` subcommand).
 */
function program(action?: () => Promise<void>, stdin?: Readable) {
  const lines: string[] = [];
  const logs: string[] = [];
  const stdout = new Writable({ write: (c, _e, cb) => (lines.push(String(c)), cb()) });
  const logStream = new PassThrough();
  logStream.on('data', (c) => logs.push(String(c)));
  const root = new Command('smartermeter').exitOverride();
  let mdms: Command;
  if (action) {
    mdms = root.command('mdms');
    mdms.command('ingest', { isDefault: true }).option('--keys <dir>').option('--db <path>', 'db', 'mdms.sqlite').option('--db-schema <name>').action(action);
  } else {
    registerMdmsCommand(root);
    mdms = root.commands.find((c) => c.name() === 'mdms')!;
  }
  for (const c of [root, mdms, ...mdms.commands]) c.exitOverride().configureOutput({ writeErr: () => undefined, writeOut: () => undefined });
  registerMdmsWebCommands(mdms, { stdout, ...(stdin ? { stdin } : {}), logger: pino({ level: 'info' }, logStream) });
  return { root, out: () => lines.join(''), logs };
}

describe('smartermeter mdms user ...', () => {
  it('adds the first admin with a generated password printed once, which then signs in', async () => {
    const db = join(dir, 'mdms.sqlite');
    const p = program();
    await p.root.parseAsync(['node', 'sm', 'mdms', 'user', 'add', '--db', db, '--role', 'admin']);
    const m = /password \(shown once\): (\S+)/.exec(p.out());
    expect(p.out()).toMatch(/^created user admin \(admin\)/);
    expect(m).not.toBeNull();
    const driver = openSqlite(db);
    const web = await openWebDb(driver);
    expect((await web.users.verify('admin', m![1]!))?.roles).toEqual(['admin']);
    expect((await web.audit.list({ action: 'user.create' }))[0]).toMatchObject({ username: 'cli', target: 'admin' });
    await driver.close();
  });

  it('takes a password from stdin, several roles and a username; refuses duplicates and bad roles', async () => {
    const db = join(dir, 'mdms.sqlite');
    const p = program(undefined, Readable.from(['clerk-password-01\nignored\n']));
    await p.root.parseAsync(['node', 'sm', 'mdms', 'user', 'add', '--db', db, '--role', 'billing,analyst', '--username', 'Clerk', '--password-stdin']);
    expect(p.out()).toBe('created user clerk (analyst, billing)\n');
    const again = program(undefined, Readable.from(['clerk-password-01\n']));
    await expect(again.root.parseAsync(['node', 'sm', 'mdms', 'user', 'add', '--db', db, '--role', 'billing', '--username', 'clerk', '--password-stdin'])).rejects.toThrow(/already exists/);
    const bad = program();
    await expect(bad.root.parseAsync(['node', 'sm', 'mdms', 'user', 'add', '--db', db, '--role', 'root'])).rejects.toThrow(/unknown role "root"/);
    const weak = program(undefined, Readable.from(['short\n']));
    await expect(weak.root.parseAsync(['node', 'sm', 'mdms', 'user', 'add', '--db', db, '--role', 'admin', '--password-stdin'])).rejects.toThrow(/at least 12/);
    const list = program();
    await list.root.parseAsync(['node', 'sm', 'mdms', 'user', 'list', '--db', db]);
    expect(list.out()).toBe('clerk\tanalyst,billing\tactive\n');
    const pw = program();
    await pw.root.parseAsync(['node', 'sm', 'mdms', 'user', 'passwd', '--db', db, '--username', 'clerk']);
    const fresh = /password \(shown once\): (\S+)/.exec(pw.out())![1]!;
    const driver = openSqlite(db);
    expect(await (await openWebDb(driver)).users.verify('clerk', fresh)).not.toBeNull();
    await driver.close();
    await expect(program().root.parseAsync(['node', 'sm', 'mdms', 'user', 'list', '--db', join(dir, 'missing.sqlite')])).rejects.toThrow(/no MDMS database/);
  });
});

describe('smartermeter mdms --http', () => {
  it('serves the web app for as long as the mdms action runs, then stops it', async () => {
    const db = join(dir, 'mdms.sqlite');
    let seen = 0;
    let url = '';
    const p = program(async () => {
      url = JSON.parse(p.logs.find((l) => l.includes('MDMS web app listening'))!).url as string;
      const r = await fetch(`${url}/healthz`);
      seen = r.status;
      expect(await r.json()).toEqual({ status: 'ok', store: 'sqlite' });
      const login = await fetch(`${url}/api/v1/session`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"username":"nobody","password":"whatever-it-is"}' });
      expect(login.status).toBe(401);
    });
    await p.root.parseAsync(['node', 'sm', 'mdms', '--db', db, '--http', '0']);
    expect(seen).toBe(200);
    expect(p.logs.some((l) => l.includes('no users yet'))).toBe(true);
    await expect(fetch(`${url}/healthz`)).rejects.toThrow();
  });

  it('--privacy-report DIR: the Privacy page serves the report to a privacy officer; a file instead of a directory is refused', async () => {
    const db = join(dir, 'mdms.sqlite');
    const report = join(dir, 'report');
    mkdirSync(report);
    writeFileSync(join(report, 'report.html'), '<!doctype html><title>report</title><p>scores</p>');
    writeFileSync(join(report, 'summary.json'), JSON.stringify({ households: 2, attacks: [], dp: [], method: {}, per_household: [] }));
    const add = program(undefined, Readable.from(['officer-password-01\n']));
    await add.root.parseAsync(['node', 'sm', 'mdms', 'user', 'add', '--db', db, '--role', 'privacy', '--username', 'officer', '--password-stdin']);
    expect(add.out()).toBe('created user officer (privacy)\n');
    let served = '';
    let csp = '';
    const p = program(async () => {
      const url = JSON.parse(p.logs.find((l) => l.includes('MDMS web app listening'))!).url as string;
      const login = await fetch(`${url}/api/v1/session`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"username":"officer","password":"officer-password-01"}' });
      const cookie = login.headers.getSetCookie().map((c) => c.split(';')[0]).join('; ');
      const r = await fetch(`${url}/privacy/report`, { headers: { cookie } });
      served = await r.text();
      csp = r.headers.get('content-security-policy') ?? '';
    });
    await p.root.parseAsync(['node', 'sm', 'mdms', '--db', db, '--http', '0', '--privacy-report', report]);
    expect(served).toBe('<!doctype html><title>report</title><p>scores</p>');
    expect(csp).toMatch(/sandbox/);
    const bad = program(async () => undefined);
    await expect(bad.root.parseAsync(['node', 'sm', 'mdms', '--db', db, '--http', '0', '--privacy-report', join(report, 'summary.json')])).rejects.toThrow(/--privacy-report must be the directory/);
  });

  it('does nothing without --http, and refuses a bad port', async () => {
    let ran = false;
    const p = program(async () => void (ran = true));
    await p.root.parseAsync(['node', 'sm', 'mdms', '--db', join(dir, 'x.sqlite')]);
    expect(ran).toBe(true);
    expect(p.logs.some((l) => l.includes('listening'))).toBe(false);
    const q = program(async () => undefined);
    await expect(q.root.parseAsync(['node', 'sm', 'mdms', '--http', '99999'])).rejects.toThrow(/--http must be between 0 and 65535/);
  });

  it('adds --http to the real ingest command, and keeps export flags working', async () => {
    const p = program();
    const mdms = p.root.commands.find((c) => c.name() === 'mdms')!;
    const ingest = mdms.commands.find((c) => c.name() === 'ingest')!;
    expect(ingest.options.map((o) => o.long)).toEqual(expect.arrayContaining(['--keys', '--http', '--http-host', '--metrics-token-file', '--trust-proxy']));
    expect(mdms.options).toEqual([]);
    expect(mdms.commands.map((c) => c.name())).toEqual(expect.arrayContaining(['ingest', 'export', 'web', 'user']));
    // A missing database for export is still export's own error, not swallowed by our flags.
    await expect(p.root.parseAsync(['node', 'sm', 'mdms', 'export', '--db', join(dir, 'none.sqlite'), '--what', 'billing'])).rejects.toThrow(/no MDMS database/);
  });
});
