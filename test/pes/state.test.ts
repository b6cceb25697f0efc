import { afterAll, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import Database from 'better-sqlite3';
import { cborDecode, cborEncode } from '../../protocol/cbor.js';
import { openStream } from '../../protocol/seal.js';
import { createPes, type CreatePesOptions, type OutMessage } from '../../pes/pes.js';
import type { BillingAggregate, NeighbourhoodAggregate } from '../../protocol/aggregate.js';
import { StateMismatchError } from '../../pes/store.js';
import { latest, makeFleet, openAggregates, uplink, type TestFleet } from './helpers.js';

const log = pino({ level: 'silent' });
const T0 = 1_700_000_000 - (1_700_000_000 % 86400);
const dirs: string[] = [];
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), 'pes-state-'));
  dirs.push(d);
  return d;
};
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

/**
 * A stream of uplinks with everything that makes state matter: interleaved meters, a frame lost and
 * delivered late (gap then fill), a late reading after its window closed (revision), a replayed frame.
 */
function scenario(f: TestFleet, perMeter = 12): Buffer[] {
  const msgs: Buffer[] = [];
  const held: { at: number; frame: Uint8Array }[] = [];
  for (let step = 0; step < perMeter; step++) {
    const frames: Uint8Array[] = [];
    f.meters.forEach((m, i) => {
      // Meters 0 and 2 are prosumers: their frames carry the export register (as sensitive as import).
      const exported = i % 2 === 0 ? (j: number) => 4_000_000_000 + ((step * 15 + j) * 6007 + i * 99_991) % 1_000_000 : undefined;
      const fr = m.frame(m.batch(15, 60, (j) => 5_000_000_000 + ((step * 15 + j) * 7919 + i * 104_729) % 1_000_000, exported));
      if (i === 1 && step === 3) held.push({ at: step + 4, frame: fr }); // lost, arrives 4 steps later (gap fill)
      else if (i === 2 && step === 5) held.push({ at: step + 3, frame: fr }); // arrives after its window closed: revisions
      else frames.push(fr);
    });
    for (const h of held.filter((x) => x.at === step)) frames.push(h.frame);
    msgs.push(uplink(frames));
    if (step === 6) msgs.push(uplink([frames[0]!])); // the same frame again, byte for byte
  }
  return msgs;
}

const opts = (f: TestFleet, stateFile?: string): CreatePesOptions => ({
  keys: f.keys,
  stateFile,
  intervalS: 900,
  latenessS: 120,
  k: 2,
  revisionK: 1,
  logger: log,
});

/** Every released (kind, key, start, revision) with its body; fails on two different bodies for one id. */
function releases(f: TestFleet, sent: OutMessage[]): Map<string, NeighbourhoodAggregate | BillingAggregate> {
  const out = new Map<string, NeighbourhoodAggregate | BillingAggregate>();
  for (const b of openAggregates(f, sent)) {
    const id = `${b.kind}|${b.key}|${b.start}|${b.revision}`;
    const prev = out.get(id);
    if (prev) expect(b).toEqual(prev);
    out.set(id, b);
  }
  return out;
}

describe('restart', () => {
  it('PES closed and reopened mid-stream releases exactly what an uninterrupted run releases', async () => {
    const f = await makeFleet({ n: 4, start: T0, withHouseholdKeys: 4 });
    const msgs = scenario(f);
    const a = createPes(opts(f, join(tmp(), 'a.db')));
    msgs.forEach((m) => a.ingestUplink(m));
    a.flush();
    await a.idle();
    const whole = releases(f, a.sent);
    const wholeCounters = { ...a.counters };
    await a.close();
    expect(wholeCounters.lateRevisions).toBeGreaterThan(0);
    expect(wholeCounters.gapsFilled).toBe(2);
    expect(wholeCounters.duplicateFrame).toBe(1); // a frame sent again byte for byte: a duplicate, not a replay
    expect(wholeCounters.replay).toBe(0);

    const file = join(tmp(), 'b.db');
    const sent: OutMessage[] = [];
    const half = Math.floor(msgs.length / 2);
    let b = createPes({ ...opts(f, file), publish: (m) => void sent.push(m) });
    msgs.slice(0, half).forEach((m) => b.ingestUplink(m));
    await b.close();
    b = createPes({ ...opts(f, file), publish: (m) => void sent.push(m) });
    msgs.slice(half).forEach((m) => b.ingestUplink(m));
    b.flush();
    await b.idle();
    expect(releases(f, sent)).toEqual(whole);
    expect({ ...b.counters }).toEqual(wholeCounters);
    await b.close();
  });

  it('a crash before commit loses nothing and counts nothing twice once the uncommitted messages are redelivered', async () => {
    const f = await makeFleet({ n: 4, start: T0 });
    const msgs = scenario(f);
    const a = createPes(opts(f));
    msgs.forEach((m) => a.ingestUplink(m));
    a.flush();
    await a.idle();
    const whole = releases(f, a.sent);
    const wholeCounters = { ...a.counters };
    await a.close();

    const file = join(tmp(), 'c.db');
    const sent: OutMessage[] = [];
    const start = (): ReturnType<typeof createPes> => createPes({ ...opts(f, file), autoCommit: false, publish: (m) => void sent.push(m) });
    let pes = start();
    let committed = 0;
    let i = 0;
    for (const crashAt of [5, 11]) {
      for (; i < crashAt; i++) {
        pes.ingestUplink(msgs[i]!);
        if (i % 3 === 2) {
          pes.commit();
          committed = i + 1;
        }
      }
      await pes.idle();
      pes.abandon(); // the broker still holds every message after the last commit
      pes = start();
      i = committed;
    }
    for (; i < msgs.length; i++) {
      pes.ingestUplink(msgs[i]!);
      pes.commit();
    }
    pes.flush();
    await pes.idle();
    expect(releases(f, sent)).toEqual(whole);
    expect({ ...pes.counters }).toEqual(wholeCounters);
    await pes.close();
  });

  it('refuses a state file written with other window settings or another Paillier key', async () => {
    const f = await makeFleet({ n: 1, start: T0 });
    const file = join(tmp(), 'd.db');
    await createPes(opts(f, file)).close();
    expect(() => createPes({ ...opts(f, file), intervalS: 300 })).toThrow(StateMismatchError);
    expect(() => createPes({ ...opts(f, file), intervalS: 300 })).toThrow(/other window settings/);
    const other = await makeFleet({ n: 1, start: T0, paillierBits: 640 });
    expect(() => createPes({ ...opts(f, file), keys: { ...f.keys, paillier: other.keys.paillier } })).toThrow(/another Paillier key/);
    expect(() => createPes({ ...opts(f, file), keys: { ...f.keys, rsa: other.keys.rsa } })).toThrow(/state key does not open/);
  });
});

/** Every byte encoding of an integer that a serialiser might leave in a file. */
function encodings(v: number): Buffer[] {
  const out = [Buffer.from(String(v)), cborEncode(v)];
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(v));
  out.push(Buffer.from(b));
  b.writeBigUInt64LE(BigInt(v));
  out.push(Buffer.from(b));
  b.writeDoubleBE(v);
  out.push(Buffer.from(b));
  b.writeDoubleLE(v);
  out.push(Buffer.from(b));
  const s = Buffer.alloc(6);
  s.writeUIntBE(v, 0, 6);
  out.push(Buffer.from(s));
  s.writeUIntLE(v, 0, 6);
  out.push(Buffer.from(s));
  return out;
}
function findValues(haystack: Buffer, values: number[]): number[] {
  return values.filter((v) => encodings(v).some((e) => haystack.includes(e)));
}

describe('no plaintext reading at rest or towards the MDMS', () => {
  it('state file and its WAL hold no register, reading energy or total in any encoding; neither does MDMS traffic', async () => {
    // Registers above 2^32 and energies above 2^32 so that every encoding is at least 6 bytes long and a
    // chance match in random ciphertext is negligible.
    const f = await makeFleet({ n: 4, start: T0, withHouseholdKeys: 4, startWh: (i) => 1_000_000_000_000 + i * 7_777_777 });
    f.meters.forEach((m, i) => (m.exportRegister = 2_000_000_000_000 + i * 5_555_555));
    const msgs = scenario(f);
    const file = join(tmp(), 'scan.db');
    const pes = createPes(opts(f, file));
    msgs.forEach((m) => pes.ingestUplink(m));
    pes.flush();
    await pes.idle();
    const registers = f.meters.flatMap((m) => [...m.registers, ...m.exportRegisters]);
    const energies = f.meters.flatMap((m) => [...m.energies, ...m.exports.filter((x) => x > 0)]);
    const bodies = openAggregates(f, pes.sent);
    const totals = bodies
      .flatMap((b) => (b.kind === 'neighbourhood' ? [b.energyWh, b.exportWh!] : [...Object.values(b.bands), ...Object.values(b.exportBands ?? {})]))
      .filter((v) => v > 2 ** 32);
    expect(registers.length).toBeGreaterThan(200);
    expect(f.meters[0]!.exportRegisters.length).toBeGreaterThan(100);
    expect(totals.length).toBeGreaterThanOrEqual(30);

    // Positive control: the scanner finds these values where they are in clear.
    const clear = pes.sent.filter((m) => m.kind === 'household').map((m) => openStream(f.households.get(m.topic.split('/')[3]!)!, f.pesVerify, m.topic, m.payload));
    expect(findValues(cborEncode(clear), registers)).toEqual(registers);
    expect(findValues(Buffer.from(JSON.stringify(totals)), totals)).toEqual(totals);

    const wal = `${file}-wal`;
    expect(existsSync(wal)).toBe(true);
    const files = Buffer.concat([readFileSync(file), readFileSync(wal)]);
    expect(files.length).toBeGreaterThan(100_000);
    const needles = [...registers, ...energies, ...totals];
    expect(findValues(files, needles)).toEqual([]);
    const mdmsTraffic = Buffer.concat(pes.sent.filter((m) => m.kind !== 'household').map((m) => Buffer.concat([Buffer.from(m.topic), m.payload])));
    expect(findValues(mdmsTraffic, needles)).toEqual([]);
    const householdTraffic = Buffer.concat(pes.sent.filter((m) => m.kind === 'household').map((m) => m.payload));
    expect(findValues(householdTraffic, needles)).toEqual([]);
    await pes.close();
    expect(findValues(readFileSync(file), needles)).toEqual([]);
  });
});

describe('re-randomised checkpoints', () => {
  it('two checkpoints of one window do not differ by the factor (1 + delta n) that would reveal the energy added', async () => {
    const f = await makeFleet({ n: 1, start: T0 });
    const m = f.meters[0]!;
    const file = join(tmp(), 'ratio.db');
    const pes = createPes(opts(f, file));
    const reader = new Database(file, { readonly: true });
    const acc = () => {
      const row = reader.prepare("SELECT acc FROM windows WHERE kind = 'neighbourhood' AND start = ?").get(T0) as { acc: Buffer };
      const [entry] = cborDecode(row.acc) as [string, Uint8Array][];
      return BigInt('0x' + Buffer.from(entry![1]).toString('hex'));
    };
    pes.ingestUplink(uplink([m.frame(m.batch(5, 60, () => 123))]));
    const c1 = acc();
    pes.ingestUplink(uplink([m.frame(m.batch(5, 60, () => 321))]));
    const c2 = acc();
    const { paillier } = f.keys;
    const delta = 5n * 321n;
    // They are the real accumulators...
    expect(paillier.decrypt(c2) - paillier.decrypt(c1)).toBe(delta);
    // ...but the quotient is not the deterministic encoding of the difference.
    const n2 = paillier.n2;
    const inv = (a: bigint): bigint => {
      let [r0, r1, s0, s1] = [a % n2, n2, 1n, 0n];
      while (r1 !== 0n) {
        const q = r0 / r1;
        [r0, r1, s0, s1] = [r1, r0 - q * r1, s1, s0 - q * s1];
      }
      return ((s0 % n2) + n2) % n2;
    };
    expect((c2 * inv(c1)) % n2).not.toBe((1n + delta * paillier.n) % n2);
    reader.close();
    await pes.close();
  });
});

describe('2048-bit Paillier', () => {
  it('releases exact totals with a production-size key', async () => {
    const f = await makeFleet({ n: 3, start: T0, paillierBits: 2048 });
    expect(f.keys.paillier.bits).toBeGreaterThanOrEqual(2047);
    const pes = createPes({ ...opts(f), k: 3 });
    for (let s = 0; s < 3; s++) pes.ingestUplink(uplink(f.meters.map((m) => m.frame(m.batch(15, 60, (j) => 1000 + j * 3)))));
    pes.flush();
    await pes.idle();
    const l = latest(openAggregates(f, pes.sent));
    const expected = f.meters.reduce((s, m) => s + (m.register - m.registers[0]!), 0);
    const nbTotal = [...l.values()].filter((b): b is NeighbourhoodAggregate => b.kind === 'neighbourhood').reduce((s, b) => s + b.energyWh, 0);
    expect(nbTotal).toBe(expected);
    f.meters.forEach((m, i) => expect((l.get(`billing|hh${i}|${T0}`) as BillingAggregate).bands.flat).toBe(m.register - m.registers[0]!));
    await pes.close();
  });
});
