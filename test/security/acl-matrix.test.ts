/**
 * The broker ACL as a matrix: every provisioned user (its own credentials from provisioning) tries to publish
 * to every topic of the system and to subscribe to every filter, on the embedded broker started from the
 * provisioned users.json. The expected matrix is written out below by hand from docs/protocol.md §10 (plus
 * the UCS's read access to sealed household streams, broker/acl.ts) — not derived from buildAcl — so a
 * change to the ACL code that widens or narrows anyone's access fails here.
 *
 * The same matrix runs against Mosquitto 2.x started from the provisioned `broker/mosquitto/` files
 * (provision/mosquitto.ts) on a free port, with one test-only user added to copies of its password and ACL
 * files: `observer`, who reads and writes everything, sees what was routed and publishes "server-side".
 * Mosquitto differs in two ways, both asserted: it answers a refused PUBLISH with a PUBACK and drops it (no
 * disconnect, no counter), and it grants every SUBSCRIBE and filters each message against the `read` rules at
 * delivery. So on Mosquitto the publish matrix and the receive matrix must match; the SUBACK matrix cannot.
 *
 * And against a 3-node NATS cluster (broker/nats-cluster.ts) whose nodes include the provisioned
 * `nats/accounts.conf` (provision/nats.ts), copied with the same test-only `observer`; each connection goes to
 * the next node, so every rule holds on every node. NATS answers a refused SUBSCRIBE with 0x80 (the SUBACK
 * matrix must match, as on the embedded broker) and a refused PUBLISH with a PUBACK, dropping it (as
 * Mosquitto); it keeps no denial counters.
 */
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, appendFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBroker, type BrokerHandle } from '../../broker/broker.js';
import { loadUsers } from '../../lib/broker-users.js';
import { brokerUsersPath, loadCredentials, MOSQUITTO_ACL, MOSQUITTO_CONF, MOSQUITTO_PASSWD, NATS_ACCOUNTS } from '../../lib/keyset.js';
import { mosquittoPasswdLine } from '../../provision/mosquitto.js';
import { natsUserEntry } from '../../provision/nats.js';
import { findNatsServer, startNatsCluster } from '../../broker/nats-cluster.js';
import { MOSQUITTO_BIN, startMosquitto, type MosquittoProcess } from '../../bench/harness/crash/mosquitto.js';
import { freePort } from '../gateway/helpers.js';
import { provisionFleet } from './rig.js';

const dir = mkdtempSync(join(tmpdir(), 'sm-acl-'));
let keysDir: string;
const clients: MqttClient[] = [];
const inCi = process.env.CI === 'true';
const haveMosquitto = existsSync(MOSQUITTO_BIN);
const haveNats = findNatsServer() !== undefined;

/** A broker under test, with a view of what it routed that bypasses the ACL. */
interface Backend {
  url: string;
  /** A cluster's nodes: connection n goes to `urls[n % urls.length]`. */
  urls?: string[];
  /** Messages the broker routed, observed server-side (bypassing the ACL). */
  routed: { topic: string; payload: string }[];
  /** Publishes `topic` as if by its rightful publisher. */
  inject(topic: string): Promise<void>;
  /** The embedded broker's denial counters; Mosquitto keeps none. */
  counters?: BrokerHandle['counters'];
  close(): Promise<void>;
}
let broker: Backend;

const GW1 = 'gateway-gw-nb1';
const GW2 = 'gateway-gw-nb2';
const HH1 = 'household-hh1';
const HH2 = 'household-hh2';
const HH3 = 'household-hh3';
const USERS = [GW1, GW2, 'pes', 'mdms', 'ucs', HH1, HH2, HH3];

/** Who may publish to each topic name (§10: publisher column). */
const PUBLISH: [string, string[]][] = [
  ['sm/v1/frames/gw-nb1', [GW1]],
  ['sm/v1/frames/gw-nb2', [GW2]],
  ['sm/v1/frames/gw-unknown', []],
  ['sm/v1/frames', []],
  ['sm/v1/agg/neighbourhood/nb1', ['pes']],
  ['sm/v1/agg/neighbourhood/nb2', ['pes']],
  ['sm/v1/agg/billing/hh1', ['pes']],
  ['sm/v1/agg/other', ['pes']], // pes publishes under sm/v1/agg/# (§10)
  ['sm/v1/household/hh1/readings', ['pes']],
  ['sm/v1/household/hh3/readings', ['pes']],
  ['sm/v1/household/hh1/other', []],
  ['sm/v1/pes/household-key/hh1', ['ucs']],
  ['sm/v1/pes/household-key/hh2', ['ucs']],
  ['sm/v1/pes/other', []],
  ['$SYS/broker/uptime', []],
  ['other/topic', []],
];

/** Who may subscribe to each filter (§10: subscriber column; a filter is granted only if it reaches nothing more). */
const SUBSCRIBE: [string, string[]][] = [
  ['sm/v1/frames/gw-nb1', ['pes']],
  ['sm/v1/frames/gw-nb2', ['pes']],
  ['sm/v1/frames/+', ['pes']],
  ['sm/v1/frames/#', []],
  ['sm/v1/agg/neighbourhood/nb1', ['mdms']],
  ['sm/v1/agg/billing/hh1', ['mdms']],
  ['sm/v1/agg/+/nb1', ['mdms']],
  ['sm/v1/agg/#', ['mdms']],
  ['sm/v1/household/hh1/readings', [HH1, 'ucs']],
  ['sm/v1/household/hh2/readings', [HH2, 'ucs']],
  ['sm/v1/household/hh1/+', [HH1]],
  ['sm/v1/household/hh1/#', [HH1]],
  ['sm/v1/household/hh3/#', [HH3]],
  ['sm/v1/household/+/readings', ['ucs']],
  ['sm/v1/household/#', []],
  ['sm/v1/pes/household-key/hh1', ['pes']],
  ['sm/v1/pes/household-key/+', ['pes']],
  ['sm/v1/pes/#', []],
  ['sm/v1/+/+', []],
  ['sm/#', []],
  ['+/#', []],
  ['#', []],
  ['$SYS/#', []],
  ['$SYS/broker/uptime', []],
];

/**
 * What each user receives when a message is published on every topic of {@link PUBLISH} (server-side), with
 * every filter of {@link SUBSCRIBE} requested: the topics its granted filters reach.
 */
const RECEIVES: Record<string, string[]> = {
  [GW1]: [],
  [GW2]: [],
  pes: ['sm/v1/frames/gw-nb1', 'sm/v1/frames/gw-nb2', 'sm/v1/frames/gw-unknown', 'sm/v1/pes/household-key/hh1', 'sm/v1/pes/household-key/hh2'],
  mdms: ['sm/v1/agg/neighbourhood/nb1', 'sm/v1/agg/neighbourhood/nb2', 'sm/v1/agg/billing/hh1', 'sm/v1/agg/other'],
  ucs: ['sm/v1/household/hh1/readings', 'sm/v1/household/hh3/readings'],
  [HH1]: ['sm/v1/household/hh1/readings', 'sm/v1/household/hh1/other'],
  [HH2]: [],
  [HH3]: ['sm/v1/household/hh3/readings'],
};

let seq = 0;
async function connect(user: string, password = loadCredentials(keysDir, user).password): Promise<MqttClient> {
  const url = broker.urls ? broker.urls[seq % broker.urls.length]! : broker.url;
  const c = await mqtt.connectAsync(url, { username: user, password, clientId: `${user}-matrix-${seq++}`, reconnectPeriod: 0, connectTimeout: 10_000 });
  clients.push(c);
  return c;
}

/** The embedded broker from the provisioned users.json; `routed` from an in-process subscription. */
async function embedded(): Promise<Backend> {
  const b = await startBroker({ users: loadUsers(brokerUsersPath(keysDir)), port: 0, logger: pino({ level: 'silent' }) });
  const routed: Backend['routed'] = [];
  await new Promise<void>((resolve) =>
    b.aedes.subscribe(
      '#',
      (packet, cb) => {
        routed.push({ topic: packet.topic, payload: String(packet.payload) });
        cb();
      },
      resolve,
    ),
  );
  return {
    url: b.url,
    routed,
    counters: b.counters,
    inject: (topic) => new Promise<void>((resolve, reject) => b.aedes.publish({ cmd: 'publish', topic, payload: Buffer.from('x'), qos: 1, dup: false, retain: false } as never, (e) => (e ? reject(e) : resolve()))),
    close: () => b.close(),
  };
}

/**
 * Mosquitto from the provisioned files: the conf as provisioned but for its listener port (a free one) and the
 * password and ACL files, which are copies with the test-only `observer` appended.
 */
async function mosquitto(): Promise<Backend> {
  const port = await freePort();
  const observerPassword = `observer-${process.pid}-${Date.now()}`;
  const passwd = join(dir, 'mq-passwd');
  const acl = join(dir, 'mq-acl');
  copyFileSync(join(keysDir, MOSQUITTO_PASSWD), passwd);
  appendFileSync(passwd, mosquittoPasswdLine('observer', observerPassword) + '\n');
  copyFileSync(join(keysDir, MOSQUITTO_ACL), acl);
  appendFileSync(acl, '\nuser observer\ntopic readwrite #\ntopic read $SYS/#\n');
  const provisioned = readFileSync(join(keysDir, MOSQUITTO_CONF), 'utf8');
  const conf = provisioned
    .replace(/^listener 1883 127\.0\.0\.1$/m, `listener ${port} 127.0.0.1`)
    .replace(/^password_file .*$/m, `password_file ${passwd}`)
    .replace(/^acl_file .*$/m, `acl_file ${acl}`);
  for (const line of [`listener ${port} `, `password_file ${passwd}`, `acl_file ${acl}`]) expect(conf).toContain(line);
  writeFileSync(join(dir, 'mq.conf'), conf, { mode: 0o600 });
  const proc: MosquittoProcess = await startMosquitto(join(dir, 'mq.conf'), port, join(dir, 'mosquitto.log'));
  const url = `mqtt://127.0.0.1:${port}`;
  const observer = await mqtt.connectAsync(url, { username: 'observer', password: observerPassword, clientId: 'observer', reconnectPeriod: 0 });
  const routed: Backend['routed'] = [];
  observer.on('message', (topic, payload) => routed.push({ topic, payload: String(payload) }));
  await observer.subscribeAsync(['#'], { qos: 1 });
  return {
    url,
    routed,
    inject: async (topic) => {
      if (topic.startsWith('$')) return; // Mosquitto takes no client PUBLISH on $SYS; nobody may read it anyway
      await observer.publishAsync(topic, 'x', { qos: 1 });
    },
    close: async () => {
      await observer.endAsync(true);
      await proc.stop();
    },
  };
}

/**
 * A 3-node NATS cluster whose nodes include a copy of the provisioned `nats/accounts.conf` with the test-only
 * `observer` added (everything, on node 1).
 */
async function nats(): Promise<Backend> {
  const observerPassword = `observer-${process.pid}-${Date.now()}`;
  const keys2 = join(dir, 'nats-keys');
  mkdirSync(join(keys2, 'nats'), { recursive: true, mode: 0o700 });
  const provisioned = readFileSync(join(keysDir, NATS_ACCOUNTS), 'utf8');
  const observer = natsUserEntry('observer', observerPassword, { publish: ['#'], subscribe: ['#'] });
  const withObserver = provisioned.replace(/\n {2}\]\n\}\n$/, `\n    ${observer}\n  ]\n}\n`);
  expect(withObserver).toContain('user: "observer"');
  writeFileSync(join(keys2, NATS_ACCOUNTS), withObserver, { mode: 0o600 });
  const cluster = await startNatsCluster({ dir: join(dir, 'nats-cluster'), keysDir: keys2, ackWaitS: 2 });
  const urls = cluster.mqttUrls.split(',');
  const observerClient = await mqtt.connectAsync(urls[0]!, { username: 'observer', password: observerPassword, clientId: 'observer', reconnectPeriod: 0 });
  const routed: Backend['routed'] = [];
  observerClient.on('message', (topic, payload) => routed.push({ topic, payload: String(payload) }));
  await observerClient.subscribeAsync(['#'], { qos: 1 });
  return {
    url: urls[0]!,
    urls,
    routed,
    inject: async (topic) => {
      if (topic.startsWith('$')) return; // as on Mosquitto: nobody may read $SYS anyway
      await observerClient.publishAsync(topic, 'x', { qos: 1 });
    },
    close: async () => {
      await observerClient.endAsync(true);
      await cluster.stop();
    },
  };
}

beforeAll(async () => {
  ({ keysDir } = await provisionFleet(dir, [
    ['m1', 'hh1', 'nb1', 'synthetic:1'],
    ['m2', 'hh2', 'nb1', 'synthetic:2'],
    ['m3', 'hh3', 'nb2', 'synthetic:3'],
  ]));
}, 120_000);

afterAll(() => rmSync(dir, { recursive: true, force: true }));

const BACKENDS = [
  { name: 'the embedded broker (users.json)', start: embedded, skip: false },
  { name: 'Mosquitto (broker/mosquitto/*)', start: mosquitto, skip: !haveMosquitto && !inCi },
  { name: 'a 3-node NATS cluster (nats/accounts.conf)', start: nats, skip: !haveNats && !inCi },
];

describe.each(BACKENDS)('ACL matrix on $name', ({ start, skip }) => {
  const isMosquitto = start === mosquitto;
  beforeAll(async () => {
    if (skip) return;
    broker = await start();
  }, 60_000);
  afterAll(async () => {
    await Promise.all(clients.splice(0).map((c) => c.endAsync(true)));
    await broker?.close();
  });

  it.skipIf(skip)('provisioning made exactly these users', () => {
    expect(Object.keys(loadUsers(brokerUsersPath(keysDir)).users).sort()).toEqual([...USERS].sort());
    if (start === nats) {
      const names = [...readFileSync(join(keysDir, NATS_ACCOUNTS), 'utf8').matchAll(/\{ user: "([^"]+)"/g)].map((m) => m[1]).sort();
      expect(names).toEqual([...USERS].sort());
    }
    if (isMosquitto) {
      const names = (file: string) => [...readFileSync(join(keysDir, file), 'utf8').matchAll(/^(?:user )?([A-Za-z0-9_.-]+)(?::\$7\$|$)/gm)].map((m) => m[1]).sort();
      expect(names(MOSQUITTO_PASSWD)).toEqual([...USERS].sort());
    }
  });

  it.skipIf(skip)("every user connects with its own password and with no other user's", async () => {
    const refused: string[] = [];
    for (const user of USERS) {
      expect((await connect(user)).connected, user).toBe(true);
      for (const other of USERS.filter((u) => u !== user)) {
        await connect(user, loadCredentials(keysDir, other).password).then(
          () => refused.push(`${user} accepted with ${other}'s password`),
          (e: Error) => expect(e.message).toMatch(/Bad username or password|Not authorized/),
        );
      }
    }
    expect(refused).toEqual([]);
  }, 120_000);

  it.skipIf(skip)('publish: every user x every topic, only the allowed pairs are routed; every other attempt is refused (and counted)', async () => {
    const want: string[] = [];
    const sent = new Map<string, string>();
    for (const user of USERS) {
      let c = await connect(user);
      for (const [topic, allowed] of PUBLISH) {
        const payload = `${user}->${topic}#${seq++}`;
        sent.set(payload, `${user} ${topic}`);
        const denied = broker.counters?.publishDenied ?? 0;
        if (allowed.includes(user)) want.push(`${user} ${topic}`);
        if (c.disconnected || !c.connected) c = await connect(user);
        let onClose = () => {};
        const closed = new Promise<boolean>((resolve) => c.once('close', (onClose = () => resolve(true))));
        const acked = c.publishAsync(topic, payload, { qos: 1 }).then(
          () => false,
          () => true,
        );
        // Embedded: a refused PUBLISH closes the connection (MQTT 3.1.1 [MQTT-3.3.5-2]); an allowed one gets its
        // PUBACK. Mosquitto acknowledges both and drops the refused one.
        await Promise.race([acked, closed]);
        c.off('close', onClose);
        await new Promise((r) => setTimeout(r, 5));
        if (broker.counters && !broker.routed.some((m) => m.payload === payload)) expect(broker.counters.publishDenied, `${user} ${topic}`).toBe(denied + 1);
      }
    }
    await new Promise((r) => setTimeout(r, 300)); // deliveries still on their way to the observer
    const got = [...new Set(broker.routed.flatMap((m) => sent.get(m.payload) ?? []))];
    expect(got.sort()).toEqual(want.sort());
  }, 120_000);

  describe('subscribe', () => {
    const grants = new Map<string, number[]>();
    const received = new Map<string, Set<string>>();

    beforeAll(async () => {
      if (skip) return;
      for (const user of USERS) {
        const c = await connect(user);
        received.set(user, new Set());
        c.on('message', (topic) => received.get(user)!.add(topic));
        const filters = SUBSCRIBE.map(([f]) => f);
        const granted = await c.subscribeAsync(filters, { qos: 1 }).then(
          (g) => g.map((x) => x.qos),
          (e: { packet?: { granted?: number[] } }) => e.packet?.granted ?? [],
        );
        grants.set(user, granted);
      }
      // One message on every topic, published server-side (as if by its rightful publisher).
      for (const [topic] of PUBLISH) await broker.inject(topic);
      // Until every allowed delivery is in (a cluster may deliver late: a QoS 1 delivery that found no route to
      // its subscriber yet is sent again after the cluster's ack wait), then a while longer for anything else.
      const end = Date.now() + 15_000;
      while (USERS.some((u) => RECEIVES[u]!.some((t) => !received.get(u)!.has(t))) && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
      await new Promise((r) => setTimeout(r, 500));
    }, 120_000);

    it.skipIf(skip)('every user x every filter: SUBACK grants exactly the allowed pairs (0x80 for the rest); Mosquitto grants all', () => {
      const got: string[] = [];
      const want: string[] = [];
      for (const user of USERS) {
        const g = grants.get(user)!;
        expect(g, user).toHaveLength(SUBSCRIBE.length);
        SUBSCRIBE.forEach(([filter, allowed], i) => {
          if (allowed.includes(user) || isMosquitto) want.push(`${user} ${filter}`);
          if (g[i] !== 0x80) got.push(`${user} ${filter}`);
        });
      }
      expect(got.sort()).toEqual(want.sort());
    });

    it.skipIf(skip)('and each user receives exactly the topics its grants reach, nothing else', () => {
      for (const user of USERS) expect([...received.get(user)!].sort(), user).toEqual([...RECEIVES[user]!].sort());
    });

    // Mosquitto and NATS keep no denial counters: the check exists for the embedded broker only (not skipped elsewhere).
    if (start === embedded) {
      it.skipIf(skip)('the denials were counted', () => {
        const denials = SUBSCRIBE.reduce((n, [, allowed]) => n + USERS.filter((u) => !allowed.includes(u)).length, 0);
        expect(broker.counters!.subscribeDenied).toBe(denials);
      });
    }
  });
});
