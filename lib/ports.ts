/**
 * Listening ports, one way for every server (MDMS web app, household app, broker TCP and WebSocket, demo):
 * a port that is taken fails with one message that names the port, the process holding it when the system
 * can tell (Linux `/proc`, for processes this user may inspect), and the flag to pass instead. And one way for
 * the web apps to stop: gracefully, but within a bound ({@link closeWithin}).
 * @module
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { createServer, type Server } from 'node:net';

/** Where a server wants to listen, and how its user picks another port. */
export interface PortSpec {
  port: number;
  /** Default 127.0.0.1. */
  host?: string;
  /** What listens there, for the message: `the MDMS web app`, `the broker's WebSocket listener`. */
  what: string;
  /** The flag that chooses this port, e.g. `--http`. */
  flag: string;
}

/**
 * A port that could not be bound (in use, or privileged), with a message fit for a person.
 * @example
 * ```ts
 * try { await listenOn(server, spec); } catch (e) { if (e instanceof PortError) console.error(e.message); }
 * ```
 */
export class PortError extends Error {
  override name = 'PortError';
  constructor(
    message: string,
    readonly port: number,
    readonly code: string,
  ) {
    super(message);
  }
}

/**
 * The process listening on TCP `port` (`pid 123: mosquitto -c /etc/mosquitto.conf`), if this system tells
 * (Linux, a process this user may inspect); undefined otherwise.
 * @example
 * ```ts
 * portHolder(1883); // 'pid 4242: mosquitto -c /etc/mosquitto/mosquitto.conf' or undefined
 * ```
 */
export function portHolder(port: number): string | undefined {
  const inodes = new Set<string>();
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(table, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode; st 0A = LISTEN
      if (f.length > 9 && f[3] === '0A' && parseInt(f[1]!.split(':')[1] ?? '', 16) === port) inodes.add(f[9]!);
    }
  }
  if (inodes.size === 0) return undefined;
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((d) => /^\d+$/.test(d));
  } catch {
    return undefined;
  }
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue; // gone, or not ours to look at
    }
    for (const fd of fds) {
      let target: string;
      try {
        target = readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        continue;
      }
      const m = /^socket:\[(\d+)\]$/.exec(target);
      if (!m || !inodes.has(m[1]!)) continue;
      if (Number(pid) === process.pid) return 'this very process';
      let cmd = '';
      try {
        cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ');
      } catch {
        /* gone */
      }
      return `pid ${pid}${cmd ? `: ${cmd.length > 120 ? `${cmd.slice(0, 117)}...` : cmd}` : ''}`;
    }
  }
  return undefined;
}

/**
 * Turns a listen error into a {@link PortError} with the one message (other errors name the address).
 * @example
 * ```ts
 * portError(err, { port: 8080, what: 'the MDMS web app', flag: '--http' }).message;
 * // 'port 8080 is in use (pid 4242: ...), so the MDMS web app cannot listen there: pass --http <port> for another port (0: any free port)'
 * ```
 */
export function portError(err: NodeJS.ErrnoException, spec: PortSpec): Error {
  const instead = `pass ${spec.flag} <port> for another port (0: any free port)`;
  if (err.code === 'EADDRINUSE') {
    const holder = portHolder(spec.port);
    return new PortError(`port ${spec.port} is in use (${holder ?? 'by another program'}), so ${spec.what} cannot listen there: ${instead}`, spec.port, err.code);
  }
  if (err.code === 'EACCES') return new PortError(`port ${spec.port} needs privileges, so ${spec.what} cannot listen there: ${instead}`, spec.port, err.code);
  if (err.code === 'EADDRNOTAVAIL') return new PortError(`${spec.host ?? '127.0.0.1'} is not an address of this machine, so ${spec.what} cannot listen there`, spec.port, err.code);
  return new Error(`${spec.what} cannot listen on ${spec.host ?? '127.0.0.1'}:${spec.port}: ${err.message}`);
}

/**
 * Runs `bind` (e.g. fastify's `app.listen`) and turns a listen error into {@link portError}'s message.
 * @example
 * ```ts
 * await bindPort({ port: 8080, what: 'the MDMS web app', flag: '--http' }, () => app.listen({ port: 8080 }));
 * ```
 */
export async function bindPort<T>(spec: PortSpec, bind: () => Promise<T>): Promise<T> {
  try {
    return await bind();
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw typeof err?.code === 'string' && /^E[A-Z]+$/.test(err.code) ? portError(err, spec) : e;
  }
}

/**
 * Listens with a node `net`/`http` server; resolves with the port bound (useful with port 0).
 * @example
 * ```ts
 * const port = await listenOn(createServer(), { port: 1883, what: 'the broker', flag: '--port' });
 * ```
 */
export function listenOn(server: Server, spec: PortSpec): Promise<number> {
  const host = spec.host ?? '127.0.0.1';
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      server.off('listening', onListening);
      reject(portError(err, spec));
    };
    const onListening = () => {
      server.off('error', onError);
      resolve((server.address() as { port: number }).port);
    };
    server.once('error', onError);
    server.once('listening', onListening);
    server.listen(spec.port, host);
  });
}

/**
 * `port` if it is free on `host` now, else a free one (the demo's preferred ports). The port is released
 * again before this returns, so another program may still take it first: the server's own bind decides.
 * @example
 * ```ts
 * const { port, preferred } = await preferPort(8080); // preferred false: 8080 was taken
 * ```
 */
export async function preferPort(port: number, host = '127.0.0.1'): Promise<{ port: number; preferred: boolean; holder?: string }> {
  const tryListen = (p: number) =>
    new Promise<number | null>((res) => {
      const s = createServer();
      s.once('error', () => res(null));
      s.listen(p, host, () => {
        const got = (s.address() as { port: number }).port;
        s.close(() => res(got));
      });
    });
  const got = await tryListen(port);
  if (got !== null) return { port: got, preferred: true };
  const holder = portHolder(port);
  return { port: (await tryListen(0))!, preferred: false, ...(holder ? { holder } : {}) };
}

/** How long {@link closeWithin} lets requests in flight finish by default. */
export const CLOSE_GRACE_MS = 3_000;

/**
 * Closes a Fastify app: stops accepting, lets requests in flight finish for `graceMs`, then ends the
 * connections still open. Fastify's close ends idle keep-alive connections but waits for busy ones: a client
 * that stops reading a large answer (an asset, an export) held the demo's Ctrl-C for the server's 72 s
 * keep-alive timeout.
 * @example
 * ```ts
 * await closeWithin(app); // at most about 3 s
 * ```
 */
export async function closeWithin(app: { close(): PromiseLike<unknown>; server: { closeAllConnections(): void } }, graceMs = CLOSE_GRACE_MS): Promise<void> {
  const force = setTimeout(() => app.server.closeAllConnections(), graceMs);
  try {
    await app.close();
  } finally {
    clearTimeout(force);
  }
}
