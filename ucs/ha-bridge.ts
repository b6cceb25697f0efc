/**
 * The Home Assistant companion (`smartermeter ucs ha-bridge`): runs on the household's own machine with the
 * household's key, opens the household's stream from the utility broker and publishes Home Assistant MQTT
 * discovery configs and states (ucs/ha.ts) to a broker of the household's choice. Readings leave it only to
 * that broker, which the household runs.
 * @module
 */
import type { KeyObject } from 'node:crypto';
import mqtt, { type MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import { discoveryConfigs, haTopics, stateMessages, type HaMessage, type HaTopics } from './ha.js';
import { subscribeHouseholdStream, type HouseholdStream } from './stream.js';
import { latestByMeter } from './web/series.js';

export interface HaBridgeOptions {
  household: string;
  /** The household's private key (the PES's stream seal). */
  privateKey?: KeyObject;
  /** The PES's Ed25519 public key (the stream's signer). */
  pesVerifyKey?: KeyObject;
  /** The household's stream key (the end-to-end mode's meter-sealed stream; ucs/stream.ts `readStreamKey`). */
  streamKey?: Uint8Array;
  /** The utility broker and the household's credentials there. */
  utility: { url: string; username?: string; password?: string };
  /** The household's Home Assistant broker. */
  ha: { url: string; username?: string; password?: string; clientId?: string };
  discoveryPrefix?: string;
  logger: Logger;
}

export interface HaBridge {
  topics: HaTopics;
  stream: HouseholdStream;
  ha: MqttClient;
  /** Resolves when both connections are up and subscribed. */
  ready: Promise<void>;
  /** Meters announced so far, and the time of the newest reading published per meter. */
  readonly published: ReadonlyMap<string, number>;
  /** Publishes `offline` and disconnects. */
  close(): Promise<void>;
}

const publish = (c: MqttClient, m: HaMessage) => c.publishAsync(m.topic, m.payload, { qos: 1, retain: m.retain });

/**
 * Starts the bridge.
 * @example
 * ```ts
 * const bridge = startHaBridge({ household: 'hh1', privateKey, utility: { url, username, password }, ha: { url: 'mqtt://homeassistant.local' }, logger });
 * await bridge.ready;
 * ```
 */
export function startHaBridge(o: HaBridgeOptions): HaBridge {
  const t = haTopics(o.household, o.discoveryPrefix);
  const ha = mqtt.connect(o.ha.url, {
    clientId: o.ha.clientId ?? `smartermeter-ha-bridge-${o.household}`,
    clean: true,
    protocolVersion: 4,
    reconnectPeriod: 2000,
    will: { topic: t.availability, payload: Buffer.from('offline'), qos: 1, retain: true },
    ...(o.ha.username !== undefined ? { username: o.ha.username } : {}),
    ...(o.ha.password !== undefined ? { password: o.ha.password } : {}),
  });
  ha.on('error', (e) => o.logger.warn({ err: e.message }, 'ha-bridge: Home Assistant broker error'));
  const announced = new Set<string>();
  const published = new Map<string, number>();
  const haUp = new Promise<void>((resolve) =>
    ha.on('connect', () => {
      void ha.publishAsync(t.availability, 'online', { qos: 1, retain: true }).then(() => resolve());
      announced.clear(); // announce again after a reconnect (HA may have restarted without its retained store)
    }),
  );

  const stream = subscribeHouseholdStream({
    household: o.household,
    ...(o.privateKey ? { privateKey: o.privateKey } : {}),
    ...(o.pesVerifyKey ? { pesVerifyKey: o.pesVerifyKey } : {}),
    ...(o.streamKey ? { streamKey: o.streamKey } : {}),
    ...o.utility,
    purpose: 'ha',
    onReject: (reason) => o.logger.warn({ reason }, 'ha-bridge: stream message not opened'),
    onRows: async (rows) => {
      await haUp;
      for (const [meter, r] of latestByMeter(rows)) {
        if (!announced.has(meter)) {
          for (const m of discoveryConfigs(t, meter, r.period)) await publish(ha, m);
          announced.add(meter);
          o.logger.info({ meter }, 'ha-bridge: meter announced to Home Assistant');
        }
        // A register only grows: a late (older) message must not move the energy sensor back.
        if ((published.get(meter) ?? -1) >= r.time) continue;
        for (const m of stateMessages(t, r)) await publish(ha, m);
        published.set(meter, r.time);
      }
    },
  });
  return {
    topics: t,
    stream,
    ha,
    ready: Promise.all([stream.ready, haUp]).then(() => undefined),
    published,
    async close() {
      await stream.close();
      if (ha.connected) await ha.publishAsync(t.availability, 'offline', { qos: 1, retain: true });
      await ha.endAsync();
    },
  };
}

/**
 * Removes what the bridge published for a household from the HA broker: every retained discovery config
 * under `<prefix>/sensor/<node>/+/config`, the states and the availability (empty retained payloads).
 * Returns the topics cleared.
 * @example
 * ```ts
 * await removeFromHomeAssistant({ household: 'hh1', ha: { url } });
 * ```
 */
export async function removeFromHomeAssistant(o: { household: string; ha: HaBridgeOptions['ha']; discoveryPrefix?: string; settleMs?: number }): Promise<string[]> {
  const t = haTopics(o.household, o.discoveryPrefix);
  const c = await mqtt.connectAsync(o.ha.url, {
    clientId: `${o.ha.clientId ?? `smartermeter-ha-bridge-${o.household}`}-remove`,
    clean: true,
    reconnectPeriod: 0,
    ...(o.ha.username !== undefined ? { username: o.ha.username } : {}),
    ...(o.ha.password !== undefined ? { password: o.ha.password } : {}),
  });
  try {
    const found = new Set<string>();
    c.on('message', (topic, payload) => payload.length > 0 && found.add(topic));
    await c.subscribeAsync([`${t.prefix}/sensor/${t.node}/+/config`, `${t.base}/#`], { qos: 1 });
    await new Promise((r) => setTimeout(r, o.settleMs ?? 1000)); // retained messages arrive right after SUBACK
    await c.unsubscribeAsync([`${t.prefix}/sensor/${t.node}/+/config`, `${t.base}/#`]);
    for (const topic of found) await c.publishAsync(topic, '', { qos: 1, retain: true });
    return [...found].sort();
  } finally {
    await c.endAsync();
  }
}
