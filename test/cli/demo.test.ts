/**
 * `smartermeter demo` as a user meets it (issue 20 item 3): live by default — history back-filled up to now
 * and nothing later, no billing period stored before it ended, no "simulated time" banner —; Ctrl-C stops it
 * with a line or two, not a warning per meter. (`--speed N`, the time-lapse both apps label as simulated
 * time, runs from the compiled CLI in compiled.test.ts.)
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli, type CliProcess } from './run-cli.js';

const dir = mkdtempSync(join(tmpdir(), 'sm-demo-'));
const running: CliProcess[] = [];
afterAll(() => {
  for (const p of running) if (p.proc.exitCode === null) p.proc.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

const SMALL = ['--neighbourhoods', '1', '--households', '3', '--k', '3', '--broker-port', '0', '--ws-port', '0', '--mdms-port', '0', '--ucs-port', '0'];

function demo(name: string, ...extra: string[]): CliProcess {
  const p = runCli(['demo', '--dir', join(dir, name), ...SMALL, ...extra]);
  running.push(p);
  return p;
}

/** Sends Ctrl-C and returns what the demo printed after it (both streams), once it has exited. */
async function interrupt(p: CliProcess): Promise<{ code: number | null; after: string[] }> {
  const before = p.out().length;
  const errBefore = p.err().length;
  p.proc.kill('SIGINT');
  const code = await p.exited;
  const after = (p.out().slice(before) + p.err().slice(errBefore)).split('\n').filter((l) => l.trim() !== '');
  return { code, after };
}

describe('smartermeter demo', () => {
  it('is live: history up to now, nothing later, no unended billing period; Ctrl-C stops it quietly', async () => {
    const p = demo('live', '--history', '1');
    const mdms = (await p.waitFor(/^\s+mdms\s+(http:\S+)$/m, 120_000))[1]!;
    await p.waitFor(/The meters back-fill 1 day of history, then run live/, 5_000);
    // Yesterday's 96 intervals are back-filled at once: wait until the MDMS has stored some.
    await p.waitFor(/stored by MDMS [1-9]\d*/, 120_000);
    const page = await (await fetch(`${mdms}/login`)).text();
    expect(page).not.toContain('data-testid="banner"');
    const db = new Database(join(dir, 'live', 'mdms.sqlite'), { readonly: true, fileMustExist: true });
    try {
      const now = Date.now() / 1000;
      const nb = db.prepare('SELECT count(*) AS n, max(end_s) AS last FROM neighbourhood_aggregate').get() as { n: number; last: number };
      expect(nb.n).toBeGreaterThan(0);
      expect(nb.last).toBeLessThanOrEqual(now); // nothing from the future
      const bill = db.prepare('SELECT max(end_s) AS last FROM billing_aggregate').get() as { last: number | null };
      if (bill.last !== null) expect(bill.last).toBeLessThanOrEqual(now); // only ended billing periods
    } finally {
      db.close();
    }
    const { code, after } = await interrupt(p);
    expect(code).toBe(0);
    expect(after.length, after.join('\n')).toBeLessThanOrEqual(3);
    expect(after.join('\n')).not.toMatch(/"level":|WARN|ERROR/);
  });
});
