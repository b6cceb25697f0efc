import { createServer, type AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import mqtt, { type MqttClient } from 'mqtt';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBroker, type BrokerHandle } from '../../broker/broker.js';
import { buildUsers } from '../../lib/broker-users.js';
import { topics } from '../../protocol/topics.js';

const fleet = { gateways: ['gw-n1', 'gw-n2'], households: ['h1', 'h2'] };
const names = ['gateway-gw-n1', 'gateway-gw-n2', 'household-h1', 'household-h2', 'mdms', 'pes', 'ucs'];
const password = (u: string) => `secret-${u}-Zq7`;
const users = buildUsers(fleet, Object.fromEntries(names.map((n) => [n, password(n)])));

let broker: BrokerHandle;
let logText = '';
const clients: MqttClient[] = [];
/** Every message the broker routes, observed server-side (bypassing the ACL). */
const routed: { topic: string; payload: string }[] = [];

beforeAll(async () => {
  const sink = new Writable({
    write(chunk, _enc, cb) {
      logText += String(chunk);
      cb();
    },
  });
  broker = await startBroker({ users, port: 0, wsPort: 0, logger: pino({ level: 'debug' }, sink) });
  await new Promise<void>((resolve) =>
    broker.aedes.subscribe(
      'sm/#',
      (packet, cb) => {
        routed.push({ topic: packet.topic, payload: String(packet.payload) });
        cb();
      },
      resolve,
    ),
  );
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.endAsync(true)));
  await broker.close();
});

async function connect(username: string | undefined, pw: string | undefined, opts: mqtt.IClientOptions = {}, url = broker.url): Promise<MqttClient> {
  // A client id under the user's own prefix (docs/protocol.md §10), unless the test chooses one.
  const clientId = username !== undefined ? `${username}-t-${Math.random().toString(36).slice(2)}` : undefined;
  const c = await mqtt.connectAsync(url, { username, password: pw, clientId, reconnectPeriod: 0, connectTimeout: 5000, ...opts });
  clients.push(c);
  return c;
}
const as = (u: string) => connect(u, password(u), { clientId: `${u}-test-${Math.random().toString(36).slice(2)}` });
/** SUBACK return codes; mqtt.js rejects with the SUBACK packet when a code is 0x80. */
async function grants(c: MqttClient, filters: string | string[]): Promise<number[]> {
  try {
    return (await c.subscribeAsync(filters, { qos: 1 })).map((g) => g.qos);
  } catch (e) {
    const granted = (e as { packet?: { granted?: number[] } }).packet?.granted;
    if (!granted) throw e;
    return granted;
  }
}
const tick = (ms = 100) => new Promise((r) => setTimeout(r, ms));

describe('authentication', () => {
  it('accepts every provisioned user with the right password', async () => {
    for (const u of names) expect((await as(u)).connected).toBe(true);
  });

  it('refuses a wrong password, an unknown user and missing credentials, and counts them', async () => {
    const before = broker.counters.authFailures;
    await expect(connect('pes', 'wrong')).rejects.toThrow(/Bad username or password/);
    await expect(connect('nobody', 'secret')).rejects.toThrow(/Bad username or password/);
    await expect(connect(undefined, undefined)).rejects.toThrow(/Bad username or password/);
    expect(broker.counters.authFailures).toBe(before + 3);
  });

  it("refuses a client id that is another user's name (no session takeover)", async () => {
    await expect(connect('household-h1', password('household-h1'), { clientId: 'gateway-gw-n1' })).rejects.toThrow(/Identifier rejected/);
    const own = await connect('gateway-gw-n1', password('gateway-gw-n1'), { clientId: 'gateway-gw-n1' });
    expect(own.connected).toBe(true);
  });

  it('session takeover: another household cannot resume a persistent session under the owner\'s client id', async () => {
    // household-h1's browser keeps a persistent session under an id that is not its user name.
    const id = 'household-h1-web-0a1b2c';
    const first = await connect('household-h1', password('household-h1'), { clientId: id, clean: false });
    await first.subscribeAsync(topics.householdAll('h1'), { qos: 1 });
    await first.endAsync();
    const pes = await as('pes');
    await pes.publishAsync(topics.household('h1'), 'queued for h1', { qos: 1 });

    // The attack: household-h2, with its own valid password, asks for h1's client id to drain the queue.
    const rejected = broker.counters.clientIdRejected;
    await expect(connect('household-h2', password('household-h2'), { clientId: id, clean: false })).rejects.toThrow(/Identifier rejected/);
    expect(broker.counters.clientIdRejected).toBe(rejected + 1);

    // The queue is intact: h1 gets its session and its message back.
    const again = mqtt.connect(broker.url, { username: 'household-h1', password: password('household-h1'), clientId: id, clean: false, reconnectPeriod: 0 });
    clients.push(again);
    const [connack, got] = await Promise.all([
      new Promise<mqtt.IConnackPacket>((resolve) => again.once('connect', resolve)),
      new Promise<string>((resolve) => again.once('message', (_t, p) => resolve(String(p)))),
    ]);
    expect(connack.sessionPresent).toBe(true);
    expect(got).toBe('queued for h1');
  });

  it.each([
    ['household-h1', 'household-h1', true],
    ['household-h1', 'household-h1-stream-1', true],
    ['pes', 'pes-2', true],
    ['household-h1', 'household-h2-web-1', false],
    ['household-h1', 'household-h1x', false], // no '-' after the name: not under its prefix
    ['household-h1', 'session-1', false], // nobody's id: refused for everyone
    ['pes', 'mqttjs_1f2e3d', false],
    ['mdms', 'pes', false],
  ])('%s with client id %s: accepted=%s', async (user, clientId, ok) => {
    const attempt = connect(user, password(user), { clientId });
    if (ok) expect((await attempt).connected).toBe(true);
    else await expect(attempt).rejects.toThrow(/Identifier rejected/);
  });

  it('never logs a password', () => {
    expect(logText).toContain('connection refused');
    for (const u of names) expect(logText).not.toContain(password(u));
    expect(logText).not.toContain('"wrong"');
  });
});

describe('publish ACL', () => {
  it.each([
    ['gateway-gw-n1', topics.frames('gw-n1'), true],
    ['gateway-gw-n1', topics.frames('gw-n2'), false],
    ['gateway-gw-n1', topics.neighbourhood('n1'), false],
    ['pes', topics.neighbourhood('n1'), true],
    ['pes', topics.billing('h2'), true],
    ['pes', topics.household('h1'), true],
    ['pes', topics.frames('gw-n1'), false],
    ['pes', '$SYS/x', false],
    ['mdms', topics.neighbourhood('n1'), false],
    ['household-h1', topics.household('h1'), false],
    ['household-h1', topics.householdKey('h1'), false],
    ['ucs', topics.householdKey('h1'), true],
    ['ucs', topics.household('h1'), false],
  ])('%s publishing to %s: allowed=%s', async (user, topic, allowed) => {
    const c = await as(user);
    const payload = `${user}->${topic}-${Math.random()}`;
    const denied = broker.counters.publishDenied;
    const closed = new Promise<void>((resolve) => c.once('close', () => resolve()));
    if (allowed) {
      await c.publishAsync(topic, payload, { qos: 1 });
      expect(routed.some((m) => m.topic === topic && m.payload === payload)).toBe(true);
      expect(broker.counters.publishDenied).toBe(denied);
    } else {
      c.publish(topic, payload, { qos: 1 });
      await closed; // MQTT 3.1.1 [MQTT-3.3.5-2]: the server closes the connection
      await tick(50);
      expect(routed.some((m) => m.payload === payload)).toBe(false);
      expect(broker.counters.publishDenied).toBe(denied + 1);
    }
  });
});

describe('retained messages (docs/protocol.md §10: retained only for household keys)', () => {
  /** Retained messages the broker has stored on `topic`. */
  const stored = (topic: string) =>
    new Promise<string[]>((resolve, reject) => {
      const out: string[] = [];
      (broker.aedes as unknown as { persistence: { createRetainedStream(t: string): NodeJS.ReadableStream } }).persistence
        .createRetainedStream(topic)
        .on('data', (p: { payload: Buffer }) => out.push(String(p.payload)))
        .on('end', () => resolve(out))
        .on('error', reject);
    });

  it('stores a retained household key', async () => {
    const ucs = await as('ucs');
    await ucs.publishAsync(topics.householdKey('h1'), 'key of h1', { qos: 1, retain: true });
    expect(await stored(topics.householdKey('h1'))).toEqual(['key of h1']);
  });

  it('refuses, counts and logs a retained uplink (not stored, not routed; the client is disconnected)', async () => {
    const gw = await as('gateway-gw-n1');
    const denied = broker.counters.retainDenied;
    const closed = new Promise<void>((resolve) => gw.once('close', () => resolve()));
    const payload = `retained uplink ${Math.random()}`;
    gw.publish(topics.frames('gw-n1'), payload, { qos: 1, retain: true });
    await closed;
    await tick(50);
    expect(broker.counters.retainDenied).toBe(denied + 1);
    expect(await stored(topics.frames('gw-n1'))).toEqual([]);
    expect(routed.some((m) => m.payload === payload)).toBe(false);
    expect(logText).toContain('retained publish refused');
    // The same gateway publishing without retain is fine.
    const again = await as('gateway-gw-n1');
    await again.publishAsync(topics.frames('gw-n1'), 'plain uplink', { qos: 1 });
    expect(routed.some((m) => m.payload === 'plain uplink')).toBe(true);
  });

  it('refuses a retained will on such a topic too', async () => {
    const denied = broker.counters.retainDenied;
    const gw = await connect('gateway-gw-n2', password('gateway-gw-n2'), { will: { topic: topics.frames('gw-n2'), payload: Buffer.from('will'), qos: 1, retain: true } });
    gw.stream.destroy(); // an unclean disconnect publishes the will
    await tick(200);
    expect(broker.counters.retainDenied).toBe(denied + 1);
    expect(await stored(topics.frames('gw-n2'))).toEqual([]);
  });
});

describe('subscribe ACL (requested filter must be covered by a granted one)', () => {
  it.each([
    ['household-h1', topics.household('h1'), true],
    ['household-h1', topics.householdAll('h1'), true],
    ['household-h1', 'sm/v1/household/h1/+', true],
    ['household-h1', 'sm/v1/household/+/readings', false],
    ['household-h1', topics.household('h2'), false],
    ['household-h1', 'sm/v1/household/#', false],
    ['household-h1', '#', false],
    ['household-h1', '+/v1/household/h1/readings', false],
    ['pes', topics.framesAll, true],
    ['pes', topics.frames('gw-n2'), true],
    ['pes', 'sm/v1/frames/#', false],
    ['pes', topics.householdKeysAll, true],
    ['pes', topics.aggregatesAll, false],
    ['pes', '$SYS/#', false],
    ['mdms', topics.aggregatesAll, true],
    ['mdms', topics.neighbourhood('n1'), true],
    ['mdms', topics.framesAll, false],
    ['gateway-gw-n1', topics.frames('gw-n1'), false],
    ['ucs', topics.householdKeysAll, false],
    ['ucs', 'sm/v1/household/+/readings', true],
    ['ucs', topics.aggregatesAll, false],
  ])('%s subscribing to %s: granted=%s', async (user, filter, allowed) => {
    const c = await as(user);
    const denied = broker.counters.subscribeDenied;
    expect(await grants(c, filter)).toEqual([allowed ? 1 : 0x80]);
    expect(broker.counters.subscribeDenied).toBe(denied + (allowed ? 0 : 1));
    expect(c.connected).toBe(true);
  });

  it("a household receives its own stream and never another household's", async () => {
    const h1 = await as('household-h1');
    const got: string[] = [];
    h1.on('message', (topic) => got.push(topic));
    expect(await grants(h1, [topics.householdAll('h1'), 'sm/v1/household/+/readings', '#'])).toEqual([1, 0x80, 0x80]);
    const pes = await as('pes');
    await pes.publishAsync(topics.household('h2'), 'for h2', { qos: 1 });
    await pes.publishAsync(topics.household('h1'), 'for h1', { qos: 1 });
    await tick(200);
    expect(got).toEqual([topics.household('h1')]);
  });
});

describe('sessions', () => {
  it('keeps a clean:false subscriber\'s session and queued QoS 1 messages while it is away', async () => {
    const opts = { clientId: 'mdms', clean: false } as const;
    const first = await connect('mdms', password('mdms'), opts);
    await first.subscribeAsync(topics.aggregatesAll, { qos: 1 });
    await first.endAsync();
    const pes = await as('pes');
    await pes.publishAsync(topics.neighbourhood('n9'), 'while away', { qos: 1 });

    const again = mqtt.connect(broker.url, { username: 'mdms', password: password('mdms'), reconnectPeriod: 0, ...opts });
    clients.push(again);
    const [connack, got] = await Promise.all([
      new Promise<mqtt.IConnackPacket>((resolve) => again.once('connect', resolve)),
      new Promise<string>((resolve) => again.once('message', (_t, p) => resolve(String(p)))),
    ]);
    expect(connack.sessionPresent).toBe(true);
    expect(got).toBe('while away');
  });
});

describe('listeners', () => {
  it('serves MQTT over WebSocket with the same authentication', async () => {
    expect(broker.wsUrl).toMatch(/^ws:\/\/127\.0\.0\.1:\d+$/);
    const mdms = await connect('mdms', password('mdms'), {}, broker.wsUrl!);
    const got = new Promise<string>((resolve) => mdms.once('message', (_t, p) => resolve(String(p))));
    await mdms.subscribeAsync(topics.aggregatesAll, { qos: 1 });
    const pes = await as('pes');
    await pes.publishAsync(topics.neighbourhood('n1'), 'sealed', { qos: 1 });
    expect(await got).toBe('sealed');
    await expect(connect('mdms', 'wrong', {}, broker.wsUrl!)).rejects.toThrow(/Bad username or password/);
  });

  it('names a busy port and how to choose another', async () => {
    await expect(startBroker({ port: broker.port, logger: pino({ level: 'silent' }) })).rejects.toThrow(
      `port ${broker.port} is in use (this very process), so the MQTT broker cannot listen there: pass --port <port> for another port (0: any free port)`,
    );
    await expect(startBroker({ port: 0, wsPort: broker.port, logger: pino({ level: 'silent' }) })).rejects.toThrow(/WebSocket listener cannot listen there: pass --ws-port <port>/);
  });

  it('closes cleanly and frees its ports', async () => {
    const b = await startBroker({ users, port: 0, wsPort: 0, logger: pino({ level: 'silent' }) });
    const c = await connect('pes', password('pes'), {}, b.url);
    const closed = new Promise<void>((resolve) => c.once('close', () => resolve()));
    await b.close();
    await closed;
    for (const port of [b.port, b.wsPort!]) {
      const srv = createServer();
      await new Promise<void>((resolve, reject) => srv.once('error', reject).listen(port, '127.0.0.1', () => resolve()));
      expect((srv.address() as AddressInfo).port).toBe(port);
      await new Promise((r) => srv.close(r));
    }
  });
});
