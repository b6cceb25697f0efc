/**
 * MDMS ingest: subscribes to the sealed aggregates (`sm/v1/agg/#`, QoS 1, persistent session, clientId
 * `mdms`), unseals each with the MDMS private key, validates it, and stores it — acknowledging (PUBACK)
 * only after the row is committed (ARCHITECTURE.md, durability chain step 4).
 *
 * How the acknowledgement is controlled: MQTT.js calls `client.handleMessage(packet, callback)` for every
 * incoming PUBLISH and sends the PUBACK when `callback()` is called without an error; `callback(err)` skips
 * the PUBACK and moves on to the next packet (mqtt@5 build/lib/handlers/publish.js, QoS 1 branch). MQTT.js
 * handles incoming packets one at a time, so messages are stored in arrival order.
 *
 * What happens to each message:
 * | case | counter | acknowledged? |
 * |---|---|---|
 * | committed (first revision, or a new revision of a period) | stored (+ revisions) | yes |
 * | already stored, same content | duplicates | yes |
 * | same (key, start, revision) stored with different content — first one kept | conflicts | yes |
 * | sealed for another key (key id differs) — a configuration error | unsealFailed | NO: the broker keeps it in the session and redelivers it when the MDMS reconnects (MQTT 3.1.1 §4.4), e.g. restarted with the right key |
 * | unopenable seal (tampered, wrong topic), or a body that is not exactly an aggregate | malformed | yes: a poison message would be redelivered forever; it is counted and logged (ids only) |
 * | billing period shorter than the minimum, or fewer than k meters | rejectedPrivacy | yes: the MDMS must never store it, and redelivery cannot make it acceptable |
 * | database unreachable or failing | dbErrors (per attempt) | NO: retried with backoff while holding the message; meanwhile later messages wait too, so nothing is acknowledged until the database is back |
 *
 * While a message waits for the database, MQTT.js processes no other packet (not even PINGRESP), so after
 * about one keep-alive the client reconnects; the broker then redelivers every unacknowledged message and
 * the wait resumes with it. A handler whose connection is gone never acknowledges (the PUBACK would carry a
 * stale packet id into the new session); the redelivered copy is stored idempotently.
 *
 * Logs carry ids, topics, key ids and counters — never an energy value or a key.
 * @module
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import mqtt, { type IPublishPacket, type MqttClient } from 'mqtt';
import { pino, type Logger } from 'pino';
import { asArray, asBytes, asUint, cborDecode } from '../protocol/cbor.js';
import { keyId, openAggregate, SEAL_AGGREGATE } from '../protocol/seal.js';
import { topics } from '../protocol/topics.js';
import { isValidFilter } from '../broker/acl.js';
import { DEFAULT_POLICY, MalformedAggregateError, parseAggregate, privacyViolation, type Aggregate, type PrivacyPolicy } from './aggregate.js';
import type { InsertOutcome, Store } from './store/types.js';

/** Largest payload accepted (an aggregate seal is well under 1 KiB with a 3072-bit key). */
export const MAX_PAYLOAD = 64 * 1024;

/** Counters of the ingest; they only grow. */
export interface IngestCounters {
  /** Messages handled (each delivery, including redeliveries). */
  received: number;
  /** Aggregates committed (first revisions and new revisions). */
  stored: number;
  /** Of `stored`, those that added a revision to a period already stored. */
  revisions: number;
  /** Deliveries of an aggregate already stored with the same content. */
  duplicates: number;
  /** Deliveries of a stored (key, start, revision) with different content (ignored). */
  conflicts: number;
  /** Deliveries sealed for another key (left unacknowledged). */
  unsealFailed: number;
  /** Deliveries that cannot be opened or are not an aggregate (acknowledged and dropped). */
  malformed: number;
  /** Aggregates the privacy policy refuses (acknowledged and dropped). */
  rejectedPrivacy: number;
  /** Failed database attempts (each retry counts). */
  dbErrors: number;
}

/** Options of {@link startMdmsIngest}. */
export interface MdmsIngestOptions {
  store: Store;
  /** The MDMS RSA private key (`loadMdmsKey(dir)`). */
  privateKey: KeyObject;
  mqtt: {
    url: string;
    username?: string;
    password?: string;
    /** Default `mdms`: the persistent session is tied to it. */
    clientId?: string;
    /** Seconds. Default 30. */
    keepalive?: number;
    /** Milliseconds between reconnection attempts. Default 1000. */
    reconnectPeriod?: number;
  };
  /**
   * Topic filters to subscribe to, each under `sm/v1/agg/`; default `sm/v1/agg/#` (every aggregate). On a
   * broker shared by several fleets an MDMS takes only its own neighbourhoods and households: aggregates
   * sealed for another MDMS are never acknowledged (see the table above) and would fill its in-flight window.
   */
  topics?: string[];
  /** Shortest billing period stored, seconds. Default 1 day (production: 28 days). */
  minBillingPeriodS?: number;
  /** Fewest meters a stored neighbourhood aggregate may cover. Default 1 (the PES enforces the real k). */
  k?: number;
  /** Database retry backoff: first wait and ceiling, ms. Default 250 and 30000, doubling. */
  retry?: { initialMs?: number; maxMs?: number };
  log?: Logger;
}

/** A running ingest. */
export interface MdmsIngest {
  readonly counters: Readonly<IngestCounters>;
  /** The MQTT client (for tests and metrics). */
  readonly client: MqttClient;
  /** Resolves once subscribed; rejects if the broker refuses the credentials or the subscription. */
  readonly ready: Promise<void>;
  /** The key id this MDMS accepts, hex. */
  readonly keyId: string;
  /**
   * Resolves when `predicate(counters)` holds (checked after every message), rejects after `timeoutMs`.
   * @example
   * ```ts
   * await ingest.waitFor((c) => c.stored >= 2);
   * ```
   */
  waitFor(predicate: (c: Readonly<IngestCounters>) => boolean, timeoutMs?: number): Promise<void>;
  /** Stops consuming (unfinished messages stay unacknowledged) and disconnects. Does not close the store. */
  close(): Promise<void>;
}

/** The verdict on one delivery. */
type Verdict = { ack: true } | { ack: false };

function checkPositiveInt(v: number, name: string): number {
  if (!Number.isSafeInteger(v) || v < 1) throw new TypeError(`${name} must be a positive integer`);
  return v;
}

/** The key id an aggregate envelope names, or `null` if it is not an aggregate envelope. */
function envelopeKeyId(payload: Uint8Array): Buffer | null {
  try {
    const a = asArray(cborDecode(payload), 'sealed aggregate', 5, 5);
    if (asUint(a[0], 'seal type', 255) !== SEAL_AGGREGATE) return null;
    return Buffer.from(asBytes(a[1], 'kid', 8));
  } catch {
    return null;
  }
}

/**
 * Starts the ingest. It connects in the background (and keeps reconnecting); await `ready` to know it is
 * subscribed.
 * @example
 * ```ts
 * const ingest = startMdmsIngest({ store, privateKey: loadMdmsKey(dir), mqtt: { url: 'mqtt://127.0.0.1:1883', ...loadCredentials(dir, 'mdms') } });
 * await ingest.ready;
 * ```
 */
export function startMdmsIngest(opts: MdmsIngestOptions): MdmsIngest {
  const { store, privateKey } = opts;
  if (!store || typeof store.insertBilling !== 'function') throw new TypeError('store must be an MDMS Store');
  if (!privateKey || privateKey.type !== 'private' || privateKey.asymmetricKeyType !== 'rsa') {
    throw new TypeError('privateKey must be the MDMS RSA private key (KeyObject)');
  }
  if (typeof opts.mqtt?.url !== 'string' || !/^(mqtts?|wss?|tcp|tls):\/\//.test(opts.mqtt.url)) {
    throw new TypeError('mqtt.url must be an mqtt://, mqtts://, ws:// or wss:// URL');
  }
  const policy: PrivacyPolicy = {
    minBillingPeriodS: checkPositiveInt(opts.minBillingPeriodS ?? DEFAULT_POLICY.minBillingPeriodS, 'minBillingPeriodS'),
    k: checkPositiveInt(opts.k ?? DEFAULT_POLICY.k, 'k'),
  };
  const filters = opts.topics?.length ? opts.topics : [topics.aggregatesAll];
  for (const f of filters) {
    if (typeof f !== 'string' || !f.startsWith('sm/v1/agg/') || !isValidFilter(f)) throw new TypeError(`topic filter ${String(f)} must be a valid MQTT filter under sm/v1/agg/`);
  }
  const initialMs = checkPositiveInt(opts.retry?.initialMs ?? 250, 'retry.initialMs');
  const maxMs = checkPositiveInt(opts.retry?.maxMs ?? 30_000, 'retry.maxMs');
  const log = opts.log ?? pino({ name: 'mdms' });
  const mine = keyId(createPublicKey(privateKey));
  const mineHex = mine.toString('hex');

  const counters: IngestCounters = {
    received: 0,
    stored: 0,
    revisions: 0,
    duplicates: 0,
    conflicts: 0,
    unsealFailed: 0,
    malformed: 0,
    rejectedPrivacy: 0,
    dbErrors: 0,
  };
  const watchers = new Set<() => void>();
  const changed = (): void => {
    for (const w of [...watchers]) w();
  };

  let closing = false;
  /** Bumped whenever the connection closes: a handler from an older connection must not acknowledge. */
  let generation = 0;
  const sleepers = new Set<() => void>();
  const sleep = (ms: number): Promise<void> =>
    new Promise((resolve) => {
      const wake = (): void => {
        clearTimeout(t);
        sleepers.delete(wake);
        resolve();
      };
      const t = setTimeout(wake, ms);
      sleepers.add(wake);
    });

  async function store_(agg: Aggregate, topic: string, gen: number): Promise<InsertOutcome | null> {
    let wait = initialMs;
    for (let attempt = 1; ; attempt++) {
      if (closing || gen !== generation) return null;
      try {
        return agg.kind === 'neighbourhood' ? await store.insertNeighbourhood(agg) : await store.insertBilling(agg);
      } catch (e) {
        counters.dbErrors++;
        changed();
        const err = e as NodeJS.ErrnoException;
        log.warn(
          { topic, attempt, retryInMs: wait, code: err.code, error: err.message, dbErrors: counters.dbErrors },
          'database unavailable: message not acknowledged, retrying',
        );
        await sleep(wait);
        wait = Math.min(wait * 2, maxMs);
      }
    }
  }

  async function handle(packet: IPublishPacket, gen: number): Promise<Verdict> {
    counters.received++;
    const topic = packet.topic;
    const payload = packet.payload;
    if (typeof payload === 'string' || payload.length > MAX_PAYLOAD) {
      counters.malformed++;
      log.warn({ topic, bytes: payload.length, malformed: counters.malformed }, 'aggregate payload too large: dropped');
      return { ack: true };
    }
    const kid = envelopeKeyId(payload);
    if (kid && !kid.equals(mine)) {
      counters.unsealFailed++;
      log.error(
        { topic, sealedFor: kid.toString('hex'), ourKey: mineHex, unsealFailed: counters.unsealFailed },
        'aggregate sealed for another key: is this MDMS running with the right key set? Message left unacknowledged (the broker redelivers it on reconnect)',
      );
      return { ack: false };
    }
    let agg: Aggregate;
    try {
      agg = parseAggregate(topic, openAggregate(privateKey, topic, payload));
    } catch (e) {
      counters.malformed++;
      log.warn({ topic, reason: (e as Error).message, malformed: counters.malformed }, e instanceof MalformedAggregateError ? 'not a valid aggregate: dropped' : 'seal does not open: dropped');
      return { ack: true };
    }
    const violation = privacyViolation(agg, policy);
    if (violation) {
      counters.rejectedPrivacy++;
      log.warn({ topic, start: agg.start, revision: agg.revision, reason: violation, rejectedPrivacy: counters.rejectedPrivacy }, 'aggregate refused by the privacy policy: dropped');
      return { ack: true };
    }
    const outcome = await store_(agg, topic, gen);
    if (outcome === null) return { ack: false };
    if (outcome === 'stored' || outcome === 'revision') {
      counters.stored++;
      if (outcome === 'revision') counters.revisions++;
      log.debug({ topic, start: agg.start, revision: agg.revision, outcome }, 'aggregate stored');
    } else if (outcome === 'duplicate') {
      counters.duplicates++;
    } else {
      counters.conflicts++;
      log.warn({ topic, start: agg.start, revision: agg.revision, conflicts: counters.conflicts }, 'revision already stored with different content: kept the first (a PES must raise the revision)');
    }
    return { ack: true };
  }

  const client = mqtt.connect(opts.mqtt.url, {
    clientId: opts.mqtt.clientId ?? 'mdms',
    clean: false,
    protocolVersion: 4,
    keepalive: opts.mqtt.keepalive ?? 30,
    reconnectPeriod: opts.mqtt.reconnectPeriod ?? 1000,
    ...(opts.mqtt.username !== undefined ? { username: opts.mqtt.username } : {}),
    ...(opts.mqtt.password !== undefined ? { password: opts.mqtt.password } : {}),
  });

  client.handleMessage = (packet, done) => {
    const gen = generation;
    handle(packet, gen).then(
      (v) => {
        changed();
        if (closing || gen !== generation) return;
        if (v.ack) done();
        else done(new Error('left unacknowledged'));
      },
      (e: unknown) => {
        // Unreachable by design (every path above returns a verdict); never acknowledge on a surprise.
        log.error({ topic: packet.topic, error: (e as Error).message }, 'ingest bug: message left unacknowledged');
        if (!closing && gen === generation) done(e as Error);
      },
    );
  };

  client.on('close', () => {
    generation++;
  });
  client.on('error', (e) => log.error({ error: e.message, code: (e as NodeJS.ErrnoException).code }, 'MQTT error'));

  const ready = new Promise<void>((resolve, reject) => {
    const onError = (e: Error & { code?: number | string }): void => {
      // CONNACK 4 (bad credentials) and 5 (not authorized) will not fix themselves.
      if (e.code === 4 || e.code === 5 || e.code === 134 || e.code === 135) {
        client.off('error', onError);
        reject(new Error(`the broker refused the MDMS's credentials: ${e.message}`));
      }
    };
    client.on('error', onError);
    client.once('connect', () => {
      client.subscribe(filters, { qos: 1 }, (err, granted) => {
        client.off('error', onError);
        if (err) return reject(err);
        if (!granted || granted.length !== filters.length || granted.some((g) => g.qos !== 1)) {
          return reject(new Error(`the broker refused the subscription to ${filters.join(', ')} at QoS 1`));
        }
        log.info({ url: opts.mqtt.url, keyId: mineHex, minBillingPeriodS: policy.minBillingPeriodS, k: policy.k, store: store.location }, 'MDMS ingest subscribed');
        resolve();
      });
    });
  });
  ready.catch(() => undefined);

  return {
    counters,
    client,
    ready,
    keyId: mineHex,
    waitFor(predicate, timeoutMs = 10_000) {
      return new Promise<void>((resolve, reject) => {
        const check = (): void => {
          if (!predicate(counters)) return;
          watchers.delete(check);
          clearTimeout(t);
          resolve();
        };
        const t = setTimeout(() => {
          watchers.delete(check);
          reject(new Error(`waitFor timed out after ${timeoutMs} ms; counters ${JSON.stringify(counters)}`));
        }, timeoutMs);
        watchers.add(check);
        check();
      });
    },
    async close() {
      if (closing) return;
      closing = true;
      for (const wake of [...sleepers]) wake();
      await new Promise<void>((resolve) => client.end(false, {}, () => resolve()));
    },
  };
}
