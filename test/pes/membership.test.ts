/**
 * The differencing guard (docs/privacy.md, issue 13): two neighbourhood releases whose memberships differ by
 * fewer than k meters let the MDMS subtract one household out of them; the PES holds such a release.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { createPes, type CreatePesOptions } from '../../pes/pes.js';
import type { NeighbourhoodAggregate } from '../../protocol/aggregate.js';
import { makeFleet, openAggregates, uplink, type SimMeter, type TestFleet } from './helpers.js';

const log = pino({ level: 'silent' });
const T0 = 1_700_000_000 - (1_700_000_000 % 86400);
const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

function open(f: TestFleet, o: Partial<CreatePesOptions> = {}) {
  return createPes({ keys: f.keys, intervalS: 900, latenessS: 60, k: 3, logger: log, ...o });
}

async function nbReleases(f: TestFleet, pes: ReturnType<typeof createPes>): Promise<NeighbourhoodAggregate[]> {
  await pes.idle();
  return openAggregates(f, pes.sent).filter((x): x is NeighbourhoodAggregate => x.kind === 'neighbourhood');
}

/** Per meter a steady energy per minute, so that any two releases subtract to exactly the missing meters. */
const PER_MIN = [100, 200, 300, 37];

/**
 * Four meters, three intervals (then a fourth that closes the third). The last meter is silent in interval 1:
 * its frame for it is lost (its energy shifts to interval 2), returned so that a test can deliver it late.
 */
function silentForOneInterval(f: TestFleet, pes: ReturnType<typeof createPes>): Uint8Array {
  const ms = f.meters as SimMeter[];
  let lost: Uint8Array | undefined;
  for (let step = 0; step < 4; step++) {
    const frames: Uint8Array[] = [];
    ms.forEach((m, i) => {
      const fr = m.frame(m.batch(15, 60, () => PER_MIN[i]!));
      if (i === 3 && step === 1) lost = fr;
      else frames.push(fr);
    });
    pes.ingestUplink(uplink(frames));
  }
  return lost!;
}

describe('differencing guard', () => {
  it('without the guard, a meter silent for one interval is recovered exactly by subtracting two releases (the attack)', async () => {
    const f = await makeFleet({ n: 4, start: T0 });
    const pes = open(f, { membershipGuard: false });
    silentForOneInterval(f, pes);
    const r = await nbReleases(f, pes);
    const at = (i: number) => r.find((x) => x.start === T0 + i * 900)!;
    expect([at(0).meters, at(1).meters]).toEqual([4, 3]);
    expect(at(0).energyWh - at(1).energyWh).toBe(15 * PER_MIN[3]!); // the silent household's energy, exactly
    expect(pes.counters.membershipHeld).toBe(0);
    await pes.close();
  });

  it('by default the release of 3 after a release of 4 is held and counted; the late frame completes it and it is released with all 4', async () => {
    const f = await makeFleet({ n: 4, start: T0 });
    const pes = open(f);
    const lost = silentForOneInterval(f, pes);
    let r = await nbReleases(f, pes);
    expect(r.map((x) => [(x.start - T0) / 900, x.meters])).toEqual([
      [0, 4],
      [2, 4],
    ]);
    expect(pes.counters.membershipHeld).toBe(1);
    expect(pes.counters.suppressed).toBe(0);
    pes.ingestUplink(uplink([lost])); // the gap is filled: interval 1 now has all four meters
    r = await nbReleases(f, pes);
    const w1 = r.filter((x) => x.start === T0 + 900);
    expect(w1.map((x) => [x.revision, x.meters, x.energyWh])).toEqual([[0, 4, 15 * (100 + 200 + 300 + 37)]]);
    // Every membership the MDMS ever saw is the same: nothing to subtract.
    expect(new Set(r.map((x) => x.meters))).toEqual(new Set([4]));
    await pes.close();
  });

  it('a meter that joins late: no release of the incomplete neighbourhood, so no release pair differs by one household', async () => {
    const f = await makeFleet({ n: 4, start: T0 });
    const ms = f.meters as SimMeter[];
    const pes = open(f);
    for (let step = 0; step < 5; step++) {
      const frames = ms.slice(0, 3).map((m, i) => m.frame(m.batch(15, 60, () => PER_MIN[i]!)));
      if (step >= 2) {
        ms[3]!.time = T0 + step * 900; // its first frame ever is for interval 2
        frames.push(ms[3]!.frame(ms[3]!.batch(15, 60, () => PER_MIN[3]!)));
      }
      pes.ingestUplink(uplink(frames));
    }
    const r = await nbReleases(f, pes);
    expect(r.map((x) => [(x.start - T0) / 900, x.meters])).toEqual([
      [2, 4],
      [3, 4],
    ]);
    expect(pes.counters.membershipHeld).toBe(2);
    await pes.close();
  });

  it('a membership that differs by k meters or more is released; stable membership releases exactly as without the guard', async () => {
    const f = await makeFleet({ n: 6, start: T0 });
    const ms = f.meters as SimMeter[];
    const run = async (guard: boolean) => {
      for (const m of ms) [m.time, m.register, m.ic] = [T0, 10_000_000, 1];
      const pes = open(f, { membershipGuard: guard });
      for (let step = 0; step < 4; step++) {
        // Interval 1: three meters (= k) silent. Their next frames start after a gap.
        const frames = ms.flatMap((m, i) => {
          const fr = m.frame(m.batch(15, 60, () => 10 + i));
          return step === 1 && i >= 3 ? [] : [fr];
        });
        pes.ingestUplink(uplink(frames));
      }
      const r = (await nbReleases(f, pes)).map((x) => [(x.start - T0) / 900, x.meters, x.energyWh]);
      const held = pes.counters.membershipHeld;
      await pes.close();
      return { r, held };
    };
    const on = await run(true);
    const off = await run(false);
    expect(on.r.map((x) => x.slice(0, 2))).toEqual([
      [0, 6],
      [1, 3],
      [2, 6],
    ]);
    expect(on).toEqual({ ...off, held: 0 });
  });

  it('remembers released memberships across a restart (they are in the state file)', async () => {
    // Eight provisioned meters of which five report (three never do: 5 of 8 differs from the fleet by k = 3, so
    // it is released); after the restart a release of four of those five would differ from it by one.
    const f = await makeFleet({ n: 8, start: T0 });
    const ms = (f.meters as SimMeter[]).slice(0, 5);
    const dir = mkdtempSync(join(tmpdir(), 'pes-membership-'));
    dirs.push(dir);
    const stateFile = join(dir, 'pes.sqlite');
    const step = (silent = -1) => uplink(ms.map((m, i) => m.frame(m.batch(15, 60, () => 10 + i))).filter((_, i) => i !== silent));
    let pes = open(f, { stateFile });
    pes.ingestUplink(step());
    pes.ingestUplink(step(4)); // meter 4 silent for interval 1 (its frame lost for good); interval 0 closes
    expect((await nbReleases(f, pes)).map((x) => x.meters)).toEqual([5]);
    expect(pes.counters.membershipHeld).toBe(0);
    await pes.close();
    pes = open(f, { stateFile });
    pes.ingestUplink(step()); // interval 1 closes: 4 meters, 4 away from the fleet but 1 from interval 0's release
    expect(await nbReleases(f, pes)).toEqual([]);
    expect(pes.counters.membershipHeld).toBe(1);
    await pes.close();
  });
});
