import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { pino } from 'pino';
import { decodeFrame, encodeFrame, SC_AES256GCM, sealFrame } from '../../protocol/frame.js';
import { encodeReadingBatch } from '../../protocol/reading.js';
import { openStream } from '../../protocol/seal.js';
import { topics } from '../../protocol/topics.js';
import { createPes, type CreatePesOptions } from '../../pes/pes.js';
import { activationMessage } from '../protocol/binding-fixture.js';
import type { BillingAggregate, NeighbourhoodAggregate } from '../../protocol/aggregate.js';
import { latest, makeFleet, openAggregates, SimMeter, uplink, type TestFleet } from './helpers.js';

const log = pino({ level: 'silent' });
const T0 = 1_700_000_000 - (1_700_000_000 % 86400); // a UTC midnight
const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

function open(fleet: TestFleet, o: Partial<CreatePesOptions> = {}) {
  return createPes({ keys: fleet.keys, intervalS: 900, latenessS: 60, k: 2, logger: log, ...o });
}

async function bodies(fleet: TestFleet, pes: ReturnType<typeof createPes>) {
  await pes.idle();
  return openAggregates(fleet, pes.sent);
}
const nbs = (b: (NeighbourhoodAggregate | BillingAggregate)[]) => b.filter((x): x is NeighbourhoodAggregate => x.kind === 'neighbourhood');

describe('late readings produce revisions', () => {
  it('a reading after its window closed re-releases it with revision + 1 and the full new total', async () => {
    const f = await makeFleet({ n: 3, start: T0 });
    const [a, b, c] = f.meters as [SimMeter, SimMeter, SimMeter];
    const pes = open(f, { revisionK: 1 });
    const wa = a.batch(15, 60, (i) => 10 + i);
    const wb = b.batch(15, 60, (i) => 20 + i);
    const wc = c.batch(15, 60, (i) => 30 + i); // held back
    pes.ingestUplink(uplink([a.frame(wa), b.frame(wb)]));
    // Next interval from a and b: the watermark passes end + lateness, window 0 closes.
    pes.ingestUplink(uplink([a.frame(a.batch(15)), b.frame(b.batch(15))]));
    let w0 = nbs(await bodies(f, pes)).filter((x) => x.start === T0);
    expect(w0).toEqual([{ kind: 'neighbourhood', key: 'nb0', start: T0, end: T0 + 900, revision: 0, meters: 2, energyWh: sum(a.energies.slice(0, 15)) + sum(b.energies.slice(0, 15)), exportWh: 0 }]);
    pes.ingestUplink(uplink([c.frame(wc)]));
    w0 = nbs(await bodies(f, pes)).filter((x) => x.start === T0);
    expect(w0).toHaveLength(2);
    expect(w0[1]).toEqual({
      kind: 'neighbourhood',
      key: 'nb0',
      start: T0,
      end: T0 + 900,
      revision: 1,
      meters: 3,
      energyWh: sum(a.energies.slice(0, 15)) + sum(b.energies.slice(0, 15)) + sum(c.energies),
      exportWh: 0,
    });
    expect(pes.counters.lateRevisions).toBe(1);
    await pes.close();
  });

  it('by default a revision that only one meter changed is held (it would reveal that meter), then released once k meters changed it', async () => {
    const f = await makeFleet({ n: 4, start: T0 });
    const [a, b, c, d] = f.meters as [SimMeter, SimMeter, SimMeter, SimMeter];
    const pes = open(f); // k = 2, revisionK = k
    const late = [c.batch(15), d.batch(15)];
    pes.ingestUplink(uplink([a.frame(a.batch(15)), b.frame(b.batch(15))]));
    pes.ingestUplink(uplink([a.frame(a.batch(15)), b.frame(b.batch(15))]));
    pes.ingestUplink(uplink([c.frame(late[0]!)]));
    expect(pes.counters.revisionHeld).toBe(1);
    expect(nbs(await bodies(f, pes)).filter((x) => x.start === T0).map((x) => x.revision)).toEqual([0]);
    pes.ingestUplink(uplink([d.frame(late[1]!)]));
    const w0 = nbs(await bodies(f, pes)).filter((x) => x.start === T0);
    expect(w0.map((x) => [x.revision, x.meters])).toEqual([
      [0, 2],
      [1, 4],
    ]);
    expect(w0[1]!.energyWh).toBe(sum(a.energies.slice(0, 15)) + sum(b.energies.slice(0, 15)) + sum(c.energies) + sum(d.energies));
    await pes.close();
  });

  it('a lost frame shifts its energy to the next window; when it arrives late both windows are revised to the exact truth', async () => {
    const f = await makeFleet({ n: 2, start: T0 });
    const [a, b] = f.meters as [SimMeter, SimMeter];
    const pes = open(f, { k: 1 });
    const a0 = a.batch(15, 60, () => 7);
    const a1 = a.batch(15, 60, () => 11); // lost for now
    const a2 = a.batch(15, 60, () => 13);
    const b0 = b.batch(15, 60, () => 1);
    const b1 = b.batch(15, 60, () => 1);
    const b2 = b.batch(15, 60, () => 1);
    const b3 = b.batch(15, 60, () => 1);
    pes.ingestUplink(uplink([a.frame(a0), b.frame(b0)]));
    pes.ingestUplink(uplink([b.frame(b1)]));
    const ic1 = a.ic++;
    pes.ingestUplink(uplink([a.frame(a2), b.frame(b2)]));
    pes.ingestUplink(uplink([b.frame(b3)])); // closes window 2
    let l = latest(await bodies(f, pes));
    const at = (i: number) => l.get(`neighbourhood|nb0|${T0 + i * 900}`) as NeighbourhoodAggregate;
    expect(at(1).energyWh).toBe(15); // b only
    expect(at(2).energyWh).toBe(15 + 15 * 11 + 15 * 13); // the gap's energy moved here
    expect(pes.counters.gapsOpened).toBe(1);
    pes.ingestUplink(uplink([a.frame(a1, ic1)]));
    expect(pes.counters.gapsFilled).toBe(1);
    l = latest(await bodies(f, pes));
    expect([at(0).energyWh, at(1).energyWh, at(2).energyWh]).toEqual([15 * 7 + 15, 15 * 11 + 15, 15 * 13 + 15]);
    expect([at(1).revision, at(2).revision]).toEqual([1, 1]);
    pes.flush();
    l = latest(await bodies(f, pes));
    const bill = l.get(`billing|hh0|${T0}`) as BillingAggregate;
    expect(bill.bands).toEqual({ flat: a.register - a.registers[0]! });
    await pes.close();
  });
});

describe('energy is conserved end to end', () => {
  it('for any arrival order and loss, released totals (latest revisions) == last register - earliest baseline, in both window kinds', async () => {
    const f = await makeFleet({ n: 1, start: T0 });
    let serial = 100;
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.integer({ min: 1, max: 20 }), { minLength: 2, maxLength: 12 }).chain((sizes) =>
          fc.tuple(fc.constant(sizes), fc.shuffledSubarray([...sizes.keys()], { minLength: 1 }), fc.integer({ min: 0, max: 1000 })),
        ),
        async ([sizes, order, seed]) => {
          const m = new SimMeter(serial++, T0 + 7 * 60, 10_000_000_000);
          const batches = sizes.map((n) => m.batch(n, 60, (i) => (seed * 31 + i * 17) % 997));
          const frames = batches.map((b) => m.frame(b));
          const keys = { ...f.keys, meters: new Map([[m.id, { key: m.key, household: 'hh0', neighbourhood: 'nb0' }]]) };
          const pes = createPes({ keys, intervalS: 900, latenessS: 0, k: 1, logger: log });
          for (const i of order) pes.ingestUplink(uplink([frames[i]!]));
          pes.flush();
          const l = [...latest(await bodies(f, pes)).values()];
          // The baseline is the earliest batch that arrived (one arriving before the current baseline moves it back).
          const base = batches[Math.min(...order)]!;
          const lastBatch = batches[Math.max(...order)]!;
          const expected = lastBatch.readings[lastBatch.readings.length - 1]!.importWh - base.prevWh;
          const nbTotal = sum(l.filter((b): b is NeighbourhoodAggregate => b.kind === 'neighbourhood').map((b) => b.energyWh));
          const billTotal = sum(l.filter((b): b is BillingAggregate => b.kind === 'billing').map((b) => b.bands.flat!));
          expect([nbTotal, billTotal]).toEqual([expected, expected]);
          expect(pes.counters.negativeTotal).toBe(0);
          await pes.close();
        },
      ),
      { numRuns: 25 },
    );
  });
});

describe('replay protection', () => {
  it('a replayed frame is rejected and counted; an unseen older counter (selective-ack retransmission) is accepted', async () => {
    const f = await makeFleet({ n: 1, start: T0 });
    const m = f.meters[0]!;
    const pes = open(f, { k: 1 });
    const f1 = m.frame(m.batch(5));
    const f2 = m.frame(m.batch(5));
    const f3 = m.frame(m.batch(5));
    pes.ingestUplink(uplink([f1, f3]));
    pes.ingestUplink(uplink([f2])); // ic 2 < highest 3, never seen: accepted
    expect(pes.counters.framesOk).toBe(3);
    pes.ingestUplink(uplink([f2, f1, f3]));
    // The same frames again, byte for byte: exact duplicates, refused but not replays.
    expect(pes.counters.duplicateFrame).toBe(3);
    expect(pes.counters.replay).toBe(0);
    expect(pes.counters.framesOk).toBe(3);
    expect(pes.counters.readings).toBe(15);
    pes.flush();
    const bill = latest(await bodies(f, pes)).get(`billing|hh0|${T0}`) as BillingAggregate;
    expect(bill.bands.flat).toBe(15 * 100);
    await pes.close();
  });

  it('a gateway re-publishing the same frames many times raises no replay alarm; the same counter with another frame still does', async () => {
    const f = await makeFleet({ n: 1, start: T0 });
    const m = f.meters[0]!;
    const pes = open(f, { k: 1 });
    const sent = Array.from({ length: 12 }, () => m.frame(m.batch(2)));
    pes.ingestUplink(uplink(sent));
    for (let i = 0; i < 3; i++) pes.ingestUplink(uplink(sent)); // 36 exact duplicates, far beyond the alarm's 8
    expect(pes.counters).toMatchObject({ framesOk: 12, duplicateFrame: 36, replay: 0, replayAlarm: 0 });
    m.ic = 1; // a wiped store: counters 1.. again under the same key, other readings
    for (let i = 0; i < 8; i++) pes.ingestUplink(uplink([m.frame(m.batch(3))]));
    expect(pes.counters).toMatchObject({ framesOk: 12, replay: 8, replayAlarm: 1 });
    await pes.close();
  });

  it('counters reused after a wiped meter store are rejected and raise one alarm', async () => {
    const f = await makeFleet({ n: 1, start: T0 });
    const m = f.meters[0]!;
    const warnings: unknown[] = [];
    const logger = pino({ level: 'warn' }, { write: (s: string) => void warnings.push(JSON.parse(s)) });
    const pes = open(f, { k: 1, logger });
    for (let i = 0; i < 20; i++) pes.ingestUplink(uplink([m.frame(m.batch(2))]));
    m.ic = 1; // firmware restarted with a wiped counter store: same key, counters from 1 again
    for (let i = 0; i < 12; i++) pes.ingestUplink(uplink([m.frame(m.batch(2))]));
    expect(pes.counters.replay).toBe(12);
    expect(pes.counters.replayAlarm).toBe(1);
    expect(pes.counters.framesOk).toBe(20);
    expect(warnings.some((w) => (w as { meter?: string }).meter === m.id && /replayed/.test((w as { msg: string }).msg))).toBe(true);
    // A counter that fell out of the 1024-counter window is a replay too.
    m.ic = 5000;
    pes.ingestUplink(uplink([m.frame(m.batch(1))]));
    m.ic = 5000 - 1024;
    pes.ingestUplink(uplink([m.frame(m.batch(1))]));
    expect(pes.counters.replay).toBe(13);
    await pes.close();
  });
});

describe('bad frames', () => {
  it('tampered, unknown-meter, re-labelled and malformed frames are rejected and counted; the rest of the uplink still counts', async () => {
    const f = await makeFleet({ n: 2, start: T0 });
    const [a, b] = f.meters as [SimMeter, SimMeter];
    const pes = open(f, { k: 1 });
    const tampered = Buffer.from(a.frame(a.batch(3)));
    tampered[tampered.length - 5]! ^= 0x01;
    const stranger = new SimMeter(999, T0, 5);
    const fromA = decodeFrame(a.frame(a.batch(3)));
    const relabelled = encodeFrame({ ...fromA, systemTitle: b.st, ic: 77 }); // A's frame claiming to be B
    const good = b.frame(b.batch(3));
    pes.ingestUplink(uplink([tampered, stranger.frame(stranger.batch(3)), relabelled, Buffer.from([0x82, 0x01]), good]));
    expect(pes.counters).toMatchObject({ badTag: 2, unknownMeter: 1, malformedFrame: 1, framesOk: 1, readings: 3 });
    pes.ingestUplink(Buffer.from('not cbor'));
    pes.ingestUplink(uplink([good], 'gw-other'), 'gw-nb0');
    expect(pes.counters.malformedUplink).toBe(2);
    await pes.close();
  });

  it('a batch whose register decreases or whose time goes backwards is rejected and counted', async () => {
    const f = await makeFleet({ n: 1, start: T0 });
    const m = f.meters[0]!;
    const pes = open(f, { k: 1 });
    const first = m.batch(3);
    pes.ingestUplink(uplink([m.frame(first)]));
    // Register below the last one, without the reset flag, at the next period.
    const down = { prevWh: m.register - 50, readings: [{ time: m.time, period: 60, importWh: m.register - 40, powerW: 0, status: 0 }] };
    const raw = (batch: typeof down, ic: number) => encodeFrame(sealFrame(m.key, { systemTitle: m.st, sc: SC_AES256GCM, ic }, encodeReadingBatch(batch)));
    pes.ingestUplink(uplink([raw(down, m.ic++)]));
    expect(pes.counters.registerDecrease).toBe(1);
    // Same times again (already processed, no gap there).
    pes.ingestUplink(uplink([raw(first, m.ic++)]));
    expect(pes.counters.timeBackwards).toBe(1);
    // Inside one batch (encoded by hand: the encoder refuses these): register down, time backwards.
    const { cborEncode } = await import('../../protocol/cbor.js');
    const rawBatch = (readings: number[][], ic: number) =>
      encodeFrame(sealFrame(m.key, { systemTitle: m.st, sc: SC_AES256GCM, ic }, cborEncode([m.register, readings])));
    const t = m.time + 600;
    pes.ingestUplink(uplink([rawBatch([[t, 60, m.register + 5, 0, 0], [t + 60, 60, m.register + 2, 0, 0]], m.ic++)]));
    pes.ingestUplink(uplink([rawBatch([[t, 60, m.register + 5, 0, 0], [t - 60, 60, m.register + 6, 0, 0]], m.ic++)]));
    pes.ingestUplink(uplink([rawBatch([[t, 0, m.register + 5, 0, 0]], m.ic++)]));
    expect(pes.counters).toMatchObject({ registerDecrease: 2, timeBackwards: 2, malformedFrame: 1, framesOk: 1 });
    // With the reset flag a lower register is fine (after the gap left by the rejected batches).
    pes.ingestUplink(uplink([rawBatch([[t + 1200, 60, m.register + 5, 0, 0], [t + 1260, 60, 3, 0, 4]], m.ic++)]));
    expect(pes.counters.framesOk).toBe(2);
    await pes.close();
  });

  it('readings absurdly far from the watermark, or older than the retention horizon, are rejected and counted', async () => {
    const f = await makeFleet({ n: 2, start: T0 });
    const [a, b] = f.meters as [SimMeter, SimMeter];
    const pes = open(f, { k: 1, maxSkewS: 86400, retentionS: 7200 });
    pes.ingestUplink(uplink([a.frame(a.batch(60))]));
    // Four 15-minute windows and one billing day; the three closed ones live in the state only.
    expect(pes.windowCount).toBe(1 + 1);
    b.time = T0 + 5 * 86400; // clock far ahead
    pes.ingestUplink(uplink([b.frame(b.batch(1))]));
    expect(pes.counters.absurdTime).toBe(1);
    a.time += 4 * 3600; // a gap of 4 hours: the watermark moves past the first window's end + 2h
    pes.ingestUplink(uplink([a.frame(a.batch(1))]));
    expect(pes.windowCount).toBe(1 + 1); // the first hour's windows were dropped; the new one and the day remain
    b.time = T0; // b's first readings, now older than the retention horizon
    pes.ingestUplink(uplink([b.frame(b.batch(1))]));
    expect(pes.counters.tooOld).toBe(1);
    await pes.close();
  });
});

describe('k-anonymity threshold', () => {
  it('a neighbourhood with fewer than k meters produces no aggregate; one with k meters does', async () => {
    const f = await makeFleet({ n: 5, nbs: 2, start: T0 }); // nb0: meters 0, 2, 4; nb1: meters 1, 3
    const pes = open(f, { k: 3 });
    for (let i = 0; i < 3; i++) pes.ingestUplink(uplink(f.meters.map((m) => m.frame(m.batch(15)))));
    pes.flush();
    const out = nbs(await bodies(f, pes));
    expect(out.filter((x) => x.key === 'nb1')).toEqual([]);
    expect(out.filter((x) => x.key === 'nb0').map((x) => [x.start, x.meters])).toEqual([0, 1, 2].map((i) => [T0 + i * 900, 3]));
    expect(pes.counters.suppressed).toBe(3);
    expect(pes.sent.filter((m) => m.topic === topics.neighbourhood('nb1'))).toEqual([]);
    // Billing totals are per household and always released.
    expect(pes.sent.filter((m) => m.topic === topics.billing('hh1'))).toHaveLength(1);
    await pes.close();
  });

  it('a late reading to a suppressed window re-evaluates k', async () => {
    const f = await makeFleet({ n: 3, start: T0 });
    const [a, b, c] = f.meters as [SimMeter, SimMeter, SimMeter];
    const pes = open(f, { k: 3 });
    const lateC = c.batch(15);
    pes.ingestUplink(uplink([a.frame(a.batch(15)), b.frame(b.batch(15))]));
    pes.ingestUplink(uplink([a.frame(a.batch(15)), b.frame(b.batch(15))]));
    expect(pes.counters.suppressed).toBe(1);
    expect(nbs(await bodies(f, pes))).toEqual([]);
    pes.ingestUplink(uplink([c.frame(lateC)]));
    expect(nbs(await bodies(f, pes)).map((x) => [x.start, x.revision, x.meters])).toEqual([[T0, 0, 3]]);
    await pes.close();
  });
});

describe('household streams', () => {
  it('each accepted batch goes to its household, sealed to that household only; keys can be replaced at runtime', async () => {
    const f = await makeFleet({ n: 2, start: T0, withHouseholdKeys: 1 });
    const [a, b] = f.meters as [SimMeter, SimMeter];
    const pes = open(f, { k: 1 });
    const ba = a.batch(3);
    pes.ingestUplink(uplink([a.frame(ba), b.frame(b.batch(3))]));
    await pes.idle();
    const streams = pes.sent.filter((m) => m.kind === 'household');
    expect(streams.map((m) => m.topic)).toEqual([topics.household('hh0')]);
    expect(pes.counters.noHouseholdKey).toBe(1);
    const body = openStream(f.households.get('hh0')!, f.pesVerify, streams[0]!.topic, streams[0]!.payload) as { meter: string; prevWh: number; readings: number[][] };
    expect(body).toEqual({ meter: a.id, prevWh: ba.prevWh, readings: ba.readings.map((r) => [r.time, r.period, r.importWh, r.powerW, r.status]) });
    // The same epoch reuses one wrapped content key (no RSA operation per reading).
    pes.ingestUplink(uplink([a.frame(a.batch(3))]));
    await pes.idle();
    const s2 = pes.sent.filter((m) => m.kind === 'household');
    const { parseStream } = await import('../../protocol/envelope.js');
    expect(Buffer.from(parseStream(s2[1]!.payload).wrapped)).toEqual(Buffer.from(parseStream(s2[0]!.payload).wrapped));

    // hh1 publishes its key at runtime; bad key messages are rejected and counted.
    const { generateKeyPairSync } = await import('node:crypto');
    const { cborEncode } = await import('../../protocol/cbor.js');
    const hh1 = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const spki = hh1.publicKey.export({ type: 'spki', format: 'der' });
    expect(pes.householdKey(topics.householdKey('hh1'), cborEncode([1, 'hh0', spki]))).toBe(false);
    expect(pes.householdKey(topics.householdKey('nobody'), cborEncode([1, 'nobody', spki]))).toBe(false);
    expect(pes.householdKey(topics.householdKey('hh1'), cborEncode([1, 'hh1', Buffer.from('junk')]))).toBe(false);
    const small = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ type: 'spki', format: 'der' });
    expect(pes.householdKey(topics.householdKey('hh1'), cborEncode([1, 'hh1', small]))).toBe(false);
    expect(pes.counters.badHouseholdKey).toBe(4);
    expect(pes.householdKey(topics.householdKey('hh1'), activationMessage('hh1', f.bindingKeys.get('hh1')!, hh1.privateKey))).toBe(true);
    const bb = b.batch(2);
    pes.ingestUplink(uplink([b.frame(bb)]));
    await pes.idle();
    const last = pes.sent[pes.sent.length - 1]!;
    expect(last.topic).toBe(topics.household('hh1'));
    expect((openStream(hh1.privateKey, f.pesVerify, last.topic, last.payload) as { readings: unknown[] }).readings).toHaveLength(2);
    expect(() => openStream(f.households.get('hh0')!, f.pesVerify, last.topic, last.payload)).toThrow();
    await pes.close();
  });
});
