/**
 * The DP ledger (each noised neighbourhood release reports `dp: {epsilon, spent}`, persisted across restarts),
 * the optional per-day budget, and the PES's policy statement (docs/protocol.md §11.3) as the MDMS opens it.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { pino } from 'pino';
import { startBroker } from '../../broker/broker.js';
import { createPes, resolveSettings, type CreatePesOptions } from '../../pes/pes.js';
import { startPesService } from '../../pes/mqtt.js';
import { GUARD_COUNTERS } from '../../pes/core/counters.js';
import { parsePolicyStatement, type BillingAggregate, type NeighbourhoodAggregate, type PolicyStatement } from '../../protocol/aggregate.js';
import { openAggregate } from '../../protocol/seal.js';
import { topics } from '../../protocol/topics.js';
import { makeFleet, openAggregates, uplink, type SimMeter, type TestFleet } from './helpers.js';

const log = pino({ level: 'silent' });
const DAY = 1_700_000_000 - (1_700_000_000 % 86400);
const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
const cleanup: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

function stateFile(): string {
  const d = mkdtempSync(join(tmpdir(), 'pes-dp-'));
  dirs.push(d);
  return join(d, 'pes.db');
}

function open(f: TestFleet, o: Partial<CreatePesOptions> = {}) {
  return createPes({ keys: f.keys, intervalS: 900, latenessS: 60, k: 2, logger: log, ...o });
}

async function nbs(f: TestFleet, pes: ReturnType<typeof createPes>): Promise<NeighbourhoodAggregate[]> {
  await pes.idle();
  return openAggregates(f, pes.sent.filter((m) => m.kind === 'neighbourhood')) as NeighbourhoodAggregate[];
}

/** One uplink per neighbourhood-interval: every meter's next 15 minutes; meters 0 and 1 export. */
function step(f: TestFleet, pes: ReturnType<typeof createPes>, skip: (i: number) => boolean = () => false): void {
  const frames = (f.meters as SimMeter[]).flatMap((m, i) => (skip(i) ? [] : [m.frame(m.batch(15, 60, () => 10 + i, i < 2 ? () => 20 : undefined))]));
  pes.ingestUplink(uplink(frames));
}

describe('DP ledger', () => {
  it('each noised release carries {epsilon, spent}; spent grows by epsilon per release of its neighbourhood (revisions included) and survives a kill -9', async () => {
    const f = await makeFleet({ n: 4, nbs: 2, start: DAY }); // nb0: meters 0 and 2, nb1: meters 1 and 3
    const file = stateFile();
    const opts = { stateFile: file, dpEpsilon: 0.1, k: 1, revisionK: 1 };
    let pes = open(f, opts);
    for (let s = 0; s < 4; s++) step(f, pes); // windows 0..3; 0..2 close
    let r = await nbs(f, pes);
    const ledger = (key: string) => r.filter((x) => x.key === key).map((x) => x.dp);
    // 0.1 + 0.1 + 0.1 is 0.30000000000000004 in floating point; the ledger says 0.3.
    expect(ledger('nb0')).toEqual([0.1, 0.2, 0.3].map((spent) => ({ epsilon: 0.1, spent })));
    expect(ledger('nb1')).toEqual([0.1, 0.2, 0.3].map((spent) => ({ epsilon: 0.1, spent })));
    pes.abandon(); // kill -9 after the last commit

    pes = open(f, opts); // the same state file
    const m2 = f.meters[2] as SimMeter;
    const late = m2.batch(15, 60, () => 12); // meter 2 (nb0) skips window 4 ...
    const lateIc = m2.ic++;
    step(f, pes, (i) => i === 2);
    step(f, pes);
    pes.ingestUplink(uplink([m2.frame(late, lateIc)])); // ... and fills it late: a revision, noised again
    // Whatever the crash left unconfirmed in the outbox goes out again first (the same bytes); skip it.
    r = (await nbs(f, pes)).filter((x) => x.start >= DAY + 3 * 900);
    expect(r.filter((x) => x.key === 'nb0').map((x) => [(x.start - DAY) / 900, x.revision, x.meters, x.dp!.spent])).toEqual([
      [3, 0, 2, 0.4],
      [4, 0, 1, 0.5],
      [4, 1, 2, 0.6],
    ]);
    expect(r.filter((x) => x.key === 'nb1').map((x) => x.dp!.spent)).toEqual([0.4, 0.5]);
    expect(pes.counters.dpReleases).toBe(6 + 5);
    await pes.close();
  });

  it('noise lands on import and on export, independently; bills stay exact, feed-in included', async () => {
    const f = await makeFleet({ n: 3, start: DAY });
    const pes = open(f, { dpEpsilon: 100 }); // scale 18.4 Wh: small beside the totals, so no total is clamped at 0
    for (let s = 0; s < 6; s++) step(f, pes);
    pes.flush();
    await pes.idle();
    const all = openAggregates(f, pes.sent);
    const nb = all.filter((b): b is NeighbourhoodAggregate => b.kind === 'neighbourhood');
    expect(nb).toHaveLength(6);
    // True totals: import 15 x (10 + 11 + 12) = 495, export 15 x 2 x 20 = 600. A draw is 0 with probability 2.7 %.
    expect(nb.filter((b) => b.energyWh !== 495).length).toBeGreaterThanOrEqual(3);
    expect(nb.filter((b) => b.exportWh !== 600).length).toBeGreaterThanOrEqual(3);
    // Two draws, not one added to both: equal noise on both happens with probability 1.4 % per release.
    expect(nb.filter((b) => b.energyWh - 495 !== b.exportWh! - 600).length).toBeGreaterThanOrEqual(4);
    const bills = all.filter((b): b is BillingAggregate => b.kind === 'billing');
    expect(bills.map((b) => [b.bands.flat, b.exportBands?.flat])).toEqual([
      [6 * 150, 6 * 300],
      [6 * 165, 6 * 300],
      [6 * 180, undefined],
    ]);
    await pes.close();
  });

  it('--dp-budget holds (and counts) the releases of a neighbourhood-day beyond its budget, across a restart; the next day starts afresh', async () => {
    const start = DAY + 86400 - 3 * 900; // 23:15: three windows before midnight, then the next day
    const f = await makeFleet({ n: 2, start });
    const file = stateFile();
    const opts = { stateFile: file, dpEpsilon: 1, dpBudget: 2 };
    let pes = open(f, opts);
    for (let s = 0; s < 2; s++) step(f, pes);
    pes.flush(); // windows 23:15 and 23:30: within the budget
    expect((await nbs(f, pes)).map((x) => x.dp)).toEqual([
      { epsilon: 1, spent: 1 },
      { epsilon: 1, spent: 2 },
    ]);
    await pes.close();
    pes = open(f, opts);
    for (let s = 0; s < 4; s++) step(f, pes);
    pes.flush();
    const r = await nbs(f, pes);
    // 23:45 would make 3 for that day: held. 00:00, 00:15 spend the new day's budget; 00:30 is held again.
    expect(r.map((x) => [(x.start - DAY - 86400) / 900, x.dp!.spent])).toEqual([
      [0, 3],
      [1, 4],
    ]);
    expect(pes.counters.dpBudgetHeld).toBe(2);
    expect(pes.counters.dpReleases).toBe(4);
    await pes.close();
  });

  it('refuses a budget without epsilon or below it', () => {
    expect(() => resolveSettings({ dpBudget: 5 })).toThrow(/dp-budget needs dp-epsilon/);
    expect(() => resolveSettings({ dpEpsilon: 1, dpBudget: 0.5 })).toThrow(/at least dp-epsilon/);
    expect(resolveSettings({ dpEpsilon: 1, dpBudget: 24 }).dpBudget).toBe(24);
  });
});

/** Opens and validates a policy statement exactly as the MDMS does. */
function statement(f: TestFleet, topic: string, payload: Buffer): PolicyStatement {
  return parsePolicyStatement(topic, openAggregate(f.mdms, topic, payload, f.pesVerify));
}

describe('policy statement', () => {
  it('the MDMS side parses what the PES publishes, sealed and signed; its guard counters are the PES counters', async () => {
    const f = await makeFleet({ n: 4, start: DAY });
    const pes = open(f, { pesId: 'pes-east', k: 3, dpEpsilon: 0.5 });
    const m3 = f.meters[3] as SimMeter;
    const late = m3.batch(15);
    const lateIc = m3.ic++;
    step(f, pes, (i) => i === 3); // window 0: 3 of 4 meters (held by the membership guard: 1 off the provisioned 4)
    for (let s = 0; s < 2; s++) step(f, pes);
    pes.ingestUplink(uplink([m3.frame(late, lateIc)]));
    const body = pes.publishPolicy(1_800_000_000);
    await pes.idle();
    const sent = pes.sent.filter((m) => m.kind === 'policy');
    expect(sent.map((m) => m.topic)).toEqual(['sm/v1/agg/policy/pes-east']);
    const p = statement(f, sent[0]!.topic, sent[0]!.payload);
    expect(p).toEqual(body);
    expect(p).toMatchObject({ kind: 'policy', key: 'pes-east', at: 1_800_000_000, k: 3, revisionK: 3, membershipGuard: true, dpEpsilon: 0.5 });
    expect(Object.keys(p.counters).sort()).toEqual([...GUARD_COUNTERS].sort());
    for (const name of GUARD_COUNTERS) expect(p.counters[name], name).toBe(pes.counters[name]);
    expect(p.counters.membershipHeld).toBeGreaterThan(0);
    expect(p.counters.dpReleases).toBeGreaterThan(0);
    expect(pes.counters.policyStatements).toBe(1);
    // Moved to another PES's topic it does not open (the seal binds the topic).
    expect(() => statement(f, topics.policy('pes'), sent[0]!.payload)).toThrow();
    await pes.close();
  });

  it('the service publishes one on start, one when a guard counter changed (no more often than its interval), none while nothing changes', async () => {
    const broker = await startBroker({ port: 0, logger: log });
    cleanup.push(() => broker.close());
    const f = await makeFleet({ n: 2, start: DAY });
    const mdms = await mqtt.connectAsync(broker.url, { clientId: 'mdms-policy-test', protocolVersion: 4, reconnectPeriod: 0 });
    cleanup.push(() => mdms.endAsync(true));
    const got: PolicyStatement[] = [];
    mdms.on('message', (topic, payload) => {
      if (topic === topics.policy('pes')) got.push(statement(f, topic, payload));
    });
    await mdms.subscribeAsync(topics.aggregatesAll, { qos: 1 });
    const svc = startPesService({ keys: f.keys, intervalS: 900, latenessS: 60, k: 2, logger: log, policyIntervalMs: 400, mqtt: { url: broker.url, clientId: 'pes-policy-test' } });
    cleanup.push(() => svc.close());
    await svc.ready;
    const until = async (pred: () => boolean, what: string) => {
      const t0 = Date.now();
      while (!pred()) {
        if (Date.now() - t0 > 10_000) throw new Error(`timed out waiting for ${what}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    await until(() => got.length === 1, 'the statement on start');
    expect(got[0]!.counters.released).toBe(0);
    await new Promise((r) => setTimeout(r, 1000)); // two intervals without a change
    expect(got).toHaveLength(1);
    const gw = await mqtt.connectAsync(broker.url, { clientId: 'gw-policy-test', protocolVersion: 4, reconnectPeriod: 0 });
    cleanup.push(() => gw.endAsync(true));
    const ms = f.meters as SimMeter[];
    for (let s = 0; s < 9; s++) await gw.publishAsync(topics.frames('gw-nb0'), uplink(ms.map((m) => m.frame(m.batch(15)))), { qos: 1 });
    await until(() => svc.pes.counters.released === 8, 'eight releases');
    await until(() => got.length >= 2 && got[got.length - 1]!.counters.released === 8, 'a statement with the new counters');
    const n = got.length;
    expect(n - 1).toBeLessThan(8); // at most once per interval, not once per release
    for (const name of GUARD_COUNTERS) expect(got[n - 1]!.counters[name], name).toBe(svc.pes.counters[name]);
    expect(svc.pes.counters.policyStatements).toBe(n);
    await new Promise((r) => setTimeout(r, 1000));
    expect(got).toHaveLength(n);
  });
});
