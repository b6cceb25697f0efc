import { describe, expect, it } from 'vitest';
import { UmassSource } from '../../firmware/sources/umass.js';
import { chanceF1, hartEvents, scoreEvents, truthEvents } from '../../privacy/events.js';
import { guessOccupancy, scoreOccupancy, slotMeans, trueOccupancy } from '../../privacy/occupancy.js';
import { differencingAttack } from '../../privacy/differencing.js';
import { loadTruth, readSource } from '../../privacy/series.js';

const SAMPLE = new URL('../../data/sample/', import.meta.url).pathname;
const FROM = 1462492800; // 2016-05-06 00:00 UTC
const TO = FROM + 2 * 86400;

describe('Hart edge detection and its score', () => {
  it('finds steps of at least the threshold, in both directions, and nothing else', () => {
    expect(hartEvents([100, 2600, 2610, 100, NaN, 3000, 3000], 0, 60, 400)).toEqual([
      { time: 60, on: true },
      { time: 180, on: false },
    ]);
  });

  it('scores one to one within the tolerance and by direction', () => {
    const truth = [
      { time: 600, on: true },
      { time: 900, on: false },
    ];
    expect(scoreEvents([{ time: 630, on: true }], truth, 60)).toMatchObject({ precision: 1, recall: 0.5 });
    expect(scoreEvents([{ time: 630, on: false }], truth, 60).f1).toBe(0); // wrong direction
    expect(scoreEvents([{ time: 600, on: true }, { time: 601, on: true }], truth, 60)).toMatchObject({ precision: 0.5, recall: 0.5 }); // each truth used once
    expect(scoreEvents([], [], 60).f1).toBe(1);
  });
});

describe('the raw-data attacks really work on the sample (issue 13: or the report proves nothing)', () => {
  for (const apt of ['apt-01', 'apt-02', 'apt-03']) {
    it(`${apt}: appliance events F1 >= 0.9, more than 20 times the chance F1`, async () => {
      const { series } = await readSource(new UmassSource(`${SAMPLE}${apt}.csv`), FROM, TO, 900);
      const truth = truthEvents(loadTruth(`${SAMPLE}${apt}.truth.json`));
      expect(truth.length).toBeGreaterThan(5);
      const detected = hartEvents(series.powerW, series.start, 60);
      const f1 = scoreEvents(detected, truth, 60).f1;
      const chance = chanceF1(detected.length, truth, series.start, 60, series.powerW.length, 60, 13);
      expect(f1).toBeGreaterThanOrEqual(0.9);
      expect(f1).toBeGreaterThan(20 * chance);
    });
  }

  it('occupancy from the raw series beats the majority-class baseline on average over the sample', async () => {
    const gains: number[] = [];
    for (const apt of ['apt-01', 'apt-02', 'apt-03']) {
      const { series } = await readSource(new UmassSource(`${SAMPLE}${apt}.csv`), FROM, TO, 900);
      const truth = trueOccupancy(loadTruth(`${SAMPLE}${apt}.truth.json`), FROM, 900, 192);
      const s = scoreOccupancy(guessOccupancy(slotMeans(series.powerW, 15), FROM, 900), truth);
      expect(s.slots).toBe(192);
      gains.push(s.accuracy - s.chance);
    }
    expect(gains.reduce((a, b) => a + b) / gains.length).toBeGreaterThan(0.1);
  });

  it('a chance detector scores near zero on raw data', async () => {
    const truth = truthEvents(loadTruth(`${SAMPLE}apt-01.truth.json`));
    expect(chanceF1(truth.length, truth, FROM, 60, 2880, 60, 13)).toBeLessThan(0.05);
    expect(chanceF1(truth.length, truth, FROM, 60, 2880, 60, 13)).toBe(chanceF1(truth.length, truth, FROM, 60, 2880, 60, 13)); // seeded
  });
});

describe('differencing attack', () => {
  it('subtracts the release without the household from the one before with it; falls back on the bill otherwise', () => {
    const releases = [
      { start: 0, meters: 4, energyWh: 1000 },
      { start: 900, meters: 3, energyWh: 870 },
      { start: 2700, meters: 4, energyWh: 990 },
    ];
    const truth = new Map([
      [0, 125],
      [1800, 60],
    ]);
    const s = differencingAttack(releases, [900, 2700], 900, truth, () => 50);
    // Interval 0: 1000 - 870 = 130 (error 5). Interval 1800: no release at 1800 -> fallback 50 (error 10).
    expect(s).toMatchObject({ intervals: 2, subtracted: 1, maeWh: 7.5, baselineMaeWh: (75 + 10) / 2 });
    expect(s.errorsWh.map((e) => e.subtracted)).toEqual([true, false]);
  });
});
