/**
 * MDMS ingest: subscribes to the sealed aggregates (`sm/v1/agg/#`, QoS 1, persistent session, clientId
 * `mdms`), unseals each with the MDMS private key, validates it, and stores it — acknowledging (PUBACK)
 * only after the row is committed (ARCHITECTURE.md, durability chain step 4).
 *
 * The acknowledgement is controlled by lib/durable-subscriber.ts (one packet at a time, so messages are stored
 * in arrival order); the verdicts below are its `'ack'` and `'hold'`.
 *
 * What happens to each message:
 * | case | counter | acknowledged? |
 * |---|---|---|
 * | committed (first revision, or a new revision of a period) | stored (+ revisions) | yes |
 * | already stored, same content | duplicates | yes |
 * | same (key, start, revision) stored with different content — first one kept | conflicts | yes |
 * | sealed for another key (key id differs) — a configuration error | unsealFailed | NO: the broker keeps it in the session and redelivers it when the MDMS reconnects (MQTT 3.1.1 §4.4), e.g. restarted with the right key |
 * | unopenable seal (tampered, wrong topic), or a body that is not exactly an aggregate | malformed | yes: a poison message would be redelivered forever; it is counted and logged (ids only) |
 * | no PES signature, or one that does not verify (docs/protocol.md §11.1) | badSignature | yes (as above); logged as an error |
 * | billing period shorter than the minimum, or fewer than k meters | rejectedPrivacy | yes: the MDMS must never store it, and redelivery cannot make it acceptable |
 * | a household or neighbourhood that is not in the fleet | rejectedUnknown | yes (as above) |
 * | a negative energy | rejectedNegative | yes (as above) |
 * | a revision that does not follow the highest stored one (0 first, then +1) | rejectedGap | yes: the PES releases revisions in order on one topic (MQTT 3.1.1 §4.6), so a gap is a forgery or a fault |
 * | a PES policy statement (`sm/v1/agg/policy/<pes>`, same seal and signature), newer than the one kept | policyStored | yes |
 * | a policy statement not newer than the one kept (stale, a duplicate, or another body at the same `at`) | policyIgnored | yes |
 *
 * Every refusal by a policy rule (privacy, unknown, negative, gap) is also handed to `onRefused` (the CLI records it
 * in the audit log). The rules cover export as they cover import: a negative `exportWh` or export band is refused.
 * A policy statement carries no reading, so k, the fleet and the billing period do not apply to it; a malformed
 * one is counted `malformed` like a malformed aggregate.
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
import { createPublicKey, verify, type KeyObject } from 'node:crypto';
import type { IPublishPacket, MqttClient } from 'mqtt';
import { pino, type Logger } from 'pino';
import { startDurableSubscriber, type Verdict } from '../lib/durable-subscriber.js';
import { isValidFilter } from '../protocol/acl.js';
import { aggregateSigned, parseAggregateEnvelope, type AggregateEnvelope } from '../protocol/envelope.js';
import { keyId, openAggregate, SignatureError } from '../protocol/seal.js';
import { AGGREGATE_PREFIX, parseTopic, topics } from '../protocol/topics.js';
import { MalformedAggregateError, parseAggregate, parsePolicyStatement, type Aggregate, type PolicyStatement } from '../protocol/aggregate.js';
import { DEFAULT_POLICY, policyViolation, type PolicyRule, type PrivacyPolicy } from './aggregate.js';
import type { InsertOutcome, PolicyOutcome, Store } from './store/types.js';

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
  /** Deliveries without a valid PES signature (acknowledged and dropped): forged, or another PES. */
  badSignature: number;
  /** Aggregates the privacy policy refuses (k, shortest billing period; acknowledged and dropped). */
  rejectedPrivacy: number;
  /** Aggregates for a household or neighbourhood outside the fleet (acknowledged and dropped). */
  rejectedUnknown: number;
  /** Aggregates with a negative energy (acknowledged and dropped). */
  rejectedNegative: number;
  /** Revisions out of sequence (acknowledged and dropped). */
  rejectedGap: number;
  /** PES policy statements kept (the first of a PES, or newer than the one kept). */
  policyStored: number;
  /** PES policy statements not kept: older than or as old as the one kept (acknowledged). */
  policyIgnored: number;
  /** Failed database attempts (each retry counts). */
  dbErrors: number;
}

/** Options of {@link startMdmsIngest}. */
export interface MdmsIngestOptions {
  store: Store;
  /** The MDMS RSA private key (`loadMdmsKey(dir)`). */
  privateKey: KeyObject;
  /** The PES's Ed25519 public key (`loadPesVerifyKey(dir)`): a seal it did not sign is refused. */
  pesVerifyKey: KeyObject;
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
  /** Fewest meters a stored neighbourhood aggregate may cover: the PES's k. Default lib/policy.ts DEFAULT_K. */
  k?: number;
  /** The fleet (`loadFleet(keys)`): aggregates for other households and neighbourhoods are refused. */
  fleet?: { households: readonly string[]; neighbourhoods: readonly string[] };
  /** Called for every aggregate refused by a policy rule (aedes-style hook; default does nothing). */
  onRefused?: (r: Refusal) => void | Promise<void>;
  /** Database retry backoff: first wait and ceiling, ms. Default 250 and 30000, doubling. */
  retry?: { initialMs?: number; maxMs?: number };
  log?: Logger;
}

/** An aggregate the ingest refused, named by ids only (never an energy). */
export interface Refusal {
  topic: string;
  kind: Aggregate['kind'];
  key: string;
  start: number;
  revision: number;
  rule: PolicyRule | 'gap';
  reason: string;
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

function checkPositiveInt(v: number, name: string): number {
  if (!Number.isSafeInteger(v) || v < 1) throw new TypeError(`${name} must be a positive integer`);
  return v;
}

/** The aggregate envelope, or `null` if it is not a (signed) aggregate envelope. */
function envelopeOf(payload: Uint8Array): AggregateEnvelope | null {
  try {
    return parseAggregateEnvelope(payload);
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
  if (!opts.pesVerifyKey || opts.pesVerifyKey.asymmetricKeyType !== 'ed25519' || opts.pesVerifyKey.type !== 'public') {
    throw new TypeError('pesVerifyKey must be the PES Ed25519 public key (KeyObject)');
  }
  if (!privateKey || privateKey.type !== 'private' || privateKey.asymmetricKeyType !== 'rsa') {
    throw new TypeError('privateKey must be the MDMS RSA private key (KeyObject)');
  }
  const policy: PrivacyPolicy = {
    minBillingPeriodS: checkPositiveInt(opts.minBillingPeriodS ?? DEFAULT_POLICY.minBillingPeriodS, 'minBillingPeriodS'),
    k: checkPositiveInt(opts.k ?? DEFAULT_POLICY.k, 'k'),
    ...(opts.fleet ? { fleet: { households: new Set(opts.fleet.households), neighbourhoods: new Set(opts.fleet.neighbourhoods) } } : {}),
  };
  const filters = opts.topics?.length ? opts.topics : [topics.aggregatesAll];
  for (const f of filters) {
    if (typeof f !== 'string' || !f.startsWith(AGGREGATE_PREFIX) || !isValidFilter(f)) throw new TypeError(`topic filter ${String(f)} must be a valid MQTT filter under ${AGGREGATE_PREFIX}`);
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
    badSignature: 0,
    rejectedPrivacy: 0,
    rejectedUnknown: 0,
    rejectedNegative: 0,
    rejectedGap: 0,
    policyStored: 0,
    policyIgnored: 0,
    dbErrors: 0,
  };
  const watchers = new Set<() => void>();
  const changed = (): void => {
    for (const w of [...watchers]) w();
  };

  let closing = false;
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

  /** The highest stored revision of the aggregate's (key, start), -1 if none. */
  async function latestRevision(agg: Aggregate): Promise<number> {
    const rows = agg.kind === 'neighbourhood' ? await store.revisions({ kind: 'neighbourhood', neighbourhood: agg.key, start: agg.start }) : await store.revisions({ kind: 'billing', household: agg.key, start: agg.start });
    return rows.reduce((m, r) => Math.max(m, r.revision), -1);
  }

  /** Runs `op` until the database answers (null if the ingest closes or the connection goes meanwhile). */
  async function withDb<T>(op: () => Promise<T>, topic: string, live: () => boolean): Promise<T | null> {
    let wait = initialMs;
    for (let attempt = 1; ; attempt++) {
      if (closing || !live()) return null;
      try {
        const r = await op();
        void recordPolicy();
        return r;
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

  /** A revision already stored goes on to the store (duplicate or conflict); a new one must be the next. */
  async function store_(agg: Aggregate, topic: string, live: () => boolean): Promise<InsertOutcome | 'gap' | null> {
    return withDb(
      async () => {
        if (agg.revision > (await latestRevision(agg)) + 1) return 'gap';
        return agg.kind === 'neighbourhood' ? store.insertNeighbourhood(agg) : store.insertBilling(agg);
      },
      topic,
      live,
    );
  }

  /** Keeps a policy statement if it is the PES's newest; acknowledged whatever the outcome. */
  async function storePolicy(p: PolicyStatement, topic: string, live: () => boolean): Promise<Verdict> {
    const outcome: PolicyOutcome | null = await withDb(() => store.insertPolicy(p), topic, live);
    if (outcome === null) return 'hold';
    if (outcome === 'stored') {
      counters.policyStored++;
      log.info({ topic, at: p.at, k: p.k, revisionK: p.revisionK, membershipGuard: p.membershipGuard, counters: p.counters }, 'PES policy statement stored');
    } else {
      counters.policyIgnored++;
      const level = outcome === 'conflict' ? 'warn' : 'debug';
      log[level]({ topic, at: p.at, outcome, policyIgnored: counters.policyIgnored }, outcome === 'conflict' ? 'another policy statement with the same time: kept the first' : 'policy statement not newer than the one kept');
    }
    return 'ack';
  }

  // What this ingest enforces, for the web app's Privacy page (retried after every database success until recorded).
  let policyRecorded: Promise<void> | null = null;
  function recordPolicy(): Promise<void> {
    policyRecorded ??= store
      .recordIngestPolicy({ k: policy.k, minBillingPeriodS: policy.minBillingPeriodS, fleetChecked: policy.fleet !== undefined })
      .catch((e: unknown) => {
        policyRecorded = null;
        log.warn({ error: (e as Error).message }, 'could not record the ingest policy (retried after the next stored message)');
      });
    return policyRecorded;
  }
  void recordPolicy();

  const COUNTER = { privacy: 'rejectedPrivacy', unknown: 'rejectedUnknown', negative: 'rejectedNegative', gap: 'rejectedGap' } as const;

  /** Counts, logs and reports a refused aggregate; it is acknowledged (redelivery cannot make it acceptable). */
  async function refuse(agg: Aggregate, topic: string, rule: Refusal['rule'], reason: string): Promise<Verdict> {
    const counter = COUNTER[rule];
    counters[counter]++;
    log.warn({ topic, start: agg.start, revision: agg.revision, rule, reason, [counter]: counters[counter] }, 'aggregate refused by the privacy policy: dropped');
    try {
      await opts.onRefused?.({ topic, kind: agg.kind, key: agg.key, start: agg.start, revision: agg.revision, rule, reason });
    } catch (e) {
      log.error({ topic, error: (e as Error).message }, 'could not record a refused aggregate in the audit log');
    }
    return 'ack';
  }

  async function handle(packet: IPublishPacket, live: () => boolean): Promise<Verdict> {
    counters.received++;
    const topic = packet.topic;
    const payload = packet.payload;
    if (typeof payload === 'string' || payload.length > MAX_PAYLOAD) {
      counters.malformed++;
      log.warn({ topic, bytes: payload.length, malformed: counters.malformed }, 'aggregate payload too large: dropped');
      return 'ack';
    }
    const env = envelopeOf(payload);
    const kid = env ? Buffer.from(env.kid) : null;
    if (env && kid && !kid.equals(mine) && !verify(null, aggregateSigned(topic, env), opts.pesVerifyKey, env.sig)) {
      // Held messages are redelivered on every reconnect: only the PES's own seals deserve that.
      counters.badSignature++;
      log.error({ topic, badSignature: counters.badSignature }, 'aggregate not signed by the PES: refused (forged with a broker password, or a PES with another signing key)');
      return 'ack';
    }
    if (kid && !kid.equals(mine)) {
      counters.unsealFailed++;
      log.error(
        { topic, sealedFor: kid.toString('hex'), ourKey: mineHex, unsealFailed: counters.unsealFailed },
        'aggregate sealed for another key: is this MDMS running with the right key set? Message left unacknowledged (the broker redelivers it on reconnect)',
      );
      return 'hold';
    }
    let agg: Aggregate | null = null;
    let statement: PolicyStatement | null = null;
    try {
      const body = openAggregate(privateKey, topic, payload, opts.pesVerifyKey);
      if (parseTopic.policy(topic) !== null) statement = parsePolicyStatement(topic, body);
      else agg = parseAggregate(topic, body);
    } catch (e) {
      if (e instanceof SignatureError) {
        counters.badSignature++;
        log.error({ topic, reason: e.message, badSignature: counters.badSignature }, 'aggregate not signed by the PES: refused (forged with a broker password, or a PES with another signing key)');
        return 'ack';
      }
      counters.malformed++;
      log.warn({ topic, reason: (e as Error).message, malformed: counters.malformed }, e instanceof MalformedAggregateError ? 'not a valid aggregate: dropped' : 'seal does not open: dropped');
      return 'ack';
    }
    if (statement) return storePolicy(statement, topic, live);
    if (!agg) return 'hold'; // unreachable: one of the two parsers returned
    const violation = policyViolation(agg, policy);
    if (violation) return refuse(agg, topic, violation.rule, violation.reason);
    const outcome = await store_(agg, topic, live);
    if (outcome === null) return 'hold';
    if (outcome === 'gap') return refuse(agg, topic, 'gap', 'revision does not follow the highest stored one');
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
    return 'ack';
  }

  const sub = startDurableSubscriber({
    ...opts.mqtt,
    clientId: opts.mqtt.clientId ?? 'mdms',
    filters,
    who: 'the MDMS',
    logger: log,
    async handle(packet, live) {
      try {
        return await handle(packet, live);
      } catch (e) {
        // Unreachable by design (every path of `handle` returns a verdict); never acknowledge on a surprise.
        log.error({ topic: packet.topic, error: (e as Error).message }, 'ingest bug: message left unacknowledged');
        return 'hold';
      } finally {
        changed();
      }
    },
  });
  const client = sub.client;
  sub.ready.then(
    () => log.info({ url: opts.mqtt.url, clientId: opts.mqtt.clientId ?? 'mdms', keyId: mineHex, minBillingPeriodS: policy.minBillingPeriodS, k: policy.k, store: store.location }, 'MDMS ingest subscribed'),
    () => undefined,
  );

  return {
    counters,
    client,
    ready: sub.ready,
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
      await sub.close();
      await policyRecorded;
    },
  };
}
