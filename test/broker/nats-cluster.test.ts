/**
 * `smartermeter cluster up|down` as real processes: three nats-server nodes with MQTT on JetStream, the fleet's
 * users from a key set's nats/accounts.conf (provision/nats.ts). The PES's durable subscriber (a persistent
 * QoS 1 session, lib/durable-subscriber.ts) given every node's URL keeps its session when the node it is
 * connected to is killed with SIGKILL, and receives everything a gateway uplink (gateway/mqtt.ts) published
 * meanwhile: nothing lost. The node killed is the leader of the JetStream stream that holds the MQTT sessions
 * (`$MQTT_sess`), the hardest case for the session: it can be read only once the other two have elected a new
 * leader. Prints the failover time (kill until the subscriber receives again).
 * Needs nats-server (Debian's nats-server package): skipped without it, except under CI=true, where it fails.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { get } from 'node:http';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import mqtt from 'mqtt';
import { pino } from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { findNatsServer, readClusterFile } from '../../broker/nats-cluster.js';
import { connectUplink, type UplinkConnection } from '../../gateway/mqtt.js';
import { startAt } from '../../lib/broker-url.js';
import { startDurableSubscriber, type DurableSubscriber } from '../../lib/durable-subscriber.js';
import { NATS_ACCOUNTS } from '../../lib/keyset.js';
import { buildAcl } from '../../protocol/acl.js';
import { topics } from '../../protocol/topics.js';
import { natsAccounts } from '../../provision/nats.js';

const inCi = process.env.CI === 'true';
const skip = !findNatsServer() && !inCi;
const logger = pino({ level: 'silent' });
const dir = mkdtempSync(join(tmpdir(), 'sm-nats-'));
const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await Promise.resolve(c()).catch(() => undefined);
  rmSync(dir, { recursive: true, force: true });
});

const fleet = { gateways: ['gw-a'], households: ['h1'] };
const pw = (u: string) => `nats-test-${u}-pw0123456789`;
const keys = join(dir, 'keys');
const clusterDir = join(dir, 'cluster');

/** A `smartermeter cluster ...` process; `lines` collects its stdout. */
function cli(args: string[]): { proc: ChildProcess; out: () => string; exited: Promise<number | null> } {
  const proc = spawn(process.execPath, ['bin/run-ts.js', 'test/broker/fixtures/cluster-cli.ts', 'cluster', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d));
  proc.stderr!.on('data', (d: Buffer) => (out += d));
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  return { proc, out: () => out, exited };
}

async function until(what: string, ok: () => boolean, ms: number, detail = () => ''): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}\n${detail()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The leader of JetStream stream `stream` as node `http` (a monitoring port) sees it. */
function streamLeader(http: number, stream: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    get({ host: '127.0.0.1', port: http, path: '/jsz?accounts=true&streams=true', agent: false }, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d));
      res.on('end', () => {
        const j = JSON.parse(text) as { account_details?: { stream_detail?: { name: string; cluster?: { leader?: string } }[] }[] };
        resolve(j.account_details?.flatMap((a) => a.stream_detail ?? []).find((d) => d.name === stream)?.cluster?.leader);
      });
    }).on('error', () => resolve(undefined));
  });
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/**
 * The list to pass so that the client with this id dials the nodes in `order` (each client starts at the node
 * its id picks: lib/broker-url.ts startAt rotates the list it is given).
 */
function dialledAs(order: string[], clientId: string): string[] {
  for (let r = 0; r < order.length; r++) {
    const list = [...order.slice(r), ...order.slice(0, r)];
    if (startAt(list, clientId).join(',') === order.join(',')) return list;
  }
  throw new Error('no rotation gives that order');
}

describe.skipIf(skip)('a 3-node NATS cluster (smartermeter cluster up/down)', () => {
  it('a persistent QoS 1 session survives kill -9 of its node; what was published meanwhile arrives; down stops every node', async () => {
    mkdirSync(join(keys, 'nats'), { recursive: true, mode: 0o700 });
    const acl = buildAcl(fleet);
    writeFileSync(join(keys, NATS_ACCOUNTS), natsAccounts(acl, Object.fromEntries(Object.keys(acl).map((u) => [u, pw(u)]))), { mode: 0o600 });

    const up = cli(['up', '--dir', clusterDir, '--keys', keys, '--ack-wait', '5s']);
    cleanups.push(() => up.proc.kill('SIGTERM'));
    await until('cluster up to print the MQTT URLs', () => /^mqtt: \S+$/m.test(up.out()) || up.proc.exitCode !== null, 90_000, up.out);
    const list = /^mqtt: (\S+)$/m.exec(up.out())?.[1];
    expect(list, up.out()).toBeDefined();
    const urls = list!.split(',');
    expect(urls).toHaveLength(3);
    const layout = readClusterFile(clusterDir);
    expect(layout.nodes.map((n) => `mqtt://127.0.0.1:${n.mqtt}`)).toEqual(urls);
    expect(layout.supervisorPid).toBe(up.proc.pid);
    const pids = layout.nodes.map((_, i) => Number(readFileSync(join(clusterDir, `sm-n${i + 1}.pid`), 'utf8')));
    for (let i = 1; i <= 3; i++) {
      expect(statSync(join(clusterDir, `sm-n${i}.conf`)).mode & 0o777).toBe(0o600); // route password inside
      expect(readFileSync(join(clusterDir, `sm-n${i}.conf`), 'utf8')).toMatch(/stream_replicas: 3\n[\s\S]*include "\.\.\/keys\/nats\/accounts\.conf"/);
    }

    // The first MQTT client makes the MQTT streams; the subscriber then goes to the sessions' stream leader.
    const probe = await mqtt.connectAsync(urls[0]!, { username: 'ucs', password: pw('ucs'), clientId: 'ucs-probe', reconnectPeriod: 0 });
    await probe.endAsync();
    let leader: string | undefined;
    for (const end = Date.now() + 20_000; leader === undefined && Date.now() < end; ) {
      leader = await streamLeader(layout.nodes[0]!.http, '$MQTT_sess');
      if (leader === undefined) await new Promise((r) => setTimeout(r, 100));
    }
    expect(leader).toMatch(/^sm-n[123]$/);
    const victim = Number(leader!.slice(-1)) - 1;

    // The PES's subscriber with every node's URL, as `pes --mqtt <list>` runs it (default reconnection period
    // and connection timeout), the victim first.
    const got: string[] = [];
    const receivedAt = new Map<string, number>();
    const sessions: boolean[] = [];
    const sub: DurableSubscriber = startDurableSubscriber({
      url: dialledAs([urls[victim]!, ...urls.filter((_, i) => i !== victim)], 'pes').join(','),
      username: 'pes',
      password: pw('pes'),
      clientId: 'pes',
      filters: [topics.framesAll],
      who: 'the PES',
      logger,
      handle: (p) => {
        const s = String(p.payload);
        got.push(s);
        if (!receivedAt.has(s)) receivedAt.set(s, performance.now());
        return 'ack';
      },
    });
    cleanups.push(() => sub.kill());
    sub.client.on('connect', (c) => sessions.push(c.sessionPresent));
    await sub.ready;
    expect(sub.client.options.port).toBe(layout.nodes[victim]!.mqtt);

    // The gateway's uplink, on the other nodes first.
    const order = [...urls.filter((_, i) => i !== victim), urls[victim]!];
    const uplink: UplinkConnection = connectUplink({
      url: dialledAs(order, 'gateway-gw-a').join(','),
      clientId: 'gateway-gw-a',
      username: 'gateway-gw-a',
      password: pw('gateway-gw-a'),
      topic: topics.frames('gw-a'),
      logger,
      minBackoffMs: 100,
      maxBackoffMs: 1000,
      onOnline: () => undefined,
      onOffline: () => undefined,
    });
    cleanups.push(() => uplink.close());
    /** Publishes until the broker acknowledges (PUBACK), as the gateway's forwarder does from its queue. */
    const publish = async (payload: string): Promise<void> => {
      for (;;) {
        await until('the uplink online', () => uplink.connected, 30_000);
        const err = await new Promise<Error | null | undefined>((r) => uplink.publish(Buffer.from(payload), r));
        if (!err) return;
      }
    };
    const before = Array.from({ length: 10 }, (_, i) => `before-${i}`);
    for (const p of before) await publish(p);
    await until('the first messages', () => before.every((p) => receivedAt.has(p)), 20_000);
    expect(sessions).toEqual([false]);

    const killedAt = performance.now();
    process.kill(pids[victim]!, 'SIGKILL');
    const during = Array.from({ length: 50 }, (_, i) => `during-${i}`);
    for (const p of during) await publish(p);
    await until('every message published after the kill', () => during.every((p) => receivedAt.has(p)), 45_000, () => `got ${got.length}: ${[...receivedAt.keys()].slice(-5).join(' ')}`);
    const firstAfter = Math.min(...during.map((p) => receivedAt.get(p)!));
    const failoverMs = Math.round(firstAfter - killedAt);
    console.log(`NATS failover: node ${victim + 1} (the $MQTT_sess leader, the subscriber's node) killed (SIGKILL); the subscriber received again after ${failoverMs} ms; ${got.length} deliveries for ${before.length + during.length} messages`);

    expect(sessions).toEqual([false, true]); // reconnected once, to another node, and the session was there
    expect(urls.indexOf(`mqtt://127.0.0.1:${sub.client.options.port}`)).not.toBe(victim);
    expect(new Set(got)).toEqual(new Set([...before, ...during])); // nothing lost (QoS 1 may repeat)
    expect(up.out()).toMatch(new RegExp(`node sm-n${victim + 1} exited \\(SIGKILL\\); 2 of 3 still run`));

    await sub.close();
    await uplink.close();
    const down = cli(['down', '--dir', clusterDir]);
    expect(await down.exited, down.out()).toBe(0);
    expect(down.out()).toMatch(/stopped 2 node\(s\)/);
    expect(await up.exited, up.out()).toBe(0);
    expect(pids.filter(alive)).toEqual([]);
    expect(readClusterFile(clusterDir).supervisorPid).toBeUndefined();
  }, 150_000);
});
