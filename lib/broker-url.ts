/**
 * Broker URL lists: every component's `--mqtt` takes one broker URL or several, comma-separated
 * (`mqtt://n1:1883,mqtt://n2:1883,mqtt://n3:1883`), the nodes of one clustered broker (NATS, EMQX, HiveMQ).
 * A client connects to one node at a time and, when its connection drops, reconnects to the next one in the
 * list, round robin: MQTT.js's `servers` option (mqtt@5 build/lib/connect/index.js rotates `servers` on each
 * new stream). A persistent session (`clean: false`, fixed client id) resumes on whichever node answers, if the
 * cluster replicates sessions (NATS keeps them in JetStream streams, docs/operations.md "Broker").
 *
 * One URL is passed to MQTT.js exactly as before. In a list every URL must be of the same family (TCP or
 * WebSocket) and WebSocket URLs must share one path, because MQTT.js applies the first URL's path, query and
 * credentials to every server; credentials belong in `--username`/`--password-file` there, not in URLs.
 * @module
 */
import { InvalidArgumentError } from 'commander';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';

/** Schemes a broker URL may have. */
export const BROKER_SCHEMES = ['mqtt', 'mqtts', 'tcp', 'tls', 'ws', 'wss'] as const;

/** Most URLs in one list (a cluster has a handful of nodes; a long list is a mistake). */
export const MAX_BROKER_URLS = 16;

/** One node of a list, as MQTT.js's `servers` option takes it. */
export interface BrokerServer {
  protocol: 'mqtt' | 'mqtts' | 'ws' | 'wss';
  host: string;
  port: number;
}

const PROTOCOL: Record<string, BrokerServer['protocol']> = { mqtt: 'mqtt', tcp: 'mqtt', mqtts: 'mqtts', tls: 'mqtts', ws: 'ws', wss: 'wss' };
const DEFAULT_PORT: Record<BrokerServer['protocol'], number> = { mqtt: 1883, mqtts: 8883, ws: 80, wss: 443 };

/**
 * Splits and validates a broker URL list; throws a `TypeError` naming `flag` and the bad entry. Returns the
 * URLs as given (trimmed), at least one.
 * @example
 * ```ts
 * parseBrokerUrls('mqtt://127.0.0.1:4001, mqtt://127.0.0.1:4002'); // ['mqtt://127.0.0.1:4001', 'mqtt://127.0.0.1:4002']
 * parseBrokerUrls('http://x');                                     // throws: unsupported scheme
 * ```
 */
export function parseBrokerUrls(list: string, flag = '--mqtt'): string[] {
  if (typeof list !== 'string' || list.trim() === '') throw new TypeError(`${flag} must be a broker URL like mqtt://127.0.0.1:1883, or several separated by commas`);
  const urls = list.split(',').map((s) => s.trim());
  if (urls.length > MAX_BROKER_URLS) throw new TypeError(`${flag}: at most ${MAX_BROKER_URLS} broker URLs, got ${urls.length}`);
  const parsed = urls.map((u, i) => {
    if (u === '') throw new TypeError(`${flag}: entry ${i + 1} of the list is empty`);
    let url: URL;
    try {
      url = new URL(u);
    } catch {
      throw new TypeError(`${flag}: "${redact(u)}" is not a URL (expected mqtt://host:port)`);
    }
    const scheme = url.protocol.replace(/:$/, '');
    if (!(BROKER_SCHEMES as readonly string[]).includes(scheme)) throw new TypeError(`${flag}: unsupported scheme ${scheme}: in "${redact(u)}" (use ${BROKER_SCHEMES.join(', ')})`);
    if (url.hostname === '') throw new TypeError(`${flag}: "${redact(u)}" has no host`);
    return url;
  });
  if (parsed.length > 1) {
    const family = (u: URL) => (PROTOCOL[u.protocol.replace(/:$/, '')]!.startsWith('ws') ? 'ws' : 'tcp');
    if (new Set(parsed.map(family)).size > 1) throw new TypeError(`${flag}: a list mixes WebSocket and TCP URLs; use one kind for every node`);
    if (new Set(parsed.map((u) => u.pathname + u.search)).size > 1) throw new TypeError(`${flag}: every URL of a list must have the same path (MQTT.js uses the first one's for all)`);
    if (parsed.some((u) => u.username || u.password)) throw new TypeError(`${flag}: credentials in a URL list are not supported; use --username and --password-file`);
    const seen = new Set<string>();
    for (const u of parsed) {
      const key = `${u.hostname}:${portOf(u)}`;
      if (seen.has(key)) throw new TypeError(`${flag}: ${key} appears twice in the list`);
      seen.add(key);
    }
  }
  return urls;
}

function portOf(u: URL): number {
  return u.port ? Number(u.port) : DEFAULT_PORT[PROTOCOL[u.protocol.replace(/:$/, '')]!];
}

/** `url` with any password replaced by `***`, for messages and logs. */
function redact(u: string): string {
  return u.replace(/\/\/([^/@:]*):[^/@]*@/, '//$1:***@');
}

/**
 * A commander parser for a `--mqtt` flag: validates the list ({@link parseBrokerUrls}) and returns it as one
 * string (what every component's options carry), with the error as a usage error.
 * @example
 * ```ts
 * cmd.option('--mqtt <urls>', 'broker URL(s), comma-separated', brokerUrlsOption('--mqtt'), 'mqtt://127.0.0.1:1883');
 * ```
 */
export function brokerUrlsOption(flag: string): (v: string) => string {
  return (v) => {
    try {
      return parseBrokerUrls(v, flag).join(',');
    } catch (e) {
      throw new InvalidArgumentError((e as Error).message);
    }
  };
}

/**
 * What MQTT.js needs to reach a list: the first URL (scheme, path, query, credentials of a single URL) and, for
 * several, `servers`, which MQTT.js walks round robin on every (re)connection.
 * @example
 * ```ts
 * brokerConnectArgs('mqtt://a:1,mqtt://b:2');
 * // { url: 'mqtt://a:1', servers: [{ protocol: 'mqtt', host: 'a', port: 1 }, { protocol: 'mqtt', host: 'b', port: 2 }] }
 * ```
 */
export function brokerConnectArgs(list: string, flag = '--mqtt'): { url: string; servers?: BrokerServer[] } {
  const urls = parseBrokerUrls(list, flag);
  if (urls.length === 1) return { url: urls[0]! };
  const servers = urls.map((u) => {
    const url = new URL(u);
    return { protocol: PROTOCOL[url.protocol.replace(/:$/, '')]!, host: url.hostname.replace(/^\[(.*)\]$/, '$1'), port: portOf(url) };
  });
  return { url: urls[0]!, servers };
}

/**
 * `mqtt.connect` over a broker URL list: one URL as before; several with MQTT.js's `servers`, so that every
 * reconnection (MQTT.js's own, `reconnectPeriod` > 0) tries the next node.
 * @example
 * ```ts
 * const client = connectBroker('mqtt://n1:1883,mqtt://n2:1883', { clientId: 'pes', clean: false, protocolVersion: 4 });
 * ```
 */
export function connectBroker(list: string, options: IClientOptions): MqttClient {
  const { url, servers } = brokerConnectArgs(list);
  return mqtt.connect(url, servers ? { ...options, servers: startAt(servers, options.clientId) } : options);
}

/**
 * The list rotated to start at a node chosen by the client id (FNV-1a, stable across restarts), so that the
 * clients of a cluster spread over its nodes instead of all connecting to the first URL and all failing over
 * at once when that node dies (the cluster crash test found 5 of 5 connections on one node:
 * docs/operations.md §1c). Without a client id the list is left as given.
 * @example
 * ```ts
 * startAt([a, b, c], 'gateway-gw-1'); // e.g. [b, c, a]
 * ```
 */
export function startAt<T>(servers: T[], clientId: string | undefined): T[] {
  if (!clientId || servers.length < 2) return servers;
  let h = 0x811c9dc5;
  for (let i = 0; i < clientId.length; i++) h = Math.imul(h ^ clientId.charCodeAt(i), 0x01000193) >>> 0;
  const i = h % servers.length;
  return [...servers.slice(i), ...servers.slice(0, i)];
}

/**
 * The list for logs and messages: passwords in URLs replaced by `***`.
 * @example
 * ```ts
 * shownBrokerUrls('mqtt://u:secret@h:1883'); // 'mqtt://u:***@h:1883'
 * ```
 */
export function shownBrokerUrls(list: string): string {
  return list
    .split(',')
    .map((u) => redact(u.trim()))
    .join(',');
}
