/**
 * PES memory is O(open windows + meters), not O(days): closed windows live in the state only, a late reading
 * reads its window back and revises it, and each neighbourhood's windows close on its own meters' progress.
 * Counts windows (never RSS): nothing here is timed.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { createPes, type CreatePesOptions } from '../../pes/pes.js';
import type { NeighbourhoodAggregate } from '../../protocol/aggregate.js';
import { latest, makeFleet, openAggregates, uplink, type SimMeter, type TestFleet } from './helpers.js';

const log = pino({ level: 'silent' });
const T0 = 1_700_000_000 - (1_700_000_000 % 86400); // a UTC midnight
const HOUR = 3600;
const dir = mkdtempSync(join(tmpdir(), 'pes-memory-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

type Pes = ReturnType<typeof createPes>;
const open = (f: TestFleet, o: Partial<CreatePesOptions> = {}) => createPes({ keys: f.keys, latenessS: 60, k: 2, billing: '1d', logger: log, ...o });
/** The neighbourhood releases sent so far. */
async function releases(f: TestFleet, pes: Pes): Promise<NeighbourhoodAggregate[]> {
  await pes.idle();
  return openAggregates(f, pes.sent).filter((b): b is NeighbourhoodAggregate => b.kind === 'neighbourhood');
}

describe('PES memory is bounded by open windows, not by days', () => {
  it('five days of hourly readings keep a handful of windows in memory and the retained ones in the state; a late frame for a window long gone from memory (and across a restart) revises it exactly', async () => {
    const f = await makeFleet({ n: 3, start: T0 });
    const [a, b, c] = f.meters as [SimMeter, SimMeter, SimMeter];
    const file = join(dir, 'days.sqlite');
    let pes = open(f, { stateFile: file, intervalS: HOUR, revisionK: 1 }); // retention: two billing days
    const energyA = (h: number) => 10 + (h % 7);
    const first = c.batch(1, HOUR, () => 40); // c's first hour: delivered only at the end, past retention
    const LOST = 90; // c's frame of this hour is lost until the end (30 hours later, within retention)
    let lost: { batch: ReturnType<SimMeter['batch']>; ic: number } | undefined;
    let most = 0;
    for (let h = 0; h < 5 * 24; h++) {
      const frames = [a.frame(a.batch(1, HOUR, () => energyA(h))), b.frame(b.batch(1, HOUR, () => 20))];
      if (h === LOST) lost = { batch: c.batch(1, HOUR, () => 50), ic: c.ic++ };
      else if (h > 0) frames.push(c.frame(c.batch(1, HOUR, () => 30)));
      pes.ingestUplink(uplink(frames));
      most = Math.max(most, pes.windowCount);
    }
    // In memory at most: the open hour and the one closing, three households' open billing days and the ones closing.
    expect(most).toBeLessThanOrEqual(2 + 2 * 3);
    const db = new Database(file, { readonly: true });
    const stored = (kind: string) => (db.prepare('SELECT COUNT(*) AS n FROM windows WHERE kind = ? AND closed = 1').get(kind) as { n: number }).n;
    // The state holds what retention keeps (two days of hours, two or three billing days per household), nothing older.
    expect(stored('neighbourhood')).toBeGreaterThanOrEqual(2 * 24 - 1);
    expect(stored('neighbourhood')).toBeLessThanOrEqual(2 * 24 + 1);
    expect(stored('billing')).toBeGreaterThanOrEqual(2 * 3);
    expect(stored('billing')).toBeLessThanOrEqual(3 * 3);
    db.close();
    const at = (l: Map<string, unknown>, h: number) => l.get(`neighbourhood|nb0|${T0 + h * HOUR}`) as NeighbourhoodAggregate;
    let l = latest(await releases(f, pes));
    expect(at(l, LOST)).toMatchObject({ revision: 0, meters: 2, energyWh: energyA(LOST) + 20 });
    expect(at(l, LOST + 1)).toMatchObject({ revision: 0, meters: 3, energyWh: energyA(LOST + 1) + 20 + 30 + 50 }); // the gap's energy moved here
    await pes.close();

    pes = open(f, { stateFile: file, intervalS: HOUR, revisionK: 1 });
    expect(pes.windowCount).toBeLessThanOrEqual(1 + 3); // only open windows are loaded
    pes.ingestUplink(uplink([c.frame(lost!.batch, lost!.ic)]));
    // Both neighbourhood windows and hh2's billing day (its total unchanged: the energy moved within the day).
    expect(pes.counters).toMatchObject({ gapsFilled: 1, lateRevisions: 3, tooOld: 0 });
    l = latest(await releases(f, pes));
    expect(at(l, LOST)).toMatchObject({ revision: 1, meters: 3, energyWh: energyA(LOST) + 20 + 50 });
    expect(at(l, LOST + 1)).toMatchObject({ revision: 1, meters: 3, energyWh: energyA(LOST + 1) + 20 + 30 });
    expect(pes.windowCount).toBeLessThanOrEqual(1 + 3); // the revised windows went back to the state

    pes.ingestUplink(uplink([c.frame(first)])); // five days old: behind the retention horizon
    expect(pes.counters.tooOld).toBe(1);
    await pes.close();
  });

  it("each neighbourhood's windows close on its own meters' progress; one meter with a clock ahead neither closes them nor, beyond max-skew, is accepted", async () => {
    const f = await makeFleet({ n: 6, nbs: 2, start: T0 }); // nb0: meters 0, 2, 4; nb1: meters 1, 3, 5
    const nb0 = f.meters.filter((_, i) => i % 2 === 0);
    const nb1 = f.meters.filter((_, i) => i % 2 === 1);
    const pes = open(f, { intervalS: 900, maxSkewS: HOUR, membershipGuard: false });
    const send = (ms: SimMeter[]) => pes.ingestUplink(uplink(ms.map((m) => m.frame(m.batch(15)))));
    send(f.meters); // every meter: the first quarter hour
    for (let i = 0; i < 8; i++) send(nb0); // nb0 two hours ahead
    const windows = async (nb: string) => (await releases(f, pes)).filter((x) => x.key === nb).map((x) => (x.start - T0) / 900);
    expect(await windows('nb0')).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(await windows('nb1')).toEqual([]); // a global watermark would have closed nb1's first window
    expect(pes.watermark).toBe(T0 + 9 * 900);
    // nb1's next quarter hour, two hours behind nb0 (more than max-skew): checked against nb1's own watermark.
    send(nb1);
    expect(pes.counters.absurdTime).toBe(0);
    expect(await windows('nb1')).toEqual([0]);

    // Meter 1's clock jumps 45 minutes ahead (within max-skew): accepted, but alone it does not move nb1's watermark.
    const [m1, m3, m5] = nb1 as [SimMeter, SimMeter, SimMeter];
    m1.time += 45 * 60;
    send([m1]);
    expect(pes.counters.framesOk).toBe(6 + 8 * 3 + 3 + 1);
    expect(await windows('nb1')).toEqual([0]);
    // Another jump, now beyond max-skew of nb1's watermark: refused.
    m1.time += 2 * HOUR;
    send([m1]);
    expect(pes.counters.absurdTime).toBe(1);
    expect(await windows('nb1')).toEqual([0]);
    // The other two move on: that closes nb1's second window (meter 1 was two hours past it already).
    send([m3, m5]);
    expect(await windows('nb1')).toEqual([0, 1]);
    expect(pes.neighbourhoodWatermark('nb1')).toBe(T0 + 3 * 900);
    expect(pes.counters.absurdTime).toBe(1);
    await pes.close();
  });
});
