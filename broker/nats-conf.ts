/**
 * The configuration of one node of a NATS cluster that serves MQTT (nats-server 2.9+): a NATS client listener,
 * a monitoring listener, JetStream with its own store, the cluster routes (with a route password, so nothing
 * else joins), and the MQTT listener whose sessions, QoS 1 messages and retained messages live in JetStream
 * streams replicated on up to three nodes (`mqtt { stream_replicas }`). The fleet's users come from the key
 * set's `nats/accounts.conf` (provision/nats.ts), included by a path relative to the node's file (nats-server
 * joins include paths to the including file's folder). Pure: text in, text out; broker/nats-cluster.ts runs it.
 * @module
 */

/** The ports of one node. */
export interface NatsNodePorts {
  /** NATS protocol clients (every fleet user is MQTT-only, so only the server itself uses it). */
  client: number;
  /** Routes between the nodes. */
  cluster: number;
  /** Monitoring (`/varz`, `/jsz`, `/healthz`): what Prometheus exporters and the readiness check read. */
  http: number;
  /** MQTT 3.1.1. */
  mqtt: number;
}

/** Everything the nodes' configurations are made of. */
export interface NatsClusterLayout {
  /** Cluster name; nodes are named `<name>-n1`, `<name>-n2`, ... */
  name: string;
  /** Interface every listener binds. */
  host: string;
  nodes: NatsNodePorts[];
  /** The routes' own credentials (random, per cluster). */
  route: { user: string; password: string };
  /** Seconds before an unacknowledged QoS 1 delivery is sent again (nats `mqtt.ack_wait`). */
  ackWaitS: number;
  /** Largest message, bytes (nats `max_payload`): the largest MQTT packet the system sends (protocol/acl.ts). */
  maxPayload: number;
}

/**
 * Replicas of the MQTT streams: three (survives the loss of one node), or fewer on a smaller cluster.
 * @example
 * ```ts
 * mqttStreamReplicas(5); // 3
 * ```
 */
export function mqttStreamReplicas(nodes: number): number {
  return Math.min(3, nodes);
}

const NAME = /^[A-Za-z0-9_-]{1,32}$/;

/**
 * The name of node `i` (0-based) of a cluster.
 * @example
 * ```ts
 * natsNodeName('sm', 0); // 'sm-n1'
 * ```
 */
export function natsNodeName(cluster: string, i: number): string {
  return `${cluster}-n${i + 1}`;
}

function checkLayout(l: NatsClusterLayout): void {
  if (!NAME.test(l.name)) throw new TypeError('cluster name must be 1-32 letters, digits, _ or -');
  if (!/^[0-9A-Za-z.:-]+$/.test(l.host)) throw new TypeError('host must be an address or host name');
  if (!Number.isInteger(l.nodes.length) || l.nodes.length < 1 || l.nodes.length > 7) throw new RangeError('a cluster has 1 to 7 nodes');
  const all = l.nodes.flatMap((n) => [n.client, n.cluster, n.http, n.mqtt]);
  if (!all.every((p) => Number.isInteger(p) && p > 0 && p < 65536)) throw new RangeError('ports must be integers between 1 and 65535');
  if (new Set(all).size !== all.length) throw new RangeError('every port of every node must differ');
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(l.route.user) || !/^[A-Za-z0-9_-]{16,128}$/.test(l.route.password)) throw new TypeError('route credentials must be URL-safe (password at least 16 characters)');
  if (!Number.isInteger(l.ackWaitS) || l.ackWaitS < 1 || l.ackWaitS > 3600) throw new RangeError('ack wait must be 1 to 3600 seconds');
  if (!Number.isInteger(l.maxPayload) || l.maxPayload < 1024 || l.maxPayload > 64 * 1024 * 1024) throw new RangeError('max payload must be 1 KiB to 64 MiB');
}

/**
 * The MQTT URLs of a cluster's nodes, as a list for every component's `--mqtt` (lib/broker-url.ts).
 * @example
 * ```ts
 * natsMqttUrls(layout); // 'mqtt://127.0.0.1:4001,mqtt://127.0.0.1:4011,mqtt://127.0.0.1:4021'
 * ```
 */
export function natsMqttUrls(l: Pick<NatsClusterLayout, 'host' | 'nodes'>): string {
  const host = l.host.includes(':') ? `[${l.host}]` : l.host;
  return l.nodes.map((n) => `mqtt://${host}:${n.mqtt}`).join(',');
}

/**
 * The configuration file of node `i` (0-based). `storeDir` is its JetStream folder; `accountsInclude` the users
 * file relative to the configuration's own folder, or undefined for a cluster without users (anonymous
 * clients may do anything: development only). Paths are written quoted; they must not contain `"`.
 * @example
 * ```ts
 * writeFileSync('D/sm-n1.conf', natsNodeConf(layout, 0, '/abs/D/sm-n1', '../keys/nats/accounts.conf'), { mode: 0o600 });
 * ```
 */
export function natsNodeConf(l: NatsClusterLayout, i: number, storeDir: string, accountsInclude?: string): string {
  checkLayout(l);
  const n = l.nodes[i];
  if (!n) throw new RangeError(`no node ${i}`);
  for (const p of [storeDir, accountsInclude ?? '']) if (/["\r\n\\]/.test(p)) throw new TypeError(`path ${JSON.stringify(p)} must not contain quotes, backslashes or line breaks`);
  const host = l.host.includes(':') ? `[${l.host}]` : l.host;
  const q = JSON.stringify;
  const lines = [
    `# Node ${i + 1} of ${l.nodes.length} of the NATS cluster "${l.name}" (written by \`smartermeter cluster up\`, broker/nats-conf.ts).`,
    `# Run: nats-server -c <this file>`,
    `server_name: ${q(natsNodeName(l.name, i))}`,
    `listen: ${q(`${host}:${n.client}`)}`,
    `http: ${q(`${host}:${n.http}`)}`,
    `max_payload: ${l.maxPayload}`,
    `jetstream {`,
    `  store_dir: ${q(storeDir)}`,
    `}`,
  ];
  if (l.nodes.length > 1) {
    const routes = l.nodes.map((r) => q(`nats-route://${l.route.user}:${l.route.password}@${host}:${r.cluster}`));
    lines.push(
      `cluster {`,
      `  name: ${q(l.name)}`,
      `  listen: ${q(`${host}:${n.cluster}`)}`,
      `  authorization { user: ${q(l.route.user)}, password: ${q(l.route.password)} }`,
      `  routes: [${routes.join(', ')}]`,
      `}`,
    );
  }
  lines.push(
    `mqtt {`,
    `  listen: ${q(`${host}:${n.mqtt}`)}`,
    `  stream_replicas: ${mqttStreamReplicas(l.nodes.length)}`,
    `  ack_wait: ${q(`${l.ackWaitS}s`)}`,
    `}`,
  );
  if (accountsInclude !== undefined) lines.push(`include ${q(accountsInclude)}`);
  return lines.join('\n') + '\n';
}
