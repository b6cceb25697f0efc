/**
 * The clustered parts of `npm run bench -- scale` (bench/scale.ts): `smartermeter pes` processes over a
 * 3-node NATS cluster (MQTT, JetStream) with their state in PostgreSQL. A provisioned fleet (2048-bit
 * Paillier), a stream of 15-minute frames of 15 one-minute readings published by the gateways' users, the
 * releases read back with the MDMS key as the MDMS would.
 * @module
 */
import { randomBytes } from 'node:crypto';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import mqtt, { type MqttClient } from 'mqtt';
import pg from 'pg';
import { findNatsServer, startNatsCluster, type NatsCluster } from '../broker/nats-cluster.js';
import { loadCredentials, loadMdmsKey, loadMeterKey, loadPesVerifyKey, type Fleet } from '../lib/keyset.js';
import { provision } from '../provision/keys.js';
import { encodeFrame, SC_AES256GCM, sealFrame, systemTitle } from '../protocol/frame.js';
import { encodeReadingBatch, type Reading } from '../protocol/reading.js';
import { openAggregate } from '../protocol/seal.js';
import { topics } from '../protocol/topics.js';
import { encodeUplink } from '../protocol/uplink.js';
import type { NeighbourhoodAggregate } from '../protocol/aggregate.js';
import { progress, round } from './index.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const PG_URL = process.env.SCALE_PG ?? process.env.MDMS_TEST_PG ?? 'postgres://postgres@127.0.0.1:5432/test';
const T0 = 1_700_000_000 - (1_700_000_000 % 86400);

interface Setup {
  dir: string;
  keys: string;
  fleet: Fleet;
  cluster: NatsCluster;
  nbs: string[];
}

interface PesProcess {
  child: ChildProcess;
  out: () => string;
  exited: Promise<number | null>;
}

async function until(pred: () => boolean, what: string, timeoutMs: number, out?: () => string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}${out ? `\n${out().slice(-1500)}` : ''}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function pgReachable(): Promise<void> {
  const c = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 3000 });
  try {
    await c.connect();
  } finally {
    await c.end().catch(() => undefined);
  }
}

async function dropSchema(schema: string): Promise<void> {
  const c = new pg.Client({ connectionString: PG_URL });
  await c.connect();
  try {
    await c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  } finally {
    await c.end();
  }
}

/** Provisions `nbCount` neighbourhoods of `perNb` meters and starts the cluster with the key set's users. */
async function setup(nbCount: number, perNb: number): Promise<Setup> {
  if (!findNatsServer()) throw new Error('nats-server not found');
  await pgReachable();
  const dir = mkdtempSync(join(tmpdir(), 'sm-bench-cluster-'));
  const nbs = Array.from({ length: nbCount }, (_, i) => `nb${i + 1}`);
  const rows = ['meter,household,neighbourhood,source'];
  let n = 0;
  for (const nb of nbs) for (let j = 0; j < perNb; j++, n++) rows.push(`m${n + 1},hh${n + 1},${nb},synthetic:${n + 1}`);
  writeFileSync(join(dir, 'fleet.csv'), rows.join('\n') + '\n');
  const keys = join(dir, 'keys');
  progress(`scale: provisioning ${n} meters (2048-bit Paillier)`);
  const fleet = await provision({ fleetCsv: join(dir, 'fleet.csv'), out: keys, rsaBits: 2048, paillierBits: 2048 });
  const cluster = await startNatsCluster({ dir: join(dir, 'cluster'), keysDir: keys });
  return { dir, keys, fleet, cluster, nbs };
}

function startPes(s: Setup, schema: string, extra: string[]): PesProcess {
  const args = [join(ROOT, 'bin/run-ts.js'), join(ROOT, 'test/pes/fixtures/pes-cli.ts'), 'pes', '--keys', s.keys, '--mqtt', s.cluster.mqttUrls, '--state', PG_URL, '--state-schema', schema, ...extra];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d) => (out += String(d)));
  child.stderr!.on('data', (d) => (out += String(d)));
  return { child, out: () => out, exited: new Promise((r) => child.once('exit', (code) => r(code))) };
}

async function stop(p: PesProcess): Promise<void> {
  if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGTERM');
  const t = setTimeout(() => p.child.kill('SIGKILL'), 15_000);
  await p.exited;
  clearTimeout(t);
}

async function connect(s: Setup, user: string, clientId: string): Promise<MqttClient> {
  return mqtt.connectAsync(s.cluster.mqttUrls.split(',')[0]!, { ...loadCredentials(s.keys, user), clientId, protocolVersion: 4, reconnectPeriod: 0 });
}

/**
 * One ingest run: `instances` PES processes (partitioned when 2), `slots` quarter hours of the whole fleet
 * published, until every neighbourhood window but the last is released. Returns readings/s.
 */
async function ingestRun(s: Setup, instances: 1 | 2, slots: number, tag: string): Promise<{ readingsPerS: number; seconds: number; readings: number }> {
  const schema = `pes_scale_${tag}_${process.pid}_${randomBytes(3).toString('hex')}`;
  const procs = Array.from({ length: instances }, (_, i) =>
    startPes(s, schema, [...(instances === 2 ? ['--partitions', '2', '--partition', String(i)] : []), '--client-id', `pes-${tag}-${i}`, '--pes-id', `pes-${tag}-${i}`, '--k', '5', '--lateness', '0', '--lease-ttl', '5s']),
  );
  const clients: MqttClient[] = [];
  try {
    for (const p of procs) await until(() => p.out().includes('pes: subscribed'), 'the PES to subscribe', 120_000, p.out);
    const mdmsKey = loadMdmsKey(s.keys);
    const verify = loadPesVerifyKey(s.keys);
    const released = new Set<string>();
    const mdms = await connect(s, 'mdms', `mdms-${tag}`);
    clients.push(mdms);
    mdms.on('message', (topic, payload) => {
      if (topic.startsWith('sm/v1/agg/policy/')) return;
      try {
        const b = openAggregate(mdmsKey, topic, payload, verify) as NeighbourhoodAggregate;
        if (b.kind === 'neighbourhood') released.add(`${b.key}|${b.start}`);
      } catch {
        // not one of ours: the run fails on the count
      }
    });
    await mdms.subscribeAsync(topics.aggregatesAll, { qos: 1 });
    const gws = new Map<string, MqttClient>();
    for (const nb of s.nbs) {
      const c = await connect(s, `gateway-gw-${nb}`, `gw-${nb}-${tag}`);
      clients.push(c);
      gws.set(nb, c);
    }
    const meters = s.fleet.meters.map((m, i) => ({ ...m, st: systemTitle('SMR', i + 1), key: loadMeterKey(s.keys, m.meter), wh: 10_000 * (i + 1), ic: 1 }));
    let readings = 0;
    const t0 = performance.now();
    for (let slot = 0; slot <= slots; slot++) {
      await Promise.all(
        s.nbs.map((nb) => {
          const frames = meters
            .filter((m) => m.neighbourhood === nb)
            .map((m, i) => {
              const prevWh = m.wh;
              const rs: Reading[] = Array.from({ length: 15 }, (_, j) => ({ time: T0 + (slot * 15 + j) * 60, period: 60, importWh: (m.wh += 1 + ((slot * 7 + j * 3 + i) % 11)), powerW: 600, status: 0 }));
              return encodeFrame(sealFrame(m.key, { systemTitle: m.st, sc: SC_AES256GCM, ic: m.ic++ }, encodeReadingBatch({ prevWh, readings: rs })));
            });
          readings += frames.length * 15;
          return gws.get(nb)!.publishAsync(topics.frames(`gw-${nb}`), encodeUplink({ gateway: `gw-${nb}`, frames }), { qos: 1 });
        }),
      );
    }
    const want = s.nbs.length * slots;
    await until(() => released.size >= want, `${want} neighbourhood releases (${instances} PES)`, 900_000, () => procs.map((p) => p.out()).join('\n'));
    const seconds = (performance.now() - t0) / 1000;
    return { readingsPerS: round(readings / seconds), seconds: round(seconds), readings };
  } finally {
    await Promise.all(clients.map((c) => c.endAsync(true).catch(() => undefined)));
    await Promise.all(procs.map(stop));
    await dropSchema(schema).catch(() => undefined);
  }
}

/**
 * PES ingest with one and with two partitioned instances over the NATS cluster, same run, same stream shape.
 * @example
 * ```ts
 * const { pes1, pes2 } = await clusterIngest();
 * ```
 */
export async function clusterIngest(): Promise<{ pes1: number; pes2: number; detail: Record<string, unknown> }> {
  const nbCount = Number(process.env.SCALE_CLUSTER_NBS ?? 8);
  const perNb = Number(process.env.SCALE_CLUSTER_NB_SIZE ?? 25);
  const slots = Number(process.env.SCALE_CLUSTER_SLOTS ?? 24);
  for (const [name, v] of [['SCALE_CLUSTER_NBS', nbCount], ['SCALE_CLUSTER_NB_SIZE', perNb], ['SCALE_CLUSTER_SLOTS', slots]] as const) {
    if (!Number.isInteger(v) || v < 2 || v > 10_000) throw new Error(`${name} must be an integer in 2..10000`);
  }
  const s = await setup(nbCount, perNb);
  try {
    progress(`scale: 1 PES, ${nbCount * perNb} meters x ${slots} quarter hours over ${s.cluster.mqttUrls}`);
    const one = await ingestRun(s, 1, slots, 'one');
    progress(`scale: 2 PES (partitions 0 and 1), same stream`);
    const two = await ingestRun(s, 2, slots, 'two');
    return {
      pes1: one.readingsPerS,
      pes2: two.readingsPerS,
      detail: { meters: nbCount * perNb, neighbourhoods: nbCount, readings: one.readings, pes1_seconds: one.seconds, pes2_seconds: two.seconds, ratio: round(two.readingsPerS / one.readingsPerS) },
    };
  } finally {
    await s.cluster.stop();
    rmSync(s.dir, { recursive: true, force: true });
  }
}

/**
 * kill -9 of the active PES of a partition (lease ttl 2 s): seconds until the standby holds the lease and
 * is active.
 * @example
 * ```ts
 * const seconds = await takeover();
 * ```
 */
export async function takeover(): Promise<number> {
  const s = await setup(2, 3);
  const schema = `pes_scale_ha_${process.pid}_${randomBytes(3).toString('hex')}`;
  const flags = ['--partition', 'north', '--neighbourhoods', 'nb1', '--lease-ttl', '2s', '--k', '2', '--lateness', '0'];
  const a = startPes(s, schema, flags);
  let b: PesProcess | undefined;
  try {
    await until(() => a.out().includes('pes: subscribed'), 'the first PES to be active', 120_000, a.out);
    b = startPes(s, schema, flags);
    const standby = b;
    await until(() => standby.out().includes('standby, waiting for the partition lease'), 'the second PES to wait as a standby', 120_000, standby.out);
    a.child.kill('SIGKILL');
    const killedAt = performance.now();
    await until(() => standby.out().includes('partition lease acquired; active'), 'the standby to take over', 60_000, standby.out);
    const leaseS = (performance.now() - killedAt) / 1000;
    await until(() => standby.out().includes('pes: subscribed'), 'the standby to subscribe', 60_000, standby.out);
    const subscribedS = (performance.now() - killedAt) / 1000;
    progress(`scale: takeover: lease after ${leaseS.toFixed(2)} s, subscribed after ${subscribedS.toFixed(2)} s (lease ttl 2 s)`);
    return round(subscribedS);
  } finally {
    await stop(a);
    if (b) await stop(b);
    await dropSchema(schema).catch(() => undefined);
    await s.cluster.stop();
    rmSync(s.dir, { recursive: true, force: true });
  }
}
