import { describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { mulberry32 } from '../../firmware/sources/synthetic.js';
import { discreteLaplace, intervalSensitivityWh } from '../../pes/core/dp.js';
import { createPes, resolveSettings } from '../../pes/pes.js';
import type { BillingAggregate, NeighbourhoodAggregate } from '../../protocol/aggregate.js';
import { makeFleet, openAggregates, uplink, type SimMeter } from '../pes/helpers.js';

const T0 = 1_700_000_000 - (1_700_000_000 % 86400);

describe('discrete Laplace noise', () => {
  it('is integer, centred, with the two-sided geometric mean absolute value 2a/(1-a^2), a = exp(-epsilon/sensitivity)', () => {
    const rnd = mulberry32(7);
    const n = 40_000;
    let sum = 0;
    let abs = 0;
    for (let i = 0; i < n; i++) {
      const x = discreteLaplace(1, 10, () => 1 - rnd()); // (0, 1]
      expect(Number.isInteger(x)).toBe(true);
      sum += x;
      abs += Math.abs(x);
    }
    const a = Math.exp(-0.1);
    expect(Math.abs(sum / n)).toBeLessThan(0.3);
    expect(abs / n).toBeGreaterThan(0.95 * ((2 * a) / (1 - a * a)));
    expect(abs / n).toBeLessThan(1.05 * ((2 * a) / (1 - a * a)));
  });

  it('sensitivity is the most one meter can add to an interval; bad settings are refused', () => {
    expect(intervalSensitivityWh(7360, 900)).toBe(1840);
    expect(() => discreteLaplace(0, 10)).toThrow(RangeError);
    expect(() => resolveSettings({ dpEpsilon: -1 })).toThrow(/dp-epsilon/);
  });
});

describe('PES with --dp-epsilon', () => {
  it('noises every neighbourhood release (fresh each time, counted) and leaves bills exact', async () => {
    const f = await makeFleet({ n: 3, start: T0 });
    const pes = createPes({ keys: f.keys, intervalS: 900, latenessS: 60, k: 2, dpEpsilon: 0.01, logger: pino({ level: 'silent' }) });
    const ms = f.meters as SimMeter[];
    for (let step = 0; step < 6; step++) pes.ingestUplink(uplink(ms.map((m) => m.frame(m.batch(15, 60, () => 10)))));
    pes.flush();
    await pes.idle();
    const bodies = openAggregates(f, pes.sent);
    const nb = bodies.filter((b): b is NeighbourhoodAggregate => b.kind === 'neighbourhood');
    expect(nb).toHaveLength(6);
    // True total 3 x 15 x 10 = 450 Wh each; noise of scale 18400 Wh (clamped at 0) leaves hardly any unchanged.
    expect(nb.filter((b) => b.energyWh !== 450).length).toBeGreaterThanOrEqual(5);
    expect(pes.counters.dpReleases).toBe(6);
    const bills = bodies.filter((b): b is BillingAggregate => b.kind === 'billing');
    expect(bills.map((b) => b.bands.flat)).toEqual([900, 900, 900]);
    await pes.close();
  });
});
