// Blind windows (lib/e2e-windows.ts) whatever order a meter's frames arrive in: a broker redelivers what a
// killed subscriber had not acknowledged beside newer messages, so the PES and the guardian may each see a
// meter's snapshots out of time order (found by the end-to-end crash test: energy moved to later windows, and
// the two parties' ciphertexts differed, so their partials never combined). Fed the same frames in time order
// and shuffled (the first frame late too, a snapshot between two others, a restore from the state file half-way),
// two aggregators end with the same ciphertext in every window and the same plaintext per window.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { E2eEncoder } from '../../firmware/e2e.js';
import { parseBillingPeriod } from '../../lib/billing-period.js';
import { blindStateConfig, E2eStateStore } from '../../lib/e2e-state.js';
import { BlindWindows, type BlindMeter, type BlindRelease, type BlindSettings } from '../../lib/e2e-windows.js';
import { FLAT_TARIFF } from '../../lib/tariff.js';
import { MAX_WINDOW_TERMS, registerLayout, unpackRegisters } from '../../protocol/e2e.js';
import { encodeFrame, SC_AES256GCM, sealFrame } from '../../protocol/frame.js';
import { generatePaillier, type PrivateKey } from '../../protocol/paillier/engine.js';
import { encodeUplink } from '../../protocol/uplink.js';

const T0 = 1_704_067_200; // 2024-01-01T00:00:00Z
const METERS = ['0000000000000001', '0000000000000002', '0000000000000003'];
const settings: BlindSettings = { intervalS: 900, billing: parseBillingPeriod('1d'), tz: 'UTC', tariff: FLAT_TARIFF, latenessS: 3600, k: 2, revisionK: 1, retentionS: 2 * 86400 };
const meters = new Map<string, BlindMeter>();
let key: PrivateKey;
let dir: string;

beforeAll(async () => {
  key = await generatePaillier(1024);
  dir = mkdtempSync(join(tmpdir(), 'sm-e2e-order-'));
  METERS.forEach((m, i) => meters.set(m, { key: randomBytes(32), household: `hh-${i + 1}`, neighbourhood: 'nb-a' }));
}, 60_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Energy of meter i over `hours` hours (the readings `frames` makes). */
const energy = (i: number, hours: number) => BigInt(Array.from({ length: hours * 60 }, (_, k) => 1 + ((T0 / 60 + k + 3 * i) % 7)).reduce((x, y) => x + y, 0));

/** One uplink per meter frame (15 readings of a minute), in time order: `hours` hours. */
function frames(hours: number): Buffer[][] {
  return METERS.map((m, i) => {
    const enc = new E2eEncoder(key, { intervalS: settings.intervalS, tariff: FLAT_TARIFF });
    let reg = 100 * i;
    const out: Buffer[] = [];
    for (let t = T0, ic = 0; t < T0 + hours * 3600; t += 900, ic++) {
      const prevWh = reg;
      const readings = [];
      for (let s = t; s < t + 900; s += 60) {
        reg += 1 + ((s / 60 + 3 * i) % 7);
        readings.push({ time: s, period: 60, importWh: reg, powerW: 0, status: 0 });
      }
      const frame = encodeFrame(sealFrame(meters.get(m)!.key, { systemTitle: Buffer.from(m, 'hex'), sc: SC_AES256GCM, ic }, enc.encode({ prevWh, readings })));
      out.push(encodeUplink({ gateway: 'gw1', frames: [frame] }));
    }
    return out;
  });
}

/** The last release of every window: window -> ciphertext (hex). */
function latest(releases: BlindRelease[]): Map<string, BlindRelease> {
  const out = new Map<string, BlindRelease>();
  for (const r of releases) out.set(`${r.kind}|${r.key}|${r.start}`, r);
  return out;
}

function run(order: Buffer[], restoreAt?: number, s = settings): { releases: BlindRelease[]; w: BlindWindows } {
  const releases: BlindRelease[] = [];
  let w = new BlindWindows(s, key, meters);
  const store = restoreAt === undefined ? undefined : E2eStateStore.open(join(dir, `s${Math.random()}.sqlite`), { role: 'pes', paillierKeyId: key.keyId, config: blindStateConfig(settings), synchronous: 'NORMAL' });
  order.forEach((u, i) => {
    if (store && i === restoreAt) {
      w = new BlindWindows(s, key, meters);
      w.restore(store.load());
    }
    w.ingestUplink(u);
    releases.push(...w.takeReleases());
    store?.commit(w.checkpoint(), []);
  });
  w.flush();
  releases.push(...w.takeReleases());
  store?.close();
  return { releases, w };
}

describe('blind windows: arrival order does not change the windows', () => {
  it('shuffled frames (late first frame, late frames past a closed window, a restore half-way) end with the ciphertexts of time order', () => {
    const perMeter = frames(8);
    const inOrder = perMeter[0]!.flatMap((_, j) => perMeter.map((f) => f[j]!));
    // Meter 1: its first frame arrives after its next three; meter 2: a frame of hour 1 arrives after hour 4
    // (its window closed and released meanwhile: a revision); meter 3: two frames swapped.
    const [m1, m2, m3] = perMeter.map((f) => [...f]);
    m1!.splice(3, 0, m1!.shift()!);
    const late = m2!.splice(5, 1)[0]!;
    m2!.splice(17, 0, late);
    [m3![10], m3![11]] = [m3![11]!, m3![10]!];
    const shuffled = m1!.flatMap((_, j) => [m1![j]!, m2![j]!, m3![j]!]);

    const a = run(inOrder);
    const b = run(shuffled, Math.floor(shuffled.length / 2));
    expect(a.w.counters.lateSnapshot + a.w.counters.tooOld).toBe(0);
    expect(b.w.counters.lateSnapshot + b.w.counters.tooOld).toBe(0);
    expect(a.w.counters.reordered).toBe(0);
    expect(b.w.counters.reordered).toBe(4); // meter 1's first frame (its baseline and first boundary), meter 2's late one, meter 3's swapped one
    expect(b.w.counters.readings).toBe(a.w.counters.readings);
    const la = latest(a.releases);
    const lb = latest(b.releases);
    expect([...lb.keys()].sort()).toEqual([...la.keys()].sort());
    expect(la.size).toBeGreaterThan(32);
    for (const [w, r] of la) expect(lb.get(w)!.ciphertext.toString(16), w).toBe(r.ciphertext.toString(16));
    // The late frame of meter 2 revised the window it belongs to, after its first release.
    expect(b.releases.filter((r) => r.kind === 'neighbourhood' && r.start === T0 + 5 * 900).map((r) => r.revision)).toEqual([0, 1]);
    // And what they hold is the meters' energy per window (plaintext of the shuffled run's ciphertexts).
    const layout = registerLayout(key, 1);
    const total = [...lb.values()].filter((r) => r.kind === 'neighbourhood').reduce((s, r) => s + unpackRegisters(layout, key.decrypt(r.ciphertext), 1).imports[0]!, 0n);
    expect(total).toBe(METERS.reduce((s, _, i) => s + energy(i, 8), 0n));
  });

  it('a frame older than the day a meter keeps: dropped and counted, its energy with its successor, nothing lost or doubled', () => {
    const perMeter = frames(30);
    const [m1, m2, m3] = perMeter.map((f) => [...f]);
    const old = m1!.splice(8, 1)[0]!; // hour 2, delivered after hour 28: more than a day behind the meter's newest
    m1!.splice(112, 0, old);
    const shuffled = m1!.flatMap((_, j) => [m1![j]!, m2![j]!, m3![j]!]);
    const s = { ...settings, latenessS: 1800 };
    const b = run(shuffled, Math.floor(shuffled.length / 3), s);
    expect(b.w.counters.lateSnapshot).toBe(1);
    expect(b.w.counters.tooOld).toBe(0);
    const layout = registerLayout(key, 1);
    const sum = (kind: string) => [...latest(b.releases).values()].filter((r) => r.kind === kind).reduce((t, r) => t + unpackRegisters(layout, key.decrypt(r.ciphertext), 1).imports[0]!, 0n);
    const all = METERS.reduce((t, _, i) => t + energy(i, 30), 0n);
    expect(sum('neighbourhood')).toBe(all);
    expect(sum('billing')).toBe(all);
  });

  it('a window already at the packing budget: the snapshot is dropped and counted, nothing thrown (a redelivered uplink would crash-loop)', () => {
    const perMeter = frames(1);
    const w = new BlindWindows(settings, key, meters);
    w.ingestUplink(perMeter[0]![0]!); // the baseline and the first boundary
    const windows = (w as unknown as { windows: Map<string, { terms: number }> }).windows;
    const bill = windows.get(`billing|hh-1|${T0}`)!;
    bill.terms = MAX_WINDOW_TERMS - 1; // as if a meter had flooded its household's billing window with snapshots
    const folded = w.counters.snapshots;
    expect(() => w.ingestUplink(perMeter[0]![1]!)).not.toThrow();
    expect(w.counters.windowFull).toBe(1);
    expect(w.counters.snapshots).toBe(folded + 1);
    expect(bill.terms).toBe(MAX_WINDOW_TERMS - 1);
  });
});
