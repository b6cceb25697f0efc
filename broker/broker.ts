/**
 * The embedded MQTT broker: aedes 1.x behind a TCP listener and, optionally, a WebSocket listener; with a
 * certificate, both speak TLS (mqtts, wss).
 * @module
 */
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { createServer as createTlsServer } from 'node:tls';
import { createServer as createTcpServer, type Server as TcpServer, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { Aedes, type AedesOptions, type Client } from 'aedes';
import { pino, type Logger } from 'pino';
import { WebSocketServer, createWebSocketStream } from 'ws';
import { createAccessControl, newAccessCounters, sourceAddress, type AccessControl, type AccessCounters, type AccessOptions } from './access.js';
import { mayRetain } from '../protocol/acl.js';
import { MAX_PACKET_BYTES, MAX_PACKET_BYTES_BEFORE_CONNACK, PacketSizeGuard } from './packet-guard.js';
import { createRefusalLog } from './refusal-log.js';
import { SqlitePersistence, type StoredPacket } from './persistence.js';
import type { UsersFile } from '../lib/broker-users.js';
import { listenOn } from '../lib/ports.js';

export interface BrokerOptions {
  /** Users and ACLs; without it the broker accepts anyone (development only; a warning is logged). */
  users?: UsersFile | null;
  /** Interface to listen on. Default 127.0.0.1. */
  host?: string;
  /** MQTT/TCP port; 0 picks a free port. Default 0. */
  port?: number;
  /** MQTT-over-WebSocket port; 0 picks a free port, `false` disables. Default false. */
  wsPort?: number | false;
  logger?: Logger;
  /** Hooks that replace the defaults (aedes style). The defaults come from the users file. */
  authenticate?: AccessControl['authenticate'];
  authorizePublish?: AccessControl['authorizePublish'];
  authorizeSubscribe?: AccessControl['authorizeSubscribe'];
  /**
   * SQLite file holding the broker's sessions (subscriptions of `clean: false` clients, queued and in-flight
   * QoS 1/2 messages, retained messages, wills), so that they survive a crash (broker/persistence.ts).
   * Without it they are kept in memory and die with the process. Ignored when `aedes.persistence` is given.
   */
  stateFile?: string;
  /**
   * Largest MQTT packet accepted from an authenticated client, in bytes (fixed header included); a larger one
   * closes the connection. Also the WebSocket listener's largest message. Default {@link MAX_PACKET_BYTES}.
   */
  maxPacketBytes?: number;
  /** Largest packet accepted before CONNACK (the CONNECT). Default {@link MAX_PACKET_BYTES_BEFORE_CONNACK}. */
  maxPacketBytesBeforeConnack?: number;
  /** Backoff after failed logins and the bound on password checks (broker/access.ts). */
  access?: Pick<AccessOptions, 'throttle' | 'verify'>;
  /** Interval of the refused-connection summary lines, ms. Default 10 000. */
  refusalLogIntervalMs?: number;
  /** Further aedes options (persistence, limits). */
  aedes?: AedesOptions;
  /**
   * Certificate chain and private key (PEM): then the TCP listener speaks MQTT over TLS (`mqtts://`) and the
   * WebSocket listener HTTPS (`wss://`), on the same ports; there is no plain listener beside them.
   */
  tls?: { cert: string | Buffer; key: string | Buffer };
}

export interface BrokerHandle {
  aedes: Aedes;
  host: string;
  /** Actual TCP port. */
  port: number;
  /** Actual WebSocket port, or null without a WebSocket listener. */
  wsPort: number | null;
  /** `mqtt://host:port`, or `mqtts://` with TLS. */
  url: string;
  /** `ws://host:wsPort` (`wss://` with TLS), or null. */
  wsUrl: string | null;
  /** Access denials (all zero without a users file). */
  counters: AccessCounters;
  close(): Promise<void>;
}

function checkPort(port: unknown, flag: string): number {
  if (!Number.isInteger(port) || (port as number) < 0 || (port as number) > 65535) {
    throw new TypeError(`${flag} must be an integer port between 0 and 65535`);
  }
  return port as number;
}

function checkSize(n: unknown, name: string): number {
  if (!Number.isInteger(n) || (n as number) < 2 || (n as number) > 268_435_455 + 5) {
    throw new TypeError(`${name} must be an integer number of bytes between 2 and 268435460 (MQTT's largest packet)`);
  }
  return n as number;
}

/**
 * aedes answers a QoS 1 PUBLISH with PUBACK *before* it enqueues the message for its subscribers (aedes 1.2
 * lib/handlers/publish.js), so a crash in between loses a message its publisher has already dropped. The
 * ACL hook runs before that PUBACK: after the ACL allows a QoS > 0 message, it is journaled (durably); the
 * `published` hook, which aedes calls once the message is enqueued and handed to online subscribers,
 * clears the entry. {@link republishJournal} re-publishes what a crash left in the journal.
 */
function journalQos1(hooks: Partial<AedesOptions>, persistence: SqlitePersistence, published?: AedesOptions['published']): void {
  const entries = new WeakMap<object, number>();
  const authorize = hooks.authorizePublish ?? ((_client: unknown, _packet: unknown, done: (err?: Error | null) => void) => done(null));
  hooks.authorizePublish = ((client, packet, done) =>
    authorize(client, packet, (err?: Error | null) => {
      if (err || !(packet.qos > 0)) return done(err);
      persistence.journal(packet as unknown as StoredPacket).then(
        (id) => {
          entries.set(packet, id);
          done(null);
        },
        (e: Error) => done(e), // not durable: no PUBACK, the publisher keeps the message
      );
    })) as AedesOptions['authorizePublish'];
  hooks.published = ((packet, client, done) => {
    const id = entries.get(packet);
    if (id !== undefined) {
      entries.delete(packet);
      try {
        persistence.unjournal(id);
      } catch {
        // left in the journal: re-published after a restart (a harmless duplicate)
      }
    }
    if (published) published(packet, client, done);
    else done(null);
  }) as AedesOptions['published'];
}

/**
 * Refuses a retained PUBLISH (or will) on a topic where the protocol allows none ({@link mayRetain}), before
 * the ACL and before aedes stores it: the client is disconnected (MQTT 3.1.1 has no negative PUBACK), the
 * refusal counted in `retainDenied` and logged. Applies with a users file, i.e. when the broker serves this
 * protocol; without one it is a plain development broker (tests also use it as a Home Assistant broker,
 * whose discovery and availability topics are retained).
 */
function enforceRetainRule(hooks: Partial<AedesOptions>, counters: AccessCounters, logger: Logger): void {
  const authorize = hooks.authorizePublish;
  hooks.authorizePublish = ((client, packet, done) => {
    if (packet.retain && !mayRetain(packet.topic)) {
      counters.retainDenied++;
      logger.warn({ clientId: client?.id, topic: packet.topic }, 'broker: retained publish refused (only household keys are retained)');
      return done(new Error(`retained messages are not allowed on ${packet.topic}`));
    }
    if (authorize) authorize(client, packet, done);
    else done(null);
  }) as AedesOptions['authorizePublish'];
}

/** Publishes again the QoS 1 messages that were acknowledged but whose enqueueing a crash interrupted. */
async function republishJournal(aedes: Aedes, persistence: SqlitePersistence, logger: Logger): Promise<void> {
  const pending = persistence.journaled();
  for (const { id, packet } of pending) {
    await new Promise<void>((resolve, reject) => aedes.publish(packet as never, (err) => (err ? reject(err) : resolve())));
    persistence.unjournal(id);
  }
  const stats = persistence.stats();
  logger.info({ stateFile: persistence.path, republished: pending.length, subscriptions: stats.subscriptions, queued: stats.outgoing }, 'broker: sessions restored from the state file');
}

/**
 * Keeps each topic ordered for a client that resumes a persistent session (MQTT 3.1.1 §4.6: "the Server MUST by
 * default treat each Topic as an Ordered Topic"). aedes restores the client's subscriptions (so new QoS 1
 * messages are delivered to it at once) before it sends the queue stored while the client was away
 * (handlers/connect.js: restoreSubs ... registerClient, doConnack, emptyQueue), so a message published during
 * the resume overtook the backlog: the MDMS saw a window's revision 1 before its queued revision 0 and refused
 * it as a gap (crash test). As an aedes `preConnect` hook: a client asking for a persistent session gets a
 * `deliverQoS` that holds live QoS 1 deliveries until aedes says the client is ready (`clientReady`, after the
 * queue went out), then delivers them in order. Nothing is lost meanwhile: aedes stored each of them in the
 * session before delivering it (a client that goes before it was ready finds them there next time), and one the
 * queue already carried may arrive twice (QoS 1 allows it; receivers are idempotent). Subscriptions capture
 * `deliverQoS` when they are made, hence before the subscriptions are restored.
 * @example
 * ```ts
 * const ordered = orderedResume();
 * const aedes = await Aedes.createBroker({ preConnect: ordered.preConnect });
 * ordered.attach(aedes);
 * ```
 */
export function orderedResume(next?: AedesOptions['preConnect']): { preConnect: NonNullable<AedesOptions['preConnect']>; attach(aedes: Aedes): void } {
  type Cb = (err?: Error) => void;
  type Deliver = (packet: unknown, cb: Cb) => void;
  const releases = new WeakMap<object, (deliver: boolean) => void>();
  return {
    preConnect(client, packet, callback) {
      if ((packet as { clean?: boolean }).clean === false) {
        const c = client as unknown as { deliverQoS: Deliver; closed: boolean; close: (done?: () => void) => void };
        const deliver = c.deliverQoS;
        const held: [unknown, Cb][] = [];
        let holding = true;
        c.deliverQoS = (p, cb) => {
          if (c.closed) cb(); // stored in the session: the next resume sends it, in order
          else if (holding) held.push([p, cb]);
          else deliver.call(c, p, cb);
        };
        const release = (send: boolean) => {
          if (!holding) return;
          holding = false;
          for (const [p, cb] of held.splice(0)) {
            if (send && !c.closed) deliver.call(c, p, cb);
            else cb();
          }
        };
        releases.set(client, release);
        const close = c.close;
        c.close = function (this: unknown, done?: () => void) {
          release(false);
          return close.call(c, done);
        };
      }
      if (next) next(client, packet, callback);
      else callback(null, true);
    },
    attach(aedes) {
      aedes.on('clientReady', (client) => releases.get(client)?.(true));
    },
  };
}

const closeServer = (s: TcpServer | HttpServer) => new Promise<void>((resolve) => (s.listening ? s.close(() => resolve()) : resolve()));

/**
 * Starts aedes with authentication and ACLs from `users`, listening on TCP (and WebSocket if asked).
 * A busy port fails with a message naming the port, its holder and the flag to pass (lib/ports.ts).
 * @example
 * ```ts
 * const broker = await startBroker({ users: loadUsers(path), port: 0, wsPort: 0 });
 * console.log(broker.url, broker.wsUrl);
 * await broker.close();
 * ```
 */
export async function startBroker(opts: BrokerOptions = {}): Promise<BrokerHandle> {
  const host = opts.host ?? '127.0.0.1';
  const port = checkPort(opts.port ?? 0, '--port');
  const wsPort = opts.wsPort === undefined || opts.wsPort === false ? false : checkPort(opts.wsPort, '--ws-port');
  const logger = opts.logger ?? pino({ name: 'broker' });
  const maxPacket = checkSize(opts.maxPacketBytes ?? MAX_PACKET_BYTES, 'maxPacketBytes');
  const maxBeforeConnack = Math.min(maxPacket, checkSize(opts.maxPacketBytesBeforeConnack ?? MAX_PACKET_BYTES_BEFORE_CONNACK, 'maxPacketBytesBeforeConnack'));

  const counters: AccessCounters = newAccessCounters();
  const refusals = createRefusalLog(logger, opts.refusalLogIntervalMs, () => ({ ...counters }));
  const hooks: Partial<AedesOptions> = {};
  if (opts.users) {
    const access = createAccessControl(opts.users, logger, { ...opts.access, counters, refusals });
    Object.assign(hooks, { authenticate: access.authenticate, authorizePublish: access.authorizePublish, authorizeSubscribe: access.authorizeSubscribe });
  } else {
    logger.warn('broker: no users file, every client is accepted (development only)');
  }
  for (const k of ['authenticate', 'authorizePublish', 'authorizeSubscribe'] as const) if (opts[k]) hooks[k] = opts[k] as never;
  if (opts.users) enforceRetainRule(hooks, counters, logger);

  const persistence = opts.stateFile !== undefined && !opts.aedes?.persistence ? new SqlitePersistence(opts.stateFile) : undefined;
  if (persistence) journalQos1(hooks, persistence, opts.aedes?.published);
  else if (!opts.aedes?.persistence) logger.warn('broker: sessions are kept in memory: queued QoS 1 messages are lost if the process dies (pass a state file)');

  const ordered = orderedResume(opts.aedes?.preConnect);
  const aedes = await Aedes.createBroker({ ...opts.aedes, ...hooks, preConnect: ordered.preConnect, ...(persistence ? { persistence } : {}) });
  if (persistence) await republishJournal(aedes, persistence, logger);
  ordered.attach(aedes);
  aedes.on('clientError', (client, err) => logger.debug({ clientId: client?.id, err: err.message }, 'broker: client error'));
  aedes.on('connectionError', (client, err) => logger.debug({ clientId: client?.id, err: err.message }, 'broker: connection error'));

  // Every connection starts with the small limit; an accepting CONNACK raises it (a refusing one closes it).
  const raiseLimits = new WeakMap<object, () => void>();
  aedes.on('connackSent', (packet, client) => {
    if (packet.returnCode === 0) raiseLimits.get(client)?.();
  });
  const oversized = (client: Client, listener: 'tcp' | 'ws', limit: number, size: number) => {
    counters.oversizedPackets++;
    const reason = Number.isFinite(size) ? `packet too large (limit ${limit} bytes)` : 'malformed packet length';
    refusals.note({ reason, address: sourceAddress(client), listener, ...(client.id ? { clientId: client.id } : {}) });
  };
  const handle = (conn: Duplex, listener: 'tcp' | 'ws', req?: IncomingMessage, raise?: () => void): Client => {
    const client = aedes.handle(conn, req);
    const guard = new PacketSizeGuard(maxBeforeConnack);
    raiseLimits.set(client, () => {
      guard.limit = maxPacket;
      raise?.();
    });
    // With aedes' 'readable' listener in place, 'data' fires for exactly the chunks aedes reads, before its
    // parser sees them (node:stream: 'readable' keeps control of the flow).
    conn.on('data', (chunk: Buffer) => {
      const size = guard.feed(chunk);
      if (size === 0) return;
      oversized(client, listener, guard.limit, size);
      conn.destroy();
    });
    return client;
  };

  const sockets = new Set<Socket>();
  const tls = opts.tls ? { cert: opts.tls.cert, key: opts.tls.key } : undefined;
  const onSocket = (socket: Socket) => void handle(socket, 'tcp');
  // With TLS the handler gets the socket once the handshake is done; the raw one is tracked from 'connection'.
  const tcp: TcpServer = tls ? createTlsServer(tls, onSocket) : createTcpServer(onSocket);
  tcp.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  if (tls) tcp.on('tlsClientError', (err: Error) => logger.debug({ err: err.message }, 'broker: TLS handshake failed'));
  let http: HttpServer | undefined;
  let wss: WebSocketServer | undefined;
  const closeAedes = () => new Promise<void>((resolve) => aedes.close(() => resolve()));
  try {
    const actualPort = await listenOn(tcp, { port, host, what: 'the MQTT broker', flag: '--port' });
    let actualWsPort: number | null = null;
    if (wsPort !== false) {
      const upgradeOnly = (_req: IncomingMessage, res: ServerResponse) => res.writeHead(426, { 'content-type': 'text/plain' }).end('MQTT over WebSocket only\n');
      http = tls ? createHttpsServer(tls, upgradeOnly) : createHttpServer(upgradeOnly);
      wss = new WebSocketServer({ server: http, maxPayload: maxPacket });
      wss.on('error', () => {}); // ws re-emits the HTTP server's errors; listen() below reports them
      wss.on('connection', (ws, req) => {
        // ws buffers a whole message (up to maxPayload) before the stream sees a byte, and has no public way
        // to change maxPayload per connection; its receiver reads `_maxPayload` (ws 8) for every frame. Until
        // CONNACK it gets the small limit too, so an unauthenticated client cannot make ws buffer 4 MiB.
        // Should ws rename it, the listener's maxPayload (the large limit) still applies.
        const receiver = (ws as unknown as { _receiver?: { _maxPayload?: number } })._receiver;
        const tunable = receiver !== undefined && typeof receiver._maxPayload === 'number';
        if (tunable) receiver._maxPayload = maxBeforeConnack;
        const stream = createWebSocketStream(ws);
        const client = handle(stream, 'ws', req, tunable ? () => (receiver._maxPayload = maxPacket) : undefined);
        stream.on('error', (err: Error & { code?: string }) => {
          if (err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') {
            const limit = tunable ? receiver._maxPayload! : maxPacket;
            oversized(client, 'ws', limit, limit + 1);
          }
          else logger.debug({ err: err.message }, 'broker: websocket stream error');
        });
      });
      actualWsPort = await listenOn(http, { port: wsPort, host, what: "the broker's MQTT-over-WebSocket listener", flag: '--ws-port' });
    }
    const hostForUrl = host.includes(':') ? `[${host}]` : host;
    logger.info({ host, port: actualPort, wsPort: actualWsPort, auth: Boolean(opts.users), tls: Boolean(tls) }, 'broker: listening');
    let closing: Promise<void> | undefined;
    return {
      aedes,
      host,
      port: actualPort,
      wsPort: actualWsPort,
      url: `${tls ? 'mqtts' : 'mqtt'}://${hostForUrl}:${actualPort}`,
      wsUrl: actualWsPort === null ? null : `${tls ? 'wss' : 'ws'}://${hostForUrl}:${actualWsPort}`,
      counters,
      close() {
        closing ??= (async () => {
          await closeAedes(); // disconnects every client
          wss?.close();
          http?.closeAllConnections();
          for (const s of sockets) s.destroy(); // connections that never sent CONNECT
          await Promise.all([closeServer(tcp), http ? closeServer(http) : undefined]);
          await persistence?.destroy();
          refusals.close();
          logger.info(counters, 'broker: closed');
        })();
        return closing;
      },
    };
  } catch (err) {
    wss?.close();
    await Promise.all([closeAedes(), closeServer(tcp), http ? closeServer(http) : undefined]);
    await persistence?.destroy();
    throw err;
  }
}
