// The guardian's own DP ledger (guardian/core.ts, `guardian --dp-budget`): a compromised PES that ignores its
// own budget still gets no more noised neighbourhood windows opened per UTC day than the guardian's budget; the
// refusal is counted and logged, and the day's spend survives a restart (the state file's `extra`).
import { generateKeyPairSync } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { E2eEncoder } from '../../firmware/e2e.js';
import { GuardianCore } from '../../guardian/core.js';
import { parseBillingPeriod } from '../../lib/billing-period.js';
import type { BlindMeter, BlindSettings } from '../../lib/e2e-windows.js';
import { FLAT_TARIFF } from '../../lib/tariff.js';
import { encodeFrame, SC_AES256GCM, sealFrame } from '../../protocol/frame.js';
import { generatePaillier, type PrivateKey } from '../../protocol/paillier/engine.js';
import { splitKey } from '../../protocol/paillier/threshold.js';
import type { Reading } from '../../protocol/reading.js';
import { parseTopic, REQUEST_PREFIX } from '../../protocol/topics.js';
import { encodeUplink } from '../../protocol/uplink.js';
import { PesE2e } from '../../pes/e2e.js';

const H = 1_704_067_200; // 2024-01-01T00:00:00Z
const IDS = ['48534d5200000001', '48534d5200000002'];
const settings: BlindSettings = { intervalS: 3600, billing: parseBillingPeriod('1d'), tz: 'UTC', tariff: FLAT_TARIFF, latenessS: 60, k: 2, revisionK: 2, dpEpsilon: 0.5 };
const aesKey = (i: number) => Buffer.alloc(32, i + 1);
const meters = new Map<string, BlindMeter>(IDS.map((id, i) => [id, { key: aesKey(i), household: `hh-${i}`, neighbourhood: 'nb-1' }]));
let key: PrivateKey;
beforeAll(async () => {
  key = await generatePaillier(1024);
});

describe("the guardian's DP ledger", () => {
  it('refuses what would take a neighbourhood past its day budget, whatever the PES asks, and keeps the day across a restart', () => {
    const { pes: pesShare, guardian: guardianShare } = splitKey(key);
    const mdms = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const signer = generateKeyPairSync('ed25519');
    // The PES has no budget (compromised, or misconfigured); the guardian allows 1.0 a day: two windows.
    const pes = new PesE2e(settings, { share: pesShare, mdmsPublic: mdms.publicKey, signer: signer.privateKey, meters });
    let g = new GuardianCore(settings, { share: guardianShare, meters }, undefined, 1);
    const encs = IDS.map(() => new E2eEncoder(key, { intervalS: 3600, tariff: FLAT_TARIFF, dp: { epsilon: 0.5, sensitivityWh: 7360, shares: 2 } }));
    const uplinks = Array.from({ length: 17 }, (_, b) => encodeUplink({ gateway: 'gw-1', frames: encs.map((e, i) => frame(e, i, H + b * 900, b + 1)) }));
    const outcomes: string[] = [];
    const feed = (from: number, to: number) => {
      for (let b = from; b < to; b++) {
        pes.ingestUplink(uplinks[b]!);
        g.ingestUplink(uplinks[b]!);
        for (const m of pes.takeOutbox()) {
          if (!m.topic.startsWith(REQUEST_PREFIX) || parseTopic.request(m.topic)!.kind !== 'neighbourhood') continue;
          const o = g.ingestRequest(m.payload, parseTopic.request(m.topic));
          outcomes.push('answered' in o ? 'answered' : 'refused' in o ? o.refused : 'pending');
        }
      }
    };
    feed(0, 13); // to 3 h 15 min: three hourly windows close; the PES asks for all three
    expect(outcomes).toEqual(['answered', 'answered', 'dpBudget']);
    expect(g.refusals.dpBudget).toBe(1);
    expect(g.takePartials()).toHaveLength(2);
    // A restart from the saved ledger: the day stays spent.
    const saved = g.ledgerState.save();
    expect(saved).toMatchObject({ dpDays: { 'nb-1|19723': 1 }, refusals: { dpBudget: 1 } });
    g = new GuardianCore(settings, { share: guardianShare, meters }, undefined, 1);
    g.ledgerState.restore(saved);
    for (const u of uplinks.slice(0, 13)) g.ingestUplink(u); // (its windows as they were; only the ledger is under test)
    outcomes.length = 0;
    feed(13, 17); // the fourth hour: the PES asks, the restarted guardian refuses
    expect(outcomes).toEqual(['dpBudget']);
    expect(() => g.ledgerState.restore({ dpDays: { 'nb-1|19723': -1 } })).toThrow(/malformed DP ledger/);
    expect(() => new GuardianCore(settings, { share: guardianShare, meters }, undefined, 0.4)).toThrow(/at least/);
  });
});

function frame(enc: E2eEncoder, i: number, t: number, ic: number): Buffer {
  const prevWh = ((t - H) / 60) * (i + 1);
  const readings: Reading[] = Array.from({ length: 15 }, (_, j) => ({ time: t + j * 60, period: 60, importWh: prevWh + (j + 1) * (i + 1), powerW: 60 * (i + 1), status: 0 }));
  return encodeFrame(sealFrame(aesKey(i), { systemTitle: Buffer.from(IDS[i]!, 'hex'), sc: SC_AES256GCM, ic }, enc.encode({ prevWh, readings })));
}
