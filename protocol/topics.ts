/**
 * MQTT topics (MQTT 3.1.1 §4.7). Every payload is CBOR; who may publish and subscribe is in
 * docs/protocol.md and enforced by the broker ACL (broker/acl.ts).
 * @module
 */
const ID = /^[A-Za-z0-9_.-]{1,64}$/;

/**
 * Checks an identifier used as a topic level (no wildcards, no separators). `__proto__` is refused too: ids
 * travel inside CBOR bodies, whose profile refuses that string (docs/protocol.md §1).
 */
export function topicId(id: string, what = 'id'): string {
  if (typeof id !== 'string' || !ID.test(id)) throw new TypeError(`${what} must match ${ID.source}`);
  if (id === '__proto__') throw new TypeError(`${what} must not be "__proto__"`);
  return id;
}

export const topics = {
  /** Gateway -> PES: batches of opaque ciphered frames. */
  frames: (gateway: string) => `sm/v1/frames/${topicId(gateway, 'gateway id')}`,
  framesAll: 'sm/v1/frames/+',
  /** PES -> MDMS: sealed neighbourhood x interval aggregates. */
  neighbourhood: (nb: string) => `sm/v1/agg/neighbourhood/${topicId(nb, 'neighbourhood')}`,
  /** PES -> MDMS: sealed household x billing period x band totals. */
  billing: (hh: string) => `sm/v1/agg/billing/${topicId(hh, 'household')}`,
  /** PES -> MDMS: the PES's sealed policy statement (its k, guards and their counters), on start and on change. */
  policy: (pes: string) => `sm/v1/agg/policy/${topicId(pes, 'PES id')}`,
  aggregatesAll: 'sm/v1/agg/#',
  /** PES -> household: the household's own readings, sealed to its key. */
  household: (hh: string) => `sm/v1/household/${topicId(hh, 'household')}/readings`,
  householdAll: (hh: string) => `sm/v1/household/${topicId(hh, 'household')}/#`,
  /** UCS server / provisioning -> PES: a household's public key (retained). */
  householdKey: (hh: string) => `sm/v1/pes/household-key/${topicId(hh, 'household')}`,
  householdKeysAll: 'sm/v1/pes/household-key/+',
  /** Every household's stream (the PES publishes them all; the household app's server archives them). */
  householdStreamsAll: 'sm/v1/household/+/readings',
  /** Guardian -> MDMS (end-to-end mode): the guardian's partial decryption of an aggregate (docs/paillier.md). */
  partial: (kind: 'neighbourhood' | 'billing', key: string) => `sm/v1/partial/${aggregateKind(kind)}/${topicId(key, kind)}`,
  partialsAll: 'sm/v1/partial/#',
  /** PES -> guardian (end-to-end mode): what the PES asks the guardian to open (docs/paillier.md "Requests"). */
  request: (kind: 'neighbourhood' | 'billing', key: string) => `sm/v1/request/${aggregateKind(kind)}/${topicId(key, kind)}`,
  requestsAll: 'sm/v1/request/#',
} as const;

function aggregateKind(kind: string): string {
  if (kind !== 'neighbourhood' && kind !== 'billing') throw new TypeError(`aggregate kind must be neighbourhood or billing, got ${String(kind)}`);
  return kind;
}

/** The prefix every aggregate topic starts with (an MDMS may subscribe to filters under it only). */
export const AGGREGATE_PREFIX = 'sm/v1/agg/';
/**
 * The prefixes a subscriber routes by: a message under one goes to that kind's handler, which validates the
 * rest of the topic itself and counts it as malformed (rather than as a stray topic) if it is not.
 */
export const FRAMES_PREFIX = 'sm/v1/frames/';
export const HOUSEHOLD_KEY_PREFIX = 'sm/v1/pes/household-key/';
export const REQUEST_PREFIX = 'sm/v1/request/';

const FRAMES = /^sm\/v1\/frames\/([^/]+)$/;
const AGGREGATE = /^sm\/v1\/agg\/(neighbourhood|billing)\/([^/]+)$/;
const POLICY = /^sm\/v1\/agg\/policy\/([^/]+)$/;
const HOUSEHOLD_STREAM = /^sm\/v1\/household\/([^/]+)\/readings$/;
const HOUSEHOLD_KEY = /^sm\/v1\/pes\/household-key\/([^/]+)$/;
const PARTIAL = /^sm\/v1\/partial\/(neighbourhood|billing)\/([^/]+)$/;
const REQUEST = /^sm\/v1\/request\/(neighbourhood|billing)\/([^/]+)$/;

function level(re: RegExp, topic: string): string[] | null {
  const m = typeof topic === 'string' ? re.exec(topic) : null;
  if (!m) return null;
  const id = m[m.length - 1]!;
  return ID.test(id) && id !== '__proto__' ? m.slice(1) : null;
}

/**
 * Parses a topic name back into what it names, or `null` when it is not a topic of that kind (or its id
 * level is not a valid {@link topicId}). The inverse of {@link topics}.
 * @example
 * ```ts
 * parseTopic.frames('sm/v1/frames/gw-nb1');               // 'gw-nb1'
 * parseTopic.aggregate('sm/v1/agg/billing/hh7');          // { kind: 'billing', key: 'hh7' }
 * parseTopic.policy('sm/v1/agg/policy/pes');              // 'pes'
 * parseTopic.household('sm/v1/household/hh7/readings');   // 'hh7'
 * parseTopic.householdKey('sm/v1/pes/household-key/hh7'); // 'hh7'
 * parseTopic.partial('sm/v1/partial/neighbourhood/nb1');  // { kind: 'neighbourhood', key: 'nb1' }
 * parseTopic.frames('sm/v1/frames/+');                    // null
 * ```
 */
export const parseTopic = {
  /** Gateway id of an uplink topic. */
  frames: (topic: string): string | null => level(FRAMES, topic)?.[0] ?? null,
  /** Kind and key of an aggregate topic. */
  aggregate(topic: string): { kind: 'neighbourhood' | 'billing'; key: string } | null {
    const m = level(AGGREGATE, topic);
    return m ? { kind: m[0] as 'neighbourhood' | 'billing', key: m[1]! } : null;
  },
  /** PES id of a policy-statement topic. */
  policy: (topic: string): string | null => level(POLICY, topic)?.[0] ?? null,
  /** Household of a stream topic. */
  household: (topic: string): string | null => level(HOUSEHOLD_STREAM, topic)?.[0] ?? null,
  /** Household of a household-key topic. */
  householdKey: (topic: string): string | null => level(HOUSEHOLD_KEY, topic)?.[0] ?? null,
  /** Kind and key of a partial-decryption topic (end-to-end mode). */
  partial(topic: string): { kind: 'neighbourhood' | 'billing'; key: string } | null {
    const m = level(PARTIAL, topic);
    return m ? { kind: m[0] as 'neighbourhood' | 'billing', key: m[1]! } : null;
  },
  /** Kind and key of a request topic (end-to-end mode). */
  request(topic: string): { kind: 'neighbourhood' | 'billing'; key: string } | null {
    const m = level(REQUEST, topic);
    return m ? { kind: m[0] as 'neighbourhood' | 'billing', key: m[1]! } : null;
  },
} as const;
