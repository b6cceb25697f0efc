/**
 * Partitions of the fleet by neighbourhood (pure). A concentrator serves one transformer area, so a partition's
 * neighbourhoods name its gateways and its meters; a neighbourhood's Paillier windows never need two PES
 * instances. A partition is either named with its neighbourhoods (`--partition north --neighbourhoods nb1,nb2`)
 * or one of N by hash (`--partitions 4 --partition 2`: every neighbourhood whose SHA-256 taken mod N is 2, so
 * that each neighbourhood falls in exactly one of the N without a table to keep).
 * @module
 */
import { createHash } from 'node:crypto';

/** What a partition is made of. */
export type PartitionSpec = { name: string; neighbourhoods: string[] } | { index: number; of: number };

/** A fleet entry, as fleet.json lists it. */
export interface FleetEntry {
  meter: string;
  neighbourhood: string;
  gateway: string;
}

/** One partition, resolved against the fleet. */
export interface Partition {
  /** The lease's and the session's name: the given name, or `<i>-of-<N>`. */
  name: string;
  neighbourhoods: string[];
  /** Gateways serving the partition's meters: the uplink topics it subscribes to. */
  gateways: string[];
  /** Meter ids of the partition's neighbourhoods. */
  meters: Set<string>;
  /** Gateways that also serve meters of other partitions (their frames for others are `unknownMeter` here). */
  sharedGateways: string[];
}

/**
 * The partition (0 … of − 1) a neighbourhood falls in when the fleet is split into `of` by hash.
 * @example
 * ```ts
 * hashPartition('nb-0001', 4); // one of 0, 1, 2, 3, the same on every machine
 * ```
 */
export function hashPartition(neighbourhood: string, of: number): number {
  if (!Number.isSafeInteger(of) || of < 1) throw new RangeError('the number of partitions must be a positive integer');
  return createHash('sha256').update(neighbourhood).digest().readUInt32BE(0) % of;
}

/**
 * Resolves a partition against the fleet; throws a `RangeError` if it is empty or names a neighbourhood the
 * fleet does not have.
 * @example
 * ```ts
 * const p = selectPartition(fleet.meters, { name: 'north', neighbourhoods: ['nb1', 'nb2'] });
 * p.gateways; // ['gw-nb1', 'gw-nb2']
 * ```
 */
export function selectPartition(fleet: readonly FleetEntry[], spec: PartitionSpec): Partition {
  const all = new Set(fleet.map((m) => m.neighbourhood));
  let name: string;
  let inside: (nb: string) => boolean;
  if ('name' in spec) {
    const unknown = spec.neighbourhoods.filter((nb) => !all.has(nb));
    if (unknown.length) throw new RangeError(`partition ${spec.name}: the fleet has no neighbourhood ${unknown.join(', ')}`);
    const mine = new Set(spec.neighbourhoods);
    name = spec.name;
    inside = (nb) => mine.has(nb);
  } else {
    if (!Number.isSafeInteger(spec.index) || spec.index < 0 || spec.index >= spec.of) throw new RangeError(`--partition must be between 0 and ${spec.of - 1} with --partitions ${spec.of}`);
    name = `${spec.index}-of-${spec.of}`;
    inside = (nb) => hashPartition(nb, spec.of) === spec.index;
  }
  const meters = new Set<string>();
  const gateways = new Set<string>();
  const foreign = new Set<string>();
  for (const m of fleet) {
    if (inside(m.neighbourhood)) {
      meters.add(m.meter);
      gateways.add(m.gateway);
    } else foreign.add(m.gateway);
  }
  if (meters.size === 0) throw new RangeError(`partition ${name} has no meter in the fleet`);
  return {
    name,
    neighbourhoods: [...all].filter(inside).sort(),
    gateways: [...gateways].sort(),
    meters,
    sharedGateways: [...gateways].filter((g) => foreign.has(g)).sort(),
  };
}
