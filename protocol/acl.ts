/**
 * Topic access control (docs/protocol.md §10): MQTT 3.1.1 topic-filter syntax, matching and coverage, and
 * the fleet's ACL (who may publish and subscribe what), which the embedded broker enforces and any other
 * broker's configuration is generated from.
 *
 * Spec clauses (OASIS MQTT 3.1.1, §4.7 "Topic Names and Topic Filters"):
 * - §4.7.1.1 the level separator `/` divides a topic into levels; empty levels are allowed;
 * - §4.7.1.2 `#` matches any number of levels, including the parent level, and must be the last
 *   character of the filter, alone in its level [MQTT-4.7.1-2];
 * - §4.7.1.3 `+` matches exactly one level and must occupy a whole level [MQTT-4.7.1-3];
 * - §4.7.2 a filter starting with a wildcard does not match a topic name starting with `$` [MQTT-4.7.2-1];
 * - §4.7.3 topic names and filters are at least one character long [MQTT-4.7.3-1], topic names carry no
 *   wildcards [MQTT-4.7.3-2], and neither contains U+0000 [MQTT-4.7.3-2].
 * @module
 */
import { topics } from './topics.js';

/** What one broker user may publish to and subscribe to, as MQTT topic filters. */
export interface AclEntry {
  publish: string[];
  subscribe: string[];
}

/** Largest topic length we accept (MQTT strings are at most 65535 bytes, §1.5.3). */
const MAX_TOPIC_LEN = 65535;

/**
 * Whether `filter` is a syntactically valid MQTT 3.1.1 topic filter (§4.7.1, §4.7.3).
 * @example
 * ```ts
 * isValidFilter('sm/v1/frames/+'); // true
 * isValidFilter('sm/#/x');         // false: '#' must be last
 * ```
 */
export function isValidFilter(filter: string): boolean {
  if (typeof filter !== 'string' || filter.length === 0 || filter.length > MAX_TOPIC_LEN || filter.includes('\u0000')) return false;
  const levels = filter.split('/');
  return levels.every((l, i) => {
    if (l === '#') return i === levels.length - 1; // [MQTT-4.7.1-2]
    if (l === '+') return true;
    return !l.includes('#') && !l.includes('+'); // wildcards occupy whole levels [MQTT-4.7.1-2/-3]
  });
}

/**
 * Whether `topic` is a valid topic name for PUBLISH: non-empty, no wildcards, no U+0000 (§4.7.3).
 * @example
 * ```ts
 * isValidTopicName('sm/v1/frames/gw-n1'); // true
 * isValidTopicName('sm/v1/frames/+');     // false
 * ```
 */
export function isValidTopicName(topic: string): boolean {
  return (
    typeof topic === 'string' &&
    topic.length > 0 &&
    topic.length <= MAX_TOPIC_LEN &&
    !topic.includes('\u0000') &&
    !topic.includes('+') &&
    !topic.includes('#')
  );
}

/**
 * Whether the topic name `topic` matches the topic filter `filter` (§4.7.1.2, §4.7.1.3, §4.7.2).
 * Returns false for an invalid filter or topic name.
 * @example
 * ```ts
 * topicMatches('sm/v1/household/h1/#', 'sm/v1/household/h1/readings'); // true
 * topicMatches('#', '$SYS/broker/uptime');                              // false (§4.7.2)
 * ```
 */
export function topicMatches(filter: string, topic: string): boolean {
  if (!isValidFilter(filter) || !isValidTopicName(topic)) return false;
  const f = filter.split('/');
  const t = topic.split('/');
  if ((f[0] === '#' || f[0] === '+') && t[0]!.startsWith('$')) return false; // [MQTT-4.7.2-1]
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return true; // matches the parent level too: 'a/#' matches 'a'
    if (i >= t.length) return false;
    if (f[i] !== '+' && f[i] !== t[i]) return false;
  }
  return f.length === t.length;
}

/**
 * Whether every topic name matched by `requested` is also matched by `granted`, i.e. a client granted
 * `granted` may subscribe to `requested` without seeing anything more. Both must be valid filters.
 * @example
 * ```ts
 * filterCovers('sm/v1/household/h1/#', 'sm/v1/household/h1/readings'); // true
 * filterCovers('sm/v1/household/h1/#', 'sm/v1/household/+/readings');  // false: '+' reaches h2
 * filterCovers('sm/v1/household/h1/#', '#');                           // false
 * ```
 */
export function filterCovers(granted: string, requested: string): boolean {
  if (!isValidFilter(granted) || !isValidFilter(requested)) return false;
  const g = granted.split('/');
  const r = requested.split('/');
  // §4.7.2: a granted filter that starts with a wildcard never matches '$' topics, but a requested filter
  // with a literal '$' first level matches only such topics.
  if ((g[0] === '#' || g[0] === '+') && r[0]!.startsWith('$')) return false;
  for (let i = 0; i < g.length; i++) {
    if (g[i] === '#') return true; // covers any suffix of any length, and the parent level (§4.7.1.2)
    const ri = r[i];
    if (ri === undefined) return false; // requested topics end at a level that `granted` still requires
    // A requested '#' also matches the parent level, which a non-'#' level cannot cover; at the first
    // level there is no parent topic, so there '+/#' covers '#' (both match every non-'$' topic).
    if (ri === '#') return i === 0 && g[0] === '+' && g[1] === '#' && g.length === 2;
    if (g[i] === '+') continue; // one level of anything covers '+' or a literal
    if (ri === '+' || ri !== g[i]) return false;
  }
  return r.length === g.length;
}

/** Topics on which a retained message may be stored (docs/protocol.md §10: retained only for household keys). */
const RETAINED_TOPICS = [topics.householdKeysAll];

/**
 * Whether a PUBLISH (or will) with the retain flag is allowed on `topic`: only household-key topics
 * (`sm/v1/pes/household-key/<hh>`, docs/protocol.md §10) carry retained messages; anywhere else a retained
 * message would be stored and re-delivered to every new subscriber, e.g. a stale uplink to a restarted PES.
 * @example
 * ```ts
 * mayRetain('sm/v1/pes/household-key/hh1'); // true
 * mayRetain('sm/v1/frames/gw-n1');          // false
 * ```
 */
export function mayRetain(topic: string): boolean {
  return RETAINED_TOPICS.some((f) => topicMatches(f, topic));
}

/**
 * The broker ACL of a fleet, per user name (see docs/protocol.md for who may publish/subscribe what):
 * - `gateway-<gw>`: publish its own frames topic;
 * - `pes`: subscribe all frames and household keys; publish aggregates and household streams;
 * - `mdms`: subscribe aggregates;
 * - `household-<hh>`: subscribe its own subtree;
 * - `ucs`: publish household keys;
 * - with `e2e` (end-to-end mode, docs/paillier.md): `guardian`: subscribe all frames (it recomputes every
 *   aggregate it helps decrypt) and the PES's requests, publish its partial decryptions; `pes` also publishes
 *   requests; `mdms` also subscribes to the partials (it combines them with the PES's, so the PES never learns
 *   an aggregate).
 * @example
 * ```ts
 * buildAcl({ gateways: ['gw-n1'], households: ['h1'] })['household-h1'];
 * // { publish: [], subscribe: ['sm/v1/household/h1/#'] }
 * buildAcl({ gateways: [], households: [] }, { e2e: true }).guardian;
 * // { publish: ['sm/v1/partial/#'], subscribe: ['sm/v1/frames/+', 'sm/v1/request/#'] }
 * ```
 */
export function buildAcl(fleet: { gateways: string[]; households: string[] }, options: { e2e?: boolean } = {}): Record<string, AclEntry> {
  const acl: Record<string, AclEntry> = {
    pes: {
      publish: [topics.aggregatesAll, topics.householdStreamsAll],
      subscribe: [topics.framesAll, topics.householdKeysAll],
    },
    mdms: { publish: [], subscribe: [topics.aggregatesAll] },
    // The UCS server publishes household public keys and keeps each household's encrypted archive: it reads
    // the sealed streams (ciphertext under household keys it never holds), never aggregates or frames.
    ucs: { publish: [topics.householdKeysAll], subscribe: [topics.householdStreamsAll] },
  };
  if (options.e2e) {
    acl.guardian = { publish: [topics.partialsAll], subscribe: [topics.framesAll, topics.requestsAll] };
    acl.pes!.publish.push(topics.requestsAll);
    acl.mdms!.subscribe.push(topics.partialsAll);
  }
  for (const gw of fleet.gateways) acl[`gateway-${gw}`] = { publish: [topics.frames(gw)], subscribe: [] };
  for (const hh of fleet.households) acl[`household-${hh}`] = { publish: [], subscribe: [topics.householdAll(hh)] };
  return acl;
}

/**
 * Largest MQTT packet a broker of this system accepts after CONNACK (the embedded broker, and the Mosquitto
 * configuration `provision` writes). The largest uplink the protocol allows (1024 frames of at most 2048
 * bytes, docs/protocol.md §9) is about 2.1 MB; this is twice that.
 * @example
 * ```ts
 * await startBroker({ users, maxPacketBytes: MAX_PACKET_BYTES });
 * ```
 */
export const MAX_PACKET_BYTES = 4 * 1024 * 1024;
