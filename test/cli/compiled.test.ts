/**
 * The compiled CLI (issue 20 item 2): bin/build.js compiles it into a folder, bin/smartermeter.js runs that
 * folder while it is fresh (same help as the sources), falls back to the sources under tsx once a source is
 * newer, and a real command runs from the compiled output with everything it finds by path: the Paillier
 * pool's worker (the PES folds readings), the MDMS client bundle and the household app's bundle (both built
 * from their sources at start-up). The command is the demo in time-lapse, whose pages say the time is
 * simulated.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, runCli, type CliProcess } from './run-cli.js';

const dist = join(ROOT, 'test-output', `cli-dist-${process.pid}`); // inside the repository: node_modules resolves from there
const dir = mkdtempSync(join(tmpdir(), 'sm-compiled-'));
const compiled = { SM_DIST: dist, SM_DEBUG: '1' };
const running: CliProcess[] = [];

beforeAll(() => {
  execFileSync(process.execPath, [join(ROOT, 'bin/build.js'), '--outdir', dist, '--quiet'], { cwd: ROOT, stdio: 'inherit' });
}, 120_000);
afterAll(() => {
  for (const p of running) if (p.proc.exitCode === null) p.proc.kill('SIGKILL');
  rmSync(dist, { recursive: true, force: true });
  rmSync(dir, { recursive: true, force: true });
});

async function finished(args: string[], env: Record<string, string>): Promise<{ code: number | null; out: string; err: string }> {
  const p = runCli(args, env);
  const code = await p.exited;
  return { code, out: p.out(), err: p.err() };
}

describe('the compiled CLI', () => {
  it('answers --help from dist/ with the same text as the sources, and a command help too', async () => {
    for (const args of [['--help'], ['meter', 'synth', '--help']]) {
      const [fast, slow] = await Promise.all([finished(args, compiled), finished(args, { SM_FROM_SOURCE: '1', SM_DEBUG: '1' })]);
      expect(fast.err).toContain(`running the compiled CLI in ${dist}`);
      expect(slow.err).toContain('running the TypeScript sources (tsx)');
      expect(fast.code).toBe(0);
      expect(fast.out).toBe(slow.out);
    }
    const help = (await finished(['--help'], compiled)).out;
    for (const c of ['provision', 'meter', 'gateway', 'broker', 'pes', 'mdms', 'ucs', 'replay', 'demo', 'privacy-report']) expect(help).toMatch(new RegExp(`^  ${c}\\b`, 'm'));
  });

  it('runs the sources instead once one of them is newer than the compiled output', async () => {
    const entry = join(dist, 'smartermeter.js');
    const { atime, mtime } = statSync(entry);
    utimesSync(entry, new Date(1000), new Date(1000)); // older than every source file
    try {
      const r = await finished(['--help'], compiled);
      expect(r.err).toContain('running the TypeScript sources (tsx)');
      expect(r.code).toBe(0);
    } finally {
      utimesSync(entry, atime, mtime);
    }
    expect((await finished(['--help'], compiled)).err).toContain('running the compiled CLI');
  });

  it('runs the demo (time-lapse) from dist/: worker, both web bundles, the simulated-time banner', async () => {
    const p = runCli(['demo', '--dir', join(dir, 'demo'), '--neighbourhoods', '1', '--households', '3', '--k', '3', '--history', '1', '--speed', '1440', '--broker-port', '0', '--ws-port', '0', '--mdms-port', '0', '--ucs-port', '0'], compiled);
    running.push(p);
    const mdms = (await p.waitFor(/^\s+mdms\s+(http:\S+)$/m, 120_000))[1]!;
    const ucs = (await p.waitFor(/^\s+household\s+(http:\S+)$/m, 5_000))[1]!;
    expect(p.err()).toContain('running the compiled CLI');
    const login = await (await fetch(`${mdms}/login`)).text();
    expect(login).toMatch(/data-testid="banner">Simulated time: this demo runs 1440x faster than real time/);
    for (const asset of login.match(/\/assets\/app\.[0-9a-f]+\.(js|css)/g) ?? []) expect((await fetch(`${mdms}${asset}`)).status).toBe(200);
    expect(login.match(/\/assets\/app\.[0-9a-f]+\.(js|css)/g)).toHaveLength(2);
    const home = await (await fetch(`${ucs}/`)).text();
    expect(home).toMatch(/data-testid="banner">Simulated time/);
    const app = await fetch(`${ucs}/app.js`);
    expect(app.status).toBe(200);
    expect((await app.text()).length).toBeGreaterThan(10_000);
    await p.waitFor(/simulated time\] readings folded [1-9]\d*, aggregates released \d+, suppressed \d+, stored by MDMS [1-9]/, 60_000);
    // The asset answers above were never read: Ctrl-C still stops the demo after the web apps' grace time
    // (lib/ports.ts closeWithin), not after the 72 s keep-alive timeout it waited for before.
    const stopping = Date.now();
    p.proc.kill('SIGINT');
    expect(await p.exited).toBe(0);
    expect(Date.now() - stopping).toBeLessThan(20_000);
  }, 240_000); // its waits add up to 185 s: a loaded CI machine took more than the default 60 s to start the demo
});
