/**
 * End to end: `replay` of a fleet with known data through every real component, and the MDMS export checked
 * against sums computed here, independently, from the source CSVs (no firmware or PES code used for the
 * expectation).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { copyFileSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { replay, type ReplaySummary } from '../../cli/replay.js';
import { openStore } from '../../mdms/store/index.js';
import { exportCsv } from '../../mdms/export.js';

const SAMPLE = join(__dirname, '../../data/sample');
const INTERVAL = 900;
const DAY = 86400;

/** kW decimal string -> integer mW, rounding half up (the register's documented resolution), exactly. */
function milliW(kw: string): bigint {
  const [int, frac = ''] = kw.split('.');
  const mw = BigInt(int!) * 1_000_000n + BigInt((frac + '000000').slice(0, 6)); // 1 kW = 10^6 mW
  return mw + (frac.length > 6 && Number(frac[6]) >= 5 ? 1n : 0n); // half up at the first dropped digit
}

interface Reading {
  start: number;
  wh: number;
}

/** Register semantics from first principles: cumulative mW·s, register = floor(/3.6e6), energy = difference. */
function readingsOf(csv: string): Reading[] {
  const rows = readFileSync(csv, 'utf8')
    .trim()
    .split('\n')
    .map((l) => {
      const [ts, kw] = l.split(',');
      return { t: Date.parse(ts!.replace(' ', 'T') + 'Z') / 1000, mw: milliW(kw!) };
    });
  let cum = 0n;
  let prevWh = 0n;
  return rows.map((r, i) => {
    const period = i + 1 < rows.length ? rows[i + 1]!.t - r.t : r.t - rows[i - 1]!.t;
    cum += r.mw * BigInt(period);
    const wh = cum / 3_600_000n;
    const e = Number(wh - prevWh);
    prevWh = wh;
    return { start: r.t, wh: e };
  });
}

const iso = (s: number) => new Date(s * 1000).toISOString().replace('.000Z', 'Z');

describe('replay of a fleet with known data', () => {
  let dir: string;
  let summary: ReplaySummary;
  let neighbourhoodCsv: string;
  let billingCsv: string;
  let dbPath: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sm-replay-'));
    for (const f of readdirSync(SAMPLE).filter((f) => f.endsWith('.csv') && f !== 'fleet.csv')) copyFileSync(join(SAMPLE, f), join(dir, f));
    // nb-1 has three meters (= k), nb-2 one meter (< k): its demand must never reach the MDMS.
    writeFileSync(
      join(dir, 'fleet.csv'),
      'meter,household,neighbourhood,source\napt-01,hh-01,nb-1,apt-01.csv\napt-02,hh-02,nb-1,apt-02.csv\napt-03,hh-03,nb-1,apt-03.csv\napt-04,hh-04,nb-2,apt-04.csv\n',
    );
    copyFileSync(join(SAMPLE, 'apt-01.csv'), join(dir, 'apt-04.csv'));
    dbPath = join(dir, 'out.sqlite');
    summary = await replay({
      fleetCsv: join(dir, 'fleet.csv'),
      db: dbPath,
      intervalS: INTERVAL,
      billing: '1d',
      k: 3,
      tz: 'UTC',
      latenessS: 1800,
      start: 0,
      days: 1,
      paillierBits: 1024,
      stateDir: join(dir, 'state'),
    });
    const store = await openStore(dbPath);
    neighbourhoodCsv = await exportCsv(store, 'neighbourhood');
    billingCsv = await exportCsv(store, 'billing');
    await store.close();
  }, 240_000);
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('leaves every state file private (0600, folders 0700), SQLite -wal and -shm included (security finding 11)', () => {
    const seen: string[] = [];
    const walk = (d: string): void => {
      for (const e of readdirSync(d, { withFileTypes: true })) {
        const p = join(d, e.name);
        const mode = statSync(p).mode & 0o777;
        if (e.isDirectory()) {
          expect(mode, p).toBe(0o700);
          walk(p);
        } else {
          expect(mode, p).toBe(0o600);
          seen.push(e.name);
        }
      }
    };
    walk(join(dir, 'state'));
    for (const f of readdirSync(dir).filter((f) => f.startsWith('out.sqlite'))) {
      expect(statSync(join(dir, f)).mode & 0o777, f).toBe(0o600);
      seen.push(f);
    }
    // The run left the PES state and the broker state (their -wal/-shm are checked while open in test/lib/private-file.test.ts).
    expect(seen).toContain('pes.sqlite');
    expect(seen).toContain('broker.sqlite');
  });

  it('refuses to replay into a database that already holds aggregates unless told to append', async () => {
    const again = { fleetCsv: join(dir, 'fleet.csv'), db: dbPath, intervalS: INTERVAL, billing: '1d', k: 3, tz: 'UTC', latenessS: 1800, start: 0, days: 1, paillierBits: 1024 };
    await expect(replay(again)).rejects.toThrow(/already holds aggregates \(1 neighbourhood, 4 households\): pass --append/);
  });

  it('accounts for every reading', () => {
    expect(summary.problems).toEqual([]);
    expect(summary.ok).toBe(true);
    expect(summary.readings).toBe(4 * 2880);
    expect(summary.readingsFolded).toBe(summary.readings);
  });

  it('exports every neighbourhood interval exactly as summed from the sources, and nothing below k', () => {
    const sums = new Map<number, { wh: number; meters: Set<string> }>();
    for (const apt of ['apt-01', 'apt-02', 'apt-03']) {
      for (const r of readingsOf(join(dir, `${apt}.csv`))) {
        const w = Math.floor(r.start / INTERVAL) * INTERVAL;
        const s = sums.get(w) ?? { wh: 0, meters: new Set() };
        s.wh += r.wh;
        s.meters.add(apt);
        sums.set(w, s);
      }
    }
    const expected = [...sums.entries()]
      .sort(([a], [b]) => a - b)
      .map(([w, s]) => `nb-1,${iso(w)},${iso(w + INTERVAL)},${s.meters.size},${s.wh},0`); // no panels: export 0
    const lines = neighbourhoodCsv.trim().split('\n');
    expect(lines[0]).toBe('neighbourhood,start,end,meters,energy_wh,export_wh');
    expect(lines.slice(1)).toEqual(expected);
    expect(neighbourhoodCsv).not.toContain('nb-2');
  });

  it('exports every household day exactly as summed from the sources', () => {
    const expected: string[] = [];
    for (const [hh, apt] of [['hh-01', 'apt-01'], ['hh-02', 'apt-02'], ['hh-03', 'apt-03'], ['hh-04', 'apt-04']] as const) {
      const days = new Map<number, number>();
      for (const r of readingsOf(join(dir, `${apt}.csv`))) {
        const d = Math.floor(r.start / DAY) * DAY;
        days.set(d, (days.get(d) ?? 0) + r.wh);
      }
      for (const [d, wh] of [...days.entries()].sort(([a], [b]) => a - b)) expected.push(`${hh},${iso(d)},${iso(d + DAY)},flat,${wh},0`);
    }
    const lines = billingCsv.trim().split('\n');
    expect(lines[0]).toBe('household,start,end,band,energy_wh,export_wh');
    expect(lines.slice(1)).toEqual(expected);
  });

  it('stores nothing finer than a neighbourhood of k meters or a household day in the MDMS', async () => {
    const store = await openStore(dbPath);
    const dump = await store.dump();
    await store.close();
    const rows = Object.entries(dump).flatMap(([table, rs]) => rs.map((r) => ({ table, r })));
    expect(rows.length).toBeGreaterThan(0);
    for (const { table, r } of rows) {
      if ('household' in r) expect(Number(r.end_s) - Number(r.start_s), table).toBeGreaterThanOrEqual(DAY);
      if ('neighbourhood' in r) expect(Number(r.meters), table).toBeGreaterThanOrEqual(3);
    }
    // Household hh-02's fine-grained data would show up as its per-minute energies; none is stored.
    const perMinute = new Set(readingsOf(join(dir, 'apt-02.csv')).map((r) => r.wh));
    const householdValues = rows.filter(({ r }) => r.household === 'hh-02').map(({ r }) => Number(r.energy_wh));
    for (const v of householdValues) expect(v).toBeGreaterThan(Math.max(...perMinute));
  });
});
