/**
 * The MDMS ingest of the end-to-end mode: subscribes to the PES's releases (aggregate topics, signed by the
 * PES) and the guardian's partials (partial topics, signed by the guardian), unseals each with the MDMS key
 * after checking its signer, pairs and combines them (mdms/combine.ts), applies the MDMS's own policy (k, the
 * fleet, no negative energy: mdms/aggregate.ts) and stores exactly the rows the classic ingest stores.
 *
 * Durability (the chain's last step, as the classic ingest's): a message is acknowledged only once its effect
 * is committed. A half whose counterpart has not arrived is kept in the store (`e2e_pending`, as it arrived:
 * sealed to the MDMS) before it is acknowledged, and a restarted MDMS takes the waiting halves back from there
 * before it handles a message. When the counterpart arrives, the aggregate is stored, then the waiting half
 * forgotten, then the counterpart acknowledged: a crash in between redelivers the counterpart, which combines
 * again and is stored idempotently (`duplicate`). A combined pair leaves a marker (its ciphertext id) before
 * the waiting half is forgotten, so a copy of either half that arrives later (redelivered after a crash, or
 * published again from the PES's or the guardian's outbox) is a duplicate, acknowledged, not kept waiting.
 *
 * Pruning: markers and halves still waiting that arrived more than the retention ago (`retentionMs`, default
 * {@link E2E_RETENTION_MS}) are deleted at start and then every `pruneEveryMs`, counted (`prunedMarkers`,
 * `prunedOrphans`) and logged (an orphan, a half whose counterpart never came, with its topic: that aggregate
 * is not stored). A copy of a half that comes after its marker was pruned waits again; should its counterpart
 * come again too, the pair combines to the very aggregate already stored, which the store keeps once
 * (`duplicate`: rows are idempotent by key, start and revision).
 * @module
 */
import type { KeyObject } from 'node:crypto';
import { pino, type Logger } from 'pino';
import { startDurableSubscriber, type Verdict } from '../lib/durable-subscriber.js';
import type { Fleet } from '../lib/keyset.js';
import type { Aggregate } from '../protocol/aggregate.js';
import { parseGuardianPartial, parseRelease } from '../protocol/e2e.js';
import type { PublicKey } from '../protocol/paillier/keys.js';
import { openAggregate } from '../protocol/seal.js';
import { parseTopic, topics } from '../protocol/topics.js';
import { policyViolation } from './aggregate.js';
import { Combiner } from './combine.js';
import { MAX_PAYLOAD } from './ingest.js';
import type { PendingHalf, Store } from './store/types.js';

/** What the e2e ingest did (all only grow); the first four are named as the classic ingest's. */
export interface E2eIngestCounters {
  stored: number;
  duplicates: number;
  rejectedPrivacy: number;
  malformed: number;
  received: number;
  releases: number;
  partials: number;
  badSignature: number;
  refusedCombine: number;
  conflicts: number;
  /** Combined markers deleted past the retention. */
  prunedMarkers: number;
  /** Halves deleted past the retention while still waiting for their counterpart (their aggregate is lost). */
  prunedOrphans: number;
}

/**
 * How long the MDMS keeps a combined marker or a half waiting, by default: 62 days, two of the longest billing
 * periods (a month of 31 days), as the PES and the guardian keep a closed window for revisions (two billing
 * periods): a half published again after that is no longer expected.
 * @example
 * ```ts
 * startMdmsE2eIngest({ ...o, retentionMs: E2E_RETENTION_MS });
 * ```
 */
export const E2E_RETENTION_MS = 62 * 86_400_000;

/** Options of {@link startMdmsE2eIngest}. */
export interface MdmsE2eIngestOptions {
  store: Store;
  privateKey: KeyObject;
  pesVerifyKey: KeyObject;
  guardianVerifyKey: KeyObject;
  paillier: PublicKey;
  mqtt: { url: string; username?: string; password?: string; clientId?: string };
  k: number;
  fleet?: Fleet;
  minBillingPeriodS?: number;
  /** Combined markers and waiting halves older than this are pruned; default {@link E2E_RETENTION_MS}. */
  retentionMs?: number;
  /** How often to prune; default one hour (and once at start). */
  pruneEveryMs?: number;
  log?: Logger;
}

/**
 * @example
 * ```ts
 * const ingest = startMdmsE2eIngest({ store, privateKey, pesVerifyKey, guardianVerifyKey, paillier, mqtt, k: 5 });
 * await ingest.ready;
 * ```
 */
export function startMdmsE2eIngest(o: MdmsE2eIngestOptions): {
  counters: E2eIngestCounters;
  combiner: Combiner;
  ready: Promise<void>;
  failed: Promise<Error>;
  /** Prunes now (also done at start and every `pruneEveryMs`). */
  prune(): Promise<void>;
  close(): Promise<void>;
} {
  const log = o.log ?? pino({ name: 'mdms' });
  const retentionMs = o.retentionMs ?? E2E_RETENTION_MS;
  const pruneEveryMs = o.pruneEveryMs ?? 3_600_000;
  if (!Number.isSafeInteger(retentionMs) || retentionMs <= 0) throw new RangeError('retentionMs must be a positive whole number of milliseconds');
  if (!Number.isSafeInteger(pruneEveryMs) || pruneEveryMs <= 0) throw new RangeError('pruneEveryMs must be a positive whole number of milliseconds');
  const counters: E2eIngestCounters = { stored: 0, duplicates: 0, rejectedPrivacy: 0, malformed: 0, received: 0, releases: 0, partials: 0, badSignature: 0, refusedCombine: 0, conflicts: 0, prunedMarkers: 0, prunedOrphans: 0 };
  const combiner = new Combiner(o.paillier);
  const policy = {
    minBillingPeriodS: o.minBillingPeriodS ?? 86_400,
    k: o.k,
    ...(o.fleet ? { fleet: { households: new Set(o.fleet.households), neighbourhoods: new Set(o.fleet.neighbourhoods) } } : {}),
  };

  async function store(agg: Aggregate, topic: string): Promise<void> {
    const violation = policyViolation(agg, policy);
    if (violation) {
      counters.rejectedPrivacy++;
      log.warn({ topic, start: agg.start, rule: violation.rule, reason: violation.reason }, 'mdms e2e: combined aggregate refused by the policy');
      return;
    }
    const outcome = agg.kind === 'neighbourhood' ? await o.store.insertNeighbourhood(agg) : await o.store.insertBilling(agg);
    if (outcome === 'stored' || outcome === 'revision') counters.stored++;
    else if (outcome === 'duplicate') counters.duplicates++;
    else counters.conflicts++;
  }

  const other = (h: 'release' | 'partial'): 'release' | 'partial' => (h === 'release' ? 'partial' : 'release');
  /** Ciphertext ids whose pair was combined and stored. */
  const combined = new Set<string>();
  /** Hands an opened half to the combiner: the aggregate if its counterpart was waiting, or why it is refused. */
  function feed(half: 'release' | 'partial', topic: string, opened: unknown): { id: string; agg: Aggregate | null; duplicate?: true } | { id?: string; refused: string } {
    let id: string | undefined;
    try {
      const named = parseTopic.aggregate(topic) ?? parseTopic.partial(topic)!;
      if (half === 'release') {
        const r = parseRelease(o.paillier, opened);
        if (r.kind !== named.kind || r.key !== named.key) throw new TypeError('the release names another window than its topic');
        counters.releases++;
        id = r.partial.ciphertextId.toString('hex');
        if (combined.has(id)) return { id, agg: null, duplicate: true };
        return { id, agg: combiner.release(r) };
      }
      const g = parseGuardianPartial(o.paillier, opened);
      if (g.kind !== named.kind || g.key !== named.key) throw new TypeError('the partial names another window than its topic');
      counters.partials++;
      id = g.partial.ciphertextId.toString('hex');
      if (combined.has(id)) return { id, agg: null, duplicate: true };
      return { id, agg: combiner.guardian(g) };
    } catch (e) {
      return { ...(id ? { id } : {}), refused: (e as Error).message };
    }
  }

  /** Stores a combined aggregate, marks its pair combined, then forgets its waiting half (see the module doc). */
  async function done(id: string, agg: Aggregate, topic: string): Promise<void> {
    await store(agg, topic);
    await o.store.holdHalf({ ciphertextId: id, half: 'combined', topic, payload: Buffer.alloc(0) });
    combined.add(id);
    await o.store.dropHalf(id, 'release');
    await o.store.dropHalf(id, 'partial');
  }

  /** The halves a previous MDMS process kept waiting, back into the combiner before the first message. */
  const restored = (async () => {
    const halves = await o.store.pendingHalves();
    for (const h of halves) if (h.half === 'combined') combined.add(h.ciphertextId);
    for (const h of halves) {
      if (h.half === 'combined') continue;
      if (combined.has(h.ciphertextId)) {
        await o.store.dropHalf(h.ciphertextId, h.half); // combined just before a crash: the half is done
        continue;
      }
      const half = h.half;
      let fed: ReturnType<typeof feed>;
      try {
        fed = feed(half, h.topic, openAggregate(o.privateKey, h.topic, h.payload, half === 'release' ? o.pesVerifyKey : o.guardianVerifyKey));
      } catch (e) {
        fed = { refused: (e as Error).message };
      }
      if ('refused' in fed) {
        // Checked when it was kept: another MDMS key, or a damaged database. Kept for an operator to look at.
        counters.refusedCombine++;
        log.error({ topic: h.topic, half: h.half, reason: fed.refused }, 'mdms e2e: a waiting half in the store no longer opens: left in e2e_pending');
        continue;
      }
      if (fed.agg) await done(fed.id, fed.agg, h.topic);
    }
    if (halves.length) log.info({ waiting: combiner.waiting, combined: combined.size }, 'mdms e2e: halves waiting for their counterpart taken back from the store');
  })();
  restored.catch(() => undefined); // reported through the first message's handler

  /** Deletes markers and orphan halves past the retention, from the store and from memory (see the module doc). */
  async function prune(): Promise<void> {
    await restored;
    const gone = await o.store.pruneHalves(retentionMs);
    let markers = 0;
    const orphans: { topic: string; half: string }[] = [];
    for (const h of gone) {
      if (h.half === 'combined') {
        combined.delete(h.ciphertextId);
        markers++;
      } else {
        combiner.forget(h.ciphertextId, h.half);
        orphans.push({ topic: h.topic, half: h.half });
      }
    }
    counters.prunedMarkers += markers;
    counters.prunedOrphans += orphans.length;
    if (markers) log.info({ markers, retentionMs }, 'mdms e2e: combined markers past the retention pruned');
    if (orphans.length) log.warn({ orphans: orphans.slice(0, 20), count: orphans.length, retentionMs }, 'mdms e2e: halves whose counterpart never came pruned past the retention: their aggregates are not stored');
  }
  let pruning: Promise<void> = prune();
  const timer = setInterval(() => {
    pruning = pruning.then(prune, prune);
    pruning.catch((e: unknown) => log.error({ err: (e as Error).message }, 'mdms e2e: pruning failed (retried at the next round)'));
  }, pruneEveryMs);
  timer.unref();

  const sub = startDurableSubscriber({
    ...o.mqtt,
    clientId: o.mqtt.clientId ?? 'mdms',
    filters: [topics.aggregatesAll, topics.partialsAll],
    who: 'the MDMS (end-to-end mode)',
    logger: log,
    async handle(packet): Promise<Verdict> {
      await restored;
      counters.received++;
      const topic = packet.topic;
      const payload = packet.payload as Buffer;
      if (typeof payload === 'string' || payload.length > MAX_PAYLOAD) {
        counters.malformed++;
        log.warn({ topic, bytes: payload.length }, 'mdms e2e: payload too large: dropped');
        return 'ack';
      }
      const isRelease = parseTopic.aggregate(topic) !== null;
      const isPartial = parseTopic.partial(topic) !== null;
      let opened: unknown;
      try {
        if (!isRelease && !isPartial) throw new TypeError('not a release or partial topic');
        opened = openAggregate(o.privateKey, topic, payload, isRelease ? o.pesVerifyKey : o.guardianVerifyKey);
      } catch (e) {
        if ((e as Error).name === 'SignatureError') counters.badSignature++;
        else counters.malformed++;
        log.warn({ topic, reason: (e as Error).message }, 'mdms e2e: message refused');
        return 'ack';
      }
      const half = isRelease ? 'release' : 'partial';
      const fed = feed(half, topic, opened);
      if ('refused' in fed) {
        counters.refusedCombine++;
        log.warn({ topic, reason: fed.refused }, 'mdms e2e: release or partial refused');
        // A pair that does not combine: its waiting half is gone from the combiner, and from the store.
        if (fed.id) await o.store.dropHalf(fed.id, other(half));
        return 'ack';
      }
      if (fed.duplicate) {
        counters.duplicates++;
        return 'ack';
      }
      if (!fed.agg) {
        await o.store.holdHalf({ ciphertextId: fed.id, half, topic, payload });
        return 'ack';
      }
      await done(fed.id, fed.agg, topic);
      return 'ack';
    },
  });
  return {
    counters,
    combiner,
    ready: Promise.all([sub.ready, restored, pruning]).then(() => undefined),
    failed: sub.failed,
    prune: () => (pruning = pruning.then(prune, prune)),
    async close() {
      clearInterval(timer);
      await pruning.catch(() => undefined);
      await sub.close();
    },
  };
}
