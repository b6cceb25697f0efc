/**
 * Cryptographic misuse, end to end through the real system (test/security/rig.ts: provisioned keys, the
 * broker with its ACL, gateways on serial lines, the PES, the MDMS): every attack below is rejected and
 * counted, and none of them changes what the utility bills.
 *
 * Attackers: someone on a meter's serial line (no keys: raw link frames), someone holding a component's
 * broker credentials (the gateway's, the PES's), a compromised broker (publishes anything server-side), and
 * a meter whose counter store was wiped (firmware restarted from scratch with its key).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import mqtt from 'mqtt';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { billedEnergy } from '../../cli/system.js';
import { MockBinding } from '../../firmware/hal/crossed-mock.js';
import { MemoryNvStore } from '../../firmware/hal/nv.js';
import type { Meter } from '../../firmware/meter.js';
import { cborEncode } from '../../protocol/cbor.js';
import { decodeFrame, encodeFrame, meterId, SC_AES256GCM, sealFrame, type CipheredFrame } from '../../protocol/frame.js';
import { encodeLinkFrame } from '../../protocol/link.js';
import { encodeReadingBatch, type ReadingBatch } from '../../protocol/reading.js';
import { parseStream } from '../../protocol/envelope.js';
import { keyId, openStream, SignatureError } from '../../protocol/seal.js';
import { topics } from '../../protocol/topics.js';
import { decodeUplink } from '../../protocol/uplink.js';
import { loadCredentials, loadHouseholdKey, loadMeterKey, loadPesVerifyKey, type Fleet } from '../../lib/keyset.js';
import { DAY0, provisionFleet, startRig, until, type Rig } from './rig.js';

const dir = mkdtempSync(join(tmpdir(), 'sm-misuse-'));
let rig: Rig;
let fleet: Fleet;
let keysDir: string;
const warnings: { msg: string; meter?: string }[] = [];
/** Everything the broker routed, observed server-side. */
const frames: { topic: string; payload: Buffer }[] = [];
const aggregates: { topic: string; payload: Buffer }[] = [];
const streams: { topic: string; payload: Buffer }[] = [];
/** Register of each meter at the end of its genuine run (every meter starts at 0). */
const registers = new Map<string, number>();
const id = (label: string) => fleet.meters.find((m) => m.label === label)!.meter;

async function connectAs(user: string) {
  const { password } = loadCredentials(keysDir, user);
  return mqtt.connectAsync(rig.broker.url, { username: user, password, clientId: `${user}-attacker-${Math.random().toString(36).slice(2)}`, reconnectPeriod: 0 });
}

/** A frame of `meter` as an attacker with `key` would make it (a 1-reading batch continuing the register). */
function forge(key: Uint8Array, st: Uint8Array, ic: number, batch?: ReadingBatch): CipheredFrame {
  const b = batch ?? { prevWh: 10, readings: [{ time: DAY0 + 86400, period: 60, importWh: 11, powerW: 60, status: 0 }] };
  return sealFrame(key, { systemTitle: st, sc: SC_AES256GCM, ic }, encodeReadingBatch(b));
}

/** Writes raw link frames on a meter's line, as someone with a wire on it would. */
function inject(meter: string, ...messages: Uint8Array[]): void {
  const [meterEnd] = rig.pairs.get(meter)!;
  for (const m of messages) meterEnd.write(encodeLinkFrame(m));
}

const pesCounters = () => ({ ...rig.pes.pes.counters });

beforeAll(async () => {
  ({ keysDir, fleet } = await provisionFleet(dir, [
    ['m1', 'hh1', 'nb1', 'synthetic:1'],
    ['m2', 'hh2', 'nb1', 'synthetic:2'],
    ['m3', 'hh3', 'nb2', 'synthetic:3'],
  ]));
  const sink = new Writable({
    write(chunk, _e, cb) {
      for (const line of String(chunk).split('\n').filter(Boolean)) warnings.push(JSON.parse(line) as { msg: string });
      cb();
    },
  });
  rig = await startRig({ dir, keysDir, fleet, log: pino({ level: 'warn' }, sink) });
  const tap = (filter: string, into: { topic: string; payload: Buffer }[]) =>
    new Promise<void>((resolve) =>
      rig.broker.aedes.subscribe(
        filter,
        (packet, cb) => {
          into.push({ topic: packet.topic, payload: Buffer.from(packet.payload as Buffer) });
          cb();
        },
        resolve,
      ),
    );
  await tap('sm/v1/frames/+', frames);
  await tap('sm/v1/agg/#', aggregates);
  await tap('sm/v1/household/+/readings', streams);
  // One genuine day of every meter: 96 frames each.
  const meters: Meter[] = [];
  for (const [i, m] of fleet.meters.entries()) meters.push(await rig.startMeter(m.meter, { seed: i + 1, days: 1 }));
  await Promise.all(meters.map((m) => m.done(60_000)));
  for (const m of meters) {
    registers.set(m.id, m.registerWh);
    await m.stop();
  }
  await until(() => rig.pes.pes.counters.framesOk === 3 * 96, () => `the PES to fold 288 frames (has ${rig.pes.pes.counters.framesOk})`);
}, 120_000);

afterAll(async () => {
  await rig?.close();
  MockBinding.reset();
  rmSync(dir, { recursive: true, force: true });
});

describe('the genuine run', () => {
  it('was folded without a single rejection', () => {
    const c = pesCounters();
    expect(c.framesOk).toBe(288);
    expect(c.readings).toBe(3 * 1440);
    for (const k of ['badTag', 'replay', 'replayAlarm', 'malformedFrame', 'malformedUplink', 'unknownMeter', 'timeBackwards', 'registerDecrease'] as const) expect(c[k], k).toBe(0);
  });
});

describe('replays', () => {
  it('a meter restarted with a wiped store (same key and system title, counters from 0 again) has every repeated counter refused, and one alarm is raised', async () => {
    const m1 = id('m1');
    const before = pesCounters();
    // Different readings under counters 0..23 already used: GCM nonce reuse, the case the alarm is for.
    const restarted = await rig.startMeter(m1, { seed: 99, days: 1, samples: 24 * 60, batch: 60, nv: new MemoryNvStore() });
    await restarted.done(30_000); // the gateway acknowledges them: it cannot know
    await restarted.stop();
    await until(() => rig.pes.pes.counters.replay === before.replay + 24, () => `24 refused counters (have ${rig.pes.pes.counters.replay - before.replay})`);
    const after = pesCounters();
    expect(after.framesOk).toBe(before.framesOk);
    expect(after.readings).toBe(before.readings);
    expect(after.badTag).toBe(before.badTag);
    expect(after.replayAlarm).toBe(before.replayAlarm + 1);
    expect(warnings.some((w) => w.meter === m1 && /replayed invocation counters/.test(w.msg))).toBe(true);
    // It really was nonce reuse: counter 0 of m1 went out twice, with different ciphertexts.
    const ic0 = frames
      .flatMap((f) => decodeUplink(f.payload).frames.map(decodeFrame))
      .filter((f) => meterId(f.systemTitle) === m1 && f.ic === 0)
      .map((f) => Buffer.from(f.ciphertext).toString('hex'));
    expect(new Set(ic0).size).toBe(2);
  });

  it('uplinks published again byte for byte (with the gateway credentials) are refused frame by frame as exact duplicates, raising no replay alarm', async () => {
    // The most recent uplinks of gw-nb2, at least 8 frames in all: the PES remembers the digests of a meter's
    // 64 most recent counters, so older frames sent again would be replays, not duplicates. (Which uplinks carry
    // how many frames depends on the machine's load: the gateway batches what queued while it waited.)
    const candidates = frames.filter((f) => f.topic === topics.frames('gw-nb2'));
    const uplinks: typeof candidates = [];
    let n = 0;
    for (let i = candidates.length - 1; i >= 0 && n < 8; i--) {
      uplinks.push(candidates[i]!);
      n += decodeUplink(candidates[i]!.payload).frames.length;
    }
    const before = pesCounters();
    const gw = await connectAs('gateway-gw-nb2');
    for (const uplink of uplinks.reverse()) await gw.publishAsync(uplink.topic, uplink.payload, { qos: 1 });
    await gw.endAsync();
    await until(() => rig.pes.pes.counters.duplicateFrame === before.duplicateFrame + n, () => `${n} duplicates (have ${rig.pes.pes.counters.duplicateFrame - before.duplicateFrame})`);
    const after = pesCounters();
    expect(after.framesOk).toBe(before.framesOk);
    expect(after.readings).toBe(before.readings);
    expect(after.badTag).toBe(before.badTag);
    // Exact duplicates are not replays: however many (m3 is alone on gw-nb2), no alarm (issue 15 item 3).
    expect(n).toBeGreaterThanOrEqual(8);
    expect(after.replay).toBe(before.replay);
    expect(after.replayAlarm).toBe(before.replayAlarm);
  });
});

describe('frames that do not authenticate (written on the serial line by someone without the key)', () => {
  it('frames re-sealed under another meter\'s key with m1\'s system title are counted as badTag, with fresh and with already used counters, and raise no replay alarm', async () => {
    const m1 = id('m1');
    const otherKey = loadMeterKey(keysDir, id('m2'));
    const st = Buffer.from(m1, 'hex');
    const before = pesCounters();
    const forwarded = rig.gateways.get('gw-nb1')!.counters.forwarded;
    const fresh = [5000, 5001, 5002].map((ic) => encodeFrame(forge(otherKey, st, ic)));
    const used = Array.from({ length: 10 }, (_, i) => encodeFrame(forge(otherKey, st, 30 + i))); // counters m1 already used
    inject(m1, ...fresh, ...used);
    await until(() => rig.gateways.get('gw-nb1')!.counters.forwarded === forwarded + 13, () => 'the gateway to forward 13 frames (it cannot tell them apart)');
    await until(() => rig.pes.pes.counters.badTag === before.badTag + 13, () => `13 badTag (have ${rig.pes.pes.counters.badTag - before.badTag}, replay +${rig.pes.pes.counters.replay - before.replay})`);
    const after = pesCounters();
    expect(after.replay).toBe(before.replay);
    expect(after.replayAlarm).toBe(before.replayAlarm); // nobody without the key can raise the alarm
    expect(after.framesOk).toBe(before.framesOk);
  });

  it('a forged frame with the highest counter does not move the replay window: a genuine frame with a lower unused counter is still accepted', async () => {
    const m1 = id('m1');
    const st = Buffer.from(m1, 'hex');
    const before = pesCounters();
    inject(m1, encodeFrame(forge(Buffer.alloc(32, 9), st, 0xfffffffe)));
    await until(() => rig.pes.pes.counters.badTag === before.badTag + 1, () => 'the forged frame to be refused');
    // Counter 100 was never used by m1 (it used 0..95); a zero-energy reading right after its last one.
    const reg = registers.get(m1)!;
    const zero = { prevWh: reg, readings: [{ time: DAY0 + 86400, period: 60, importWh: reg, powerW: 0, status: 0 }] };
    inject(m1, encodeFrame(forge(loadMeterKey(keysDir, m1), st, 100, zero)));
    await until(() => rig.pes.pes.counters.framesOk === before.framesOk + 1, () => `the genuine frame to be accepted (replay +${rig.pes.pes.counters.replay - before.replay})`);
    expect(rig.pes.pes.counters.replay).toBe(before.replay);
  });

  it('swapped system titles (two genuine frames exchanging them) are counted as badTag', async () => {
    const [a, b] = [id('m1'), id('m2')];
    const fa = forge(loadMeterKey(keysDir, a), Buffer.from(a, 'hex'), 6000);
    const fb = forge(loadMeterKey(keysDir, b), Buffer.from(b, 'hex'), 6000);
    const before = pesCounters();
    inject(a, encodeFrame({ ...fa, systemTitle: fb.systemTitle }));
    inject(b, encodeFrame({ ...fb, systemTitle: fa.systemTitle }));
    // And genuine frames the PES already folded, relabelled: refused as forgeries, not as replays.
    const old = frames.flatMap((f) => decodeUplink(f.payload).frames.map(decodeFrame)).filter((f) => meterId(f.systemTitle) === b && f.ic < 4);
    inject(a, ...old.map((f) => encodeFrame({ ...f, systemTitle: fa.systemTitle })));
    await until(() => rig.pes.pes.counters.badTag === before.badTag + 2 + old.length, () => `${2 + old.length} badTag (have ${rig.pes.pes.counters.badTag - before.badTag})`);
    expect(pesCounters().framesOk).toBe(before.framesOk);
    expect(pesCounters().replay).toBe(before.replay);
  });

  it('truncated tags are counted: badTag at the PES, or notAFrame at the gateway when shorter than a tag', async () => {
    const m2 = id('m2');
    const f = forge(loadMeterKey(keysDir, m2), Buffer.from(m2, 'hex'), 7000);
    const gw = rig.gateways.get('gw-nb1')!;
    const before = pesCounters();
    const notAFrame = gw.counters.notAFrame;
    const ct = f.ciphertext;
    inject(m2, ...[1, 4, ct.length - 12].map((cut) => encodeFrame({ ...f, ciphertext: ct.subarray(0, ct.length - cut) })));
    // 11 bytes: not even a tag; encodeFrame refuses to make it, an attacker does not.
    inject(m2, cborEncode([1, 1, f.systemTitle, SC_AES256GCM, 7000, ct.subarray(0, 11)]));
    await until(() => rig.pes.pes.counters.badTag === before.badTag + 3, () => `3 badTag (have ${rig.pes.pes.counters.badTag - before.badTag})`);
    await until(() => gw.counters.notAFrame === notAFrame + 1, () => 'the gateway to refuse the 11-byte ciphertext');
    expect(pesCounters().framesOk).toBe(before.framesOk);
  });
});

describe('sealed messages moved to another topic (the PES signature and the AAD bind the topic)', () => {
  it('an aggregate re-published on another topic by a holder of the PES broker credentials is dropped and counted by the MDMS; on its own topic it is a duplicate', async () => {
    await until(() => aggregates.some((a) => a.topic === topics.neighbourhood('nb1')), () => 'a neighbourhood aggregate');
    const settled = (c: typeof rig.mdms.counters) => c.stored + c.duplicates + c.malformed + c.badSignature + c.rejectedPrivacy;
    await until(() => settled(rig.mdms.counters) >= rig.pes.pes.counters.released, () => 'the MDMS to take every released aggregate');
    const agg = aggregates.find((a) => a.topic === topics.neighbourhood('nb1'))!;
    const nb2Before = await rig.store.latestNeighbourhood({ neighbourhood: 'nb2' });
    const c0 = { ...rig.mdms.counters };
    const pes = await connectAs('pes');
    await pes.publishAsync(topics.neighbourhood('nb2'), agg.payload, { qos: 1 });
    await pes.publishAsync(topics.billing('hh1'), agg.payload, { qos: 1 });
    await pes.publishAsync(agg.topic, agg.payload, { qos: 1 });
    await pes.endAsync();
    await rig.mdms.waitFor((c) => c.received >= c0.received + 3);
    // The PES signed it for its own topic: elsewhere the signature does not verify (the AAD would not either).
    expect(rig.mdms.counters.badSignature).toBe(c0.badSignature + 2);
    expect(rig.mdms.counters.malformed).toBe(c0.malformed);
    expect(rig.mdms.counters.duplicates).toBe(c0.duplicates + 1);
    expect(rig.mdms.counters.stored).toBe(c0.stored);
    expect(await rig.store.latestNeighbourhood({ neighbourhood: 'nb2' })).toEqual(nb2Before);
  });

  it("a household stream message moved to another household's topic cannot be opened there, neither by that household nor with the right key", async () => {
    await until(() => streams.some((s) => s.topic === topics.household('hh1')), () => 'a stream message of hh1');
    const msg = streams.find((s) => s.topic === topics.household('hh1'))!;
    const hh1 = loadHouseholdKey(keysDir, 'hh1');
    const hh2 = loadHouseholdKey(keysDir, 'hh2');
    const pesVerify = loadPesVerifyKey(keysDir);
    expect(openStream(hh1, pesVerify, msg.topic, msg.payload)).toMatchObject({ meter: id('m1') });
    // hh2 subscribes with its own credentials; a compromised broker delivers hh1's message on hh2's topic.
    const sub = await connectAs('household-hh2');
    const got = new Promise<{ topic: string; payload: Buffer }>((resolve) => sub.once('message', (topic, payload) => resolve({ topic, payload })));
    await sub.subscribeAsync(topics.householdAll('hh2'), { qos: 1 });
    await new Promise<void>((resolve, reject) => rig.broker.aedes.publish({ cmd: 'publish', topic: topics.household('hh2'), payload: msg.payload, qos: 1, dup: false, retain: false } as never, (e) => (e ? reject(e) : resolve())));
    const moved = await got;
    await sub.endAsync();
    expect(moved.topic).toBe(topics.household('hh2'));
    // The PES signed the epoch for hh1's topic: on hh2's, nobody gets as far as the key id or the AAD.
    expect(() => openStream(hh2, pesVerify, moved.topic, moved.payload)).toThrow(SignatureError);
    expect(() => openStream(hh1, pesVerify, moved.topic, moved.payload)).toThrow(SignatureError);
    expect(Buffer.from(parseStream(moved.payload).kid)).toEqual(keyId(hh1)); // still sealed for hh1, not hh2
  });
});

describe('after all of it', () => {
  it('the utility bills exactly the genuine energy of every household', async () => {
    rig.pes.pes.flush();
    await rig.pes.pes.idle();
    const released = rig.pes.pes.counters.released;
    await rig.mdms.waitFor((c) => c.stored + c.duplicates + c.malformed + c.badSignature >= released + 3, 30_000);
    const billed = await billedEnergy(rig.store);
    expect(Object.fromEntries(billed)).toEqual(Object.fromEntries(fleet.meters.map((m) => [m.household, registers.get(m.meter)])));
    const c = pesCounters();
    expect(c.negativeTotal).toBe(0);
    expect(c.framesOk).toBe(288 + 1); // the genuine run and the zero-energy frame of the window test
  });
});
