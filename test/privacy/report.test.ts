/**
 * `privacy-report` end to end on the first day of the sample: a replay writes the MDMS database, the report
 * reads it with the raw series and runs the differencing replays itself (membership guard off and on).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { replay } from '../../cli/replay.js';
import { privacyReport } from '../../cli/privacy-report.js';
import type { PrivacySummary } from '../../privacy/report.js';

const SAMPLE = new URL('../../data/sample/', import.meta.url).pathname;
const FROM = 1462492800;
let dir: string;
let fleet: string;
let db: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'privacy-report-'));
  // The sample's first day (1440 lines per apartment), truths beside it.
  for (const apt of ['apt-01', 'apt-02', 'apt-03']) {
    writeFileSync(join(dir, `${apt}.csv`), readFileSync(`${SAMPLE}${apt}.csv`, 'utf8').split('\n').slice(0, 1440).join('\n') + '\n');
    copyFileSync(`${SAMPLE}${apt}.truth.json`, join(dir, `${apt}.truth.json`));
  }
  fleet = join(dir, 'fleet.csv');
  copyFileSync(`${SAMPLE}fleet.csv`, fleet);
  db = join(dir, 'mdms.sqlite');
  const r = await replay({ fleetCsv: fleet, db, intervalS: 900, billing: '1d', k: 2, tz: 'UTC', latenessS: 1800, start: FROM, days: 1, paillierBits: 1024 });
  expect(r.ok).toBe(true);
}, 60_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const opts = () => ({ fleetCsv: fleet, db, tz: 'UTC', intervalS: 900, k: 2, start: FROM, days: 1, seed: 13, paillierBits: 1024 });

describe('privacy-report', () => {
  it('writes summary.json in the issue\'s shape and a self-contained report.html; the raw attacks beat chance, released data far less', async () => {
    const out = join(dir, 'out');
    const s = await privacyReport({ ...opts(), out, differencing: false, dpEpsilons: [100] });
    const file = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8')) as PrivacySummary;
    expect(file).toEqual(JSON.parse(JSON.stringify(s)));
    expect(file.households).toBe(3);
    expect(file.attacks.map((a) => [a.attack, 'data' in a ? a.data : a.guard])).toEqual([
      ['events', 'raw'],
      ['events', 'released'],
      ['occupancy', 'raw'],
      ['occupancy', 'released'],
    ]);
    const [evRaw, evRel, occRaw] = file.attacks as unknown as [{ f1: number; chance_f1: number }, { f1: number; chance_f1: number }, { accuracy: number; chance: number }];
    expect(evRaw.f1).toBeGreaterThanOrEqual(0.9);
    expect(evRaw.f1).toBeGreaterThan(10 * evRaw.chance_f1);
    expect(evRel.f1).toBeLessThan(evRaw.f1);
    expect(evRel.chance_f1).toBeGreaterThan(0);
    expect(occRaw.accuracy).toBeGreaterThan(occRaw.chance);
    expect(file.dp).toHaveLength(1);
    expect(file.dp[0]).toMatchObject({ epsilon: 100 });
    expect(file.dp[0]!.aggregate_mape).toBeGreaterThan(0); // noised
    expect(file.dp[0]!.events_f1).toBeGreaterThanOrEqual(0);
    expect(file.method).toMatchObject({ events_threshold_w: 400, chance_seed: 13, interval_s: 900 });
    const html = readFileSync(join(out, 'report.html'), 'utf8');
    expect(html).toMatch(/^<!doctype html>/);
    expect(html).toContain('<svg');
    expect(html).not.toMatch(/<script|<link|src=|https?:\/\/(?!www\.w3\.org)/); // nothing fetched, nothing run
  }, 45_000);

  it('differencing: without the guard the silenced household is subtracted out of two releases; with it no such pair is released', async () => {
    const s = await privacyReport({ ...opts(), out: join(dir, 'out2') });
    const diff = s.attacks.filter((a) => a.attack === 'differencing') as Extract<PrivacySummary['attacks'][number], { attack: 'differencing' }>[];
    expect(diff.map((d) => d.guard)).toEqual([false, true]);
    const [off, on] = diff as [(typeof diff)[number], (typeof diff)[number]];
    expect(off.intervals).toBeGreaterThan(0);
    expect(off.subtracted).toBe(off.intervals);
    expect(off.membership_held).toBe(0);
    expect(on.subtracted).toBe(0);
    expect(on.membership_held).toBeGreaterThanOrEqual(on.intervals);
    expect(on.mae_wh).toBe(on.baseline_mae_wh); // with the guard the attacker only has the bill
    expect(off.errors_wh).toHaveLength(off.intervals);
    expect(on.released).toBe(off.released - on.intervals); // the cost: exactly the silenced intervals are missing
  }, 60_000);
});
