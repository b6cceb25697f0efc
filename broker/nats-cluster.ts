/**
 * Runs a NATS cluster that serves MQTT (broker/nats-conf.ts) from a folder: `cluster.json` (the layout: name,
 * interface, ports, route credentials, the key set), one configuration, JetStream store, log and pid file per
 * node. Started again on the same folder, the cluster gets the same ports and keeps its JetStream state
 * (sessions, queued QoS 1 messages). Readiness is what a client needs: every node's monitoring endpoint
 * names the JetStream meta leader, and every node's MQTT listener answers a CONNECT with a CONNACK.
 *
 * This is the adapter behind `smartermeter cluster up|down` (broker/cluster-cli.ts), for development, tests
 * and a single machine; in production each node runs on its own machine under a service manager from the
 * same configuration (docs/operations.md, "Broker").
 * @module
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { get as httpGet } from 'node:http';
import { createServer, type Server } from 'node:net';
import { join, relative, resolve } from 'node:path';
import mqtt from 'mqtt';
import { NATS_ACCOUNTS, NATS_ACCOUNTS_SKIPPED } from '../lib/keyset.js';
import { MAX_PACKET_BYTES } from '../protocol/acl.js';
import { natsMqttUrls, natsNodeConf, natsNodeName, type NatsClusterLayout, type NatsNodePorts } from './nats-conf.js';

/** The layout file in a cluster folder. */
export const CLUSTER_FILE = 'cluster.json';

/** Where nats-server is looked for, in order (then `nats-server` on the PATH); `SM_NATS_SERVER` overrides. */
const NATS_BINS = ['/usr/sbin/nats-server', '/usr/bin/nats-server', '/usr/local/bin/nats-server'];

/**
 * The nats-server binary: `SM_NATS_SERVER`, Debian's `/usr/sbin/nats-server`, or one on the PATH; undefined
 * when there is none.
 * @example
 * ```ts
 * const bin = findNatsServer(); // '/usr/sbin/nats-server'
 * ```
 */
export function findNatsServer(): string | undefined {
  const env = process.env.SM_NATS_SERVER;
  if (env) return existsSync(env) ? env : undefined;
  const dirs = (process.env.PATH ?? '').split(':').filter(Boolean).map((d) => join(d, 'nats-server'));
  return [...NATS_BINS, ...dirs].find((p) => existsSync(p));
}

/** What `cluster.json` holds. */
export interface ClusterFile extends NatsClusterLayout {
  version: 1;
  /** The key set whose `nats/accounts.conf` the nodes include (absolute), or null: no users (development). */
  keys: string | null;
  /** The `cluster up` process that runs the nodes, while it runs. */
  supervisorPid?: number;
}

/** Options of {@link startNatsCluster}. */
export interface StartClusterOptions {
  /** The cluster folder (created 0700). */
  dir: string;
  /** Nodes (1 to 7). Default 3. Must match the folder's layout when it has one. */
  nodes?: number;
  /** Interface of every listener. Default 127.0.0.1. */
  host?: string;
  /** Cluster name. Default `sm`. */
  name?: string;
  /** A key set with `nats/accounts.conf` (provision). Without it anonymous clients may do anything. */
  keysDir?: string;
  /** Seconds before an unacknowledged QoS 1 delivery is sent again. Default 30 (nats-server's). */
  ackWaitS?: number;
  /** Milliseconds to wait for readiness. Default 30000. */
  readyTimeoutMs?: number;
  /** The nats-server binary. Default {@link findNatsServer}. */
  bin?: string;
  /** Called when a node exits, e.g. killed (the cluster goes on with the others). */
  onNodeExit?: (node: string, code: number | null, signal: NodeJS.Signals | null) => void;
}

/** One running node. */
export interface NatsNode {
  name: string;
  pid: number;
  ports: NatsNodePorts;
  mqttUrl: string;
  /** Resolves when the process has exited. */
  exited: Promise<void>;
  readonly running: boolean;
}

/** A running cluster. */
export interface NatsCluster {
  dir: string;
  layout: ClusterFile;
  nodes: NatsNode[];
  /** Every node's MQTT URL, comma-separated: what every component's `--mqtt` takes. */
  mqttUrls: string;
  /** The JetStream meta leader's node name when the cluster became ready. */
  metaLeader: string;
  /** Sends `signal` to node `i` (0-based), e.g. SIGKILL to test failover; resolves when it has exited. */
  kill(i: number, signal?: NodeJS.Signals): Promise<void>;
  /** Stops every node (SIGTERM, then SIGKILL after 10 s). */
  stop(): Promise<void>;
}

/**
 * Free TCP ports on `host`: all bound at once (so they differ), then released.
 * @example
 * ```ts
 * const [a, b] = await freePorts('127.0.0.1', 2);
 * ```
 */
export async function freePorts(host: string, n: number): Promise<number[]> {
  const servers: Server[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const s = createServer();
      servers.push(s);
      await new Promise<void>((ok, fail) => {
        s.once('error', fail);
        s.listen(0, host, () => ok());
      });
    }
    return servers.map((s) => (s.address() as { port: number }).port);
  } finally {
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  }
}

/**
 * Reads a cluster folder's `cluster.json`; throws naming the file when it is missing or malformed.
 * @example
 * ```ts
 * readClusterFile('/var/lib/sm/cluster').nodes.length; // 3
 * ```
 */
export function readClusterFile(dir: string): ClusterFile {
  const path = join(dir, CLUSTER_FILE);
  let f: ClusterFile;
  try {
    f = JSON.parse(readFileSync(path, 'utf8')) as ClusterFile;
  } catch (e) {
    throw new Error(`cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  if (f?.version !== 1 || !Array.isArray(f.nodes) || typeof f.name !== 'string' || typeof f.host !== 'string') throw new Error(`${path}: not a cluster layout (version 1)`);
  return f;
}

function writeClusterFile(dir: string, f: ClusterFile): void {
  writeFileSync(join(dir, CLUSTER_FILE), JSON.stringify(f, null, 2) + '\n', { mode: 0o600 });
}

/** Whether process `pid` exists and (on Linux) runs a command line containing `needle`. */
function alive(pid: number | undefined, needle?: string): boolean {
  if (!pid || !Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  if (needle === undefined) return true;
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(needle);
  } catch {
    return true; // no /proc: trust the pid file
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The pid file of a node. */
function pidFile(dir: string, node: string): string {
  return join(dir, `${node}.pid`);
}

function nodePid(dir: string, node: string): number | undefined {
  try {
    return Number(readFileSync(pidFile(dir, node), 'utf8').trim()) || undefined;
  } catch {
    return undefined;
  }
}

/** The layout to run: the folder's own when it has one (same ports, same JetStream state), else a new one. */
async function layoutFor(dir: string, o: StartClusterOptions): Promise<ClusterFile> {
  const keys = o.keysDir ? resolve(o.keysDir) : null;
  if (existsSync(join(dir, CLUSTER_FILE))) {
    const f = readClusterFile(dir);
    if (o.nodes !== undefined && o.nodes !== f.nodes.length) throw new Error(`${dir} holds a cluster of ${f.nodes.length} nodes; --nodes ${o.nodes} needs another folder`);
    if (alive(f.supervisorPid, 'cluster')) throw new Error(`the cluster in ${dir} is already running (pid ${f.supervisorPid}); stop it with \`smartermeter cluster down --dir ${dir}\``);
    const running = f.nodes.map((_, i) => natsNodeName(f.name, i)).filter((n) => alive(nodePid(dir, n), 'nats-server'));
    if (running.length > 0) throw new Error(`nodes ${running.join(', ')} of ${dir} still run; stop them with \`smartermeter cluster down --dir ${dir}\``);
    return { ...f, keys, ackWaitS: o.ackWaitS ?? f.ackWaitS };
  }
  const n = o.nodes ?? 3;
  if (!Number.isInteger(n) || n < 1 || n > 7) throw new RangeError('--nodes must be 1 to 7');
  const host = o.host ?? '127.0.0.1';
  const ports = await freePorts(host, 4 * n);
  return {
    version: 1,
    name: o.name ?? 'sm',
    host,
    nodes: Array.from({ length: n }, (_, i) => ({ client: ports[4 * i]!, cluster: ports[4 * i + 1]!, http: ports[4 * i + 2]!, mqtt: ports[4 * i + 3]! })),
    route: { user: 'route', password: randomBytes(24).toString('base64url') },
    ackWaitS: o.ackWaitS ?? 30,
    maxPayload: MAX_PACKET_BYTES,
    keys,
  };
}

/** The include path of the key set's users file, relative to the cluster folder; throws if there is none. */
function accountsInclude(dir: string, keys: string): string {
  const file = join(keys, NATS_ACCOUNTS);
  if (!existsSync(file)) {
    const skipped = join(keys, NATS_ACCOUNTS_SKIPPED);
    const why = existsSync(skipped) ? `: ${readFileSync(skipped, 'utf8').trim()}` : ' (made by `smartermeter provision`; key sets provisioned before it have none)';
    throw new Error(`${file} is missing${why}`);
  }
  return relative(resolve(dir), file);
}

/**
 * Whether the MQTT listener at `url` answers a CONNECT with a CONNACK (accepted, or refused for the probe's
 * made-up credentials: either way the listener works).
 * @example
 * ```ts
 * await mqttAnswers('mqtt://127.0.0.1:4001'); // true
 * ```
 */
export async function mqttAnswers(url: string, timeoutMs = 2000): Promise<boolean> {
  try {
    const c = await mqtt.connectAsync(url, { clientId: `sm-probe-${randomBytes(4).toString('hex')}`, username: 'sm-probe', password: randomBytes(12).toString('hex'), reconnectPeriod: 0, connectTimeout: timeoutMs, protocolVersion: 4 }, false);
    await c.endAsync(true);
    return true;
  } catch (e) {
    return typeof (e as { code?: unknown }).code === 'number'; // a CONNACK return code
  }
}

/**
 * The JetStream meta leader that the node with monitoring port `http` reports, or undefined (not yet, or not
 * reachable). A single node has no meta group: its own name once JetStream runs.
 * @example
 * ```ts
 * await metaLeader('127.0.0.1', 8222); // 'sm-n2'
 * ```
 */
export async function metaLeader(host: string, http: number): Promise<string | undefined> {
  // node:http without an agent: no keep-alive socket holds the process after the check (fetch's would, for 4 s).
  const body = await new Promise<string | undefined>((resolve) => {
    const req = httpGet({ host, port: http, path: '/jsz', agent: false, timeout: 2000 }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => resolve(res.statusCode === 200 ? text : undefined));
      res.on('error', () => resolve(undefined));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(undefined));
  });
  try {
    const j = JSON.parse(body ?? 'null') as { meta_cluster?: { leader?: string }; config?: unknown } | null;
    if (j?.meta_cluster) return j.meta_cluster.leader || undefined;
    return j?.config ? 'standalone' : undefined;
  } catch {
    return undefined;
  }
}

function tail(file: string): string {
  try {
    return readFileSync(file, 'utf8').slice(-1500);
  } catch {
    return '(no log)';
  }
}

/**
 * Writes the configurations and starts every node, then waits until the cluster is ready (see the module
 * comment). On a failure to become ready it stops what it started and throws with the logs' tails.
 * @example
 * ```ts
 * const cluster = await startNatsCluster({ dir: '/tmp/c', keysDir: 'keys' });
 * console.log(cluster.mqttUrls); // mqtt://127.0.0.1:40001,mqtt://127.0.0.1:40005,mqtt://127.0.0.1:40009
 * await cluster.stop();
 * ```
 */
export async function startNatsCluster(o: StartClusterOptions): Promise<NatsCluster> {
  const bin = o.bin ?? findNatsServer();
  if (!bin) throw new Error('nats-server not found (apt-get install nats-server, or set SM_NATS_SERVER)');
  const dir = resolve(o.dir);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const layout = await layoutFor(dir, o);
  const include = layout.keys ? accountsInclude(dir, layout.keys) : undefined;
  const nodes: NatsNode[] = [];
  const children: ChildProcess[] = [];
  const stopAll = async (): Promise<void> => {
    await Promise.all(
      nodes.map(async (n, i) => {
        const c = children[i]!;
        if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
        const t = setTimeout(() => c.kill('SIGKILL'), 10_000);
        await n.exited;
        clearTimeout(t);
        rmSync(pidFile(dir, n.name), { force: true });
      }),
    );
  };
  try {
    layout.nodes.forEach((ports, i) => {
      const name = natsNodeName(layout.name, i);
      const conf = join(dir, `${name}.conf`);
      mkdirSync(join(dir, name), { recursive: true, mode: 0o700 });
      writeFileSync(conf, natsNodeConf(layout, i, join(dir, name), include), { mode: 0o600 });
      const log = openSync(join(dir, `${name}.log`), 'a', 0o600);
      let child: ChildProcess;
      try {
        child = spawn(bin, ['-c', conf], { stdio: ['ignore', log, log] });
      } finally {
        closeSync(log);
      }
      children.push(child);
      let running = true;
      const exited = new Promise<void>((r) =>
        child.once('exit', (code, signal) => {
          running = false;
          o.onNodeExit?.(name, code, signal);
          r();
        }),
      );
      child.once('error', () => undefined); // a spawn failure shows as an exit without readiness
      writeFileSync(pidFile(dir, name), `${child.pid}\n`, { mode: 0o600 });
      nodes.push({ name, pid: child.pid ?? 0, ports, mqttUrl: natsMqttUrls({ host: layout.host, nodes: [ports] }), exited, get running() { return running; } });
    });
    const deadline = Date.now() + (o.readyTimeoutMs ?? 30_000);
    let leader: string | undefined;
    const waiting = new Set(nodes.map((n) => n.name));
    while (waiting.size > 0) {
      if (nodes.some((n) => !n.running)) throw new Error('a node exited while starting');
      if (Date.now() > deadline) throw new Error(`not ready in time: ${[...waiting].join(', ')}`);
      for (const n of nodes) {
        if (!waiting.has(n.name)) continue;
        const l = await metaLeader(layout.host, n.ports.http);
        if (l && (await mqttAnswers(n.mqttUrl))) {
          waiting.delete(n.name);
          leader = l === 'standalone' ? n.name : l;
        }
      }
      if (waiting.size > 0) await sleep(100);
    }
    writeClusterFile(dir, layout);
    const cluster: NatsCluster = {
      dir,
      layout,
      nodes,
      mqttUrls: natsMqttUrls(layout),
      metaLeader: leader!,
      async kill(i, signal = 'SIGKILL') {
        const c = children[i];
        if (!c) throw new RangeError(`no node ${i}`);
        if (c.exitCode === null && c.signalCode === null) c.kill(signal);
        await nodes[i]!.exited;
        rmSync(pidFile(dir, nodes[i]!.name), { force: true });
      },
      stop: stopAll,
    };
    return cluster;
  } catch (e) {
    await stopAll();
    const logs = nodes.map((n) => `--- ${n.name}.log\n${tail(join(dir, `${n.name}.log`))}`).join('\n');
    throw new Error(`the NATS cluster in ${dir} did not start: ${(e as Error).message}\n${logs}`);
  }
}

/**
 * Records (or clears, with undefined) the pid of the process running the cluster in its `cluster.json`.
 * @example
 * ```ts
 * markSupervisor(cluster.dir, process.pid);
 * ```
 */
export function markSupervisor(dir: string, pid: number | undefined): void {
  const f = readClusterFile(dir);
  if (pid === undefined) delete f.supervisorPid;
  else f.supervisorPid = pid;
  writeClusterFile(dir, f);
}

/**
 * Stops the cluster of a folder from outside (`cluster down`): SIGTERM to every node its pid files name
 * (checked to be nats-server), SIGKILL after `graceMs`, then waits for the `cluster up` process to notice.
 * Returns how many nodes were running.
 * @example
 * ```ts
 * await stopClusterDir('/tmp/c'); // 3
 * ```
 */
export async function stopClusterDir(dir: string, graceMs = 10_000): Promise<number> {
  const f = readClusterFile(dir);
  const pids = f.nodes.map((_, i) => natsNodeName(f.name, i)).map((n) => ({ n, pid: nodePid(dir, n) }));
  const running = pids.filter(({ pid }) => alive(pid, 'nats-server'));
  for (const { pid } of running) process.kill(pid!, 'SIGTERM');
  const end = Date.now() + graceMs;
  while (running.some(({ pid }) => alive(pid, 'nats-server')) && Date.now() < end) await sleep(100);
  for (const { pid } of running) if (alive(pid, 'nats-server')) process.kill(pid!, 'SIGKILL');
  while (running.some(({ pid }) => alive(pid, 'nats-server'))) await sleep(50);
  for (const { n } of pids) rmSync(pidFile(dir, n), { force: true });
  const sup = f.supervisorPid;
  const supEnd = Date.now() + 5000;
  while (alive(sup, 'cluster') && Date.now() < supEnd) await sleep(100);
  return running.length;
}
