/**
 * Several MDMS ingest workers over one PostgreSQL store (docs/operations.md "MDMS ingest workers"): each worker
 * has its own persistent session (`--client-id mdms-1`, `mdms-2`) on `sm/v1/agg/#`, so every worker receives
 * every aggregate, and the store's insert (advisory lock on the (key, start), then compare or insert, in one
 * transaction) makes exactly one of them store it. Raced here twice: two stores inserting the same aggregates
 * at once, and two ingests over a real broker receiving the same messages; then one worker is stopped
 * mid-stream without acknowledging and the other stores everything alone, and the stopped one, back, finds
 * it all stored. Needs PostgreSQL (fails under CI=true when it is missing).
 */
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import mqtt, { type MqttClient } from 'mqtt';
import { pino } from 'pino';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startBroker, type BrokerHandle } from '../../broker/broker.js';
import type { Aggregate } from '../../protocol/aggregate.js';
import { sealAggregate } from '../../protocol/seal.js';
import { topics } from '../../protocol/topics.js';
import { startMdmsIngest, type MdmsIngest } from '../../mdms/ingest.js';
import { openStore } from '../../mdms/store/index.js';
import type { InsertOutcome, Store } from '../../mdms/store/types.js';
import { PG_UP, PG_URL, RUN_PG, billingAgg, dropSchema, nbAgg, uniqueSchema } from './helpers.js';

const T0 = 1_714_521_600;
const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

let mdmsKey: { publicKey: KeyObject; privateKey: KeyObject };
const pesKey = generateKeyPairSync('ed25519');
beforeAll(() => {
  mdmsKey = generateKeyPairSync('rsa', { modulusLength: 2048 });
});

/** Two stores (two pools: two workers' connections) on one fresh schema. */
async function twoStores(): Promise<[Store, Store]> {
  if (!PG_UP) throw new Error(`PostgreSQL is not reachable at ${PG_URL} (CI=true: this test must not be skipped)`);
  const schema = uniqueSchema();
  cleanups.push(() => dropSchema(schema));
  const a = await openStore(PG_URL, { schema });
  cleanups.push(() => a.close());
  const b = await openStore(PG_URL, { schema });
  cleanups.push(() => b.close());
  return [a, b];
}

/**
 * The stream a PES releases: 3 neighbourhoods x 8 windows, each window at revisions 0 and 1 (a late meter),
 * and 3 households' daily bills with two bands: 54 aggregates, each (kind, key, start, revision) once.
 */
function releases(): Aggregate[] {
  const out: Aggregate[] = [];
  for (let w = 0; w < 8; w++) {
    for (const nb of ['nb1', 'nb2', 'nb3']) {
      for (const revision of [0, 1]) out.push(nbAgg({ key: nb, start: T0 + w * 900, revision, meters: 5 + revision, energyWh: 1000 + w * 10 + revision }));
    }
  }
  for (const hh of ['hh1', 'hh2', 'hh3']) out.push(billingAgg({ key: hh, start: T0, bands: { peak: 3000 + hh.length, offpeak: 4500 } }));
  return out;
}

/** Rows the schema holds: one per neighbourhood aggregate revision, one per billing band. */
async function rowCounts(store: Store): Promise<{ neighbourhood: number; billing: number }> {
  const d = await store.dump();
  return { neighbourhood: d.neighbourhood_aggregate!.length, billing: d.billing_aggregate!.length };
}

const stored = (o: InsertOutcome) => o === 'stored' || o === 'revision';

describe.runIf(RUN_PG)('MDMS ingest workers on one PostgreSQL store', () => {
  it('two stores inserting the same aggregates at the same moment: each is stored exactly once, every other attempt is a duplicate', async () => {
    const [a, b] = await twoStores();
    const aggs = releases();
    // Every aggregate three times from each worker, all attempts in flight together (two pools of 4 connections).
    const attempts = aggs.flatMap((agg) => [a, b, a, b, a, b].map((s) => ({ agg, s })));
    const outcomes = await Promise.all(attempts.map(({ agg, s }) => (agg.kind === 'neighbourhood' ? s.insertNeighbourhood(agg) : s.insertBilling(agg))));
    const byAgg = new Map<string, InsertOutcome[]>();
    attempts.forEach(({ agg }, i) => {
      const id = `${agg.kind}|${agg.key}|${agg.start}|${agg.revision}`;
      byAgg.set(id, [...(byAgg.get(id) ?? []), outcomes[i]!]);
    });
    expect(byAgg.size).toBe(aggs.length);
    for (const [id, os] of byAgg) {
      expect(os.filter(stored), id).toHaveLength(1);
      expect(os.filter((o) => o === 'duplicate'), id).toHaveLength(5);
    }
    expect(await rowCounts(a)).toEqual({ neighbourhood: 48, billing: 6 });
    const latest = await b.latestNeighbourhood();
    expect(latest).toHaveLength(24);
    for (const r of latest) expect([r.revision, r.meters]).toEqual([1, 6]);
  });

  it('two ingests over a broker receive the same messages: one stores each aggregate, the other counts a duplicate; a worker stopped mid-stream loses nothing', async () => {
    const [storeA, storeB] = await twoStores();
    const broker: BrokerHandle = await startBroker({ logger: pino({ level: 'silent' }) });
    cleanups.push(() => broker.close());
    const pub: MqttClient = await mqtt.connectAsync(broker.url, { clientId: 'pes-test', clean: true, reconnectPeriod: 0 });
    cleanups.push(() => pub.endAsync());
    const worker = (store: Store, clientId: string): MdmsIngest => {
      const w = startMdmsIngest({
        store,
        privateKey: mdmsKey.privateKey,
        pesVerifyKey: pesKey.publicKey,
        mqtt: { url: broker.url, clientId, reconnectPeriod: 200 },
        log: pino({ level: 'silent' }),
        retry: { initialMs: 20, maxMs: 100 },
        k: 1,
      });
      cleanups.push(() => w.close());
      return w;
    };
    const publish = async (agg: Aggregate): Promise<void> => {
      const t = agg.kind === 'neighbourhood' ? topics.neighbourhood(agg.key) : topics.billing(agg.key);
      await pub.publishAsync(t, sealAggregate(mdmsKey.publicKey, t, agg, pesKey.privateKey), { qos: 1 });
    };
    const aggs = releases();
    const first = aggs.slice(0, 30);
    const rest = aggs.slice(30);

    const w1 = worker(storeA, 'mdms-1');
    const w2 = worker(storeB, 'mdms-2');
    await Promise.all([w1.ready, w2.ready]);
    await Promise.all(first.map(publish)); // both sessions get every message at once: the workers race
    await Promise.all([w1.waitFor((c) => c.received >= first.length), w2.waitFor((c) => c.received >= first.length)]);
    for (const w of [w1, w2]) expect(w.counters.received).toBe(first.length);
    expect(w1.counters.stored + w2.counters.stored).toBe(first.length);
    expect(w1.counters.duplicates + w2.counters.duplicates).toBe(first.length);
    expect(w1.counters.conflicts + w2.counters.conflicts + w1.counters.rejectedGap + w2.counters.rejectedGap).toBe(0);

    // Worker 1 stops (its session keeps what arrives meanwhile); worker 2 alone stores the rest.
    await w1.close();
    await Promise.all(rest.map(publish));
    await w2.waitFor((c) => c.received >= aggs.length);
    expect(await rowCounts(storeB)).toEqual({ neighbourhood: 48, billing: 6 });

    // Worker 1 back on its session: the messages queued for it are all duplicates now.
    const w1b = worker(storeA, 'mdms-1');
    await w1b.waitFor((c) => c.received >= rest.length);
    expect(w1b.counters).toMatchObject({ received: rest.length, stored: 0, duplicates: rest.length, conflicts: 0, rejectedGap: 0 });
    expect(await rowCounts(storeA)).toEqual({ neighbourhood: 48, billing: 6 });
    expect((await storeA.latestBilling()).map((r) => [r.household, r.band, r.energyWh])).toEqual([
      ['hh1', 'offpeak', 4500], ['hh1', 'peak', 3003], ['hh2', 'offpeak', 4500], ['hh2', 'peak', 3003], ['hh3', 'offpeak', 4500], ['hh3', 'peak', 3003],
    ]);
  });
});
