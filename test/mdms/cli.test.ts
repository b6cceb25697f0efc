/**
 * `smartermeter mdms` and `mdms export` as real processes, on a provisioned key set and the broker with its
 * users file (so the `mdms` user's ACL is exercised too).
 */
import { spawn } from 'node:child_process';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBroker, type BrokerHandle } from '../../broker/broker.js';
import { loadUsers } from '../../lib/broker-users.js';
import { sealAggregate } from '../../protocol/seal.js';
import { topics } from '../../protocol/topics.js';
import { brokerUsersPath, loadCredentials, loadPesKeys } from '../../lib/keyset.js';
import { provision } from '../../provision/keys.js';
import { openStore } from '../../mdms/store/index.js';
import { PG_UP, PG_URL, RUN_PG, billingAgg, dropSchema, nbAgg, tempDir, uniqueSchema } from './helpers.js';

const ROOT = new URL('../../', import.meta.url).pathname;
const T0 = 1_714_521_600;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Starts the CLI; `done` resolves when it exits. */
function start(args: string[]): { child: ReturnType<typeof spawn>; done: Promise<Run>; stdout: () => string } {
  const child = spawn(process.execPath, [join(ROOT, 'bin/run-ts.js'), join(ROOT, 'test/mdms/fixtures/run-cli.ts'), ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (b: Buffer) => (stdout += b.toString('utf8')));
  child.stderr!.on('data', (b: Buffer) => (stderr += b.toString('utf8')));
  const done = new Promise<Run>((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
  return { child, done, stdout: () => stdout };
}

const run = (args: string[]): Promise<Run> => start(args).done;

let tmp: ReturnType<typeof tempDir>;
let keys: string;
let broker: BrokerHandle;

beforeAll(async () => {
  tmp = tempDir('mdms-cli-');
  const fleetCsv = join(tmp.dir, 'fleet.csv');
  writeFileSync(fleetCsv, 'meter,household,neighbourhood,source\nm1,hh1,nb1,synthetic:1\nm2,hh2,nb1,synthetic:2\n');
  keys = join(tmp.dir, 'keys');
  await provision({ fleetCsv, out: keys, rsaBits: 2048, paillierBits: 1024 });
  broker = await startBroker({ users: loadUsers(brokerUsersPath(keys)), logger: pino({ level: 'silent' }) });
});

afterAll(async () => {
  await broker?.close();
  tmp?.remove();
});

describe('smartermeter mdms (ingest)', () => {
  it('stores what the PES publishes, then exports it exactly; stops cleanly on SIGTERM', async () => {
    const db = join(tmp.dir, 'ingest.sqlite');
    const acked: string[] = [];
    const onAck = (packet: unknown, client: { id: string } | null) => {
      if (client?.id === 'mdms' && packet && typeof packet === 'object' && 'topic' in packet) acked.push(String(packet.topic));
    };
    broker.aedes.on('ack', onAck);
    const ingest = start(['mdms', '--keys', keys, '--db', db, '--mqtt', broker.url, '--min-billing-period', '1d', '--k', '2']);
    try {
      // First start: the MDMS session does not exist yet, so wait for the subscription before publishing.
      for (let t = 0; !/MDMS ingest subscribed/.test(ingest.stdout()); t++) {
        if (t > 600) throw new Error('the ingest did not subscribe');
        await new Promise((r) => setTimeout(r, 50));
      }
      // The PES, with its own credentials and the MDMS public key from the key set.
      const { mdmsPublic, signer } = loadPesKeys(keys);
      const pes = await mqtt.connectAsync(broker.url, { ...loadCredentials(keys, 'pes'), clientId: 'pes', clean: true });
      const aggs = [
        nbAgg({ key: 'nb1', start: T0 + 900, meters: 2, energyWh: 20, exportWh: 3 }),
        nbAgg({ key: 'nb1', start: T0, meters: 2, energyWh: 10 }),
        billingAgg({ key: 'hh2', bands: { flat: 7 } }),
        billingAgg({ key: 'hh1', bands: { peak: 1, offpeak: 2 }, exportBands: { peak: 4 } }),
        billingAgg({ key: 'hh1', start: T0 + 3600, end: T0 + 4500, bands: { peak: 99 } }), // 15 min: refused
      ];
      for (const a of aggs) {
        const topic = a.kind === 'neighbourhood' ? topics.neighbourhood(a.key) : topics.billing(a.key);
        await pes.publishAsync(topic, sealAggregate(mdmsPublic, topic, a, signer), { qos: 1 });
      }
      // The PES's policy statement, under the PES's own broker user.
      const policyTopic = topics.policy('pes');
      await pes.publishAsync(policyTopic, sealAggregate(mdmsPublic, policyTopic, { kind: 'policy', key: 'pes', at: T0, k: 2, revisionK: 1, membershipGuard: true, counters: { membershipHeld: 0 } }, signer), { qos: 1 });
      await pes.endAsync();
      for (let t = 0; acked.length < aggs.length + 1; t++) {
        if (t > 600) throw new Error(`only ${acked.length} PUBACKs; ingest stderr: ${ingest.stdout()}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    } finally {
      broker.aedes.off('ack', onAck as never);
      ingest.child.kill('SIGTERM');
    }
    const r = await ingest.done;
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/MDMS ingest subscribed/);
    expect(r.stdout).toMatch(/"rejectedPrivacy":1/);
    expect(r.stdout).toMatch(/"policyStored":1/);
    expect(r.stdout).toMatch(/"malformed":0/);
    expect(r.stdout).toMatch(/MDMS ingest stopped/);
    expect(r.stdout).not.toMatch(/\b99\b/);

    const nb = await run(['mdms', 'export', '--db', db, '--what', 'neighbourhood', '--format', 'csv']);
    expect(nb).toMatchObject({ code: 0, stderr: '' });
    expect(nb.stdout).toBe(
      'neighbourhood,start,end,meters,energy_wh,export_wh\n' +
        'nb1,2024-05-01T00:00:00Z,2024-05-01T00:15:00Z,2,10,0\n' +
        'nb1,2024-05-01T00:15:00Z,2024-05-01T00:30:00Z,2,20,3\n',
    );
    const out = join(tmp.dir, 'billing.csv');
    const billing = await run(['mdms', 'export', '--db', db, '--what', 'billing', '--out', out]);
    expect(billing).toMatchObject({ code: 0, stdout: '' });
    expect(readFileSync(out, 'utf8')).toBe(
      'household,start,end,band,energy_wh,export_wh\n' +
        'hh1,2024-05-01T00:00:00Z,2024-05-02T00:00:00Z,offpeak,2,0\n' +
        'hh1,2024-05-01T00:00:00Z,2024-05-02T00:00:00Z,peak,1,4\n' +
        'hh2,2024-05-01T00:00:00Z,2024-05-02T00:00:00Z,flat,7,0\n',
    );
    expect(statSync(out).mode & 0o777).toBe(0o600);
    expect(statSync(db).mode & 0o777).toBe(0o600);
  });

  it('exits 1 with a clear error when the broker refuses its credentials', async () => {
    const pw = join(tmp.dir, 'wrong-password');
    writeFileSync(pw, 'not-the-password\n', { mode: 0o600 });
    const r = await run(['mdms', '--keys', keys, '--db', join(tmp.dir, 'x.sqlite'), '--mqtt', broker.url, '--username', 'mdms', '--password-file', pw]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/smartermeter: the broker refused the MDMS's credentials/);
    expect(r.stderr + r.stdout).not.toContain('not-the-password');
  });

  it('rejects bad flags with a message naming the flag', async () => {
    const bad = [
      [['mdms', '--keys', keys, '--min-billing-period', '5'], /--min-billing-period must look like/],
      [['mdms', '--keys', keys, '--k', '0'], /--k must be between 1/],
      [['mdms', '--keys', keys, '--db-schema', 'x'], /--db-schema only applies to a postgres/],
      [['mdms', '--keys', join(tmp.dir, 'no-keys')], /MDMS private key/],
      [['mdms', '--keys', keys, '--username', 'mdms'], /--username and --password-file go together/],
      [['mdms', '--keys', keys, '--e2e'], /is a classic key set: --e2e needs one from provision --e2e/],
      [['mdms', '--keys', keys, '--retention', '30d'], /--retention is for the end-to-end ingest \(--e2e\)/],
      [['mdms', 'export', '--db', 'x.sqlite', '--what', 'meters'], /--what <kind>' argument 'meters' is invalid/],
      [['mdms', 'export', '--db', 'x.sqlite', '--what', 'billing', '--format', 'json'], /--format <format>' argument 'json' is invalid/],
      [['mdms', 'export', '--what', 'billing'], /required option '--db/],
      [['mdms', 'export', '--db', join(tmp.dir, 'absent.sqlite'), '--what', 'billing'], /no MDMS database at/],
    ] as const;
    const results = await Promise.all(bad.map(([args]) => run([...args])));
    results.forEach((r, i) => {
      expect(r.code, bad[i]![0].join(' ')).not.toBe(0);
      expect(r.stderr, bad[i]![0].join(' ')).toMatch(bad[i]![1]);
    });
  });
});

describe('smartermeter mdms export on PostgreSQL', () => {
  it('exits 1 with a clear error (password redacted) when the database is unreachable', async () => {
    const r = await run(['mdms', 'export', '--db', 'postgres://mdms:sekret@127.0.0.1:1/test', '--what', 'billing']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/smartermeter: cannot open the MDMS database postgres:\/\/mdms:\*\*\*@127\.0\.0\.1:1\/test/);
    expect(r.stderr).not.toContain('sekret');
  });

  it.skipIf(!RUN_PG)('exports from a PostgreSQL schema', async () => {
    if (!PG_UP) throw new Error(`PostgreSQL is not reachable at ${PG_URL} (CI=true: this test must not be skipped)`);
    const schema = uniqueSchema();
    try {
      const store = await openStore(PG_URL, { schema });
      await store.insertNeighbourhood(nbAgg({ key: 'nb2', revision: 0, energyWh: 5 }));
      await store.insertNeighbourhood(nbAgg({ key: 'nb2', revision: 1, energyWh: 6 }));
      await store.close();
      const r = await run(['mdms', 'export', '--db', PG_URL, '--db-schema', schema, '--what', 'neighbourhood', '--format', 'csv']);
      expect(r).toMatchObject({ code: 0, stderr: '' });
      expect(r.stdout).toBe('neighbourhood,start,end,meters,energy_wh,export_wh\nnb2,2024-05-01T00:00:00Z,2024-05-01T00:15:00Z,5,6,0\n');
    } finally {
      await dropSchema(schema);
    }
  });
});
