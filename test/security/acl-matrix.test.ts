/**
 * The broker ACL as a matrix: every provisioned user (its own credentials from provisioning) tries to publish
 * to every topic of the system and to subscribe to every filter, on the embedded broker started from the
 * provisioned users.json. The expected matrix is written out below by hand from docs/protocol.md §10 (plus
 * the UCS's read access to sealed household streams, broker/acl.ts) — not derived from buildAcl — so a
 * change to the ACL code that widens or narrows anyone's access fails here.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBroker, type BrokerHandle } from '../../broker/broker.js';
import { loadUsers } from '../../lib/broker-users.js';
import { brokerUsersPath, loadCredentials } from '../../lib/keyset.js';
import { provisionFleet } from './rig.js';

const dir = mkdtempSync(join(tmpdir(), 'sm-acl-'));
let broker: BrokerHandle;
let keysDir: string;
const clients: MqttClient[] = [];
/** Messages the broker routed, observed server-side (bypassing the ACL). */
const routed: { topic: string; payload: string }[] = [];

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
  const c = await mqtt.connectAsync(broker.url, { username: user, password, clientId: `${user}-matrix-${seq++}`, reconnectPeriod: 0, connectTimeout: 10_000 });
  clients.push(c);
  return c;
}

beforeAll(async () => {
  ({ keysDir } = await provisionFleet(dir, [
    ['m1', 'hh1', 'nb1', 'synthetic:1'],
    ['m2', 'hh2', 'nb1', 'synthetic:2'],
    ['m3', 'hh3', 'nb2', 'synthetic:3'],
  ]));
  broker = await startBroker({ users: loadUsers(brokerUsersPath(keysDir)), port: 0, logger: pino({ level: 'silent' }) });
  await new Promise<void>((resolve) =>
    broker.aedes.subscribe(
      '#',
      (packet, cb) => {
        routed.push({ topic: packet.topic, payload: String(packet.payload) });
        cb();
      },
      resolve,
    ),
  );
}, 120_000);

afterAll(async () => {
  await Promise.all(clients.map((c) => c.endAsync(true)));
  await broker?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('broker credentials', () => {
  it('provisioning made exactly these users', () => {
    expect(Object.keys(loadUsers(brokerUsersPath(keysDir)).users).sort()).toEqual([...USERS].sort());
  });

  it("every user connects with its own password and with no other user's", async () => {
    const refused: string[] = [];
    for (const user of USERS) {
      expect((await connect(user)).connected, user).toBe(true);
      for (const other of USERS.filter((u) => u !== user)) {
        await connect(user, loadCredentials(keysDir, other).password).then(
          () => refused.push(`${user} accepted with ${other}'s password`),
          (e: Error) => expect(e.message).toMatch(/Bad username or password/),
        );
      }
    }
    expect(refused).toEqual([]);
  }, 120_000);
});

describe('publish matrix', () => {
  it('every user x every topic: only the allowed pairs are routed; every other attempt is refused and counted', async () => {
    const got: string[] = [];
    const want: string[] = [];
    for (const user of USERS) {
      let c = await connect(user);
      for (const [topic, allowed] of PUBLISH) {
        const payload = `${user}->${topic}#${seq++}`;
        const denied = broker.counters.publishDenied;
        if (allowed.includes(user)) want.push(`${user} ${topic}`);
        if (c.disconnected || !c.connected) c = await connect(user);
        const closed = new Promise<boolean>((resolve) => c.once('close', () => resolve(true)));
        const acked = c.publishAsync(topic, payload, { qos: 1 }).then(
          () => false,
          () => true,
        );
        // A refused PUBLISH closes the connection (MQTT 3.1.1 [MQTT-3.3.5-2]); an allowed one gets its PUBACK.
        await Promise.race([acked, closed]);
        await new Promise((r) => setTimeout(r, 5));
        if (routed.some((m) => m.payload === payload)) got.push(`${user} ${topic}`);
        else expect(broker.counters.publishDenied, `${user} ${topic}`).toBe(denied + 1);
      }
    }
    expect(got.sort()).toEqual(want.sort());
  }, 120_000);
});

describe('subscribe matrix', () => {
  const grants = new Map<string, number[]>();
  const received = new Map<string, Set<string>>();

  beforeAll(async () => {
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
    for (const [topic] of PUBLISH) {
      await new Promise<void>((resolve, reject) => broker.aedes.publish({ cmd: 'publish', topic, payload: Buffer.from('x'), qos: 1, dup: false, retain: false } as never, (e) => (e ? reject(e) : resolve())));
    }
    await new Promise((r) => setTimeout(r, 500));
  }, 120_000);

  it('every user x every filter: SUBACK grants exactly the allowed pairs (0x80 for the rest)', () => {
    const got: string[] = [];
    const want: string[] = [];
    for (const user of USERS) {
      const g = grants.get(user)!;
      expect(g, user).toHaveLength(SUBSCRIBE.length);
      SUBSCRIBE.forEach(([filter, allowed], i) => {
        if (allowed.includes(user)) want.push(`${user} ${filter}`);
        if (g[i] !== 0x80) got.push(`${user} ${filter}`);
      });
    }
    expect(got.sort()).toEqual(want.sort());
  });

  it('and each user receives exactly the topics its grants reach, nothing else', () => {
    for (const user of USERS) expect([...received.get(user)!].sort(), user).toEqual([...RECEIVES[user]!].sort());
  });

  it('the denials were counted', () => {
    const denials = SUBSCRIBE.reduce((n, [, allowed]) => n + USERS.filter((u) => !allowed.includes(u)).length, 0);
    expect(broker.counters.subscribeDenied).toBe(denials);
  });
});
