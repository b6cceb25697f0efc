/**
 * The household's own tools: `ucs watch` (a CLI process printing the decrypted stream), the Home Assistant
 * bridge (discovery configs, a total_increasing energy sensor in kWh, power, availability, removal), and the
 * `ucs` server command as a process.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import mqtt from 'mqtt';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBroker, type BrokerHandle } from '../../broker/broker.js';
import { loadCredentials, loadHouseholdKey, loadPesVerifyKey } from '../../lib/keyset.js';
import { newStreamKey, sealStream } from '../../protocol/seal.js';
import { topics } from '../../protocol/topics.js';
import { activationSecretsSync } from '../../protocol/household-key.js';
import { sealMeterStream } from '../../protocol/meter-seal.js';
import { streamBody } from '../../protocol/stream.js';
import { removeFromHomeAssistant, startHaBridge } from '../../ucs/ha-bridge.js';
import { formatRow } from '../../ucs/stream.js';
import { bodyRows } from '../../ucs/web/body.js';
import { FakePes, makeKeySet, prosumerBatches, sourceBatches, usersOf, waitFor, type KeySet } from './helpers.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
let set: KeySet;
let broker: BrokerHandle;
let pes: FakePes;
const children: ChildProcessWithoutNullStreams[] = [];

beforeAll(async () => {
  set = await makeKeySet({ householdKeys: true });
  broker = await startBroker({ users: usersOf(set.keys), port: 0, wsPort: 0, logger: pino({ level: 'silent' }) });
  pes = await FakePes.connect(broker.url, set.keys);
});
afterAll(async () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  await pes?.close();
  await broker?.close();
  set?.cleanup();
});

/** kWh text of integer Wh, written out independently of ucs/web/series.ts formatKwh. */
const kwh = (wh: number) => `${Math.floor(wh / 1000)}.${String(wh % 1000).padStart(3, '0')}`;
const meterOf = (hh: string) => set.fleet.meters.find((m) => m.household === hh)!.meter;
const pubOf = (hh: string) => createPublicKey(loadHouseholdKey(set.keys, hh));

/** Runs `smartermeter ucs …` as a process; resolves its output once `until` matches stderr (or at exit). */
function run(args: string[]) {
  const child = spawn(process.execPath, [join(ROOT, 'bin/run-ts.js'), join(ROOT, 'test/ucs/cli-entry.ts'), 'ucs', ...args], { cwd: ROOT });
  children.push(child);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += String(d)));
  child.stderr.on('data', (d) => (stderr += String(d)));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, exited, out: () => stdout, err: () => stderr };
}

describe('ucs watch', () => {
  it('prints one decrypted line per reading of its own household, and survives a message it cannot open or that the PES did not sign', async () => {
    const w = run(['watch', '--household', 'hh1', '--keys', set.keys, '--mqtt', broker.url, '--limit', '30']);
    await waitFor(() => w.err().includes('subscribed') || w.child.exitCode !== null, 'watch subscribed', 30_000);
    expect(w.err()).toContain("subscribed to household hh1's stream");
    const batches = sourceBatches(11, 1_717_459_200, 30, 15, 700_000_000);
    const stranger = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey;
    await pes.publish('hh1', stranger, meterOf('hh1'), batches[0]!); // sealed for another key
    // Sealed for hh1 by someone with the PES's broker password but not its signing key: never printed.
    const forger = generateKeyPairSync('ed25519').privateKey;
    const hhTopic = topics.household('hh1');
    const forgedKey = newStreamKey(pubOf('hh1'), Math.floor(batches[0]!.readings[0]!.time / 86400), hhTopic, forger);
    await pes.publishRaw('hh1', sealStream(forgedKey, hhTopic, { meter: meterOf('hh1'), prevWh: 1, readings: [[batches[0]!.readings[0]!.time, 60, 999_999_999, 1, 0]] }));
    for (const b of batches) await pes.publish('hh1', pubOf('hh1'), meterOf('hh1'), b);
    expect(await w.exited).toBe(0);
    const expected = batches.flatMap((b) => bodyRows({ meter: meterOf('hh1'), ...b }).map(formatRow));
    expect(w.out().trimEnd().split('\n')).toEqual(expected);
    expect(expected[0]).toMatch(/^2024-06-04T00:00:00Z 60 \d+ \d+ [0-9a-f]{16} 0$/);
    expect(w.err()).toMatch(/message not opened: sealed for key [0-9a-f]{16}, not ours/);
    expect(w.err()).toMatch(/message not opened: stream seal: the PES epoch signature does not verify/);
    expect(w.out()).not.toContain('999999999');
  });

  it('prints the export register of a prosumer last on each line', async () => {
    const w = run(['watch', '--household', 'hh2', '--keys', set.keys, '--mqtt', broker.url, '--limit', '15']);
    await waitFor(() => w.err().includes('subscribed') || w.child.exitCode !== null, 'watch subscribed', 30_000);
    const batch = prosumerBatches(12, 1_717_581_600, 15)[0]!;
    await pes.publish('hh2', pubOf('hh2'), meterOf('hh2'), batch);
    expect(await w.exited).toBe(0);
    const lines = w.out().trimEnd().split('\n');
    expect(lines.map((l) => Number(l.split(' ')[5]))).toEqual(batch.readings.map((r) => r.exportWh));
    expect(lines.map((l) => Number(l.split(' ')[2]))).toEqual(batch.readings.map((r) => r.importWh));
  });

  it('is refused another household’s topic with a clear message', async () => {
    const pw = join(set.dir, 'hh2.password');
    writeFileSync(pw, loadCredentials(set.keys, 'household-hh2').password, { mode: 0o600 });
    const w = run(['watch', '--household', 'hh1', '--keys', set.keys, '--username', 'household-hh2', '--password-file', pw, '--mqtt', broker.url]);
    expect(await w.exited).toBe(1);
    expect(w.err()).toMatch(/the broker refused the subscription to sm\/v1\/household\/hh1\/readings/);
  });

  it("opens the meter-sealed stream (end-to-end mode) with the key set's code and derivation, read from --keys", async () => {
    const w = run(['watch', '--household', 'hh2', '--keys', set.keys, '--mqtt', broker.url, '--limit', '15']);
    await waitFor(() => w.err().includes('subscribed') || w.child.exitCode !== null, 'watch subscribed', 30_000);
    const batch = sourceBatches(12, 1_717_632_000, 15, 15, 800_000_000)[0]!;
    const key = activationSecretsSync(set.code('hh2'), 'hh2', 2).stream; // derivation 2: ucs/activation.json version 3
    await pes.publishRaw('hh2', sealMeterStream(key, topics.household('hh2'), Buffer.from(meterOf('hh2'), 'hex'), 5, streamBody(meterOf('hh2'), batch)));
    expect(await w.exited).toBe(0);
    expect(w.out().trimEnd().split('\n')).toEqual(bodyRows({ meter: meterOf('hh2'), ...batch }).map(formatRow));
  });

  it('explains missing key and credential flags', async () => {
    const w = run(['watch', '--household', 'hh1', '--mqtt', broker.url]);
    expect(await w.exited).toBe(1);
    expect(w.err()).toMatch(/give --key <pem> .* or --keys <dir>/);
    const bad = run(['watch', '--household', 'hh/1', '--keys', set.keys, '--mqtt', 'http://x']);
    expect(await bad.exited).toBe(1);
    expect(bad.err()).toMatch(/--household|--mqtt/);
    const derivation = run(['watch', '--household', 'hh1', '--keys', set.keys, '--mqtt', broker.url, '--derivation', '3']);
    expect(await derivation.exited).toBe(1);
    expect(derivation.err()).toMatch(/--derivation must be between 1 and 2, got 3/);
  });
});

describe('Home Assistant bridge', () => {
  let ha: BrokerHandle;
  beforeAll(async () => {
    ha = await startBroker({ port: 0, logger: pino({ level: 'silent' }) }); // the household's own broker
  });
  afterAll(async () => {
    await ha?.close();
  });

  async function retained(filter: string): Promise<Map<string, string>> {
    const c = await mqtt.connectAsync(ha.url, { reconnectPeriod: 0 });
    const got = new Map<string, string>();
    c.on('message', (t, p, packet) => packet.retain && got.set(t, String(p)));
    await c.subscribeAsync(filter, { qos: 1 });
    await new Promise((r) => setTimeout(r, 300));
    await c.endAsync();
    return got;
  }

  it('publishes discovery configs, a total_increasing kWh energy sensor, power and availability; a late message never moves energy back', async () => {
    const bridge = startHaBridge({
      household: 'hh1',
      privateKey: loadHouseholdKey(set.keys, 'hh1'),
      pesVerifyKey: loadPesVerifyKey(set.keys),
      utility: { url: broker.url, ...loadCredentials(set.keys, 'household-hh1') },
      ha: { url: ha.url },
      logger: pino({ level: 'silent' }),
    });
    await bridge.ready;
    const meter = meterOf('hh1');
    const batches = sourceBatches(11, 1_717_545_600, 45, 15, 1_234_567);
    for (const b of batches.slice(0, 2)) await pes.publish('hh1', pubOf('hh1'), meter, b);
    await waitFor(() => bridge.published.get(meter) === batches[1]!.readings.at(-1)!.time, 'states published');
    const energyTopic = `smartermeter/hh1/${meter}/energy`;
    const afterTwo = (await retained(energyTopic)).get(energyTopic);
    expect(afterTwo).toBe(kwh(batches[1]!.readings.at(-1)!.importWh));
    await pes.publish('hh1', pubOf('hh1'), meter, batches[0]!); // a late redelivery of an older batch
    await waitFor(() => bridge.stream.counters.messages === 3, 'late message handled');
    expect((await retained(energyTopic)).get(energyTopic)).toBe(afterTwo);
    await pes.publish('hh1', pubOf('hh1'), meter, batches[2]!);
    await waitFor(() => bridge.published.get(meter) === batches[2]!.readings.at(-1)!.time, 'newest state');

    const all = await retained('#');
    const config = JSON.parse(all.get(`homeassistant/sensor/smartermeter_hh1/${meter}_energy/config`)!) as Record<string, unknown>;
    expect(config).toMatchObject({
      device_class: 'energy',
      state_class: 'total_increasing',
      unit_of_measurement: 'kWh',
      state_topic: `smartermeter/hh1/${meter}/energy`,
      unique_id: `smartermeter_${meter}_energy`,
      availability_topic: 'smartermeter/hh1/status',
      device: { identifiers: [`smartermeter_${meter}`] },
    });
    expect(JSON.parse(all.get(`homeassistant/sensor/smartermeter_hh1/${meter}_power/config`)!)).toMatchObject({ device_class: 'power', state_class: 'measurement', unit_of_measurement: 'W' });
    const last = batches[2]!.readings.at(-1)!;
    expect(all.get(`smartermeter/hh1/${meter}/energy`)).toBe(kwh(last.importWh));
    expect(all.get(`smartermeter/hh1/${meter}/power`)).toBe(String(last.powerW));
    expect(all.get(`smartermeter/hh1/${meter}/last_reading`)).toBe(new Date((last.time + 60) * 1000).toISOString().replace('.000Z', '+00:00'));
    expect(all.get('smartermeter/hh1/status')).toBe('online');
    // "Return to grid": an energy sensor of the same kind, on the export register (0 until the meter feeds in).
    expect(JSON.parse(all.get(`homeassistant/sensor/smartermeter_hh1/${meter}_energy_returned/config`)!)).toMatchObject({
      device_class: 'energy',
      state_class: 'total_increasing',
      unit_of_measurement: 'kWh',
      state_topic: `smartermeter/hh1/${meter}/energy_returned`,
      unique_id: `smartermeter_${meter}_energy_returned`,
    });
    expect(all.get(`smartermeter/hh1/${meter}/energy_returned`)).toBe('0.000');
    // Panels fitted: the meter sends the long form, both registers move.
    const sunny = prosumerBatches(11, 1_717_581_600, 15, 15, last.importWh, 80_210)[0]!; // 10:00 UTC
    await pes.publish('hh1', pubOf('hh1'), meter, sunny);
    await waitFor(() => bridge.published.get(meter) === sunny.readings.at(-1)!.time, 'prosumer state');
    const now = await retained(`smartermeter/hh1/${meter}/+`);
    expect(now.get(`smartermeter/hh1/${meter}/energy_returned`)).toBe(kwh(sunny.readings.at(-1)!.exportWh!));
    expect(now.get(`smartermeter/hh1/${meter}/energy`)).toBe(kwh(sunny.readings.at(-1)!.importWh));
    expect(sunny.readings.at(-1)!.exportWh).toBeGreaterThan(80_210);
    await bridge.close();
    expect((await retained('smartermeter/hh1/status')).get('smartermeter/hh1/status')).toBe('offline');

    const cleared = await removeFromHomeAssistant({ household: 'hh1', ha: { url: ha.url }, settleMs: 300 });
    expect(cleared).toContain(`homeassistant/sensor/smartermeter_hh1/${meter}_energy/config`);
    expect(cleared).toHaveLength(9); // four configs, four states, availability
    expect([...(await retained('#')).keys()]).toEqual([]);
  });

  it('runs as `ucs ha-bridge` and stops cleanly on SIGTERM', async () => {
    const b = run(['ha-bridge', '--household', 'hh2', '--keys', set.keys, '--mqtt', broker.url, '--ha-mqtt', ha.url, '--discovery-prefix', 'ha-test']);
    await waitFor(async () => (await retained('smartermeter/hh2/status')).get('smartermeter/hh2/status') === 'online', 'bridge online', 30_000);
    // Online on the HA broker comes before the subscription on the utility broker: wait for both (its log line).
    await waitFor(() => b.out().includes('ha-bridge: running') || b.child.exitCode !== null, 'bridge subscribed', 30_000);
    await pes.publish('hh2', pubOf('hh2'), meterOf('hh2'), sourceBatches(12, 1_717_545_600, 15)[0]!);
    await waitFor(async () => (await retained('ha-test/#')).size === 4, 'discovery under the chosen prefix', 15_000);
    b.child.kill('SIGTERM');
    expect(await b.exited).toBe(0);
    expect((await retained('smartermeter/hh2/status')).get('smartermeter/hh2/status')).toBe('offline');
  });
});

describe('ucs server command', () => {
  it('serves the app on the given port and stops on SIGTERM', async () => {
    const s = run(['--http', '0', '--keys', set.keys, '--db', join(set.dir, 'cli.sqlite'), '--mqtt', broker.url, '--ws', broker.wsUrl!]);
    await waitFor(() => /household app at http:\/\/127\.0\.0\.1:\d+/.test(s.out()) || s.child.exitCode !== null, 'server up', 30_000);
    const url = /household app at (http:\/\/127\.0\.0\.1:\d+)/.exec(s.out())![1]!;
    expect((await fetch(url + '/healthz')).status).toBe(200);
    s.child.kill('SIGTERM');
    expect(await s.exited).toBe(0);
    const bad = run(['--http', '0', '--mqtt', broker.url]);
    expect(await bad.exited).toBe(1);
    expect(bad.err()).toMatch(/--keys <dir> is required/);
  });
});
