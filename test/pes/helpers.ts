/** Test fleets built in memory: meters with random keys, RSA keys, a small Paillier key, and a frame maker. */
import { generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { encodeFrame, meterId, sealFrame, SC_AES256GCM, systemTitle } from '../../protocol/frame.js';
import { generatePaillier, type PaillierPrivate } from '../../protocol/paillier/engine.js';
import { encodeReadingBatch, type Reading, type ReadingBatch } from '../../protocol/reading.js';
import { openAggregate } from '../../protocol/seal.js';
import { encodeUplink } from '../../protocol/uplink.js';
import type { MeterInfo, OutMessage, PesKeySet } from '../../pes/pes.js';
import type { BillingAggregate, NeighbourhoodAggregate } from '../../protocol/aggregate.js';

const paillierCache = new Map<number, Promise<PaillierPrivate>>();
/** One Paillier key per size per test file (key generation dominates otherwise). */
export function paillierKey(bits = 512): Promise<PaillierPrivate> {
  let p = paillierCache.get(bits);
  if (!p) paillierCache.set(bits, (p = generatePaillier(bits)));
  return p;
}

export function rsaPair(bits = 1024): { publicKey: KeyObject; privateKey: KeyObject } {
  return generateKeyPairSync('rsa', { modulusLength: bits });
}

/** A simulated meter: its register, clock and invocation counter. */
export class SimMeter {
  readonly st: Uint8Array;
  readonly id: string;
  readonly key = randomBytes(32);
  ic = 1;
  register: number;
  time: number;
  /** Every register value it ever produced (to search for in state files). */
  readonly registers: number[] = [];
  readonly energies: number[] = [];
  /** The export register (1-0:2.8.0): 0 until the meter first exports. */
  exportRegister = 0;
  readonly exports: number[] = [];
  /** Every export register value it sent. */
  readonly exportRegisters: number[] = [];
  /** Every reading it made: start time, imported and exported energy. */
  readonly log: { time: number; wh: number; exportWh: number }[] = [];

  constructor(serial: number, startTime: number, startWh: number) {
    this.st = systemTitle('SMR', serial);
    this.id = meterId(this.st);
    this.time = startTime;
    this.register = startWh;
    this.registers.push(startWh);
  }

  /**
   * The next `n` readings of `period` seconds with the given energy functions. With `exported` (a prosumer)
   * the readings carry the export register; the frame is in the long form once that register is not 0.
   */
  batch(n: number, period = 60, energy: (i: number) => number = () => 100, exported?: (i: number) => number): ReadingBatch {
    const prevWh = this.register;
    const prevExportWh = this.exportRegister;
    const readings: Reading[] = [];
    for (let i = 0; i < n; i++) {
      const e = energy(i);
      const x = exported ? exported(i) : 0;
      this.register += e;
      this.exportRegister += x;
      this.registers.push(this.register);
      this.energies.push(e);
      this.exports.push(x);
      if (exported) this.exportRegisters.push(this.exportRegister);
      this.log.push({ time: this.time, wh: e, exportWh: x });
      const r: Reading = { time: this.time, period, importWh: this.register, powerW: Math.min(0xffffffff, Math.round((e * 3600) / period)), status: 0 };
      if (exported) r.exportWh = this.exportRegister;
      readings.push(r);
      this.time += period;
    }
    return exported ? { prevWh, prevExportWh, readings } : { prevWh, readings };
  }

  /** Ciphers a batch into frame bytes with the next invocation counter (or `ic`). */
  frame(batch: ReadingBatch, ic = this.ic++): Uint8Array {
    return encodeFrame(sealFrame(this.key, { systemTitle: this.st, sc: SC_AES256GCM, ic }, encodeReadingBatch(batch)));
  }
}

export interface TestFleet {
  meters: SimMeter[];
  keys: PesKeySet;
  mdms: KeyObject;
  /** The public half of `keys.signer`: what the MDMS and the households verify the PES's seals with. */
  pesVerify: KeyObject;
  households: Map<string, KeyObject>;
  info: Map<string, MeterInfo>;
  /** Each household's binding key (what provisioning derives from its activation code). */
  bindingKeys: Map<string, Uint8Array>;
}

/**
 * `n` meters, meter i in household `hh<i>` and neighbourhood `nb<i % nbs>`; household public keys provisioned
 * for the first `withHouseholdKeys` households.
 */
export async function makeFleet(opts: { n: number; nbs?: number; start: number; paillierBits?: number; withHouseholdKeys?: number; startWh?: (i: number) => number }): Promise<TestFleet> {
  const meters = Array.from({ length: opts.n }, (_, i) => new SimMeter(i + 1, opts.start, opts.startWh ? opts.startWh(i) : 10_000_000_000 + i * 1_000_003));
  const info = new Map<string, MeterInfo>();
  meters.forEach((m, i) => info.set(m.id, { key: m.key, household: `hh${i}`, neighbourhood: `nb${i % (opts.nbs ?? 1)}` }));
  const pes = rsaPair(2048);
  const mdms = rsaPair(2048);
  const signing = generateKeyPairSync('ed25519');
  const households = new Map<string, KeyObject>();
  const householdPublic = new Map<string, KeyObject>();
  for (let i = 0; i < (opts.withHouseholdKeys ?? 0); i++) {
    const kp = rsaPair(1024);
    households.set(`hh${i}`, kp.privateKey);
    householdPublic.set(`hh${i}`, kp.publicKey);
  }
  const bindingKeys = new Map(meters.map((_, i) => [`hh${i}`, new Uint8Array(randomBytes(32))]));
  return {
    meters,
    info,
    mdms: mdms.privateKey,
    pesVerify: signing.publicKey,
    households,
    bindingKeys,
    keys: { rsa: pes.privateKey, signer: signing.privateKey, paillier: await paillierKey(opts.paillierBits ?? 512), mdmsPublic: mdms.publicKey, bindingKeys, householdPublic, meters: info },
  };
}

export const uplink = (frames: Uint8Array[], gateway = 'gw-nb0'): Buffer => encodeUplink({ gateway, frames });

/** Opens every aggregate the PES sent to the MDMS (each must carry the fleet's PES signature). */
export function openAggregates(f: Pick<TestFleet, 'mdms' | 'pesVerify'>, sent: OutMessage[]): (NeighbourhoodAggregate | BillingAggregate)[] {
  return sent.filter((m) => m.kind !== 'household').map((m) => openAggregate(f.mdms, m.topic, m.payload, f.pesVerify) as NeighbourhoodAggregate | BillingAggregate);
}

/** The latest revision of every (kind, key, start): what an MDMS export shows. */
export function latest(bodies: (NeighbourhoodAggregate | BillingAggregate)[]): Map<string, NeighbourhoodAggregate | BillingAggregate> {
  const out = new Map<string, NeighbourhoodAggregate | BillingAggregate>();
  for (const b of bodies) {
    const id = `${b.kind}|${b.key}|${b.start}`;
    const prev = out.get(id);
    if (!prev || prev.revision < b.revision) out.set(id, b);
  }
  return out;
}

export const silent = { level: 'silent' } as const;
