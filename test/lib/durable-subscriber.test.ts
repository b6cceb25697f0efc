/**
 * lib/durable-subscriber.ts against the embedded broker: acknowledgement only on 'ack', redelivery of what was
 * held or in flight when a handler failed, one set of refusal codes, optional subscriptions.
 */
import mqtt from 'mqtt';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBroker, type BrokerHandle } from '../../broker/broker.js';
import { buildUsers } from '../../lib/broker-users.js';
import { REFUSED_CONNACK, startDurableSubscriber, type DurableSubscriber, type Verdict } from '../../lib/durable-subscriber.js';
import { topics } from '../../protocol/topics.js';

const fleet = { gateways: ['gw-a'], households: ['h1'] };
const password = (u: string) => `pw-${u}-x9`;
const users = buildUsers(fleet, Object.fromEntries(['gateway-gw-a', 'household-h1', 'mdms', 'pes', 'ucs'].map((n) => [n, password(n)])));
const logger = pino({ level: 'silent' });
let broker: BrokerHandle;
const open: DurableSubscriber[] = [];

beforeAll(async () => {
  broker = await startBroker({ users, port: 0, logger });
});
afterAll(async () => {
  await Promise.all(open.map((s) => s.kill()));
  await broker.close();
});

function subscriber(handle: (p: { payload: Buffer }) => Verdict | Promise<Verdict>, o: { user?: string; filters?: string[]; required?: boolean; password?: string } = {}): DurableSubscriber {
  const user = o.user ?? 'pes';
  const s = startDurableSubscriber({
    url: broker.url,
    username: user,
    password: o.password ?? password(user),
    clientId: user,
    reconnectPeriod: 100,
    filters: o.filters ?? [topics.framesAll],
    required: o.required,
    who: 'the test subscriber',
    logger,
    handle: (p) => handle(p as unknown as { payload: Buffer }),
  });
  open.push(s);
  return s;
}

async function publish(payloads: string[]): Promise<void> {
  const c = await mqtt.connectAsync(broker.url, { username: 'gateway-gw-a', password: password('gateway-gw-a'), clientId: 'gateway-gw-a', reconnectPeriod: 0 });
  for (const p of payloads) await c.publishAsync(topics.frames('gw-a'), p, { qos: 1 });
  await c.endAsync();
}

const until = async (what: string, ok: () => boolean, ms = 10_000): Promise<void> => {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};

describe('durable subscriber', () => {
  it("acknowledges only 'ack'; a held message and the one a failing handler was on come back on the next connection", async () => {
    const seen: string[] = [];
    const first = subscriber((p) => {
      const m = p.payload.toString();
      seen.push(m);
      if (m === 'hold') return 'hold';
      if (m === 'boom') throw new Error('disk on fire');
      return 'ack';
    });
    await first.ready;
    await publish(['a', 'hold', 'b', 'boom', 'c']);
    const err = await first.failed;
    expect(err.message).toBe('disk on fire');
    await until('the first subscriber to see boom', () => seen.includes('boom'));
    expect(seen).toEqual(['a', 'hold', 'b', 'boom']); // stopped after the failure: 'c' not taken
    await first.kill();

    const again: string[] = [];
    const second = subscriber(async (p): Promise<Verdict> => {
      again.push(p.payload.toString());
      return 'ack';
    });
    await second.ready;
    await until('redelivery', () => again.includes('c'));
    // 'a' and 'b' were acknowledged and never come back; 'hold', 'boom' and 'c' do.
    expect(again.sort()).toEqual(['boom', 'c', 'hold']);
    await second.close();
  });

  it('rejects ready on refused credentials (one set of CONNACK codes) and on a refused required subscription', async () => {
    expect([...REFUSED_CONNACK].sort((a, b) => a - b)).toEqual([4, 5, 134, 135]);
    const bad = subscriber(() => 'ack', { password: 'wrong' });
    await expect(bad.ready).rejects.toThrow(/refused the test subscriber's credentials/);
    await bad.kill();
    const refused = subscriber(() => 'ack', { user: 'mdms', filters: [topics.framesAll] });
    await expect(refused.ready).rejects.toThrow(/refused the test subscriber's subscription/);
    await refused.kill();
  });

  it('an optional subscription that is refused resolves ready with granted false; a publish-only session is ready once connected', async () => {
    const optional = subscriber(() => 'ack', { user: 'mdms', filters: [topics.framesAll], required: false });
    await optional.ready;
    expect(optional.granted).toBe(false);
    await optional.close();
    const none = subscriber(() => 'ack', { user: 'ucs', filters: [] });
    await none.ready;
    expect(none.granted).toBe(true);
    expect(none.client.connected).toBe(true);
    await none.close();
  });
});
