/**
 * The durable MQTT subscriber every consuming actor shares (the PES, the MDMS ingest, the household app's
 * archive): a persistent session (MQTT 3.1.1 §3.1.2.4, `clean: false` and a fixed client id), QoS 1
 * subscriptions, and a PUBACK sent only once the actor says the message's effect is durable
 * (ARCHITECTURE.md, durability chain steps 3 and 4).
 *
 * How the acknowledgement is controlled: MQTT.js calls `client.handleMessage(packet, callback)` for every
 * incoming PUBLISH, one packet at a time, and sends the PUBACK when `callback()` is called without an error;
 * `callback(err)` skips the PUBACK and moves on to the next packet (mqtt@5 build/lib/handlers/publish.js,
 * QoS 1 branch). A message left unacknowledged stays in the broker's session and is redelivered when the
 * client reconnects (§4.4). A handler that finishes after its connection closed never acknowledges: the
 * packet id would belong to the new session; the broker redelivers the message instead.
 *
 * The actor's handler decides per message: resolve `'ack'` (done, or a poison message that redelivery can
 * not fix: counted by the actor), resolve `'hold'` (not now: leave it unacknowledged), or throw (a bug or a
 * failing disk: the subscriber stops taking messages, leaves this one unacknowledged and resolves `failed`;
 * the process should exit and be restarted).
 * @module
 */
import type { IClientOptions, IPublishPacket, MqttClient } from 'mqtt';
import { connectBroker, parseBrokerUrls } from './broker-url.js';
import type { Logger } from 'pino';

/**
 * CONNACK return codes that mean "these credentials will not work" (MQTT 3.1.1 §3.2.2.3: 4 bad user name or
 * password, 5 not authorized; MQTT 5 §3.2.2.2: 134 and 135, the same for brokers that answer in v5 terms).
 * Retrying does not fix them, so `ready` rejects.
 */
export const REFUSED_CONNACK: ReadonlySet<number> = new Set([4, 5, 134, 135]);

/** What the actor's handler says about one message. */
export type Verdict = 'ack' | 'hold';

/** Options of {@link startDurableSubscriber}. */
export interface DurableSubscriberOptions {
  /**
   * Broker URL, or several comma-separated (the nodes of a cluster, lib/broker-url.ts): on a lost connection
   * the subscriber reconnects to the next node and resumes its persistent session there.
   */
  url: string;
  username?: string;
  password?: string;
  /** The persistent session is tied to it: one per consuming instance. */
  clientId: string;
  /** Seconds. Default 30. */
  keepalive?: number;
  /** Milliseconds between reconnection attempts. Default 1000. */
  reconnectPeriod?: number;
  /** Milliseconds. Default MQTT.js's (30 s). */
  connectTimeout?: number;
  /**
   * Topic filters subscribed at QoS 1 on the first connection (MQTT.js resubscribes if a session is lost).
   * None: a publish-only persistent session (ready once connected).
   */
  filters: string[];
  /**
   * `true` (default): `ready` rejects unless every filter is granted at QoS 1. `false`: a refusal is logged
   * and `ready` resolves anyway (an optional subscription; see {@link DurableSubscriber.granted}).
   */
  required?: boolean;
  /** Who this is, for messages ("the PES", "the MDMS"). */
  who: string;
  logger: Logger;
  /**
   * Handles one message; see the module comment for what the verdicts mean. `live()` stays true while the
   * message's connection is open and the subscriber running: a handler that waits (a database retry) gives
   * up when it turns false, since its verdict would be dropped anyway.
   */
  handle(packet: IPublishPacket, live: () => boolean): Verdict | Promise<Verdict>;
}

/** A running subscriber. */
export interface DurableSubscriber {
  readonly client: MqttClient;
  /** Resolves once subscribed; rejects if the broker refuses the credentials or (when required) a subscription. */
  readonly ready: Promise<void>;
  /** Resolves with the error that made the subscriber stop taking messages (a throwing handler). */
  readonly failed: Promise<Error>;
  /** Whether every filter was granted at QoS 1 (false until the SUBACK). */
  readonly granted: boolean;
  /**
   * Stops taking messages (unfinished ones stay unacknowledged), runs `drain` (e.g. a last commit and the
   * outstanding publishes of the actor), then disconnects cleanly.
   */
  close(drain?: () => Promise<void>): Promise<void>;
  /** Disconnects at once, as a crash would (for tests and fatal errors). */
  kill(): Promise<void>;
}

/**
 * Connects and subscribes in the background; await `ready`.
 * @example
 * ```ts
 * const sub = startDurableSubscriber({
 *   url, ...loadCredentials(keys, 'mdms'), clientId: 'mdms', filters: [topics.aggregatesAll], who: 'the MDMS', logger,
 *   async handle(packet) { await store(packet); return 'ack'; },
 * });
 * await sub.ready;
 * ```
 */
export function startDurableSubscriber(o: DurableSubscriberOptions): DurableSubscriber {
  parseBrokerUrls(o.url, 'mqtt url'); // throws a TypeError naming the bad entry
  if (typeof o.clientId !== 'string' || o.clientId.length === 0) throw new TypeError('clientId must be a non-empty string');
  if (!Array.isArray(o.filters)) throw new TypeError('filters must be a list');
  const required = o.required ?? true;
  const options: IClientOptions = {
    clientId: o.clientId,
    clean: false,
    protocolVersion: 4,
    keepalive: o.keepalive ?? 30,
    reconnectPeriod: o.reconnectPeriod ?? 1000,
    ...(o.connectTimeout !== undefined ? { connectTimeout: o.connectTimeout } : {}),
    ...(o.username !== undefined ? { username: o.username } : {}),
    ...(o.password !== undefined ? { password: o.password } : {}),
  };
  const client = connectBroker(o.url, options);
  let stopped = false;
  let granted = false;
  let fail!: (e: Error) => void;
  const failed = new Promise<Error>((resolve) => (fail = resolve));
  /** Bumped whenever the connection closes: a handler from an older connection must not acknowledge. */
  let generation = 0;
  client.on('close', () => generation++);
  client.on('error', (e) => o.logger.error({ err: e.message, code: (e as NodeJS.ErrnoException).code }, `${o.who}: MQTT error`));

  const stop = (e: Error, topic: string): void => {
    if (stopped) return;
    stopped = true;
    o.logger.error({ topic, err: e.message }, `${o.who}: message not processed; taking no more messages`);
    fail(e);
  };

  client.handleMessage = (packet, done) => {
    const gen = generation;
    if (stopped) return; // never acknowledged: redelivered to the next instance
    const live = (): boolean => !stopped && gen === generation;
    let verdict: Verdict | Promise<Verdict>;
    try {
      verdict = o.handle(packet, live);
    } catch (e) {
      return stop(e as Error, packet.topic);
    }
    const settle = (v: Verdict): void => {
      if (!live()) return;
      if (v === 'ack') done();
      else done(new Error('left unacknowledged'));
    };
    if (typeof verdict === 'string') settle(verdict);
    else verdict.then(settle, (e: unknown) => stop(e as Error, packet.topic));
  };

  const ready = new Promise<void>((resolve, reject) => {
    const onError = (e: Error & { code?: number | string }): void => {
      if (typeof e.code === 'number' && REFUSED_CONNACK.has(e.code)) {
        client.off('error', onError);
        reject(new Error(`the broker refused ${o.who}'s credentials: ${e.message}`));
      }
    };
    client.on('error', onError);
    client.once('connect', () => {
      if (o.filters.length === 0) {
        client.off('error', onError);
        granted = true;
        return resolve();
      }
      client.subscribe(Object.fromEntries(o.filters.map((f) => [f, { qos: 1 as const }])), (err, grants) => {
        client.off('error', onError);
        granted = !err && !!grants && grants.length === o.filters.length && grants.every((g) => g.qos === 1);
        if (granted) return resolve();
        const why = `the broker refused ${o.who}'s subscription to ${o.filters.join(', ')} at QoS 1${err ? `: ${err.message}` : ''}`;
        if (required) return reject(new Error(why));
        o.logger.warn({ granted: grants }, why);
        resolve();
      });
    });
  });
  ready.catch(() => undefined);

  return {
    client,
    ready,
    failed,
    get granted() {
      return granted;
    },
    async close(drain) {
      stopped = true;
      await drain?.();
      await client.endAsync();
    },
    async kill() {
      stopped = true;
      await client.endAsync(true);
    },
  };
}
