// mdms/e2e-ingest.ts: a half (PES release or guardian partial) acknowledged before its counterpart arrived is
// kept in the store, so an MDMS process that dies in between and a new one started on the same database still
// combine the pair: the aggregate is stored once, nothing stays waiting, and a copy of a half that comes again
// after the pair was combined is a duplicate. Markers and orphan halves are pruned past the retention, and a pair
// that comes again after its marker was pruned is not stored twice. Over the embedded broker.
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBroker, type BrokerHandle } from '../../broker/broker.js';
import { E2E_RETENTION_MS, startMdmsE2eIngest } from '../../mdms/e2e-ingest.js';
import { openStore } from '../../mdms/store/index.js';
import { partialBody, registerLayout, releaseBody } from '../../protocol/e2e.js';
import { generatePaillier, partialDecrypt, splitKey, type PrivateKey } from '../../protocol/paillier/engine.js';
import type { DecryptionShare } from '../../protocol/paillier/threshold.js';
import { sealAggregate } from '../../protocol/seal.js';
import { topics } from '../../protocol/topics.js';

const mdmsKey = generateKeyPairSync('rsa', { modulusLength: 2048 });
const pesSign = generateKeyPairSync('ed25519');
const guardianSign = generateKeyPairSync('ed25519');
const dir = mkdtempSync(join(tmpdir(), 'sm-mdms-e2e-'));
let key: PrivateKey;
let shares: { pes: DecryptionShare; guardian: DecryptionShare };
let broker: BrokerHandle;
beforeAll(async () => {
  key = await generatePaillier(1024);
  shares = splitKey(key);
  broker = await startBroker({ logger: pino({ level: 'silent' }) });
});
afterAll(async () => {
  await broker.close();
  rmSync(dir, { recursive: true, force: true });
});

const until = async (check: () => boolean | Promise<boolean>, what: string) => {
  const t0 = Date.now();
  while (!(await check())) {
    if (Date.now() - t0 > 20_000) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};

describe('MDMS e2e ingest: a waiting half survives the MDMS', () => {
  it('a release acknowledged, the MDMS gone, a new MDMS on the same database combines it with the partial that arrives later', async () => {
    const db = join(dir, 'mdms.sqlite');
    const w = { kind: 'neighbourhood' as const, key: 'nb-1', start: 1_704_067_200, end: 1_704_068_100 };
    const c = key.encrypt(registerLayout(key, 1).pack([5000n, 120n]));
    const release = releaseBody(key, { ...w, revision: 0, meters: 3, bands: ['flat'], ciphertext: c, partial: partialDecrypt(shares.pes, c) });
    const partial = partialBody(key, { ...w, meters: 3, partial: partialDecrypt(shares.guardian, c) });
    const pub = await mqtt.connectAsync(broker.url, { clientId: 'test-pub', clean: true, reconnectPeriod: 0 });
    const start = async () => {
      const store = await openStore(db);
      const ingest = startMdmsE2eIngest({ store, privateKey: mdmsKey.privateKey, pesVerifyKey: pesSign.publicKey, guardianVerifyKey: guardianSign.publicKey, paillier: key, mqtt: { url: broker.url }, k: 3, log: pino({ level: 'silent' }) });
      await ingest.ready;
      return { store, ingest };
    };
    try {
      const first = await start();
      const relTopic = topics.neighbourhood(w.key);
      await pub.publishAsync(relTopic, sealAggregate(mdmsKey.publicKey, relTopic, release, pesSign.privateKey), { qos: 1 });
      await until(async () => (await first.store.pendingHalves()).length === 1, 'the release to be kept');
      expect((await first.store.pendingHalves())[0]).toMatchObject({ half: 'release', topic: relTopic });
      await first.ingest.close();
      await first.store.close();

      const second = await start();
      expect(second.ingest.combiner.waiting).toBe(1);
      const partTopic = topics.partial(w.kind, w.key);
      await pub.publishAsync(partTopic, sealAggregate(mdmsKey.publicKey, partTopic, partial, guardianSign.privateKey), { qos: 1 });
      await until(async () => (await second.store.latestNeighbourhood()).length === 1, 'the combined aggregate');
      expect(await second.store.latestNeighbourhood()).toMatchObject([{ neighbourhood: 'nb-1', start: w.start, end: w.end, revision: 0, meters: 3, energyWh: 5000, exportWh: 120 }]);
      const waiting = async () => (await second.store.pendingHalves()).filter((h) => h.half !== 'combined').length;
      await until(async () => (await waiting()) === 0, 'the waiting release to be forgotten');
      expect(second.ingest.counters).toMatchObject({ stored: 1, duplicates: 0, refusedCombine: 0 });
      // The release published again (the PES's outbox after a crash): a duplicate, not a half left waiting.
      await pub.publishAsync(relTopic, sealAggregate(mdmsKey.publicKey, relTopic, release, pesSign.privateKey), { qos: 1 });
      await until(() => second.ingest.counters.duplicates === 1, 'the copy to be recognised');
      expect(await waiting()).toBe(0);
      expect(await second.store.latestNeighbourhood()).toHaveLength(1);
      await second.ingest.close();
      await second.store.close();
    } finally {
      await pub.endAsync();
    }
  }, 60_000);

  it('prunes markers and orphans past the retention; a pair published again after that is a duplicate, stored once', async () => {
    let now = Date.now();
    const store = await openStore(join(dir, 'prune.sqlite'), { now: () => now });
    const ingest = startMdmsE2eIngest({ store, privateKey: mdmsKey.privateKey, pesVerifyKey: pesSign.publicKey, guardianVerifyKey: guardianSign.publicKey, paillier: key, mqtt: { url: broker.url, clientId: 'mdms-prune' }, k: 3, log: pino({ level: 'silent' }) });
    const pub = await mqtt.connectAsync(broker.url, { clientId: 'test-pub-prune', clean: true, reconnectPeriod: 0 });
    try {
      await ingest.ready;
      const pair = (nb: string, energy: bigint) => {
        const w = { kind: 'neighbourhood' as const, key: nb, start: 1_704_067_200, end: 1_704_068_100 };
        const c = key.encrypt(registerLayout(key, 1).pack([energy, 0n]));
        const relTopic = topics.neighbourhood(nb);
        const partTopic = topics.partial(w.kind, nb);
        return {
          release: () => pub.publishAsync(relTopic, sealAggregate(mdmsKey.publicKey, relTopic, releaseBody(key, { ...w, revision: 0, meters: 3, bands: ['flat'], ciphertext: c, partial: partialDecrypt(shares.pes, c) }), pesSign.privateKey), { qos: 1 }),
          partial: () => pub.publishAsync(partTopic, sealAggregate(mdmsKey.publicKey, partTopic, partialBody(key, { ...w, meters: 3, partial: partialDecrypt(shares.guardian, c) }), guardianSign.privateKey), { qos: 1 }),
        };
      };
      const a = pair('nb-a', 700n);
      const orphan = pair('nb-o', 9n);
      await a.release();
      await a.partial();
      await orphan.release(); // the guardian never answers for nb-o
      await until(async () => ingest.counters.stored === 1 && (await store.pendingHalves()).length === 2, 'a combined and the orphan kept');
      await ingest.prune();
      expect(ingest.counters).toMatchObject({ prunedMarkers: 0, prunedOrphans: 0 }); // within the retention
      now += E2E_RETENTION_MS + 1;
      await ingest.prune();
      expect(ingest.counters).toMatchObject({ prunedMarkers: 1, prunedOrphans: 1 });
      expect(await store.pendingHalves()).toEqual([]);
      expect(ingest.combiner.waiting).toBe(0);
      // Both halves of nb-a published again (the outboxes of a PES and a guardian restored from old state): they
      // pair again, and the aggregate already stored is a duplicate, not a second row or revision.
      await a.release();
      await a.partial();
      await until(() => ingest.combiner.counters.combined === 2 && ingest.counters.duplicates === 1, 'the pair to combine again, and be a duplicate');
      expect(ingest.counters).toMatchObject({ stored: 1, duplicates: 1, conflicts: 0 });
      expect(await store.revisions({ kind: 'neighbourhood', neighbourhood: 'nb-a', start: 1_704_067_200 })).toHaveLength(1);
      expect(await store.latestNeighbourhood()).toMatchObject([{ neighbourhood: 'nb-a', energyWh: 700 }]);
    } finally {
      await pub.endAsync();
      await ingest.close();
      await store.close();
    }
  }, 60_000);
});
