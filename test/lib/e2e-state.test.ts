// The blind windows' durable state (lib/e2e-windows.ts checkpoint/restore, lib/e2e-state.ts): a folder stopped
// half-way, persisted and restored in a new instance releases exactly what an uninterrupted one releases (same
// ciphertexts, revisions, members); eviction keeps memory and the file bounded over many days; a corrupt,
// foreign, classic-PES or other party's state file is refused with a clear error.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { E2eEncoder } from '../../firmware/e2e.js';
import { parseBillingPeriod } from '../../lib/billing-period.js';
import { blindStateConfig, E2eStateError, E2eStateStore } from '../../lib/e2e-state.js';
import { BlindWindows, type BlindMeter, type BlindRelease, type BlindSettings } from '../../lib/e2e-windows.js';
import { FLAT_TARIFF } from '../../lib/tariff.js';
import { generatePaillier, type PublicKey } from '../../protocol/paillier/engine.js';
import { encodeFrame, SC_AES256GCM, sealFrame } from '../../protocol/frame.js';
import { encodeUplink } from '../../protocol/uplink.js';

const T0 = 1_704_067_200; // 2024-01-01T00:00:00Z
const METERS = ['0000000000000001', '0000000000000002', '0000000000000003', '0000000000000004'];
const settings: BlindSettings = { intervalS: 3600, billing: parseBillingPeriod('1d'), tz: 'UTC', tariff: FLAT_TARIFF, latenessS: 1800, k: 3, revisionK: 3 };

let dir: string;
let pub: PublicKey;
const meters = new Map<string, BlindMeter>();

/**
 * Uplinks of `hours` hours from T0, one per `batchS` seconds, every meter in each; meter 4 misses hours 5-7
 * (a held or revised window), and an early uplink comes again late (a replay the restored anti-replay must drop).
 */
function uplinks(hours: number, batchS: number): Buffer[] {
  const encs = METERS.map(() => new E2eEncoder(pub, { intervalS: settings.intervalS, tariff: FLAT_TARIFF }));
  const regs = METERS.map((_, i) => 1000 * (i + 1));
  const out: Buffer[] = [];
  let ic = 0;
  for (let t = T0; t < T0 + hours * 3600; t += batchS) {
    ic++;
    const frames: Buffer[] = [];
    METERS.forEach((m, i) => {
      const hour = (t - T0) / 3600;
      if (i === 3 && hour >= 5 && hour < 7) return;
      const readings = [];
      const prevWh = regs[i]!;
      for (let s = t; s < t + batchS; s += 60) {
        regs[i]! += 1 + ((s / 60 + i) % 5);
        readings.push({ time: s, period: 60, importWh: regs[i]!, powerW: 0, status: 0 });
      }
      frames.push(encodeFrame(sealFrame(meters.get(m)!.key, { systemTitle: Buffer.from(m, 'hex'), sc: SC_AES256GCM, ic }, encs[i]!.encode({ prevWh, readings }))));
    });
    out.push(encodeUplink({ gateway: 'gw1', frames }));
    if (ic === 80) out.push(out[10]!); // a replay of an uplink of the first half
  }
  return out;
}

const open = (file: string, role: 'pes' | 'guardian' = 'pes', s = settings) => E2eStateStore.open(file, { role, paillierKeyId: pub.keyId, config: blindStateConfig(s), synchronous: 'NORMAL' });
const comparable = (r: BlindRelease[]) => r.map((x) => ({ ...x, ciphertext: x.ciphertext.toString(16) }));

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sm-e2e-state-'));
  pub = (await generatePaillier(1024)).publicKey;
  METERS.forEach((m, i) => meters.set(m, { key: randomBytes(32), household: `hh-${i + 1}`, neighbourhood: 'nb-a' }));
}, 60_000);

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('blind windows state', () => {
  it('a folder persisted half-way and restored in a new instance releases exactly what an uninterrupted one does', () => {
    const ups = uplinks(30, 900);
    const whole = new BlindWindows(settings, pub, meters);
    const expected: BlindRelease[] = [];
    for (const u of ups) {
      whole.ingestUplink(u);
      expected.push(...whole.takeReleases());
    }
    whole.flush();
    expected.push(...whole.takeReleases());
    expect(expected.filter((r) => r.kind === 'neighbourhood').length).toBeGreaterThan(20);
    expect(expected.some((r) => r.kind === 'billing' && r.revision === 0)).toBe(true);
    expect(whole.counters.replay).toBe(4);

    const file = join(dir, 'half.sqlite');
    const got: BlindRelease[] = [];
    const half = Math.floor(ups.length / 2) + 3; // an odd point: mid-hour, windows open and closed on both sides
    let store = open(file);
    let first = new BlindWindows(settings, pub, meters);
    for (const u of ups.slice(0, half)) {
      first.ingestUplink(u);
      const r = first.takeReleases();
      got.push(...r);
      store.commit(first.checkpoint(), r.map((x) => ({ topic: x.key, payload: Buffer.from(x.ciphertext.toString(16)) })));
    }
    // An uplink processed but never committed (a kill -9 before the commit): it is redelivered after the restart.
    first.ingestUplink(ups[half]!);
    first.takeReleases();
    store.close();
    expect(statSync(file).mode & 0o777).toBe(0o600);

    store = open(file);
    const second = new BlindWindows(settings, pub, meters);
    const saved = store.load();
    second.restore(saved);
    expect(saved.outbox.length).toBe(got.length); // nothing confirmed: every release would be published again
    for (const u of ups.slice(half)) {
      second.ingestUplink(u);
      const r = second.takeReleases();
      got.push(...r);
      store.commit(second.checkpoint(), [], []);
    }
    second.flush();
    got.push(...second.takeReleases());
    store.close();
    expect(comparable(got)).toEqual(comparable(expected));
    expect(second.counters).toEqual(whole.counters);
  });

  it('evicts closed windows past the retention horizon: memory and file stay bounded over many days', () => {
    const s: BlindSettings = { ...settings, retentionS: 86400 };
    const store = open(join(dir, 'days.sqlite'), 'guardian', s);
    const w = new BlindWindows(s, pub, meters);
    const sizes: number[] = [];
    const ups = uplinks(24 * 10, 3600);
    ups.forEach((u, i) => {
      w.ingestUplink(u);
      w.takeReleases();
      store.commit(w.checkpoint(), []);
      if (i % 24 === 23) sizes.push(w.windowCount);
      expect(store.windowRows).toBe(w.windowCount);
    });
    // Kept: a day of retention + lateness + the open hour: ~26 neighbourhood hours and 2-3 days of 4 bills.
    expect(Math.max(...sizes.slice(2))).toBeLessThanOrEqual(26 + 3 * 4);
    expect(sizes.at(-1)).toBe(sizes[3]);
    expect(w.counters.released).toBeGreaterThan(10 * 24);
    store.close();
  }, 60_000);

  it('keeps a meter\'s noised-totals snapshot, the caller\'s extra state and the outbox until confirmed', () => {
    const store = open(join(dir, 'extra.sqlite'));
    const seen = new Uint8Array(512);
    seen[0] = 0b101;
    const last = { at: T0 + 3600, c: 123456789012345678901234567890n, noisy: 98765432109876543210n };
    const counters = new BlindWindows(settings, pub, meters).counters;
    const [m] = store.commit({ windows: [], evicted: [], meters: [['m1', { highest: 9, seen, last }]], watermark: T0, counters }, [{ topic: 't/1', payload: Buffer.from('x') }], [], { spent: { 'nb-a': 0.3 } });
    let saved = store.load();
    expect(saved.meters.get('m1')).toEqual({ highest: 9, seen, last });
    expect(saved.extra).toEqual({ spent: { 'nb-a': 0.3 } });
    expect(saved.outbox.map((o) => o.topic)).toEqual(['t/1']);
    store.confirm([m!.id]);
    saved = store.load();
    expect(saved.outbox).toEqual([]);
    expect(saved.watermark).toBe(T0);
    store.close();
  });

  it('refuses a corrupt, foreign, classic or other party\'s state file with a clear error', () => {
    const junk = join(dir, 'junk.sqlite');
    writeFileSync(junk, randomBytes(8192));
    expect(() => open(junk)).toThrow(E2eStateError);
    expect(() => open(junk)).toThrow(/not a state file/);

    const classic = join(dir, 'classic.sqlite');
    const db = new Database(classic);
    db.exec("CREATE TABLE meta (k TEXT PRIMARY KEY, v BLOB NOT NULL); INSERT INTO meta VALUES ('format', '1');");
    db.close();
    expect(() => open(classic)).toThrow(/state format 1 .*not an end-to-end state file/);

    const other = join(dir, 'other.sqlite');
    const o = new Database(other);
    o.exec('CREATE TABLE readings (t INTEGER)');
    o.close();
    expect(() => open(other)).toThrow(/another program's database/);

    const mine = join(dir, 'pes.sqlite');
    open(mine).close();
    expect(() => open(mine, 'guardian')).toThrow(/is the pes's state file, not the guardian's/);
    expect(() => open(mine, 'pes', { ...settings, intervalS: 900 })).toThrow(/other window settings/);
    expect(() => E2eStateStore.open(mine, { role: 'pes', paillierKeyId: 'ffff', config: blindStateConfig(settings) })).toThrow(/another Paillier key/);
    open(mine).close(); // and it still opens with its own settings
  });
});
