/**
 * The UCS server: registration bound to the meter, login, and the household's ciphertext — never a reading.
 *
 * What it holds and hands out (see ucs/README.md for the whole design):
 * - registration: the activation code of the household's letter (checked against the provisioning hashes,
 *   single use, throttled) buys a ticket; with it the browser uploads its public key, its private key
 *   encrypted under a key derived from the password in the browser, and a login authenticator (also derived
 *   in the browser) of which the server keeps a scrypt hash. The server then publishes the public key to
 *   the PES (`topics.householdKey`, retained);
 * - login: the authenticator; the reply is the encrypted private key, which only the browser can open;
 * - `/api/broker`: the household's own broker credentials (read access to its own sealed stream);
 * - `/api/archive`: the household's sealed stream messages kept by the server (ciphertext).
 * Sessions: HttpOnly SameSite=Strict cookie; the database keeps only SHA-256 of the token; idle and
 * absolute timeouts. State-changing requests must be JSON from this origin.
 *
 * This module builds the shared context (ucs/server/context.ts), the app (ucs/server/app.ts: the route
 * plugins of ucs/server/, every route with a JSON schema for its input and its answers) and listens.
 * @module
 */
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { pino, type Logger } from 'pino';
import { decoyHash } from '../lib/password.js';
import { bindPort, closeWithin } from '../lib/ports.js';
import { loadCredentials, loadFleet } from '../lib/keyset.js';
import { loadActivation } from './activation.js';
import { appBundle, withBanner } from './bundle.js';
import { UcsDb } from './db.js';
import { startBrokerLink, type BrokerLink } from './link.js';
import type { TariffFile } from './tariff.js';
import { buildUcsApp } from './server/app.js';
import { hashAuth, type RequestCounters, type UcsContext } from './server/context.js';

export { ApiError } from './server/context.js';
export { ACTIVATION_THROTTLE, LOGIN_THROTTLE } from './server/throttle.js';

export interface UcsOptions {
  /** Key set made by `smartermeter provision` (fleet.json, ucs/activation.json, credentials/). */
  keysDir: string;
  /** SQLite file of the server (accounts, sessions, archive). */
  dbPath: string;
  /** Broker URL for the server itself (`mqtt://…`). */
  brokerUrl: string;
  /** Broker MQTT-over-WebSocket URL as the household's browser reaches it (`ws://…` or `wss://…`). */
  brokerWsUrl: string;
  /** Broker URL households' own tools (`ucs watch`, the HA bridge) reach (Settings shows it). Default `brokerWsUrl`. */
  householdMqttUrl?: string;
  /** The tariff households are billed with (`--tariff`, ucs/tariff.ts): the app prices its readings with it. */
  tariff?: TariffFile;
  /** HTTP port; 0 picks a free one. Default 0. */
  port?: number;
  /** The flag that sets `port`, named when the port is taken. Default `--http`. */
  portFlag?: string;
  /** Interface. Default 127.0.0.1. */
  host?: string;
  logger?: Logger;
  /** TLS key and certificate (PEM); then cookies are `Secure`. */
  https?: { key: string | Buffer; cert: string | Buffer };
  /** Session idle timeout, seconds. Default 1800. */
  sessionIdleS?: number;
  /** Session absolute lifetime, seconds. Default 43200. */
  sessionMaxS?: number;
  /** Keep an archive of sealed streams (needs the broker to let `ucs` subscribe them). Default true. */
  archive?: boolean;
  /** Archived messages are dropped after this many days. Default 400. */
  archiveDays?: number;
  /** Per-address request limits on the registration and login routes, per minute. Default 20. */
  attemptsPerMinute?: number;
  /**
   * Take the client address from `X-Forwarded-For` set by these proxies (fastify `trustProxy`): needed
   * behind a TLS-terminating proxy, or every household shares the proxy's address for the throttling.
   * Default false.
   */
  trustProxy?: boolean | string | string[];
  /** MQTT client id of the server's persistent session (unique per UCS on a shared broker). Default `ucs`. */
  clientId?: string;
  /** Clock (tests). Default `Date.now`. */
  now?: () => number;
  /** A line of text on top of the app's page (the demo's "simulated time"). */
  banner?: string;
}

export interface UcsHandle {
  /** `http://host:port`. */
  url: string;
  port: number;
  db: UcsDb;
  link: BrokerLink;
  close(): Promise<void>;
}

/**
 * Starts the UCS server (HTTP + its broker connection).
 * @example
 * ```ts
 * const ucs = await startUcs({ keysDir: 'keys', dbPath: 'ucs.sqlite', brokerUrl: 'mqtt://127.0.0.1:1883', brokerWsUrl: 'ws://127.0.0.1:8083', port: 8443 });
 * console.log(ucs.url);
 * await ucs.close();
 * ```
 */
export async function startUcs(opts: UcsOptions): Promise<UcsHandle> {
  const logger = opts.logger ?? pino({ name: 'ucs' });
  const now = opts.now ?? Date.now;
  const idleS = opts.sessionIdleS ?? 1800;
  const maxS = opts.sessionMaxS ?? 43_200;
  if (!(idleS > 0 && maxS >= idleS)) throw new RangeError('session idle timeout must be positive and at most the session lifetime');
  if (!/^wss?:\/\//.test(opts.brokerWsUrl)) throw new TypeError('brokerWsUrl must be a ws:// or wss:// URL');
  const fleet = loadFleet(opts.keysDir);
  const households = new Set(fleet.households);
  const activation = loadActivation(opts.keysDir); // fail at start, not at the first registration
  const ucsCreds = loadCredentials(opts.keysDir, 'ucs');
  const bundle = opts.banner ? withBanner(await appBundle(), opts.banner) : await appBundle();
  const db = new UcsDb(opts.dbPath, { idleMs: idleS * 1000, maxMs: maxS * 1000 }, now);
  const decoyAuthHash = await hashAuth(randomBytes(32));

  let closing: Promise<void> | undefined;
  const link: BrokerLink = startBrokerLink({
    url: opts.brokerUrl,
    ...ucsCreds,
    ...(opts.clientId !== undefined ? { clientId: opts.clientId } : {}),
    archive: opts.archive ?? true,
    households,
    store: (hh, kid, epoch, payload) => db.archive(hh, kid, epoch, payload),
    // The broker may answer after close() (a CONNACK in flight): the database is closed by then.
    onConnect: () => {
      if (!closing) for (const a of db.unpublishedKeys()) if (a.binding) void ctx.publishKey(a);
    },
    onKeyAcked: (hh, spki) => {
      if (!closing) db.markKeyPublished(hh, Buffer.from(spki));
    },
    logger,
  });
  const counters: RequestCounters = { badInput: {}, throttled: {} };
  const ctx: UcsContext = {
    keysDir: opts.keysDir,
    db,
    link,
    households,
    fleet,
    tariff: opts.tariff ?? null,
    brokerWsUrl: opts.brokerWsUrl,
    householdMqttUrl: opts.householdMqttUrl ?? opts.brokerWsUrl,
    secure: Boolean(opts.https),
    idleS,
    maxS,
    attemptsPerMinute: opts.attemptsPerMinute ?? 20,
    counters,
    logger,
    now,
    decoyKey: db.secret('decoy-kdf'),
    decoyAuthHash,
    decoyCodeHash: decoyHash(Object.values(activation.codes)[0]), // the kind of the stored ones: an unknown household costs what a known one does
    publishKey: (a) => (a.binding ? link.publishKey(a.household, a.spki, a.binding) : Promise.resolve(false)),
  };
  const archiveDays = opts.archiveDays ?? 400;
  const prune = setInterval(() => {
    const n = db.pruneArchive(now() - archiveDays * 86_400_000);
    if (n > 0) logger.info({ dropped: n }, 'ucs: archive pruned');
  }, 3600_000);
  prune.unref();

  let app: FastifyInstance | undefined;
  try {
    app = await buildUcsApp(ctx, { bundle, logger, ...(opts.https ? { https: opts.https } : {}), ...(opts.trustProxy !== undefined ? { trustProxy: opts.trustProxy } : {}) });
    await bindPort({ port: opts.port ?? 0, host: opts.host ?? '127.0.0.1', what: 'the household app', flag: opts.portFlag ?? '--http' }, () => app!.listen({ port: opts.port ?? 0, host: opts.host ?? '127.0.0.1' }));
  } catch (e) {
    closing = Promise.resolve();
    clearInterval(prune);
    await app?.close();
    await link.close();
    db.close();
    throw e;
  }
  const server = app;
  const port = (server.server.address() as AddressInfo).port;
  const host = opts.host ?? '127.0.0.1';
  const url = `${ctx.secure ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${port}`;
  logger.info({ url, households: households.size }, 'ucs: listening');
  return {
    url,
    port,
    db,
    link,
    close() {
      closing ??= (async () => {
        clearInterval(prune);
        await closeWithin(server);
        await link.close();
        db.close();
      })();
      return closing;
    },
  };
}
