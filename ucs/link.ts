/**
 * The UCS server's one MQTT connection (user `ucs`, client id `ucs`, a persistent session through
 * lib/durable-subscriber.ts):
 * - publishes each registered household's public key, retained at QoS 1 (protocol/household-key.ts,
 *   docs/protocol.md §10.1; the PES reads it) or withdraws it with an empty retained payload;
 * - if the broker ACL lets `ucs` subscribe `topics.householdStreamsAll`, archives every household stream
 *   message as it is (ciphertext) and acknowledges it only after the archive insert committed: the PES's stream
 *   seal (§11.2) under its kid and epoch, and the end-to-end mode's meter-sealed messages (§11.5) under
 *   {@link METER_SEALED_KID} and the frame's invocation counter (this server can open neither).
 * @module
 */
import type { MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import { startDurableSubscriber } from '../lib/durable-subscriber.js';
import { KID_BYTES, parseMeterStream, parseStream, SEAL_METER_STREAM, streamSealType } from '../protocol/envelope.js';
import { parseTopic, topics } from '../protocol/topics.js';
/** Largest stream message archived (a batch of 60 readings seals to well under 2 kB with a 4096-bit key). */
export const MAX_ARCHIVED = 16 * 1024;
/**
 * The archive's key id of meter-sealed messages (docs/protocol.md §11.5): they are sealed under the household's
 * stream key, not its registered RSA key, so every registration of the household reads them.
 */
export const METER_SEALED_KID: Uint8Array = new Uint8Array(KID_BYTES);

export interface LinkCounters {
  archived: number;
  duplicates: number;
  /** Messages not archived: unknown household, not a stream seal, too large. */
  rejected: number;
  keysPublished: number;
}

export interface BrokerLinkOptions {
  url: string;
  username?: string;
  password?: string;
  clientId?: string;
  /** Subscribe to household streams for the archive (default true). */
  archive: boolean;
  /** Households of the fleet: streams of others are refused. */
  households: ReadonlySet<string>;
  /** Stores one message; returns false for a duplicate. Throwing leaves it unacknowledged. */
  store(household: string, kid: Uint8Array, epoch: number, payload: Buffer): boolean;
  /** Called once connected, for keys still to publish. */
  onConnect(): void;
  /** Called when the broker acknowledged a published key (possibly after `publishKey` timed out). */
  onKeyAcked(household: string, spki: Uint8Array): void;
  logger: Logger;
}

export interface BrokerLink {
  client: MqttClient;
  counters: LinkCounters;
  /** Whether the broker granted the archive subscription (false until it did). */
  readonly archiving: boolean;
  /**
   * Publishes a household's key-binding message as the browser made it (retained, QoS 1); resolves true on
   * PUBACK, false after `timeoutMs`. This server cannot make one: it lacks the activation code and the key.
   */
  publishKey(household: string, spki: Uint8Array, binding: Uint8Array, timeoutMs?: number): Promise<boolean>;
  /** Withdraws a household's key (empty retained payload). */
  withdrawKey(household: string, timeoutMs?: number): Promise<boolean>;
  close(): Promise<void>;
}

/**
 * Connects the UCS server to the broker.
 * @example
 * ```ts
 * const link = startBrokerLink({ url, ...loadCredentials(keys, 'ucs'), archive: true, households, store, onConnect, logger });
 * await link.publishKey('hh1', spki);
 * ```
 */
export function startBrokerLink(o: BrokerLinkOptions): BrokerLink {
  const counters: LinkCounters = { archived: 0, duplicates: 0, rejected: 0, keysPublished: 0 };
  const sub = startDurableSubscriber({
    url: o.url,
    ...(o.username !== undefined ? { username: o.username } : {}),
    ...(o.password !== undefined ? { password: o.password } : {}),
    clientId: o.clientId ?? 'ucs',
    reconnectPeriod: 2000,
    connectTimeout: 10_000,
    filters: o.archive ? [topics.householdStreamsAll] : [],
    required: false,
    who: 'the household app',
    logger: o.logger,
    handle(packet) {
      const hh = parseTopic.household(packet.topic);
      const payload = packet.payload as Buffer;
      try {
        if (hh === null || !o.households.has(hh)) throw new TypeError('not a stream of a fleet household');
        if (payload.length > MAX_ARCHIVED) throw new TypeError(`message of ${payload.length} bytes exceeds ${MAX_ARCHIVED}`);
        const { kid, epoch } = streamSealType(payload) === SEAL_METER_STREAM ? { kid: METER_SEALED_KID, epoch: parseMeterStream(payload).ic } : parseStream(payload);
        if (o.store(hh, kid, epoch, payload)) counters.archived++;
        else counters.duplicates++;
      } catch (e) {
        if (!(e instanceof TypeError)) {
          // The database failed: leave the message unacknowledged so the broker redelivers it.
          o.logger.error({ topic: packet.topic, err: (e as Error).message }, 'ucs: archive insert failed; message left unacknowledged');
          return 'hold';
        }
        counters.rejected++;
        o.logger.warn({ topic: packet.topic, bytes: payload.length, err: e.message }, 'ucs: stream message not archived');
      }
      return 'ack';
    },
  });
  const client = sub.client;
  client.on('connect', () => {
    o.logger.info({ url: o.url }, 'ucs: connected to the broker');
    o.onConnect();
  });
  const archiving = (): boolean => o.archive && sub.granted;
  sub.ready.then(() => {
    if (archiving()) o.logger.info('ucs: archiving household streams (ciphertext)');
    else if (o.archive) o.logger.warn(`ucs: no archive subscription (${topics.householdStreamsAll}); history comes only from the browser's own store`);
  }, () => undefined);

  const publish = (topic: string, payload: Buffer, timeoutMs: number, onAck?: () => void) =>
    new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      // Offline, mqtt.js keeps the QoS 1 publish and sends it on reconnect; the callback comes with the PUBACK.
      client.publish(topic, payload, { qos: 1, retain: true }, (err) => {
        clearTimeout(timer);
        if (!err) onAck?.();
        resolve(!err);
      });
    });

  return {
    client,
    counters,
    get archiving() {
      return archiving();
    },
    async publishKey(household, spki, binding, timeoutMs = 5000) {
      const ok = await publish(topics.householdKey(household), Buffer.from(binding), timeoutMs, () => {
        counters.keysPublished++;
        o.onKeyAcked(household, spki);
      });
      o.logger.info({ household, acknowledged: ok }, 'ucs: household public key published');
      return ok;
    },
    withdrawKey(household, timeoutMs = 5000) {
      o.logger.info({ household }, 'ucs: household public key withdrawn');
      return publish(topics.householdKey(household), Buffer.alloc(0), timeoutMs);
    },
    close: () => sub.close(),
  };
}
