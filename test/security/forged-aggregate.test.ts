/**
 * Security finding (issue 15 item 1): "anyone with the PES's broker password can get a forged aggregate
 * stored". The seal is encryption to the MDMS's public key, which is public; before the PES signed its seals,
 * the broker ACL was all that stood between a stolen `pes` password and the utility's bills.
 *
 * The attacker here has exactly that: `credentials/pes.json` of a provisioned key set and the MDMS public key
 * (`pes/mdms.pub.pem`), and connects to the embedded broker, whose ACL lets `pes` publish `sm/v1/agg/#`. The MDMS
 * ingest is the real one with its own credentials. A genuinely signed aggregate (the PES's signing key stands in
 * for the PES) is the positive control.
 */
import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import mqtt from 'mqtt';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBroker, type BrokerHandle } from '../../broker/broker.js';
import { loadUsers } from '../../lib/broker-users.js';
import { brokerUsersPath, loadCredentials, loadFleet, loadMdmsKey, loadPesKeys, loadPesVerifyKey } from '../../lib/keyset.js';
import { startMdmsIngest, type MdmsIngest } from '../../mdms/ingest.js';
import { openStore } from '../../mdms/store/index.js';
import type { Store } from '../../mdms/store/types.js';
import type { BillingAggregate } from '../../protocol/aggregate.js';
import { cborDecode, cborEncode } from '../../protocol/cbor.js';
import { sealAggregate } from '../../protocol/seal.js';
import { topics } from '../../protocol/topics.js';
import { provisionFleet } from './rig.js';

const dir = mkdtempSync(join(tmpdir(), 'sm-forged-agg-'));
let keysDir: string;
let broker: BrokerHandle;
let store: Store;
let mdms: MdmsIngest;
const logLines: { level: number; msg: string; topic?: string }[] = [];

const DAY = 86_400;
const START = 1_717_200_000 - (1_717_200_000 % DAY);
const bill = (household: string, bands: Record<string, number>, start = START): BillingAggregate => ({ kind: 'billing', key: household, start, end: start + DAY, revision: 0, bands });

beforeAll(async () => {
  ({ keysDir } = await provisionFleet(dir, [
    ['m1', 'hh1', 'nb1', 'synthetic:1'],
    ['m2', 'hh2', 'nb1', 'synthetic:2'],
  ]));
  broker = await startBroker({ users: loadUsers(brokerUsersPath(keysDir)), port: 0, logger: pino({ level: 'silent' }) });
  store = await openStore(join(dir, 'mdms.sqlite'));
  const sink = new Writable({
    write(chunk, _e, cb) {
      for (const line of String(chunk).split('\n').filter(Boolean)) logLines.push(JSON.parse(line) as (typeof logLines)[number]);
      cb();
    },
  });
  mdms = startMdmsIngest({
    store,
    privateKey: loadMdmsKey(keysDir),
    pesVerifyKey: loadPesVerifyKey(keysDir),
    mqtt: { url: broker.url, ...loadCredentials(keysDir, 'mdms') },
    k: 1,
    fleet: loadFleet(keysDir),
    log: pino({ level: 'info' }, sink),
  });
  await mdms.ready;
}, 120_000);

afterAll(async () => {
  await mdms?.close();
  await store?.close();
  await broker?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Publishes as the holder of the PES's broker password (and nothing else of the PES). */
async function publishAsPes(topic: string, payload: Buffer): Promise<void> {
  const c = await mqtt.connectAsync(broker.url, { ...loadCredentials(keysDir, 'pes'), clientId: `pes-stolen-${Math.random().toString(36).slice(2)}`, reconnectPeriod: 0 });
  try {
    await c.publishAsync(topic, payload, { qos: 1 });
  } finally {
    await c.endAsync();
  }
}

describe('a forged billing aggregate published with the PES broker password', () => {
  // What the attacker has: the PES's broker password and the MDMS public key.
  const mdmsPublic = () => createPublicKey(readFileSync(join(keysDir, 'pes/mdms.pub.pem')));
  const hh1 = topics.billing('hh1');
  const FORGED = { offpeak: 913_579 }; // a value to look for in the store and the logs

  it('is refused when unsigned, signed with another Ed25519 key, or signed by the PES for another topic; each counted and logged; a PES-signed one is stored', async () => {
    const c0 = { ...mdms.counters };
    // 1. unsigned: the previous version's five-element seal, which anyone could make
    const unsigned = cborEncode((cborDecode(sealAggregate(mdmsPublic(), hh1, bill('hh1', FORGED), generateKeyPairSync('ed25519').privateKey)) as unknown[]).slice(0, 5));
    // 2. signed, but with the attacker's own Ed25519 key
    const otherKey = sealAggregate(mdmsPublic(), hh1, bill('hh1', FORGED, START + DAY), generateKeyPairSync('ed25519').privateKey);
    // 3. a seal the PES really signed, but for hh2's topic, moved to hh1's
    const pesSigner = loadPesKeys(keysDir).signer; // the PES itself, for the genuine messages only
    const hh2Genuine = sealAggregate(mdmsPublic(), topics.billing('hh2'), bill('hh2', { offpeak: 4321 }), pesSigner);
    await publishAsPes(topics.billing('hh2'), hh2Genuine); // as the PES published it
    await mdms.waitFor((c) => c.stored === c0.stored + 1);
    for (const forged of [unsigned, otherKey, hh2Genuine]) await publishAsPes(hh1, forged);
    await mdms.waitFor((c) => c.badSignature === c0.badSignature + 3);

    expect(await store.latestBilling({ household: 'hh1' })).toEqual([]);
    expect(mdms.counters).toMatchObject({ badSignature: c0.badSignature + 3, stored: c0.stored + 1, malformed: c0.malformed, unsealFailed: c0.unsealFailed });
    const refused = logLines.filter((l) => l.level === 50 && /aggregate not signed by the PES/.test(l.msg));
    expect(refused.map((l) => l.topic)).toEqual([hh1, hh1, hh1]);
    // logged by ids and counters, never the forged value
    expect(JSON.stringify(logLines)).not.toContain(String(FORGED.offpeak));
    expect(JSON.stringify(await store.dump())).not.toContain(String(FORGED.offpeak));

    // Positive control: the same kind of message, signed by the PES for hh1's topic, is stored.
    await publishAsPes(hh1, sealAggregate(mdmsPublic(), hh1, bill('hh1', { offpeak: 1234 }), pesSigner));
    await mdms.waitFor((c) => c.stored === c0.stored + 2);
    expect((await store.latestBilling({ household: 'hh1' })).map((r) => [r.band, r.energyWh])).toEqual([['offpeak', 1234]]);
    expect(mdms.counters.badSignature).toBe(c0.badSignature + 3);
  });
});
