import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { averagePowerW, EnergyRegister, ImportRegister, MILLIWS_PER_WH } from '../../firmware/register.js';

const sample = fc.record({ powerMilliW: fc.integer({ min: 0, max: 20_000_000 }), period: fc.integer({ min: 1, max: 86400 }) });

describe('ImportRegister', () => {
  it('register deltas sum exactly to the register, which is floor(total energy / 3.6e6)', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: 10n ** 15n }), fc.array(sample, { maxLength: 300 }), (initial, samples) => {
        const reg = new ImportRegister(initial);
        const startWh = reg.wh;
        let prev = startWh;
        let sumOfDeltas = 0;
        let total = initial;
        for (const s of samples) {
          const { importWh } = reg.integrate(s.powerMilliW, s.period);
          expect(importWh).toBeGreaterThanOrEqual(prev);
          sumOfDeltas += importWh - prev;
          prev = importWh;
          total += BigInt(s.powerMilliW) * BigInt(s.period);
        }
        expect(reg.milliWs).toBe(total);
        expect(reg.wh).toBe(Number(total / MILLIWS_PER_WH));
        expect(sumOfDeltas).toBe(reg.wh - startWh);
        // The energy not yet shown on the register is less than 1 Wh, always.
        expect(total - BigInt(reg.wh) * MILLIWS_PER_WH).toBeLessThan(MILLIWS_PER_WH);
      }),
    );
  });

  it('does not drift over 100k samples of awkward values', () => {
    const reg = new ImportRegister();
    let whSum = 0;
    let prev = 0;
    let exactMilliWs = 0n;
    for (let i = 0; i < 100_000; i++) {
      // 1/3 W-ish powers and 7 s periods: values that a float accumulator in Wh would round every time.
      const p = 333 + ((i * 7919) % 1000);
      const { importWh } = reg.integrate(p, 7);
      whSum += importWh - prev;
      prev = importWh;
      exactMilliWs += BigInt(p * 7);
    }
    expect(reg.milliWs).toBe(exactMilliWs);
    expect(whSum).toBe(Number(exactMilliWs / MILLIWS_PER_WH));
  });

  it('reports average power rounded half up and rejects bad samples', () => {
    expect(new ImportRegister().integrate(1_500_000, 60)).toEqual({ importWh: 25, powerW: 1500 });
    expect(averagePowerW(1499)).toBe(1);
    expect(averagePowerW(1500)).toBe(2);
    expect(averagePowerW(0)).toBe(0);
    const reg = new ImportRegister();
    expect(() => reg.integrate(-1, 60)).toThrow(/power/);
    expect(() => reg.integrate(1.5, 60)).toThrow(/power/);
    expect(() => reg.integrate(1, 0)).toThrow(/period/);
    expect(() => new ImportRegister(-1n)).toThrow(RangeError);
  });
});

describe('EnergyRegister', () => {
  it('keeps import and export of a net series apart, each exact: the registers\' difference is the net energy up to a Wh each', () => {
    fc.assert(
      fc.property(fc.array(fc.record({ netMilliW: fc.integer({ min: -8_000_000, max: 8_000_000 }), period: fc.integer({ min: 1, max: 900 }) }), { maxLength: 300 }), (steps) => {
        const imported = new EnergyRegister();
        const exported = new EnergyRegister();
        let net = 0n;
        for (const s of steps) {
          imported.add(Math.max(s.netMilliW, 0), s.period);
          exported.add(Math.max(-s.netMilliW, 0), s.period);
          net += BigInt(s.netMilliW) * BigInt(s.period);
        }
        expect(imported.milliWs - exported.milliWs).toBe(net);
        expect([imported.wh, exported.wh]).toEqual([Number(imported.milliWs / MILLIWS_PER_WH), Number(exported.milliWs / MILLIWS_PER_WH)]);
      }),
    );
    expect(new EnergyRegister(7n).add(2_400_000, 60)).toBe(40);
    expect(() => new EnergyRegister().add(-1, 60)).toThrow(/power/);
  });
});
