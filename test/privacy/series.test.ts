/**
 * The privacy report's raw series of a household with solar panels: import and export read from the source
 * (not dropped), the net the events attack reads, and a household without panels unchanged.
 */
import { describe, expect, it } from 'vitest';
import { SyntheticModel, SyntheticSource } from '../../firmware/sources/synthetic.js';
import { netPower, readSource } from '../../privacy/series.js';

const START = Date.UTC(2024, 5, 15) / 1000;
const END = START + 86400;

describe('readSource with panels', () => {
  it('reads import and export per minute; the net is import minus export', async () => {
    const model = new SyntheticModel(3, 'UTC', { kWp: 5 });
    const { series, energy } = await readSource(new SyntheticSource({ seed: 3, start: START, days: 1, pv: { kWp: 5 } }), START, END, 900);
    expect(series.powerW).toHaveLength(1440);
    expect(series.exportW).toHaveLength(1440);
    const net = netPower(series);
    let exporting = 0;
    for (let i = 0; i < 1440; i++) {
      const { importMilliW, exportMilliW } = model.flows(START + i * 60);
      expect(series.powerW[i]).toBe(importMilliW / 1000);
      expect(series.exportW[i]).toBe(exportMilliW / 1000);
      expect(net[i]).toBe((model.powerMilliW(START + i * 60) - model.pvMilliW(START + i * 60)) / 1000);
      if (exportMilliW > 0) exporting++;
    }
    expect(exporting).toBeGreaterThan(60); // a June day with 5 kWp exports for hours
    // The per-interval energy stays the import (the differencing attack's truth).
    const noon = START + 12 * 3600;
    let wh = 0;
    for (let t = noon; t < noon + 900; t += 60) wh += (model.flows(t).importMilliW / 1000) * 60 / 3600;
    expect(energy.get(noon)).toBeCloseTo(wh, 9);
  });

  it('a household without panels exports nothing: its net series is its import series', async () => {
    const { series } = await readSource(new SyntheticSource({ seed: 3, start: START, days: 1 }), START, END, 900);
    expect(series.exportW.every((w) => w === 0)).toBe(true);
    expect([...netPower(series)]).toEqual([...series.powerW]);
  });

  it('keeps NaN where the source has no sample', async () => {
    const { series } = await readSource(new SyntheticSource({ seed: 3, start: START, days: 1, pv: { kWp: 5 } }), START - 120, START + 60, 900);
    expect([...series.powerW.slice(0, 2)]).toEqual([NaN, NaN]);
    expect([...series.exportW.slice(0, 2)]).toEqual([NaN, NaN]);
    expect(Number.isNaN(netPower(series)[0])).toBe(true);
  });
});
