/**
 * Authentication and topic authorisation as aedes hooks (`authenticate`, `authorizePublish`,
 * `authorizeSubscribe`), built from a users file. Every denial is counted and logged without the password.
 * @module
 */
import type { AuthenticateError, Client, PublishPacket, Subscription } from 'aedes';
import type { Logger } from 'pino';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { USER_NAME, type UsersFile } from '../lib/broker-users.js';
import { decoyHash, verifyPassword } from '../lib/password.js';
import { filterCovers, isValidFilter, topicMatches } from '../protocol/acl.js';
import { createRefusalLog, type RefusalLog } from './refusal-log.js';
import { AuthThrottle, FairQueue, type FairQueueOptions, type ThrottleOptions } from './throttle.js';

/** Denials seen by the broker. All counters only grow. */
export interface AccessCounters {
  /** CONNECTs refused, for any reason (unknown user, wrong password, missing credentials, client id, ...). */
  authFailures: number;
  /** Of {@link authFailures}: refused without a password check, in a backoff after failed logins ({@link AuthThrottle}). */
  authThrottled: number;
  /** Of {@link authFailures}: refused without a password check, too many checks waiting ({@link FairQueue}). */
  authBusy: number;
  /** Of {@link authFailures}: right password, but a client id that belongs to another user ({@link clientIdOwner}). */
  clientIdRejected: number;
  /** PUBLISHes refused by the ACL (the client is disconnected, MQTT 3.1.1 [MQTT-3.3.5-2]). */
  publishDenied: number;
  /** Subscriptions refused by the ACL (SUBACK return code 0x80, §3.9.3). */
  subscribeDenied: number;
  /** Connections closed for a packet over the size limit (a small one before CONNACK), or a malformed length. */
  oversizedPackets: number;
  /** Retained PUBLISHes (or wills) on a topic that may not retain ({@link mayRetain}); the client is disconnected. */
  retainDenied: number;
}

/**
 * Fresh counters, all zero.
 * @example
 * ```ts
 * const counters = newAccessCounters(); // { authFailures: 0, ... }
 * ```
 */
export function newAccessCounters(): AccessCounters {
  return { authFailures: 0, authThrottled: 0, authBusy: 0, clientIdRejected: 0, publishDenied: 0, subscribeDenied: 0, oversizedPackets: 0, retainDenied: 0 };
}

/**
 * The user a client id belongs to: the user whose name it is, or whose name followed by `-` begins it
 * (`household-h1-web-3f2a` belongs to `household-h1`). When several names fit, the longest wins, so
 * `household-h1` does not own the ids of a user `household-h1-x`. Undefined when no user owns the id: then
 * nobody may use it, so no persistent session can be shared by two users (docs/protocol.md §10).
 * @example
 * ```ts
 * const users = { 'household-h1': u1, 'household-h1-x': u2 };
 * clientIdOwner('household-h1-web-1', users);   // 'household-h1'
 * clientIdOwner('household-h1-x-web-1', users); // 'household-h1-x'
 * clientIdOwner('session-1', users);            // undefined
 * ```
 */
export function clientIdOwner(clientId: string, users: Readonly<Record<string, unknown>>): string | undefined {
  if (Object.hasOwn(users, clientId)) return clientId;
  for (let i = clientId.lastIndexOf('-'); i > 0; i = clientId.lastIndexOf('-', i - 1)) {
    const name = clientId.slice(0, i);
    if (Object.hasOwn(users, name)) return name;
  }
  return undefined;
}

/** Tuning of {@link createAccessControl}'s defences; the defaults suit a fleet of thousands. */
export interface AccessOptions {
  /** Backoff after failed logins, per address, user and pair ({@link AuthThrottle}). */
  throttle?: ThrottleOptions;
  /** Password checks (scrypt) at once, and waiting per address and in all ({@link FairQueue}); beyond, refused at once. */
  verify?: FairQueueOptions;
  /** Where refused connections are logged. Default: {@link createRefusalLog} on the logger. */
  refusals?: RefusalLog;
  /** Counters to count into. Default: new ones. */
  counters?: AccessCounters;
  /** Clock, ms. Default Date.now. */
  now?: () => number;
}

/**
 * The address a client connects from: the TCP peer, or for WebSocket the HTTP request's peer (proxy headers
 * are not trusted). IPv4-mapped IPv6 addresses are written as IPv4.
 * @example
 * ```ts
 * sourceAddress(client); // '10.0.0.7'
 * ```
 */
export function sourceAddress(client: Client): string {
  const peer = client.req?.socket ?? (client.conn as Partial<Socket>);
  const a = peer.remoteAddress ?? 'unknown';
  return a.startsWith('::ffff:') ? a.slice(7) : a;
}

/** The three aedes hooks plus their counters. */
export interface AccessControl {
  authenticate: (client: Client, username: Readonly<string | undefined>, password: Readonly<Buffer | undefined>, done: (error: AuthenticateError | null, success: boolean | null) => void) => void;
  authorizePublish: (client: Client | null, packet: PublishPacket, done: (error?: Error | null) => void) => void;
  authorizeSubscribe: (client: Client, sub: Subscription, done: (error: Error | null, sub?: Subscription | null) => void) => void;
  counters: AccessCounters;
}

/** CONNACK return codes of MQTT 3.1.1 §3.2.2.3. */
const IDENTIFIER_REJECTED = 2;
const SERVER_UNAVAILABLE = 3;
const BAD_USERNAME_OR_PASSWORD = 4;

function authError(message: string, returnCode: number): AuthenticateError {
  return Object.assign(new Error(message), { returnCode }) as AuthenticateError;
}

/**
 * Builds the access-control hooks for `users`.
 *
 * - authenticate: the user must exist and the password must verify (scrypt, constant-time compare); an
 *   unknown user costs one scrypt too, so timing does not reveal which names exist. The client id must
 *   belong to the user ({@link clientIdOwner}: its name or `<name>-...`), so nobody can take over (and drain)
 *   another user's persistent session, e.g. that of `gateway-gw-n1` or of a household's browser.
 *   Failed logins back off per address, user and pair ({@link AuthThrottle}); at most three scrypts run at
 *   once, two per address, waiting checks are served address by address and, beyond a bound, refused at
 *   once ({@link FairQueue}). Throttled or busy: CONNACK 3 (server unavailable), without a password check.
 *   Refusals are logged one line per interval ({@link createRefusalLog}).
 * - authorizePublish: the topic must match one of the user's publish filters; `$` topics never.
 * - authorizeSubscribe: the requested filter must be covered by one of the user's subscribe filters
 *   ({@link filterCovers}); a refused subscription gets SUBACK 0x80 rather than a disconnect.
 * @example
 * ```ts
 * const access = createAccessControl(loadUsers(path), logger);
 * const aedes = await Aedes.createBroker({ ...access });
 * ```
 */
export function createAccessControl(users: UsersFile, logger: Logger, options: AccessOptions = {}): AccessControl {
  const counters = options.counters ?? newAccessCounters();
  const refusals = options.refusals ?? createRefusalLog(logger);
  const throttle = new AuthThrottle(options.throttle);
  const checks = new FairQueue(options.verify);
  const now = options.now ?? Date.now;
  const userOf = new WeakMap<Client, string>();
  let dummy: string | undefined;

  const authenticate: AccessControl['authenticate'] = (client, username, password, done) => {
    const address = sourceAddress(client);
    const refuse = (reason: string, code = BAD_USERNAME_OR_PASSWORD) => {
      counters.authFailures++;
      refusals.note({ reason, address, username, clientId: client.id });
      done(authError(`connection refused: ${reason}`, code), null);
    };
    // Costs no scrypt, so it does not count towards the backoff.
    if (typeof username !== 'string' || !Buffer.isBuffer(password)) return refuse('missing credentials');
    const name = Object.hasOwn(users.users, username) ? username : undefined;
    // Unknown names are throttled like users (else the backoff would tell which names exist), as long as they
    // could be user names: longer ones would only bloat the throttle's tables and go by their address alone.
    const throttleName = name ?? (USER_NAME.test(username) ? username : undefined);
    const refuseThrottled = () => {
      counters.authThrottled++;
      refuse('too many failed logins, retry later', SERVER_UNAVAILABLE);
    };
    if (!throttle.check(throttleName, address, now()).allowed) return refuseThrottled();
    // A known (user, address) pair has a lane of its own: a flood from its address does not queue before it.
    const lane = throttle.isKnown(name, address, now()) ? `${address} ${name}` : address;
    const verdict = checks.run(lane, async () => {
      if (client.closed || (client.conn as Partial<Duplex>).destroyed) return 'gone' as const;
      if (!throttle.check(throttleName, address, now()).allowed) return 'throttled' as const; // failures while it waited
      // Verify against a throw-away hash of the users' kind for unknown users so both paths cost the same.
      return (await verifyPassword(password, name !== undefined ? users.users[name]!.scrypt : (dummy ??= decoyHash(Object.values(users.users)[0]?.scrypt)))) ? ('ok' as const) : ('wrong' as const);
    });
    if (!verdict) {
      counters.authBusy++;
      return refuse('too many password checks waiting, retry later', SERVER_UNAVAILABLE);
    }
    verdict.then(
      (v) => {
        if (v === 'gone') return done(authError('connection closed before its password check', SERVER_UNAVAILABLE), null);
        if (v === 'throttled') return refuseThrottled();
        if (v === 'wrong' || name === undefined) {
          throttle.failed(throttleName, address, now());
          return refuse(name !== undefined ? 'wrong password' : 'unknown user');
        }
        if (clientIdOwner(client.id, users.users) !== name) {
          counters.clientIdRejected++;
          return refuse(`client id not under the user's name`, IDENTIFIER_REJECTED);
        }
        throttle.succeeded(name, address, now());
        userOf.set(client, name);
        done(null, true);
      },
      (err: Error) => refuse(`password check failed: ${err.message}`),
    );
  };

  const authorizePublish: AccessControl['authorizePublish'] = (client, packet, done) => {
    const name = client ? userOf.get(client) : undefined;
    const user = name !== undefined ? users.users[name] : undefined;
    const topic = packet.topic;
    if (user && !topic.startsWith('$') && user.publish.some((f) => topicMatches(f, topic))) return done(null);
    counters.publishDenied++;
    logger.warn({ clientId: client?.id, username: name, topic }, 'broker: publish denied');
    done(new Error(`not authorised to publish to ${topic}`));
  };

  const authorizeSubscribe: AccessControl['authorizeSubscribe'] = (client, sub, done) => {
    const name = userOf.get(client);
    const user = name !== undefined ? users.users[name] : undefined;
    const filter = sub.topic;
    // '$' filters ($SYS, ...) are never granted; wildcards in granted filters never reach them (§4.7.2).
    if (user && isValidFilter(filter) && !filter.startsWith('$') && user.subscribe.some((g) => filterCovers(g, filter))) {
      return done(null, sub);
    }
    counters.subscribeDenied++;
    logger.warn({ clientId: client.id, username: name, filter }, 'broker: subscription denied');
    done(null, null); // SUBACK 0x80 for this filter (§3.9.3)
  };

  return { authenticate, authorizePublish, authorizeSubscribe, counters };
}
