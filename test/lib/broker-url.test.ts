/**
 * lib/broker-url.ts: the `--mqtt url1,url2,...` list (validation, what MQTT.js receives) and failover between
 * two embedded brokers for each kind of client: MQTT.js's own reconnection (the durable subscriber, the
 * household stream) and the gateway's own dial loop. The clustered case (a session that survives its node)
 * is test/broker/nats-cluster.test.ts.
 */
import { InvalidArgumentError } from 'commander';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { startBroker, type BrokerHandle } from '../../broker/broker.js';
import { connectUplink } from '../../gateway/mqtt.js';
import { buildUsers } from '../../lib/broker-users.js';
import { brokerConnectArgs, brokerUrlsOption, connectBroker, parseBrokerUrls, shownBrokerUrls, startAt } from '../../lib/broker-url.js';
import { startDurableSubscriber } from '../../lib/durable-subscriber.js';
import { topics } from '../../protocol/topics.js';
import { freePort } from '../gateway/helpers.js';

const logger = pino({ level: 'silent' });

describe('parseBrokerUrls', () => {
  it('takes one URL as given and a list trimmed, in order', () => {
    expect(parseBrokerUrls('mqtt://127.0.0.1:1883')).toEqual(['mqtt://127.0.0.1:1883']);
    expect(parseBrokerUrls('mqtt://u:p@h:1883')).toEqual(['mqtt://u:p@h:1883']); // one URL: unchanged, credentials allowed
    expect(parseBrokerUrls(' mqtt://a:1 ,mqtts://b:2, tcp://c ')).toEqual(['mqtt://a:1', 'mqtts://b:2', 'tcp://c']);
    expect(parseBrokerUrls('ws://a:8080/mqtt,wss://b:8443/mqtt')).toHaveLength(2);
  });

  it.each([
    ['', /broker URL/],
    ['mqtt://a:1,', /entry 2 .* empty/],
    ['http://a:1', /unsupported scheme http/],
    ['not a url', /not a URL/],
    ['mqtt://a:1,ws://b:2', /mixes WebSocket and TCP/],
    ['ws://a:1/mqtt,ws://b:2/other', /same path/],
    ['mqtt://u:secret@a:1,mqtt://b:2', /credentials in a URL list/],
    ['mqtt://a:1883,mqtt://a', /a:1883 appears twice/],
    [Array.from({ length: 17 }, (_, i) => `mqtt://h${i}:1`).join(','), /at most 16/],
  ])('refuses %j', (list, why) => {
    expect(() => parseBrokerUrls(list)).toThrow(why);
  });

  it('never echoes a password in its error', () => {
    expect(() => parseBrokerUrls('ftp://u:hunter2@a:1')).toThrow(/u:\*\*\*@a/);
    expect(() => parseBrokerUrls('ftp://u:hunter2@a:1')).not.toThrow(/hunter2/);
    expect(shownBrokerUrls('mqtt://u:hunter2@a:1,mqtt://b:2')).toBe('mqtt://u:***@a:1,mqtt://b:2');
  });

  it('as a commander option: a usage error naming the flag, and the list as one string', () => {
    const parse = brokerUrlsOption('--mqtt');
    expect(parse('mqtt://a:1, mqtt://b:2')).toBe('mqtt://a:1,mqtt://b:2');
    expect(() => parse('gopher://a')).toThrow(InvalidArgumentError);
    expect(() => parse('gopher://a')).toThrow(/^--mqtt: unsupported scheme/);
  });
});

describe('brokerConnectArgs', () => {
  it('one URL: passed as is, no servers', () => {
    expect(brokerConnectArgs('mqtts://u:p@h:8883')).toEqual({ url: 'mqtts://u:p@h:8883' });
  });
  it('several: MQTT.js servers with protocols normalised and default ports filled in', () => {
    expect(brokerConnectArgs('tcp://a,tls://b,mqtt://[::1]:1884')).toEqual({
      url: 'tcp://a',
      servers: [
        { protocol: 'mqtt', host: 'a', port: 1883 },
        { protocol: 'mqtts', host: 'b', port: 8883 },
        { protocol: 'mqtt', host: '::1', port: 1884 },
      ],
    });
  });
});

describe('failover between two brokers', () => {
  const fleet = { gateways: ['gw-a'], households: ['h1'] };
  const password = (u: string) => `pw-${u}-z7`;
  const users = buildUsers(fleet, Object.fromEntries(['gateway-gw-a', 'household-h1', 'mdms', 'pes', 'ucs'].map((n) => [n, password(n)])));
  const cleanup: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c().catch(() => undefined);
  });
  const broker = async (): Promise<BrokerHandle> => {
    const b = await startBroker({ users, port: 0, logger });
    cleanup.push(() => b.close());
    return b;
  };
  const until = async (what: string, ok: () => boolean, ms = 10_000): Promise<void> => {
    const end = Date.now() + ms;
    while (!ok()) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };

  it('an MQTT.js client (connectBroker) skips a dead first URL, and moves on when its broker goes', async () => {
    const dead = `mqtt://127.0.0.1:${await freePort()}`;
    const [b1, b2] = [await broker(), await broker()];
    const c = connectBroker(`${dead},${b1.url},${b2.url}`, { username: 'pes', password: password('pes'), clientId: 'pes-x', reconnectPeriod: 50, connectTimeout: 2000 });
    cleanup.push(() => c.endAsync(true));
    const ports: number[] = [];
    c.on('connect', () => ports.push(c.options.port!));
    // The client starts at the node its id picks (startAt), skips the dead one, and moves on in list order.
    const live = startAt([null, b1, b2], 'pes-x').filter((b) => b !== null);
    await until('a first connection', () => ports.length === 1);
    expect(ports[0]).toBe(live[0]!.port);
    await live[0]!.close();
    await until('a second connection', () => ports.length === 2);
    expect(ports[1]).toBe(live[1]!.port);
  });

  it('spreads clients over the nodes by client id, the same start for the same id', () => {
    const nodes = ['n1', 'n2', 'n3'];
    const firsts = Array.from({ length: 30 }, (_, i) => startAt(nodes, `gateway-gw-${i}`)[0]);
    for (const n of nodes) expect(firsts.filter((f) => f === n).length, n).toBeGreaterThan(3);
    expect(startAt(nodes, 'pes')).toEqual(startAt(nodes, 'pes'));
    expect([...startAt(nodes, 'pes')].sort()).toEqual(nodes);
    expect(startAt(nodes, undefined)).toEqual(nodes);
  });

  it('the durable subscriber takes its messages from the next broker when its own closes', async () => {
    // b1 is the node the subscriber ('pes') starts at (startAt rotates the list by the client id).
    const [first, second] = [await broker(), await broker()];
    const [b1, b2] = startAt([first, second], 'pes') as [typeof first, typeof second];
    const got: string[] = [];
    const sub = startDurableSubscriber({
      url: `${first.url},${second.url}`,
      username: 'pes',
      password: password('pes'),
      clientId: 'pes',
      reconnectPeriod: 50,
      filters: [topics.framesAll],
      who: 'the test subscriber',
      logger,
      handle: (p) => (got.push(String(p.payload)), 'ack'),
    });
    cleanup.push(() => sub.kill());
    await sub.ready;
    await b1.close();
    // A new broker knows no session; MQTT.js subscribes again on reconnection (resubscribe), so b2 delivers.
    const pub = connectBroker(b2.url, { username: 'gateway-gw-a', password: password('gateway-gw-a'), clientId: 'gateway-gw-a', reconnectPeriod: 0 });
    cleanup.push(() => pub.endAsync(true));
    await until('the subscriber on b2', () => sub.client.connected && sub.client.options.port === b2.port);
    await until('a delivery through b2', () => {
      pub.publish(topics.frames('gw-a'), 'via-b2', { qos: 1 });
      return got.includes('via-b2');
    });
  });

  it("the gateway's uplink dials the URLs round robin and publishes through the one that answers", async () => {
    const dead = `mqtt://127.0.0.1:${await freePort()}`;
    const b = await broker();
    let online = 0;
    const up = connectUplink({
      url: `${dead},${b.url}`,
      clientId: 'gateway-gw-a',
      username: 'gateway-gw-a',
      password: password('gateway-gw-a'),
      topic: topics.frames('gw-a'),
      logger,
      minBackoffMs: 20,
      maxBackoffMs: 100,
      onOnline: () => online++,
      onOffline: () => undefined,
    });
    cleanup.push(() => up.close());
    await until('the uplink online', () => up.connected);
    expect(online).toBe(1);
    await new Promise<void>((resolve, reject) => up.publish(Buffer.from('x'), (e) => (e ? reject(e) : resolve())));
    expect(() => connectUplink({ url: 'mqtt://a:1,ftp://b', clientId: 'g', topic: 't', logger, onOnline: () => undefined, onOffline: () => undefined })).toThrow(/--mqtt must be .*unsupported scheme ftp/);
  });
});
