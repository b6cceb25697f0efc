import { describe, expect, it } from 'vitest';
import { hashPartition, selectPartition } from '../../pes/partition.js';
import { partitionOf } from '../../pes/cli.js';

const fleet = Array.from({ length: 60 }, (_, i) => ({ meter: `m${i}`, neighbourhood: `nb${i % 12}`, gateway: `gw-nb${i % 12}` }));

describe('partitions of the fleet', () => {
  it('a named partition takes its neighbourhoods\' meters and gateways', () => {
    const p = selectPartition(fleet, { name: 'north', neighbourhoods: ['nb1', 'nb2'] });
    expect(p.name).toBe('north');
    expect(p.gateways).toEqual(['gw-nb1', 'gw-nb2']);
    expect([...p.meters].sort()).toEqual(fleet.filter((m) => ['nb1', 'nb2'].includes(m.neighbourhood)).map((m) => m.meter).sort());
    expect(p.sharedGateways).toEqual([]);
  });

  it('N partitions by hash cover every neighbourhood exactly once', () => {
    for (const of of [1, 2, 3, 5]) {
      const parts = Array.from({ length: of }, (_, index) => {
        try {
          return selectPartition(fleet, { index, of });
        } catch {
          return null; // a partition may be empty with few neighbourhoods
        }
      });
      const seen = parts.flatMap((p) => p?.neighbourhoods ?? []);
      expect(seen.sort()).toEqual([...new Set(fleet.map((m) => m.neighbourhood))].sort());
      expect(parts.reduce((s, p) => s + (p?.meters.size ?? 0), 0)).toBe(fleet.length);
      parts.forEach((p, i) => p && expect(p.name).toBe(`${i}-of-${of}`));
    }
    expect(hashPartition('nb7', 4)).toBe(hashPartition('nb7', 4));
  });

  it('names a gateway that serves two partitions', () => {
    const mixed = [...fleet, { meter: 'x', neighbourhood: 'nb3', gateway: 'gw-nb1' }];
    expect(selectPartition(mixed, { name: 'p', neighbourhoods: ['nb1'] }).sharedGateways).toEqual(['gw-nb1']);
  });

  it.each([
    [{ name: 'p', neighbourhoods: ['nb99'] }, /no neighbourhood nb99/],
    [{ index: 4, of: 4 }, /between 0 and 3/],
  ])('refuses %j', (spec, msg) => {
    expect(() => selectPartition(fleet, spec)).toThrow(msg);
  });

  it('the CLI flags go together or fail with a clear message', () => {
    expect(partitionOf({}, fleet)).toBeNull();
    expect(partitionOf({ partition: 'south', neighbourhoods: ['nb3'] }, fleet)?.gateways).toEqual(['gw-nb3']);
    expect(partitionOf({ partition: '0', partitions: 1 }, fleet)?.meters.size).toBe(60);
    expect(() => partitionOf({ neighbourhoods: ['nb1'] }, fleet)).toThrow(/need --partition/);
    expect(() => partitionOf({ partition: 'x' }, fleet)).toThrow(/either --neighbourhoods/);
    expect(() => partitionOf({ partition: 'x', neighbourhoods: ['nb1'], partitions: 2 }, fleet)).toThrow(/either --neighbourhoods/);
    expect(() => partitionOf({ partition: 'x', partitions: 2 }, fleet)).toThrow(/a number from 0 to 1/);
    expect(() => partitionOf({ partition: 'a/b', neighbourhoods: ['nb1'] }, fleet)).toThrow(/--partition must match/);
  });
});
