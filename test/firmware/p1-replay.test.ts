/**
 * `replay` over a fleet whose meters read P1 captures: every component runs, and each household's billed
 * energy must equal its capture's register difference (last telegram minus first), computed here from the
 * numbers the captures were generated with. Household 2 is a prosumer: its meter sends long-form batches
 * (docs/protocol.md §5), whose import must be billed as exactly as a short-form meter's.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { replay } from '../../cli/replay.js';
import { buildTelegram } from '../../firmware/sources/p1/generate.js';

const TZ = 'Europe/Amsterdam';
// Not the spring-forward day: the MDMS refuses its 23-hour "1d" billing period as shorter than its 1-day minimum.
const T0 = Date.UTC(2024, 3, 30, 0, 0) / 1000;
const dir = mkdtempSync(join(tmpdir(), 'sm-p1replay-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('replay of a fleet of P1 captures', () => {
  it('bills each household exactly its P1 register difference', async () => {
    const expected = new Map<string, number>();
    const exported = new Map<string, number>();
    const rows = ['meter,household,neighbourhood,source'];
    for (let m = 1; m <= 3; m++) {
      let seed = m;
      const rnd = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
      let t1 = 1_000_000 * m;
      let t2 = 500_000 * m;
      let e1 = m === 2 ? 345_678 : 0; // household 2 has panels: its export register moves at midday
      const telegrams: Buffer[] = [];
      const first = t1 + t2;
      const firstExport = e1;
      for (let i = 0; i < 6 * 60; i++) {
        const wh = Math.floor(rnd() * 40);
        if (i > 0) (i < 120 ? (t1 += wh) : (t2 += wh));
        if (i > 0 && m === 2 && i >= 150 && i < 270) e1 += Math.floor(rnd() * 50);
        telegrams.push(buildTelegram({ dialect: m === 3 ? 'emucs' : 'dsmr4', time: T0 + i * 60, tz: TZ, importWh: [t1, t2], exportWh: [e1, 0], powerW: wh * 60 }));
      }
      writeFileSync(join(dir, `m${m}.p1`), Buffer.concat(telegrams));
      expected.set(`hh-${m}`, t1 + t2 - first);
      exported.set(`hh-${m}`, e1 - firstExport);
      rows.push(`apt-${m},hh-${m},nb-1,p1:m${m}.p1`);
    }
    writeFileSync(join(dir, 'fleet.csv'), rows.join('\n') + '\n');
    const summary = await replay({ fleetCsv: join(dir, 'fleet.csv'), db: join(dir, 'out.sqlite'), intervalS: 900, billing: '1d', k: 3, tz: TZ, latenessS: 1800, start: 0, days: 1, paillierBits: 1024 });
    expect(summary.problems, JSON.stringify(summary)).toEqual([]);
    expect(summary.readings).toBe(3 * 360);
    expect(Object.fromEntries(summary.households.map((h) => [h.household, h.billedWh]))).toEqual(Object.fromEntries(expected));
    expect(summary.households.every((h) => h.meteredWh === h.billedWh)).toBe(true);
    expect(exported.get('hh-2')).toBeGreaterThan(1000);
    // After the PES and MDMS bill export (issue 18): each household's billed export equals exported.get(household).
  }, 240_000);
});
