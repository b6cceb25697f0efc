/**
 * `smartermeter mdms forecast` as a real process on a SQLite store holding three weeks of a synthetic
 * neighbourhood's hourly aggregates: forecast (CSV and JSON, with the actuals after a --until cut-off),
 * back-test beside seasonal naive, and clear refusals of bad flags.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { syntheticNeighbourhood } from '../../../bench/forecast.js';
import { registerMdmsCommand } from '../../../mdms/cli.js';
import { BACKTEST_CSV_HEADER, FORECAST_CSV_HEADER } from '../../../mdms/analytics/neighbourhood.js';
import { openStore } from '../../../mdms/store/index.js';
import { nbAgg, tempDir } from '../helpers.js';

const ROOT = new URL('../../../', import.meta.url).pathname;
const MONDAY = Date.UTC(2024, 0, 1) / 1000;
const DAYS = 21;

function run(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [join(ROOT, 'bin/run-ts.js'), join(ROOT, 'test/mdms/fixtures/run-cli.ts'), ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (b: Buffer) => (stdout += b.toString('utf8')));
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString('utf8')));
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
}

let tmp: ReturnType<typeof tempDir>;
let db: string;
const nb = syntheticNeighbourhood(Array.from({ length: 20 }, (_, i) => 40 + i), MONDAY, DAYS, 3600);

beforeAll(async () => {
  tmp = tempDir('mdms-forecast-');
  db = join(tmp.dir, 'mdms.sqlite');
  const store = await openStore(db);
  for (const [i, energyWh] of nb.total.values.entries()) {
    const start = MONDAY + i * 3600;
    await store.insertNeighbourhood(nbAgg({ key: 'nb1', start, end: start + 3600, meters: 20, energyWh: energyWh! }));
  }
  await store.close();
}, 60_000);

afterAll(() => tmp?.remove());

describe('mdms forecast', () => {
  it('forecasts the day after --until as CSV, with the stored actuals beside', async () => {
    const until = MONDAY + (DAYS - 1) * 86_400;
    const r = await run(['mdms', 'forecast', '--db', db, '--neighbourhood', 'nb1', '--horizon', '24h', '--until', new Date(until * 1000).toISOString(), '--format', 'csv']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toBe(FORECAST_CSV_HEADER);
    expect(lines).toHaveLength(25);
    const first = lines[1]!.split(',');
    expect(first.slice(0, 3)).toEqual(['nb1', '2024-01-21T00:00:00Z', '2024-01-21T01:00:00Z']);
    expect(Number(first[7])).toBe(nb.total.values[(DAYS - 1) * 24]);
    for (const l of lines.slice(1)) {
      const [, , , point, lower, upper, level] = l.split(',');
      expect(Number.isSafeInteger(Number(point))).toBe(true);
      expect(Number(lower)).toBeLessThanOrEqual(Number(point));
      expect(Number(upper)).toBeGreaterThanOrEqual(Number(point));
      expect(level).toBe('0.8');
    }
  }, 30_000);

  it('forecasts after the latest stored interval as JSON by default (no actuals yet)', async () => {
    const r = await run(['mdms', 'forecast', '--db', db, '--horizon', '6h', '--format', 'json']);
    expect(r.code).toBe(0);
    const [f] = JSON.parse(r.stdout) as { neighbourhood: string; until: number; points: { start: number }[]; actualWh: unknown[] }[];
    expect(f!.neighbourhood).toBe('nb1');
    expect(f!.until).toBe(MONDAY + DAYS * 86_400);
    expect(f!.points).toHaveLength(6);
    expect(f!.actualWh).toEqual(new Array(6).fill(null));
  }, 30_000);

  it('back-tests 7 days: MAPE and MASE beside both seasonal-naive baselines', async () => {
    const r = await run(['mdms', 'forecast', '--db', db, '--backtest', '--days', '7']);
    expect(r.code).toBe(0);
    const [header, row, extra] = r.stdout.trim().split('\n');
    expect(header).toBe(BACKTEST_CSV_HEADER);
    expect(extra).toBeUndefined();
    const cols = Object.fromEntries(header!.split(',').map((k, i) => [k, row!.split(',')[i]]));
    expect(cols.neighbourhood).toBe('nb1');
    expect(Number(cols.points)).toBe(7 * 24);
    expect(Number(cols.mase)).toBeLessThan(1);
    expect(Number(cols.mase)).toBeLessThan(Number(cols.mase_naive_day));
    expect(Number(cols.mase_naive_week)).toBeGreaterThan(0);
    expect(Number(cols.mape)).toBeGreaterThan(0);
  }, 30_000);

  it('refuses bad flags and unknown neighbourhoods with a clear message', async () => {
    const cases: [string[], RegExp][] = [
      [['--horizon', '30d'], /--horizon may be at most 14d/],
      [['--level', '1.5'], /--level must be a decimal between 0 and 1/],
      [['--until', 'yesterday'], /--until must be a date/],
      [['--neighbourhood', 'nb9'], /no stored aggregate of neighbourhood "nb9"/],
      [['--neighbourhood', '../x y'], /--neighbourhood must be a neighbourhood id/],
      [['--until', '2024-01-02'], /at least two days of history/],
      [['--backtest', '--days', '30'], /needs at least 32 days of data/],
    ];
    cases.push([['--db', join(tmp.dir, 'none.sqlite')], /no MDMS database/]);
    // In process (a process start costs seconds): commander's own refusals and the action's errors.
    for (const [flags, message] of cases) {
      let stderr = '';
      const program = new Command('smartermeter').exitOverride().configureOutput({ writeErr: (s) => (stderr += s), writeOut: () => undefined });
      registerMdmsCommand(program);
      for (const c of program.commands) for (const sub of c.commands) sub.exitOverride().configureOutput({ writeErr: (s) => (stderr += s), writeOut: () => undefined });
      const error = await program.parseAsync(['node', 'smartermeter', 'mdms', 'forecast', '--db', db, ...flags]).then(() => null, (e: Error) => e);
      expect(error, flags.join(' ')).toBeInstanceOf(Error);
      expect(`${stderr}${error!.message}`, flags.join(' ')).toMatch(message);
    }
  }, 30_000);
});
