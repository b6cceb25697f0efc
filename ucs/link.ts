/**
 * The UCS server's one MQTT connection (user `ucs`, client id `ucs`, persistent session):
 * - publishes each registered household's public key, retained at QoS 1, on `topics.householdKey(hh)` as
 *   CBOR `[1, hh, spki]` (docs/protocol.md §10.1; the PES reads it) or withdraws it with an empty retained
 *   payload;
 * - if the broker ACL lets `ucs` subscribe `sm/v1/household/+/readings`, archives every household stream
 *   message as it is (ciphertext) and acknowledges it only after the archive insert committed.
 * @module
 */
import mqtt, { type MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import { cborEncode } from '../protocol/cbor.js';
import { parseStream } from '../protocol/seal.js';
import { topics } from '../protocol/topics.js';

/** Wildcard form of `topics.household` (protocol/topics.ts builds only concrete topics). */
export const HOUSEHOLD_STREAMS = 'sm/v1/household/+/readings';
const STREAM = /^sm\/v1\/household\/([A-Za-z0-9_.-]{1,64})\/readings$/;
/** Largest stream message archived (a batch of 60 readings seals to well under 2 kB with a 4096-bit key). */
export const MAX_ARCHIVED = 16 * 1024;

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
  /** Publishes a household's key (retained, QoS 1); resolves true on PUBACK, false after `timeoutMs`. */
  publishKey(household: string, spki: Uint8Array, timeoutMs?: number): Promise<boolean>;
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
  let archiving = false;
  const client = mqtt.connect(o.url, {
    clientId: o.clientId ?? 'ucs',
    clean: false,
    protocolVersion: 4,
    keepalive: 30,
    reconnectPeriod: 2000,
    connectTimeout: 10_000,
    ...(o.username !== undefined ? { username: o.username } : {}),
    ...(o.password !== undefined ? { password: o.password } : {}),
  });
  let generation = 0;
  client.on('close', () => generation++);
  client.on('error', (e) => o.logger.warn({ err: e.message }, 'ucs: broker error'));
  client.on('connect', () => {
    o.logger.info({ url: o.url }, 'ucs: connected to the broker');
    o.onConnect();
    if (!o.archive) return;
    client.subscribe(HOUSEHOLD_STREAMS, { qos: 1 }, (err, granted) => {
      archiving = !err && granted?.[0]?.qos === 1;
      if (archiving) o.logger.info('ucs: archiving household streams (ciphertext)');
      else o.logger.warn({ err: err?.message }, `ucs: the broker refused the archive subscription (${HOUSEHOLD_STREAMS}); history comes only from the browser's own store`);
    });
  });

  client.handleMessage = (packet, done) => {
    const gen = generation;
    const m = STREAM.exec(packet.topic);
    const payload = packet.payload as Buffer;
    try {
      if (!m || !o.households.has(m[1]!)) throw new TypeError('not a stream of a fleet household');
      if (payload.length > MAX_ARCHIVED) throw new TypeError(`message of ${payload.length} bytes exceeds ${MAX_ARCHIVED}`);
      const env = parseStream(payload);
      if (o.store(m[1]!, env.kid, env.epoch, payload)) counters.archived++;
      else counters.duplicates++;
    } catch (e) {
      if (!(e instanceof TypeError)) {
        // The database failed: leave the message unacknowledged so the broker redelivers it.
        o.logger.error({ topic: packet.topic, err: (e as Error).message }, 'ucs: archive insert failed; message left unacknowledged');
        return;
      }
      counters.rejected++;
      o.logger.warn({ topic: packet.topic, bytes: payload.length, err: e.message }, 'ucs: stream message not archived');
    }
    if (gen === generation) done();
  };

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
      return archiving;
    },
    async publishKey(household, spki, timeoutMs = 5000) {
      const ok = await publish(topics.householdKey(household), cborEncode([1, household, spki]), timeoutMs, () => {
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
    close: () => client.endAsync(),
  };
}
