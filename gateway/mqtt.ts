/**
 * The gateway's MQTT adapter: one persistent session (`clean: false`, fixed client id), QoS 1 publishes,
 * and reconnection with exponential backoff, each attempt logged.
 *
 * MQTT.js's own reconnect timer has a fixed period and its outgoing store is in memory, so this adapter
 * dials each connection itself and fails every publish still awaiting PUBACK when a connection drops;
 * the forwarder then re-publishes those frames from its on-disk queue on the next connection (the PES
 * accepts a (meter, ic) at most once, so a duplicate is harmless). Given several broker URLs (the nodes of a
 * cluster, lib/broker-url.ts), each dial goes to the next one, so a dead node costs one failed attempt.
 * @module
 */
import mqtt, { type MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import { parseBrokerUrls, shownBrokerUrls, startAt } from '../lib/broker-url.js';

export interface UplinkOptions {
  /** Broker URL (mqtt://host:port, mqtts://, ws://, wss://), or several comma-separated: the nodes of a cluster. */
  url: string;
  clientId: string;
  username?: string;
  password?: string;
  /** Topic every uplink goes to. */
  topic: string;
  logger: Logger;
  /** First retry delay, ms (doubles per failed attempt). Default 500. */
  minBackoffMs?: number;
  /** Largest retry delay, ms. Default 30000. */
  maxBackoffMs?: number;
  /** Called when a connection is established (CONNACK accepted). */
  onOnline: () => void;
  /** Called when the connection is lost, before pending publishes are failed. */
  onOffline: () => void;
}

/** A connection to the broker that keeps coming back. */
export interface UplinkConnection {
  /** Publishes at QoS 1, retain false; `done` is called exactly once, after PUBACK or with an error. */
  publish(payload: Buffer, done: (err?: Error | null) => void): void;
  readonly connected: boolean;
  /** Stops reconnecting, fails pending publishes and closes the connection. */
  close(): Promise<void>;
}

/**
 * The broker URLs of `--mqtt` (one, or a cluster's comma-separated), or a `TypeError` naming the flag.
 * @example
 * ```ts
 * checkBrokerUrls('mqtt://a:1883,mqtt://b:1883'); // ['mqtt://a:1883', 'mqtt://b:1883']
 * ```
 */
export function checkBrokerUrls(list: string): string[] {
  try {
    return parseBrokerUrls(list);
  } catch (e) {
    throw new TypeError(`--mqtt must be a broker URL like mqtt://127.0.0.1:1883, or several comma-separated (${(e as Error).message})`);
  }
}

/**
 * Connects to the broker and keeps reconnecting with backoff until closed.
 * @example
 * ```ts
 * const up = connectUplink({ url, clientId: 'gateway-gw-n1', topic: topics.frames('gw-n1'), logger, onOnline, onOffline });
 * up.publish(encodeUplink(batch), (err) => ...);
 * ```
 */
export function connectUplink(o: UplinkOptions): UplinkConnection {
  const minMs = o.minBackoffMs ?? 500;
  const maxMs = o.maxBackoffMs ?? 30_000;
  if (!(Number.isFinite(minMs) && minMs > 0 && Number.isFinite(maxMs) && maxMs >= minMs)) throw new TypeError('backoff must satisfy 0 < min <= max');
  const urls = startAt(checkBrokerUrls(o.url), o.clientId); // each gateway starts at its own node (lib/broker-url.ts)
  const log = o.logger;
  let client: MqttClient | undefined;
  let online = false;
  let attempts = 0;
  /** Dials so far: the next one goes to `urls[dials % urls.length]` (round robin over a cluster's nodes). */
  let dials = 0;
  let closed = false;
  let timer: NodeJS.Timeout | undefined;
  const pending = new Set<(err?: Error | null) => void>();

  const failPending = (why: string) => {
    const err = new Error(why);
    for (const cb of [...pending]) {
      pending.delete(cb);
      cb(err);
    }
  };

  const dial = () => {
    timer = undefined;
    attempts++;
    const url = urls[dials++ % urls.length]!;
    log.info({ url: shownBrokerUrls(url), clientId: o.clientId, attempt: attempts }, 'gateway: connecting to broker');
    const c = mqtt.connect(url, {
      clientId: o.clientId,
      username: o.username,
      password: o.password,
      clean: false, // persistent session (MQTT 3.1.1 §3.1.2.4)
      protocolVersion: 4,
      reconnectPeriod: 0, // we reconnect ourselves, with backoff
      connectTimeout: 10_000,
      keepalive: 30,
    });
    client = c;
    c.on('connect', (connack) => {
      if (client !== c) return;
      online = true;
      log.info({ attempt: attempts, sessionPresent: connack.sessionPresent }, 'gateway: connected to broker');
      attempts = 0;
      o.onOnline();
    });
    c.on('error', (err: Error & { code?: unknown }) => log.warn({ err: err.message, code: err.code }, 'gateway: broker connection error'));
    c.once('close', () => {
      if (client !== c) return;
      client = undefined;
      const was = online;
      online = false;
      c.end(true);
      if (was) {
        log.warn('gateway: broker connection lost');
        o.onOffline();
      }
      failPending('broker connection lost before PUBACK');
      if (closed) return;
      const delay = Math.min(maxMs, minMs * 2 ** Math.min(attempts, 30));
      log.info({ retryInMs: delay, attempt: attempts }, 'gateway: broker unreachable, will retry');
      timer = setTimeout(dial, delay);
    });
  };
  dial();

  return {
    publish(payload, done) {
      const c = client;
      if (!c || !online) return done(new Error('not connected to the broker'));
      pending.add(done);
      c.publish(o.topic, payload, { qos: 1, retain: false }, (err) => {
        if (!pending.delete(done)) return; // already failed by a disconnection
        done(err ?? null);
      });
    },
    get connected() {
      return online;
    },
    async close() {
      closed = true;
      clearTimeout(timer);
      const c = client;
      client = undefined;
      online = false;
      failPending('gateway closing');
      if (c) await c.endAsync(true);
    },
  };
}
