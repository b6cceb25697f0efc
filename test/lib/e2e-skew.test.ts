// Blind windows' `maxSkewS` (lib/e2e-windows.ts; `pes --e2e --max-skew`, `guardian --max-skew`), the classic
// PES's rule: a frame whose readings end after watermark + skew, or start before watermark - skew, is refused and
// counted (`absurdTime`). One meter whose clock runs a month ahead must not move the watermark: without the
// bound every window closes at once (and is evicted past the retention, the others' later frames then refused);
// with it, the others' windows close and release exactly as if that meter did not exist.
import { randomBytes } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { E2eEncoder } from '../../firmware/e2e.js';
import { parseBillingPeriod } from '../../lib/billing-period.js';
import { BlindWindows, blindSettingsOf, type BlindMeter, type BlindSettings } from '../../lib/e2e-windows.js';
import { FLAT_TARIFF } from '../../lib/tariff.js';
import { encodeFrame, SC_AES256GCM, sealFrame } from '../../protocol/frame.js';
import { generatePaillier, type PrivateKey } from '../../protocol/paillier/engine.js';
import { encodeUplink } from '../../protocol/uplink.js';

const T0 = 1_704_067_200; // 2024-01-01T00:00:00Z
const DAY = 86_400;
const GOOD = ['0000000000000001', '0000000000000002', '0000000000000003'];
const ROGUE = '0000000000000004';
const base: BlindSettings = { intervalS: 900, billing: parseBillingPeriod('1d'), tz: 'UTC', tariff: FLAT_TARIFF, latenessS: 1800, k: 2, revisionK: 1, retentionS: 2 * DAY };
const meters = new Map<string, BlindMeter>();
let key: PrivateKey;

beforeAll(async () => {
  key = await generatePaillier(1024);
  [...GOOD, ROGUE].forEach((m, i) => meters.set(m, { key: randomBytes(32), household: `hh-${i + 1}`, neighbourhood: 'nb-a' }));
}, 60_000);

/** An uplink of one frame of meter `m`, counter `ic`: 15 one-minute readings from `t`. */
function uplink(enc: E2eEncoder, m: string, ic: number, t: number, prevWh: number): { bytes: Buffer; reg: number } {
  const readings = [];
  let reg = prevWh;
  for (let s = t; s < t + 900; s += 60) readings.push({ time: s, period: 60, importWh: (reg += 2), powerW: 120, status: 0 });
  const frame = encodeFrame(sealFrame(meters.get(m)!.key, { systemTitle: Buffer.from(m, 'hex'), sc: SC_AES256GCM, ic }, enc.encode({ prevWh, readings })));
  return { bytes: encodeUplink({ gateway: 'gw1', frames: [frame] }), reg };
}

/** The good meters' uplinks over `hours`, in time order (meter by meter within each quarter hour). */
function good(hours: number): Buffer[] {
  const encs = GOOD.map(() => new E2eEncoder(key, { intervalS: base.intervalS, tariff: FLAT_TARIFF }));
  const regs = GOOD.map((_, i) => 1000 * i);
  const out: Buffer[] = [];
  for (let j = 0; j < hours * 4; j++) {
    GOOD.forEach((m, i) => {
      const u = uplink(encs[i]!, m, j, T0 + j * 900, regs[i]!);
      regs[i] = u.reg;
      out.push(u.bytes);
    });
  }
  return out;
}

/** Feeds uplinks; each release as `step:kind:key:start:revision:ciphertext`, step counted over `counted` uplinks only. */
function run(settings: BlindSettings, uplinks: Buffer[], counted: (u: Buffer) => boolean = () => true): { w: BlindWindows; log: string[] } {
  const w = new BlindWindows(settings, key, meters);
  const log: string[] = [];
  let step = 0;
  for (const u of uplinks) {
    w.ingestUplink(u);
    if (counted(u)) step++;
    for (const r of w.takeReleases()) log.push(`${step}:${r.kind}:${r.key}:${r.start}:${r.revision}:${r.ciphertext.toString(16)}`);
  }
  return { w, log };
}

describe('blind windows: --max-skew', () => {
  it("a meter a month ahead is refused and counted; the others' windows close on time as without it", () => {
    const fleet = good(4);
    const rogueEnc = new E2eEncoder(key, { intervalS: base.intervalS, tariff: FLAT_TARIFF });
    const rogue = uplink(rogueEnc, ROGUE, 0, T0 + 30 * DAY, 5000).bytes;
    const withRogue = [...fleet.slice(0, 6), rogue, ...fleet.slice(6)];
    const skewed = { ...base, maxSkewS: 7 * DAY };

    const reference = run(skewed, fleet);
    const bounded = run(skewed, withRogue, (u) => u !== rogue);
    expect(bounded.w.counters.absurdTime).toBe(1);
    expect(reference.w.counters.absurdTime).toBe(0);
    expect(bounded.w.watermark).toBe(reference.w.watermark);
    expect(bounded.log.length).toBeGreaterThan(8);
    expect(bounded.log).toEqual(reference.log); // same windows, same ciphertexts, released after the same uplinks
    // Its counter is spent, as at the classic PES: the same frame again is a replay, not a second look.
    bounded.w.ingestUplink(rogue);
    expect(bounded.w.counters).toMatchObject({ absurdTime: 1, replay: 1 });

    // Without the bound the one frame moves the watermark a month ahead: everything open closes and leaves at
    // once, and what the others send next is past the retention.
    const unbounded = run(base, withRogue, (u) => u !== rogue);
    expect(unbounded.w.counters.absurdTime).toBe(0);
    expect(unbounded.w.counters.tooOld).toBeGreaterThan(0);
    expect(unbounded.log).not.toEqual(reference.log);
  });

  it('refuses a frame that starts more than the skew before the watermark too, and takes both from the flags', () => {
    const fleet = good(1);
    const oldEnc = new E2eEncoder(key, { intervalS: base.intervalS, tariff: FLAT_TARIFF });
    const settings = blindSettingsOf({ interval: 900, lateness: 1800, k: 2, revisionK: 1, membershipGuard: true, retention: 20 * DAY, maxSkew: 3600 }, base.billing, FLAT_TARIFF);
    expect(settings.maxSkewS).toBe(3600);
    expect(blindSettingsOf({ interval: 900, lateness: 1800, k: 2, membershipGuard: true }, base.billing, FLAT_TARIFF).maxSkewS).toBeUndefined();
    const w = new BlindWindows(settings, key, meters);
    for (const u of fleet) w.ingestUplink(u);
    const wm = w.watermark!;
    w.ingestUplink(uplink(oldEnc, ROGUE, 0, wm - 3600 - 900, 5000).bytes); // starts 1 h 15 min before the watermark
    expect(w.counters.absurdTime).toBe(1);
    w.ingestUplink(uplink(oldEnc, ROGUE, 1, wm - 1800, 5000).bytes); // within the skew: taken
    expect(w.counters).toMatchObject({ absurdTime: 1, frames: fleet.length + 1 });
    expect(w.watermark).toBe(wm);
  });
});
