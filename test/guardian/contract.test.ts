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
import { decodeE2ePayload, parseGuardianPartial, parseRelease, parseRequest, partialBody, registerLayout, requestBody, unpackRegisters, type E2eRequest } from '../../protocol/e2e.js';
import { cborEncode } from '../../protocol/cbor.js';
import { encodeFrame, openFrame, decodeFrame, SC_AES256GCM, sealFrame } from '../../protocol/frame.js';
import { generatePaillier, type PrivateKey } from '../../protocol/paillier/engine.js';
import { combinePartials, partialDecrypt } from '../../protocol/paillier/threshold.js';
import { encodeReadingBatch, type Reading } from '../../protocol/reading.js';
import { openAggregate, sealAggregate } from '../../protocol/seal.js';
import { parseTopic, REQUEST_PREFIX, topics } from '../../protocol/topics.js';
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
let runE2e: Buffer[] = [];
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
    runE2e = run.e2e;
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
    let requests = 0;
    for (const m of pes.takeOutbox()) {
      if (m.topic.startsWith(REQUEST_PREFIX)) {
        requests++;
        expect(guardian.ingestRequest(m.payload, parseTopic.request(m.topic))).toEqual({ answered: true });
        continue;
      }
      const a = combiner.release(parseRelease(pub, openAggregate(mdmsKey, m.topic, m.payload, pesVerify)));
      if (a) got.push(a);
    }
    expect(requests).toBe(expected.length); // one request per release
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

  it('the guardian answers only what its own snapshots and the rules confirm: a request for anything else is refused', () => {
    const { pk, gk, pub, g } = fedGuardian();
    const nbA = fleet.meters[0]!.neighbourhood;
    const nbB = fleet.meters[4]!.neighbourhood;
    const start = T0 + 19 * 3600;
    const end = start + 3600;
    const snaps = snapshotsOf(pk);
    const c = (id: string, at: number) => snaps.get(id)!.get(at)!;
    const nbAMeters = fleet.meters.filter((m) => m.neighbourhood === nbA).map((m) => m.meter);
    const whole = (ids: string[]) => ids.map((meter) => ({ meter, from: start, to: end }));
    const product = (spans: { meter: string; from: number; to: number }[]) => spans.reduce((acc, sp) => pub.add(acc, pub.add(c(sp.meter, sp.to), pub.mulPlain(c(sp.meter, sp.from), -1n))), 1n);
    const ask = (r: Omit<E2eRequest, 'ciphertext'> & { ciphertext?: bigint }) => g.ingestRequest(cborEncode(requestBody(pub, { ...r, ciphertext: r.ciphertext ?? product(r.spans) })));
    const m1 = fleet.meters[0]!;
    const before = { ...g.refusals };
    // A compromised PES asks for one meter's interval: as a neighbourhood window, and as a slice of its bill.
    expect(ask({ kind: 'neighbourhood', key: nbA, start, end, revision: 0, spans: whole([m1.meter]) })).toMatchObject({ refused: 'underK' });
    expect(ask({ kind: 'billing', key: m1.household, start, end, revision: 0, spans: whole([m1.meter]) })).toMatchObject({ refused: 'notBillingPeriod' });
    expect(ask({ kind: 'billing', key: m1.household, start: T0, end: T0 + 86400, revision: 0, spans: [{ meter: m1.meter, from: start, to: end }] })).toMatchObject({ refused: 'notWhole' });
    // k meters, but one of them from another neighbourhood; a neighbourhood under k; not an interval.
    expect(ask({ kind: 'neighbourhood', key: nbA, start, end, revision: 0, spans: whole([...nbAMeters.slice(0, 2), fleet.meters[4]!.meter]) })).toMatchObject({ refused: 'notMember' });
    expect(ask({ kind: 'neighbourhood', key: nbB, start, end, revision: 0, spans: whole(fleet.meters.slice(4).map((m) => m.meter)) })).toMatchObject({ refused: 'underK' });
    expect(ask({ kind: 'neighbourhood', key: nbA, start: start + 60, end: end + 60, revision: 0, spans: whole(nbAMeters) })).toMatchObject({ refused: 'notInterval' });
    // Spans that do not end in the window; a ciphertext that is not the named snapshots' product.
    expect(ask({ kind: 'neighbourhood', key: nbA, start, end, revision: 0, spans: nbAMeters.map((meter) => ({ meter, from: start - 3600, to: start })) })).toMatchObject({ refused: 'badSpan' });
    expect(ask({ kind: 'neighbourhood', key: nbA, start, end, revision: 0, spans: whole(nbAMeters), ciphertext: pub.encrypt(0n) })).toMatchObject({ refused: 'ciphertextMismatch' });
    expect(g.takePartials()).toHaveLength(0);
    // The window as the PES computes it: answered, and the two partials open the sum of the four meters.
    const ok = { kind: 'neighbourhood' as const, key: nbA, start, end, revision: 0, spans: whole(nbAMeters) };
    expect(ask(ok)).toEqual({ answered: true });
    const [p] = g.takePartials();
    const ciphertext = product(ok.spans);
    const m = combinePartials(pub, partialDecrypt(pk.paillierShare, ciphertext), p!.partial, ciphertext);
    const wh = unpackRegisters(registerLayout(pub, 2), m, 2).imports.reduce((a, b) => a + b, 0n);
    const expected = [0, 1, 2, 3].reduce((a, i) => {
      const all = readingsOf(i).batches.flat();
      return a + all.filter((r) => r.time >= start && r.time < end).reduce((s, r, j, arr) => s + r.importWh - (j === 0 ? all[all.indexOf(r) - 1]!.importWh : arr[j - 1]!.importWh), 0);
    }, 0);
    expect(wh).toBe(BigInt(expected));
    // The same request again (re-published after a crash): the same answer. A revision changing one meter
    // (here: leaving it out; fewer than revision-k = 3) is refused; so is an older revision.
    expect(ask(ok)).toEqual({ answered: true });
    expect(g.takePartials()).toHaveLength(1);
    expect(ask({ ...ok, revision: 1, spans: whole(nbAMeters.slice(1)) })).toMatchObject({ refused: 'revisionHeld' });
    expect(ask({ ...ok, revision: 0, spans: whole(nbAMeters.slice(0, 3)) })).toMatchObject({ refused: 'staleRevision' });
    expect(g.refusals).toMatchObject({ underK: before.underK + 2, notBillingPeriod: before.notBillingPeriod + 1, notWhole: before.notWhole + 1, notMember: before.notMember + 1, notInterval: before.notInterval + 1, badSpan: before.badSpan + 1, ciphertextMismatch: before.ciphertextMismatch + 1, revisionHeld: before.revisionHeld + 1, staleRevision: before.staleRevision + 1 });
    // Bytes that are no request at all.
    expect(g.ingestRequest(Buffer.from('not cbor'))).toMatchObject({ refused: 'malformed' });
  });

  it('a compromised PES cannot difference its way to one meter: spans must be the guardian\'s own, evicted and far windows are refused', () => {
    const { pk, gk, pub, g } = fedGuardian();
    const snaps = snapshotsOf(pk);
    const c = (id: string, at: number) => snaps.get(id)!.get(at)!;
    const product = (spans: { meter: string; from: number; to: number }[]) => spans.reduce((acc, sp) => pub.add(acc, pub.add(c(sp.meter, sp.to), pub.mulPlain(c(sp.meter, sp.from), -1n))), 1n);
    const ask = (g2: GuardianCore, r: Omit<E2eRequest, 'ciphertext'>) => g2.ingestRequest(cborEncode(requestBody(pub, { ...r, ciphertext: product(r.spans) })));
    const nbA = fleet.meters[0]!.neighbourhood;
    const ids = fleet.meters.filter((m) => m.neighbourhood === nbA).map((m) => m.meter);
    const H = 3600;
    const start = T0 + 43 * H;
    const span = (from: (id: string, i: number) => number, to: number) => ids.map((meter, i) => ({ meter, from: from(meter, i), to }));
    // Hours 42 and 43 opened honestly; then a "revision" of hour 43 where three members reach back over hour
    // 42 (three changed spans pass revision-k = 3): their difference would be the fourth meter's hour 42.
    expect(ask(g, { kind: 'neighbourhood', key: nbA, start: start - H, end: start, revision: 0, spans: span(() => start - H, start) })).toEqual({ answered: true });
    expect(ask(g, { kind: 'neighbourhood', key: nbA, start, end: start + H, revision: 0, spans: span(() => start, start + H) })).toEqual({ answered: true });
    expect(ask(g, { kind: 'neighbourhood', key: nbA, start, end: start + H, revision: 1, spans: span((_, i) => (i < 3 ? start - H : start), start + H) })).toMatchObject({ refused: 'notWhole' });
    // A first answer with one member reaching back is refused too (its revision could then move it back).
    expect(ask(g, { kind: 'neighbourhood', key: nbA, start: start - 3 * H, end: start - 2 * H, revision: 0, spans: span((_, i) => (i === 0 ? start - 4 * H : start - 3 * H), start - 2 * H) })).toMatchObject({ refused: 'notWhole' });
    // A window beyond the watermark's skew bound is refused, not held (no state for a made-up future).
    const far = T0 + 30 * 86400;
    expect(g.ingestRequest(cborEncode(requestBody(pub, { kind: 'neighbourhood', key: nbA, start: far, end: far + H, revision: 0, spans: ids.map((meter) => ({ meter, from: far, to: far + H })), ciphertext: 1n })))).toMatchObject({ refused: 'badSpan' });
    expect(g.windows.pendingRequests).toBe(0);
    expect(g.takePartials()).toHaveLength(2);
    // A window past the retention horizon (evicted: no history to judge a revision by) is refused.
    const short = new GuardianCore({ ...settings, retentionS: 4 * H }, { share: gk.paillierShare, meters: blindMeters(gk.meterKeys) }, log);
    for (const u of run.e2e) short.ingestUplink(u);
    expect(ask(short, { kind: 'neighbourhood', key: nbA, start: T0 + 19 * H, end: T0 + 20 * H, revision: 0, spans: span(() => T0 + 19 * H, T0 + 20 * H) })).toMatchObject({ refused: 'expired' });
  });

  it("a bill naming a snapshot that reaches the guardian late waits for it instead of being refused", () => {
    const pk = loadPesKeys(keys, { e2e: true });
    const gk = loadGuardianKeys(join(keys, GUARDIAN_DIR));
    const p = new PesE2e(settings, { share: pk.paillierShare, mdmsPublic: pk.mdmsPublic, signer: pk.signer, meters: blindMeters(pk.meterKeys) });
    for (const u of run.e2e) p.ingestUplink(u);
    const m1 = fleet.meters[0]!;
    const bill = p.takeOutbox().find((m) => m.topic === topics.request('billing', m1.household))!; // day 1's bill of hh-1
    const req = parseRequest(pk.paillierShare.publicKey, bill.payload);
    expect(req.start).toBe(T0);
    const g = new GuardianCore(settings, { share: gk.paillierShare, meters: blindMeters(gk.meterKeys) }, log);
    // The guardian gets m1's frame with the day's last snapshot after its next ones.
    let late: Buffer | undefined;
    for (const u of run.e2e) {
      const up = decodeUplink(u);
      const keep = up.frames.filter((f) => {
        const fr = decodeFrame(f);
        const last = Buffer.from(fr.systemTitle).toString('hex') === m1.meter && decodeE2ePayload(pk.paillierShare.publicKey, openFrame(pk.meterKeys.get(m1.meter)!, fr)).snapshots.some((s) => s.at === T0 + 86400);
        if (last) late = encodeUplink({ gateway: up.gateway, frames: [f] });
        return !last;
      });
      g.ingestUplink(encodeUplink({ gateway: up.gateway, frames: keep }));
    }
    expect(g.ingestRequest(bill.payload, parseTopic.request(bill.topic))).toMatchObject({ pending: expect.stringMatching(/has not arrived/) });
    g.ingestUplink(late!);
    expect(g.windows.pendingRequests).toBe(0);
    expect(g.takePartials()).toHaveLength(1);
    expect(Object.values(g.refusals).every((n) => n === 0)).toBe(true);
  });

  it('the membership guard holds, at the PES and at the guardian, every interval a provisioned meter is missing from', () => {
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
    const p = new PesE2e(settings, { share: pk.paillierShare, mdmsPublic: pk.mdmsPublic, signer: pk.signer, meters: blindMeters(pk.meterKeys) });
    const g = new GuardianCore(settings, { share: gk.paillierShare, meters: blindMeters(gk.meterKeys) }, log);
    for (const u of without(run.e2e)) {
      p.ingestUplink(u);
      g.ingestUplink(u);
    }
    p.flush();
    g.flush();
    // nb-a has 3 of its 4 meters (>= k = 3) in every interval: one fewer than provisioned, so each is held.
    expect(classic.checkpoint().outbox.filter((m) => m.kind === 'neighbourhood')).toHaveLength(0);
    expect(p.takeOutbox().filter((m) => m.topic.startsWith(REQUEST_PREFIX) && parseTopic.request(m.topic)!.kind === 'neighbourhood')).toHaveLength(0);
    expect(p.windows.counters.membershipHeld).toBe(classic.counters.membershipHeld);
    expect(p.windows.counters.membershipHeld).toBeGreaterThanOrEqual(DAYS * 24);
    // A compromised PES asks the guardian anyway: the guardian's own guard refuses.
    const pub = pk.paillierShare.publicKey;
    const start = T0 + 3600;
    const snaps = snapshotsOf(pk);
    const ids = fleet.meters.slice(0, 3).map((m) => m.meter);
    const ciphertext = ids.reduce((acc, id) => pub.add(acc, pub.add(snaps.get(id)!.get(start + 3600)!, pub.mulPlain(snaps.get(id)!.get(start)!, -1n))), 1n);
    const req = parseRequest(pub, cborEncode(requestBody(pub, { kind: 'neighbourhood', key: fleet.meters[0]!.neighbourhood, start, end: start + 3600, revision: 0, spans: ids.map((meter) => ({ meter, from: start, to: start + 3600 })), ciphertext })));
    expect(g.request(req)).toMatchObject({ refused: 'membershipHeld' });
  });

  it('the PES and the guardian seeing the uplinks in different orders still pair every release: the PES decides, the guardian checks', () => {
    const pk = loadPesKeys(keys, { e2e: true });
    const gk = loadGuardianKeys(join(keys, GUARDIAN_DIR));
    const pub = pk.paillierShare.publicKey;
    const mdmsKey = loadMdmsKey(keys);
    // revision-k 2 without the membership guard: a window released over 3 meters is not revised for a 4th.
    const s2: BlindSettings = { ...settings, revisionK: 2, membershipGuard: false };
    const m4 = fleet.meters[3]!.meter;
    const per = fleet.gateways.length;
    const frames = run.e2e.flatMap((u, i) => {
      const up = decodeUplink(u);
      return up.frames.map((f) => ({ b: Math.floor(i / per), meter: Buffer.from(decodeFrame(f).systemTitle).toString('hex'), uplink: encodeUplink({ gateway: up.gateway, frames: [f] }) }));
    });
    // m4's gateway link lags three hours: its frames arrive after its windows closed (lateness 30 min).
    const lagging = frames.map((f, i) => ({ ...f, i, key: f.b + (f.meter === m4 ? 12 : 0) })).sort((x, y) => x.key - y.key || x.i - y.i);
    const orders: [typeof frames, typeof frames][] = [
      [lagging, frames],
      [frames, lagging],
    ];
    for (const [pesOrder, guardianOrder] of orders) {
      const p = new PesE2e(s2, { share: pk.paillierShare, mdmsPublic: pk.mdmsPublic, signer: pk.signer, meters: blindMeters(pk.meterKeys) });
      const g = new GuardianCore(s2, { share: gk.paillierShare, meters: blindMeters(gk.meterKeys) }, log);
      const combiner = new Combiner(pub);
      const latest = new Map<string, number>(); // per window, the PES's latest revision
      const combined = new Set<string>();
      const deliver = () => {
        for (const m of p.takeOutbox()) {
          if (m.topic.startsWith(REQUEST_PREFIX)) g.ingestRequest(m.payload, parseTopic.request(m.topic));
          else if (!m.topic.startsWith('sm/v1/household/')) {
            const r = parseRelease(pub, openAggregate(mdmsKey, m.topic, m.payload, loadPesVerifyKey(keys)));
            latest.set(`${r.kind}|${r.key}|${r.start}`, r.revision);
            const a = combiner.release(r);
            if (a) combined.add(`${a.kind}|${a.key}|${a.start}|${a.revision}`);
          }
        }
        for (const part of g.takePartials()) {
          const a = combiner.guardian(part);
          if (a) combined.add(`${a.kind}|${a.key}|${a.start}|${a.revision}`);
        }
      };
      for (let i = 0; i < frames.length; i++) {
        p.ingestUplink(pesOrder[i]!.uplink);
        g.ingestUplink(guardianOrder[i]!.uplink);
        deliver();
      }
      p.flush();
      deliver();
      g.flush();
      deliver();
      expect(latest.size).toBeGreaterThan(DAYS * 24);
      // Every window's latest revision met the guardian's partial of its ciphertext.
      expect([...latest].filter(([w, rev]) => !combined.has(`${w}|${rev}`))).toEqual([]);
      expect(g.windows.pendingRequests).toBe(0);
      // What the guardian refused: only bills the PES made before it had the whole day, superseded by its own
      // later revision (the MDMS keeps such a half until its retention).
      const { notWhole, staleRevision, ...others } = g.refusals;
      expect(Object.values(others).every((n) => n === 0)).toBe(true);
      if (pesOrder === frames) expect(notWhole + staleRevision).toBe(0);
      if (pesOrder === lagging) expect(p.windows.counters.revisionHeld).toBeGreaterThan(0); // the two would have decided differently
    }
  });

  it('a request for a billing period still open at the guardian waits, and is answered once it closes', () => {
    const pk = loadPesKeys(keys, { e2e: true });
    const gk = loadGuardianKeys(join(keys, GUARDIAN_DIR));
    const pub = pk.paillierShare.publicKey;
    const p = new PesE2e(settings, { share: pk.paillierShare, mdmsPublic: pk.mdmsPublic, signer: pk.signer, meters: blindMeters(pk.meterKeys) });
    const g = new GuardianCore(settings, { share: gk.paillierShare, meters: blindMeters(gk.meterKeys) }, log);
    const half = run.e2e.length / 2; // day 1: the PES has it all, the guardian only its first hours
    for (const u of run.e2e.slice(0, half + 20)) p.ingestUplink(u);
    for (const u of run.e2e.slice(0, 20)) g.ingestUplink(u);
    const requests = p.takeOutbox().filter((m) => m.topic.startsWith(REQUEST_PREFIX));
    const bill = requests.find((m) => parseTopic.request(m.topic)!.kind === 'billing')!;
    expect(bill).toBeDefined();
    expect(g.ingestRequest(bill.payload, parseTopic.request(bill.topic))).toMatchObject({ pending: expect.stringMatching(/still open/) });
    expect(g.takePartials()).toHaveLength(0);
    expect(g.windows.pendingRequests).toBe(1);
    for (const u of run.e2e.slice(20, half + 20)) g.ingestUplink(u);
    expect(g.windows.pendingRequests).toBe(0);
    const partials = g.takePartials();
    expect(partials).toHaveLength(1);
    const r = parseRequest(pub, bill.payload);
    expect(partials[0]).toMatchObject({ kind: 'billing', key: r.key, start: r.start });
    const regs = unpackRegisters(registerLayout(pub, 2), combinePartials(pub, partialDecrypt(pk.paillierShare, r.ciphertext), partials[0]!.partial, r.ciphertext), 2);
    expect(regs.imports[0]! + regs.imports[1]!).toBeGreaterThan(0n); // day 1's bill of that household
  });
});

/** The key folders' keys and a guardian that folded every uplink of the run and closed every window. */
function fedGuardian(): { pk: ReturnType<typeof loadPesKeys>; gk: ReturnType<typeof loadGuardianKeys>; pub: ReturnType<typeof loadPesKeys>['paillierShare']['publicKey']; g: GuardianCore } {
  const pk = loadPesKeys(keys, { e2e: true });
  const gk = loadGuardianKeys(join(keys, GUARDIAN_DIR));
  const g = new GuardianCore(settings, { share: gk.paillierShare, meters: blindMeters(gk.meterKeys) }, log);
  for (const u of runE2e) g.ingestUplink(u);
  g.flush();
  return { pk, gk, pub: pk.paillierShare.publicKey, g };
}

/** Every meter's snapshot ciphertexts by time, from the e2e uplinks (the PES's folder opens the frames). */
function snapshotsOf(pk: ReturnType<typeof loadPesKeys>): Map<string, Map<number, bigint>> {
  const pub = pk.paillierShare.publicKey;
  const out = new Map<string, Map<number, bigint>>();
  for (const u of runE2e) {
    for (const f of decodeUplinkFrames(u)) {
      const fr = decodeFrame(f);
      const id = Buffer.from(fr.systemTitle).toString('hex');
      let m = out.get(id);
      if (!m) out.set(id, (m = new Map()));
      for (const s of decodeE2ePayload(pub, openFrame(pk.meterKeys.get(id)!, fr)).snapshots) m.set(s.at, s.ciphertext);
    }
  }
  return out;
}

function decodeUplinkFrames(u: Uint8Array): Uint8Array[] {
  return decodeUplink(u).frames;
}
