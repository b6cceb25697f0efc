import { afterEach, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import mqtt, { type MqttClient } from 'mqtt';
import { pino } from 'pino';
import { startBroker } from '../../broker/broker.js';
import { loadUsers } from '../../lib/broker-users.js';
import { encodeFrame, SC_AES256GCM, sealFrame, systemTitle } from '../../protocol/frame.js';
import { encodeReadingBatch, type Reading } from '../../protocol/reading.js';
import { openAggregate } from '../../protocol/seal.js';
import { topics } from '../../protocol/topics.js';
import { encodeUplink } from '../../protocol/uplink.js';
import { brokerUsersPath, loadCredentials, loadMdmsKey, loadMeterKey, loadPesVerifyKey } from '../../lib/keyset.js';
import { provision } from '../../provision/keys.js';
import { parsePolicyStatement, type NeighbourhoodAggregate } from '../../protocol/aggregate.js';

const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

async function until(pred: () => boolean, what: string, timeoutMs = 30_000): Promise<void> {
  const t0 = Date.now();
  while (!pred()) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('smartermeter pes (process)', () => {
  it('runs from a provisioned key set behind the broker ACL: frames in, sealed aggregates out, clean stop on SIGTERM', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pes-cli-'));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    writeFileSync(join(dir, 'fleet.csv'), 'meter,household,neighbourhood,source\nm1,hh1,nb1,synthetic:1\nm2,hh2,nb1,synthetic:2\n');
    const keys = join(dir, 'keys');
    const fleet = await provision({ fleetCsv: join(dir, 'fleet.csv'), out: keys, rsaBits: 2048, paillierBits: 512 });
    const broker = await startBroker({ port: 0, users: loadUsers(brokerUsersPath(keys)), logger: pino({ level: 'silent' }) });
    cleanup.push(() => broker.close());

    const connect = async (user: string): Promise<MqttClient> => {
      const c = await mqtt.connectAsync(broker.url, { ...loadCredentials(keys, user), clientId: `${user}-test`, protocolVersion: 4, reconnectPeriod: 0 });
      cleanup.push(() => c.endAsync(true));
      return c;
    };
    const mdms = await connect('mdms');
    const got: { topic: string; payload: Buffer }[] = [];
    mdms.on('message', (topic, payload) => got.push({ topic, payload }));
    await mdms.subscribeAsync(topics.aggregatesAll, { qos: 1 });

    let pesSubscribed = false;
    broker.aedes.on('subscribe', (subs, client) => {
      if (client?.id === 'pes' && subs.some((x) => x.topic === topics.framesAll)) pesSubscribed = true;
    });
    const state = join(dir, 'pes.sqlite');
    let stderr = '';
    const child: ChildProcess = spawn(process.execPath, ['bin/run-ts.js', 'test/pes/fixtures/pes-cli.ts', 'pes', '--keys', keys, '--mqtt', broker.url, '--state', state, '--k', '2', '--lateness', '0'], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    child.stderr!.on('data', (d) => (stderr += String(d)));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    cleanup.push(() => child.exitCode === null && child.kill('SIGKILL'));
    await until(() => pesSubscribed, 'the PES to subscribe');

    const gw = await connect('gateway-gw-nb1');
    const t0 = 1_700_000_000 - (1_700_000_000 % 900);
    const meters = fleet.meters.map((m, i) => ({ st: systemTitle('SMR', i + 1), key: loadMeterKey(keys, m.meter), wh: 5000 + i, ic: 1 }));
    for (let slot = 0; slot < 2; slot++) {
      const frames = meters.map((m) => {
        const prevWh = m.wh;
        const readings: Reading[] = Array.from({ length: 15 }, (_, j) => ({ time: t0 + (slot * 15 + j) * 60, period: 60, importWh: (m.wh += 10), powerW: 600, status: 0 }));
        return encodeFrame(sealFrame(m.key, { systemTitle: m.st, sc: SC_AES256GCM, ic: m.ic++ }, encodeReadingBatch({ prevWh, readings })));
      });
      await gw.publishAsync(topics.frames('gw-nb1'), encodeUplink({ gateway: 'gw-nb1', frames }), { qos: 1 });
    }
    await until(() => got.some((m) => m.topic === topics.neighbourhood('nb1')), 'the neighbourhood aggregate');
    const body = openAggregate(loadMdmsKey(keys), topics.neighbourhood('nb1'), got.find((m) => m.topic === topics.neighbourhood('nb1'))!.payload, loadPesVerifyKey(keys)) as NeighbourhoodAggregate;
    expect(body).toEqual({ kind: 'neighbourhood', key: 'nb1', start: t0, end: t0 + 900, revision: 0, meters: 2, energyWh: 2 * 15 * 10, exportWh: 0 });

    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(stderr).toBe('');
    const db = new Database(state, { readonly: true });
    const counters = JSON.parse((db.prepare("SELECT v FROM meta WHERE k = 'counters'").get() as { v: string }).v) as Record<string, number>;
    db.close();
    expect(counters).toMatchObject({ framesOk: 4, readings: 60, released: 1, badTag: 0 });

    // The policy statement, through the broker's ACL, sealed to the MDMS and signed: one on start (nothing
    // released yet), one on the clean stop whose counters are the PES's own.
    const policyTopic = topics.policy('pes');
    await until(() => got.filter((m) => m.topic === policyTopic).length >= 2, 'the start and stop policy statements');
    const statements = got.filter((m) => m.topic === policyTopic).map((m) => parsePolicyStatement(policyTopic, openAggregate(loadMdmsKey(keys), policyTopic, m.payload, loadPesVerifyKey(keys))));
    expect(statements[0]).toMatchObject({ kind: 'policy', key: 'pes', k: 2, revisionK: 2, membershipGuard: true, counters: { released: 0, suppressed: 0 } });
    expect(statements[0]!.dpEpsilon).toBeUndefined();
    const last = statements[statements.length - 1]!;
    for (const [name, v] of Object.entries(last.counters)) expect(v, name).toBe(counters[name]);
    expect(last.counters.released).toBe(1);
    expect(last.at).toBeGreaterThanOrEqual(statements[0]!.at);
  });

  it('fails with a clear message and a non-zero status when the key set is missing', async () => {
    const child = spawn(process.execPath, ['bin/run-ts.js', 'test/pes/fixtures/pes-cli.ts', 'pes', '--keys', join(tmpdir(), 'no-such-keys-dir')], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += String(d)));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    expect(code).toBe(1);
    expect(stderr).toMatch(/smartermeter: .*no-such-keys-dir: no such key set \(make one with: smartermeter provision/);
  });
});
