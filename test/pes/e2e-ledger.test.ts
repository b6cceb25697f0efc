// The blind PES's DP ledger (pes/e2e.ts) lives in its state file with the windows: after a restart the spent
// epsilon of each neighbourhood goes on from where it was, instead of starting again at 0 (which would let a
// restarted PES release beyond what the MDMS's Privacy page and any budget believe). With `--dp-budget` a release
// that would take its neighbourhood's UTC day above the budget is withheld (never sealed), counted and logged,
// and the day's spend survives a restart too.
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { E2eEncoder } from '../../firmware/e2e.js';
import { parseBillingPeriod } from '../../lib/billing-period.js';
import { blindStateConfig, E2eStateStore } from '../../lib/e2e-state.js';
import type { BlindMeter, BlindSettings } from '../../lib/e2e-windows.js';
import { FLAT_TARIFF } from '../../lib/tariff.js';
import { parseRelease } from '../../protocol/e2e.js';
import { encodeFrame, SC_AES256GCM, sealFrame } from '../../protocol/frame.js';
import { generatePaillier, type PrivateKey } from '../../protocol/paillier/engine.js';
import { splitKey, type DecryptionShare } from '../../protocol/paillier/threshold.js';
import type { Reading } from '../../protocol/reading.js';
import { openAggregate } from '../../protocol/seal.js';
import { encodeUplink } from '../../protocol/uplink.js';
import { PesE2e } from '../../pes/e2e.js';

const H = 1_704_067_200;
const IDS = ['48534d5200000001', '48534d5200000002'];
const settings: BlindSettings = { intervalS: 3600, billing: parseBillingPeriod('1d'), tz: 'UTC', tariff: FLAT_TARIFF, latenessS: 60, k: 2, revisionK: 2, dpEpsilon: 0.5 };
const aesKey = (i: number) => Buffer.alloc(32, i + 1);
const meters = new Map<string, BlindMeter>(IDS.map((id, i) => [id, { key: aesKey(i), household: `hh-${i}`, neighbourhood: 'nb-1' }]));
const mdms = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signer = generateKeyPairSync('ed25519');
const dir = mkdtempSync(join(tmpdir(), 'sm-e2e-ledger-'));
let key: PrivateKey;
let share: DecryptionShare;
beforeAll(async () => {
  key = await generatePaillier(1024);
  share = splitKey(key).pes;
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function frame(enc: E2eEncoder, i: number, t: number, ic: number): Buffer {
  const prevWh = ((t - H) / 60) * (i + 1);
  const readings: Reading[] = Array.from({ length: 15 }, (_, j) => ({ time: t + j * 60, period: 60, importWh: prevWh + (j + 1) * (i + 1), powerW: 60 * (i + 1), status: 0 }));
  return encodeFrame(sealFrame(aesKey(i), { systemTitle: Buffer.from(IDS[i]!, 'hex'), sc: SC_AES256GCM, ic }, enc.encode({ prevWh, readings })));
}

/** The `dp` ledger of every neighbourhood release in `out`, in order. */
function ledgers(out: { topic: string; payload: Buffer }[]): unknown[] {
  return out
    .filter((m) => m.topic.startsWith('sm/v1/agg/neighbourhood/'))
    .map((m) => parseRelease(key, openAggregate(mdms.privateKey, m.topic, m.payload, signer.publicKey)).dp);
}

describe('the blind PES DP ledger', () => {
  it('is saved with the state and goes on after a restart', () => {
    const file = join(dir, 'pes.sqlite');
    const encs = IDS.map(() => new E2eEncoder(key, { intervalS: 3600, tariff: FLAT_TARIFF, dp: { epsilon: 0.5, sensitivityWh: 7360, shares: 2 } }));
    const open = () => E2eStateStore.open(file, { role: 'pes', paillierKeyId: key.keyId, config: blindStateConfig(settings) });
    const keys = { share, mdmsPublic: mdms.publicKey, signer: signer.privateKey, meters };
    let ic = 1;
    const feed = (pes: PesE2e, from: number, to: number) => {
      for (let b = from; b < to; b++) pes.ingestUplink(encodeUplink({ gateway: 'gw-1', frames: encs.map((e, i) => frame(e, i, H + b * 900, ic)) })), ic++;
    };

    const first = new PesE2e(settings, keys);
    let store = open();
    feed(first, 0, 6); // 1 h 30 min: the first hour's window closes (lateness 60 s) and is released
    let out = first.takeOutbox();
    store.commit(first.windows.checkpoint(), out, [], first.ledgerState.save());
    expect(ledgers(out)).toEqual([{ epsilon: 0.5, spent: 0.5 }]);
    expect(first.ledgerState.save()).toBeUndefined(); // unchanged since the last commit
    store.close();

    const second = new PesE2e(settings, keys);
    store = open();
    const snapshot = store.load();
    second.windows.restore(snapshot);
    second.ledgerState.restore(snapshot.extra);
    feed(second, 6, 13); // to 3 h 15 min: the second and third hours close
    out = second.takeOutbox();
    expect(ledgers(out)).toEqual([{ epsilon: 0.5, spent: 1 }, { epsilon: 0.5, spent: 1.5 }]);
    expect(second.dpReleases).toBe(3);
    store.close();
    expect(() => second.ledgerState.restore({ dpSpent: { 'nb-1': -1 }, dpReleases: 1 })).toThrow(/malformed DP ledger/);
  });

  it('withholds a release beyond the day budget, counted and logged, and keeps the day across a restart', () => {
    const file = join(dir, 'budget.sqlite');
    const T = H + 21 * 3600; // 21:00 UTC: the windows of 21, 22 and 23 h are one day, 00 h the next
    const encs = IDS.map(() => new E2eEncoder(key, { intervalS: 3600, tariff: FLAT_TARIFF, dp: { epsilon: 0.5, sensitivityWh: 7360, shares: 2 } }));
    const open = () => E2eStateStore.open(file, { role: 'pes', paillierKeyId: key.keyId, config: blindStateConfig(settings) });
    const keys = { share, mdmsPublic: mdms.publicKey, signer: signer.privateKey, meters };
    const warned: unknown[] = [];
    const log = { warn: (o: unknown) => void warned.push(o) } as unknown as Pick<Logger, 'warn'>;
    let ic = 1;
    const feed = (pes: PesE2e, from: number, to: number) => {
      for (let b = from; b < to; b++) pes.ingestUplink(encodeUplink({ gateway: 'gw-1', frames: encs.map((e, i) => frame(e, i, T + b * 900, ic)) })), ic++;
    };

    const first = new PesE2e(settings, keys, { dpBudget: 1, log });
    let store = open();
    feed(first, 0, 9); // to 23:15: the windows of 21 and 22 h close, spending the whole day's budget
    let out = first.takeOutbox();
    store.commit(first.windows.checkpoint(), out, [], first.ledgerState.save());
    expect(ledgers(out)).toEqual([{ epsilon: 0.5, spent: 0.5 }, { epsilon: 0.5, spent: 1 }]);
    expect(first.dpBudgetHeld).toBe(0);
    store.close();

    const second = new PesE2e(settings, keys, { dpBudget: 1, log });
    store = open();
    const snapshot = store.load();
    second.windows.restore(snapshot);
    second.ledgerState.restore(snapshot.extra);
    feed(second, 9, 17); // to 01:15: 23 h closes (over the day's budget), then 00 h (the next day's)
    out = second.takeOutbox();
    const nb = out.filter((m) => m.topic.startsWith('sm/v1/agg/neighbourhood/')).map((m) => parseRelease(key, openAggregate(mdms.privateKey, m.topic, m.payload, signer.publicKey)));
    expect(nb.map((r) => [r.start - T, r.dp])).toEqual([[3 * 3600, { epsilon: 0.5, spent: 1.5 }]]); // 23 h withheld, never sealed
    expect(second.dpBudgetHeld).toBe(1);
    expect(warned).toEqual([expect.objectContaining({ neighbourhood: 'nb-1', start: T + 2 * 3600, budget: 1 })]);
    expect(second.dpReleases).toBe(3); // charged only for what went out
    expect(second.ledgerState.save()).toMatchObject({ dpBudgetHeld: 1, dpSpent: { 'nb-1': 1.5 } });
    store.close();

    expect(() => new PesE2e({ ...settings, dpEpsilon: undefined }, keys, { dpBudget: 1 })).toThrow(/needs dp-epsilon/);
    expect(() => new PesE2e(settings, keys, { dpBudget: 0.25 })).toThrow(/at least dp-epsilon/);
    expect(() => second.ledgerState.restore({ dpSpent: {}, dpReleases: 1, dpDays: { 'nb-1|x': 1 } })).toThrow(/malformed DP ledger/);
  });
});
