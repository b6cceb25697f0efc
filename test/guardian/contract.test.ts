// The end-to-end mode's contract with the real key folders of `provision --e2e` (issue 12):
// - the same readings, fed as classic frames to the classic PES and as e2e frames (firmware/e2e.ts) to the
//   blind PES and the guardian, give exactly the same aggregates once the MDMS combines both partials;
// - the PES's folder alone and the guardian's folder alone each fail to decrypt a single uplink ciphertext;
// - together they decrypt only what the policy allows: the guardian refuses a single meter's interval, a
//   window under k, a span that is not a whole billing period, and a window still open.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { E2eEncoder } from '../../firmware/e2e.js';
import { GuardianCore } from '../../guardian/core.js';
import { parseBillingPeriod } from '../../lib/billing-period.js';
import type { BlindMeter, BlindSettings } from '../../lib/e2e-windows.js';
import { GUARDIAN_DIR, loadFleet, loadGuardianKeys, loadGuardianVerifyKey, loadMdmsKey, loadMeterKey, loadMeterPaillierKey, loadPesKeys, loadPesVerifyKey, type Fleet } from '../../lib/keyset.js';
import { parseTariff, type Tariff } from '../../lib/tariff.js';
import { Combiner } from '../../mdms/combine.js';
import { PesCore, type PesSettings } from '../../pes/core/pes.js';
import { PesE2e } from '../../pes/e2e.js';
import { parseAggregate, type Aggregate } from '../../protocol/aggregate.js';
import { decodeE2ePayload, parseGuardianPartial, parseRelease, partialBody, registerLayout, unpackRegisters } from '../../protocol/e2e.js';
import { encodeFrame, openFrame, decodeFrame, SC_AES256GCM, sealFrame } from '../../protocol/frame.js';
import { generatePaillier, type PrivateKey } from '../../protocol/paillier/engine.js';
import { combinePartials, partialDecrypt } from '../../protocol/paillier/threshold.js';
import { encodeReadingBatch, type Reading } from '../../protocol/reading.js';
import { openAggregate, sealAggregate } from '../../protocol/seal.js';
import { topics } from '../../protocol/topics.js';
import { decodeUplink, encodeUplink } from '../../protocol/uplink.js';
import { provision } from '../../provision/keys.js';

const T0 = 1_704_067_200; // 2024-01-01T00:00:00Z
const DAYS = 2;
const BATCH = 15;
const K = 3;
const TARIFF: Tariff = parseTariff({ tz: 'UTC', bands: [{ name: 'night', rules: [{ days: [1, 2, 3, 4, 5, 6, 7], from: '00:00', to: '07:00' }] }, { name: 'day', default: true }] });
// nb-a: 4 meters (>= k), hh-2 has two meters; nb-b: 2 meters (< k: never released).
const FLEET = `meter,household,neighbourhood,source
m1,hh-1,nb-a,synthetic:1
m2,hh-2,nb-a,synthetic:2
m3,hh-2,nb-a,synthetic:3
m4,hh-3,nb-a,synthetic:4
m5,hh-4,nb-b,synthetic:5
m6,hh-5,nb-b,synthetic:6
`;

let dir: string;
let keys: string;
let fleet: Fleet;
let classicKey: PrivateKey;
const log = pino({ level: 'silent' });

/** Deterministic 1-minute readings per meter: a few Wh per minute, more at 18:00-21:00. */
function readingsOf(i: number): { prevWh: number; batches: Reading[][] } {
  let reg = 1000 * (i + 1);
  const prevWh = reg;
  const all: Reading[] = [];
  let x = 12345 + i * 7919;
  for (let t = T0; t < T0 + DAYS * 86400; t += 60) {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    const hour = ((t - T0) / 3600) % 24;
    const wh = (x % 7) + (hour >= 18 && hour < 21 ? 20 : 0);
    reg += wh;
    all.push({ time: t, period: 60, importWh: reg, powerW: wh * 60, status: 0 });
  }
  const batches: Reading[][] = [];
  for (let j = 0; j < all.length; j += BATCH) batches.push(all.slice(j, j + BATCH));
  return { prevWh, batches };
}

const settings: BlindSettings = { intervalS: 3600, billing: parseBillingPeriod('1d'), tz: 'UTC', tariff: TARIFF, latenessS: 1800, k: K, revisionK: K };
const pesSettings: PesSettings = { ...settings, retentionS: 30 * 86400, maxSkewS: 30 * 86400, replayAlarmAfter: 10 };

/** Uplinks per batch index and neighbourhood, in classic and e2e form (the same readings). */
function uplinks(): { classic: Buffer[]; e2e: Buffer[]; encoders: Map<string, E2eEncoder> } {
  const pub = loadMeterPaillierKey(keys);
  const classic: Buffer[] = [];
  const e2e: Buffer[] = [];
  const per = fleet.meters.map((m, i) => ({ m, key: loadMeterKey(keys, m.meter), r: readingsOf(i), enc: new E2eEncoder(pub, { intervalS: 3600, tariff: TARIFF }), prev: 0 }));
  for (const p of per) p.prev = p.r.prevWh;
  const n = per[0]!.r.batches.length;
  let ic = 0;
  for (let b = 0; b < n; b++) {
    ic++;
    for (const gw of fleet.gateways) {
      const mine = per.filter((p) => p.m.gateway === gw);
      const c: Buffer[] = [];
      const e: Buffer[] = [];
      for (const p of mine) {
        const readings = p.r.batches[b]!;
        const batch = { prevWh: p.prev, readings };
        p.prev = readings[readings.length - 1]!.importWh;
        const h = { systemTitle: Buffer.from(p.m.meter, 'hex'), sc: SC_AES256GCM, ic };
        c.push(encodeFrame(sealFrame(p.key, h, encodeReadingBatch(batch))));
        e.push(encodeFrame(sealFrame(p.key, h, p.enc.encode(batch))));
      }
      classic.push(encodeUplink({ gateway: gw, frames: c }));
      e2e.push(encodeUplink({ gateway: gw, frames: e }));
    }
  }
  return { classic, e2e, encoders: new Map(per.map((p) => [p.m.meter, p.enc])) };
}

function blindMeters(meterKeys: Map<string, Buffer>): Map<string, BlindMeter> {
  return new Map(fleet.meters.map((m) => [m.meter, { key: meterKeys.get(m.meter)!, household: m.household, neighbourhood: m.neighbourhood }]));
}

const sortAggs = (a: Aggregate[]) => a.slice().sort((x, y) => (x.kind + x.key + String(x.start).padStart(12) + x.revision < y.kind + y.key + String(y.start).padStart(12) + y.revision ? -1 : 1));

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sm-e2e-contract-'));
  writeFileSync(join(dir, 'fleet.csv'), FLEET);
  keys = join(dir, 'keys');
  fleet = await provision({ fleetCsv: join(dir, 'fleet.csv'), out: keys, rsaBits: 2048, paillierBits: 1024, e2e: true });
  fleet = loadFleet(keys);
  classicKey = await generatePaillier(1024);
}, 120_000);

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('end-to-end mode with the real key folders', () => {
  let run: ReturnType<typeof uplinks>;
  let pes: PesE2e;
  let guardian: GuardianCore;
  beforeAll(() => {
    run = uplinks();
    const pk = loadPesKeys(keys, { e2e: true });
    const gk = loadGuardianKeys(join(keys, GUARDIAN_DIR));
    pes = new PesE2e(settings, { share: pk.paillierShare, mdmsPublic: pk.mdmsPublic, signer: pk.signer, meters: blindMeters(pk.meterKeys) });
    guardian = new GuardianCore(settings, { share: gk.paillierShare, meters: blindMeters(gk.meterKeys) }, log);
  }, 60_000);

  it('the MDMS combines exactly the aggregates the classic PES releases for the same readings', () => {
    const pk = loadPesKeys(keys, { e2e: true });
    const mdmsKey = loadMdmsKey(keys);
    const pesVerify = loadPesVerifyKey(keys);
    const guardianVerify = loadGuardianVerifyKey(keys);
    const gk = loadGuardianKeys(join(keys, GUARDIAN_DIR));

    const classic = new PesCore(pesSettings, { paillier: classicKey, mdmsPublic: pk.mdmsPublic, signer: pk.signer, householdPublic: new Map(), meters: new Map([...blindMeters(pk.meterKeys)].map(([id, m]) => [id, m])) }, log);
    for (const u of run.classic) classic.ingestUplink(u);
    classic.flush();
    classic.hydrate([]); // no state behind this core: a window it does not hold in memory is new
    const expected = classic
      .checkpoint()
      .outbox.filter((m) => m.kind !== 'household')
      .map((m) => parseAggregate(m.topic, openAggregate(mdmsKey, m.topic, m.payload, pesVerify)));

    for (const u of run.e2e) {
      pes.ingestUplink(u);
      guardian.ingestUplink(u);
    }
    pes.flush();
    guardian.flush();
    const pub = pk.paillierShare.publicKey;
    const combiner = new Combiner(pub);
    const got: Aggregate[] = [];
    for (const m of pes.takeOutbox()) {
      const a = combiner.release(parseRelease(pub, openAggregate(mdmsKey, m.topic, m.payload, pesVerify)));
      if (a) got.push(a);
    }
    for (const p of guardian.takePartials()) {
      const topic = topics.partial(p.kind, p.key);
      const sealed = sealAggregate(gk.mdmsPublic, topic, partialBody(pub, p), gk.signer);
      const a = combiner.guardian(parseGuardianPartial(pub, openAggregate(mdmsKey, topic, sealed, guardianVerify)));
      if (a) got.push(a);
    }
    expect(combiner.waiting).toBe(0);
    expect(expected.length).toBe(DAYS * 24 + DAYS * 5); // nb-a's intervals, and a bill per household and day
    expect(sortAggs(got)).toEqual(sortAggs(expected));
    expect(classic.counters.suppressed).toBe(DAYS * 24); // nb-b, every interval
    expect(pes.windows.counters.suppressed).toBe(DAYS * 24);
    // Both bands carry energy: the packing kept them apart.
    const bill = got.find((a) => a.kind === 'billing')!;
    expect(bill.kind === 'billing' && bill.bands.night! > 0 && bill.bands.day! > 0).toBe(true);
  }, 60_000);

  it("the PES's folder alone and the guardian's folder alone each fail to decrypt an uplink ciphertext; together they do", () => {
    const pk = loadPesKeys(keys, { e2e: true });
    const gk = loadGuardianKeys(join(keys, GUARDIAN_DIR));
    const pub = pk.paillierShare.publicKey;
    const layout = registerLayout(pub, TARIFF.bands.length);
    // A snapshot from an uplink frame of meter m1 (the twelfth batch ends the third hour: a boundary snapshot).
    const m1 = fleet.meters[0]!;
    const frameBytes = (() => {
      let seen = 0;
      for (const u of run.e2e) {
        for (const f of decodeUplinkFrames(u)) if (Buffer.from(decodeFrame(f).systemTitle).toString('hex') === m1.meter && ++seen === 12) return f;
      }
      throw new Error('no frame');
    })();
    const payload = decodeE2ePayload(pub, openFrame(pk.meterKeys.get(m1.meter)!, decodeFrame(frameBytes)));
    const snap = payload.snapshots.at(-1)!;
    const truth = combinePartials(pub, partialDecrypt(pk.paillierShare, snap.ciphertext), partialDecrypt(gk.paillierShare, snap.ciphertext), snap.ciphertext);
    const regs = unpackRegisters(layout, truth, 2);
    expect(regs.imports[0]! + regs.imports[1]!).toBeGreaterThan(0n); // the registers themselves
    for (const share of [pk.paillierShare, gk.paillierShare]) {
      // One share applied alone: c^(d_i) is not 1 mod n, so L() is no plaintext, and it is not the value.
      const alone = partialDecrypt(share, snap.ciphertext).value;
      expect((alone - 1n) % pub.n).not.toBe(0n);
      expect((alone - 1n) / pub.n).not.toBe(truth);
      // Nor do two partials of the same folder combine.
      expect(() => combinePartials(pub, partialDecrypt(share, snap.ciphertext), partialDecrypt(share, snap.ciphertext))).toThrow(/one of each party/);
    }
    // Neither folder holds a classic Paillier key.
    expect(() => loadPesKeys(keys)).toThrow();
  });

  it('the guardian refuses what the policy forbids, and opens only the windows it computed itself', () => {
    const pk = loadPesKeys(keys, { e2e: true });
    const pub = pk.paillierShare.publicKey;
    const g = guardian;
    const nbA = fleet.meters[0]!.neighbourhood;
    const nbB = fleet.meters[4]!.neighbourhood;
    const start = T0 + 19 * 3600;
    // A compromised PES asks for one meter's interval: the difference of two of its snapshots.
    const m1 = fleet.meters[0]!;
    const snaps: bigint[] = [];
    for (const u of run.e2e) {
      for (const f of decodeUplinkFrames(u)) {
        const fr = decodeFrame(f);
        if (Buffer.from(fr.systemTitle).toString('hex') !== m1.meter) continue;
        for (const s of decodeE2ePayload(pub, openFrame(pk.meterKeys.get(m1.meter)!, fr)).snapshots) if (s.at === start || s.at === start + 3600) snaps.push(s.ciphertext);
      }
    }
    expect(snaps).toHaveLength(2);
    const single = pub.add(snaps[1]!, pub.mulPlain(snaps[0]!, -1n));
    const before = { ...g.refusals };
    expect(g.request({ kind: 'neighbourhood', key: nbA, start, end: start + 3600, ciphertext: single })).toMatchObject({ refused: 'ciphertextMismatch' });
    // The same ciphertext named as a household's bill (hh-1 has only m1) is not the day's whole bill either.
    expect(g.request({ kind: 'billing', key: m1.household, start, end: start + 3600, ciphertext: single })).toMatchObject({ refused: 'notBillingPeriod' });
    expect(g.request({ kind: 'billing', key: m1.household, start: T0, end: T0 + 86400, ciphertext: single })).toMatchObject({ refused: 'ciphertextMismatch' });
    // A window under k (nb-b has 2 meters), whatever the ciphertext.
    expect(g.request({ kind: 'neighbourhood', key: nbB, start, end: start + 3600, ciphertext: single })).toMatchObject({ refused: 'underK' });
    // Not an interval, and a window nobody computed.
    expect(g.request({ kind: 'neighbourhood', key: nbA, start: start + 60, end: start + 3660, ciphertext: single })).toMatchObject({ refused: 'notInterval' });
    expect(g.request({ kind: 'neighbourhood', key: nbA, start: T0 + 30 * 86400, end: T0 + 30 * 86400 + 3600, ciphertext: single })).toMatchObject({ refused: 'notComputed' });
    expect(g.refusals.ciphertextMismatch - before.ciphertextMismatch).toBe(2);
    expect(g.refusals.underK - before.underK).toBe(1);
    expect(g.refusals.notBillingPeriod - before.notBillingPeriod).toBe(1);
    // The window it released itself, with the ciphertext it computed: its partial, which opens the sum.
    const mine = g.windows.releasedWindow('neighbourhood', nbA, start);
    expect(mine && 'ciphertext' in mine).toBe(true);
    if (!mine || !('ciphertext' in mine)) return;
    const answer = g.request({ kind: 'neighbourhood', key: nbA, start, end: start + 3600, ciphertext: mine.ciphertext });
    expect('partial' in answer).toBe(true);
    if (!('partial' in answer)) return;
    const m = combinePartials(pub, partialDecrypt(pk.paillierShare, mine.ciphertext), answer.partial, mine.ciphertext);
    const wh = unpackRegisters(registerLayout(pub, 2), m, 2).imports.reduce((a, b) => a + b, 0n);
    const expected = [0, 1, 2, 3].reduce((a, i) => {
      const all = readingsOf(i).batches.flat();
      return a + all.filter((r) => r.time >= start && r.time < start + 3600).reduce((s, r, j, arr) => s + r.importWh - (j === 0 ? all[all.indexOf(r) - 1]!.importWh : arr[j - 1]!.importWh), 0);
    }, 0);
    expect(wh).toBe(BigInt(expected));
  });

  it('the membership guard holds, as the classic PES does, every interval a provisioned meter is missing from', () => {
    const pk = loadPesKeys(keys, { e2e: true });
    const gk = loadGuardianKeys(join(keys, GUARDIAN_DIR));
    const m4 = fleet.meters[3]!.meter;
    const without = (list: Buffer[]) =>
      list.map((u) => {
        const up = decodeUplink(u);
        return encodeUplink({ gateway: up.gateway, frames: up.frames.filter((f) => Buffer.from(decodeFrame(f).systemTitle).toString('hex') !== m4) });
      });
    const classic = new PesCore(pesSettings, { paillier: classicKey, mdmsPublic: pk.mdmsPublic, signer: pk.signer, householdPublic: new Map(), meters: blindMeters(pk.meterKeys) }, log);
    for (const u of without(run.classic)) classic.ingestUplink(u);
    classic.flush();
    classic.hydrate([]); // no state behind this core: a window it does not hold in memory is new
    const g = new GuardianCore(settings, { share: gk.paillierShare, meters: blindMeters(gk.meterKeys) }, log);
    for (const u of without(run.e2e)) g.ingestUplink(u);
    g.flush();
    // nb-a has 3 of its 4 meters (>= k = 3) in every interval: one fewer than provisioned, so each is held.
    expect(classic.checkpoint().outbox.filter((m) => m.kind === 'neighbourhood')).toHaveLength(0);
    expect(g.takePartials().filter((p) => p.kind === 'neighbourhood')).toHaveLength(0);
    expect(g.windows.counters.membershipHeld).toBe(classic.counters.membershipHeld);
    expect(g.windows.counters.membershipHeld).toBeGreaterThanOrEqual(DAYS * 24);
    const start = T0 + 3600;
    const held = g.windows.releasedWindow('neighbourhood', fleet.meters[0]!.neighbourhood, start);
    expect(held).toMatchObject({ meters: 3, closed: true });
    expect(g.request({ kind: 'neighbourhood', key: fleet.meters[0]!.neighbourhood, start, end: start + 3600, ciphertext: pk.paillierShare.publicKey.encrypt(0n) })).toMatchObject({ refused: 'notReleased' });
  });

  it('a still-open billing period is refused until it closes', () => {
    const pk = loadPesKeys(keys, { e2e: true });
    const gk = loadGuardianKeys(join(keys, GUARDIAN_DIR));
    const g = new GuardianCore(settings, { share: gk.paillierShare, meters: blindMeters(gk.meterKeys) }, log);
    for (const u of run.e2e.slice(0, 20)) g.ingestUplink(u); // the first 2.5 hours of day 1
    const hh = fleet.meters[0]!.household;
    const c = pk.paillierShare.publicKey.encrypt(0n);
    expect(g.request({ kind: 'billing', key: hh, start: T0, end: T0 + 86400, ciphertext: c })).toMatchObject({ refused: 'notReleased' });
    expect(g.takePartials().every((p) => p.kind === 'neighbourhood')).toBe(true);
  });
});

function decodeUplinkFrames(u: Uint8Array): Uint8Array[] {
  return decodeUplink(u).frames;
}
