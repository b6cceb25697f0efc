/**
 * NATS Server (2.9+, MQTT on JetStream) as the system's clustered broker: the fleet's users and topic ACL
 * (protocol/acl.ts `buildAcl`) written as a NATS configuration include, `authorization { users = [...] }`.
 * Pure: text in, text out; provision/keys.ts writes it to `nats/accounts.conf` (0600), and every node's
 * configuration includes it (`smartermeter cluster up --keys`, broker/nats-conf.ts).
 *
 * How the ACL translates (nats-server server/mqtt.go, v2.9):
 * - An MQTT user is a NATS user; its MQTT topics are NATS subjects: `/` becomes `.`, `+` becomes `*`, a last
 *   `#` becomes `>`. A filter `a/#` also matches `a` in MQTT (§4.7.1.2) and the server subscribes to both `a.>`
 *   and `a` for it, so a `#` grant is the two subjects.
 * - A QoS 1 subscription is a JetStream consumer delivering to `$MQTT.sub.<random>`, which the server
 *   subscribes to under the client's own permissions: every user that subscribes needs `$MQTT.sub.>`. It cannot
 *   be narrower (the suffix is random) and it gives nothing away to an MQTT client: the server refuses any MQTT
 *   subscription under `$MQTT.sub.` itself, and `$MQTT/#` or `$MQTT/+/#` are outside the grant. A NATS-protocol
 *   client could read every QoS 1 delivery with it, so every user is MQTT-only
 *   (`allowed_connection_types: ["MQTT"]`). Session, message and retained streams and the acknowledgements
 *   are handled by the server's internal client: no user needs more.
 * - An empty allow list would mean "everything" to NATS: a user that may not publish (or subscribe) gets
 *   `deny: [">"]`.
 * - Passwords are bcrypt hashes (NATS compares any `$2a$`/`$2b$` password as bcrypt, MQTT clients included).
 *   The cost is bcrypt's minimum, 4: the passwords are 144-bit random (lib/keyset credentials), so the work
 *   factor adds nothing against guessing, while every MQTT CONNECT pays it on the broker (a whole fleet
 *   reconnects after a node fails) and provisioning pays it per household.
 * What NATS cannot enforce from this file, unlike the embedded broker (docs/operations.md, "Broker"): client
 * ids bound to their user, the retain rule per topic, a denied PUBLISH closing the connection (NATS
 * acknowledges and drops it, logging a "Publish Violation"), denial counters, and the login backoff.
 * NATS 2.9's MQTT also refuses topics with `.` or a space, so a fleet whose ids contain `.` cannot use it.
 * @module
 */
import bcrypt from 'bcryptjs';
import { USER_NAME } from '../lib/broker-users.js';
import { isValidFilter, type AclEntry } from '../protocol/acl.js';

/** bcrypt cost of the users' password hashes (see the module comment for why the minimum). */
export const NATS_BCRYPT_COST = 4;

/** The subject prefix of the JetStream consumers' deliveries for QoS 1 subscriptions (server/mqtt.go `mqttSubPrefix`). */
export const MQTT_QOS1_DELIVERY = '$MQTT.sub.>';

/**
 * The NATS subjects a user must be allowed for the MQTT topic filter `filter` (see the module comment);
 * throws a `TypeError` for a filter that NATS 2.9's MQTT cannot carry: an empty level, or a level with `.`,
 * a space or a NATS wildcard character (`*`, `>`).
 * @example
 * ```ts
 * mqttFilterToSubjects('sm/v1/household/hh1/#'); // ['sm.v1.household.hh1.>', 'sm.v1.household.hh1']
 * mqttFilterToSubjects('sm/v1/frames/+');        // ['sm.v1.frames.*']
 * ```
 */
export function mqttFilterToSubjects(filter: string): string[] {
  if (!isValidFilter(filter)) throw new TypeError(`bad MQTT topic filter ${JSON.stringify(filter)}`);
  const levels = filter.split('/');
  for (const l of levels) {
    if (l === '' || /[.\s*>"\\]/.test(l)) throw new TypeError(`MQTT topic filter ${JSON.stringify(filter)} cannot be a NATS subject (empty level, or '.', space, '*', '>', quote in a level)`);
  }
  const subject = levels.map((l) => (l === '+' ? '*' : l === '#' ? '>' : l)).join('.');
  if (levels.length > 1 && levels.at(-1) === '#') return [subject, subject.slice(0, -2)];
  return [subject];
}

/** A NATS permission block: the allowed subjects, or deny everything. */
function permission(subjects: string[]): string {
  const list = (xs: string[]) => `[${xs.map((x) => JSON.stringify(x)).join(', ')}]`;
  return subjects.length > 0 ? `{ allow: ${list(subjects)} }` : `{ deny: [">"] }`;
}

/**
 * One user's entry of the `users` list: bcrypt'ed password, MQTT only, the subjects of `acl` (plus the QoS 1
 * deliveries for a subscriber).
 * @example
 * ```ts
 * natsUserEntry('household-h1', 'pw', { publish: [], subscribe: ['sm/v1/household/h1/#'] });
 * // '{ user: "household-h1", password: "$2b$04$...", allowed_connection_types: ["MQTT"], permissions: { ... } }'
 * ```
 */
export function natsUserEntry(user: string, password: string, acl: AclEntry, cost = NATS_BCRYPT_COST): string {
  if (typeof user !== 'string' || !USER_NAME.test(user)) throw new TypeError(`bad broker user name ${JSON.stringify(user)}`);
  if (typeof password !== 'string' || password.length === 0 || Buffer.byteLength(password) > 72) throw new TypeError(`password of ${user} must be 1 to 72 bytes (bcrypt's limit)`);
  const unique = (xs: string[]) => [...new Set(xs)];
  const publish = unique(acl.publish.flatMap(mqttFilterToSubjects));
  const subscribe = unique(acl.subscribe.flatMap(mqttFilterToSubjects));
  if (subscribe.length > 0) subscribe.push(MQTT_QOS1_DELIVERY);
  const hash = bcrypt.hashSync(password, cost);
  return `{ user: ${JSON.stringify(user)}, password: ${JSON.stringify(hash)}, allowed_connection_types: ["MQTT"], permissions: { publish: ${permission(publish)}, subscribe: ${permission(subscribe)} } }`;
}

/**
 * The include file of a fleet: `authorization { users = [...] }` with one entry per user of `acl`, sorted, each
 * password from `passwords`. Users not listed, and anonymous clients, are refused by every node.
 * @example
 * ```ts
 * writeSecret(join(out, NATS_ACCOUNTS), natsAccounts(buildAcl(fleet), passwords));
 * ```
 */
export function natsAccounts(acl: Readonly<Record<string, AclEntry>>, passwords: Readonly<Record<string, string>>): string {
  const users = Object.keys(acl).sort();
  const entries = users.map((u) => {
    if (!Object.hasOwn(passwords, u)) throw new TypeError(`no password for broker user ${u}`);
    return `    ${natsUserEntry(u, passwords[u]!, acl[u]!)}`;
  });
  return [
    '# Generated by `smartermeter provision` (provision/nats.ts) from protocol/acl.ts buildAcl (docs/protocol.md §10):',
    '# the MQTT users of the fleet and their topics as NATS subjects. Every node of the cluster includes this file.',
    'authorization {',
    '  users = [',
    ...entries,
    '  ]',
    '}',
    '',
  ].join('\n');
}
