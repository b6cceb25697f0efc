// The end-to-end mode survives kill -9 (issue 12): `smartermeter pes --e2e --state` and `smartermeter guardian
// --state` as real processes behind the broker ACL, each killed with SIGKILL while it works through a stream of
// uplinks and started again on the same state file; the MDMS (combining ingest) then holds exactly the
// aggregates an uninterrupted in-process run of the same uplinks gives (no loss, no double count).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import mqtt from 'mqtt';
import { pino } from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { startBroker } from '../../broker/broker.js';
import { E2eEncoder } from '../../firmware/e2e.js';
import { GuardianCore } from '../../guardian/core.js';
import { parseBillingPeriod } from '../../lib/billing-period.js';
import { loadUsers } from '../../lib/broker-users.js';
import type { BlindMeter, BlindSettings } from '../../lib/e2e-windows.js';
import { brokerUsersPath, GUARDIAN_DIR, loadCredentials, loadFleet, loadGuardianKeys, loadGuardianVerifyKey, loadMdmsKey, loadMeterKey, loadMeterPaillierKey, loadPesKeys, loadPesVerifyKey } from '../../lib/keyset.js';
import { FLAT_TARIFF } from '../../lib/tariff.js';
import { Combiner } from '../../mdms/combine.js';
import { startMdmsE2eIngest } from '../../mdms/e2e-ingest.js';
import { exportCsv } from '../../mdms/export.js';
import { openStore } from '../../mdms/store/index.js';
import { PesE2e } from '../../pes/e2e.js';
import type { Aggregate } from '../../protocol/aggregate.js';
import { parseRelease } from '../../protocol/e2e.js';
import { encodeFrame, SC_AES256GCM, sealFrame } from '../../protocol/frame.js';
import { openAggregate } from '../../protocol/seal.js';
import { parseTopic, REQUEST_PREFIX, topics } from '../../protocol/topics.js';
import { encodeUplink } from '../../protocol/uplink.js';
import { provision } from '../../provision/keys.js';
import { runCli, type CliProcess } from '../cli/run-cli.js';

const T0 = 1_704_067_200; // 2024-01-01T00:00:00Z
const HOURS = 36;
const BATCH_S = 900;
const K = 3;
const FLAGS = ['--interval', '1h', '--billing-period', '1d', '--tz', 'UTC', '--lateness', '30m', '--k', String(K)];
const settings: BlindSettings = { intervalS: 3600, billing: parseBillingPeriod('1d'), tz: 'UTC', tariff: FLAT_TARIFF, latenessS: 1800, k: K, revisionK: K };

const dir = mkdtempSync(join(tmpdir(), 'sm-e2e-durable-'));
const procs: CliProcess[] = [];
const closers: (() => Promise<unknown> | unknown)[] = [];
afterAll(async () => {
  for (const p of procs) if (p.proc.exitCode === null && p.proc.signalCode === null) p.proc.kill('SIGKILL');
  for (const c of closers.reverse()) await c();
  rmSync(dir, { recursive: true, force: true });
});

async function until(pred: () => boolean, what: string, ms = 30_000): Promise<void> {
  const t0 = Date.now();
  while (!pred()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Frames a process has committed so far (its state file's counters; 0 before the first commit). */
function committedFrames(file: string): number {
  try {
    const db = new Database(file, { readonly: true, fileMustExist: true });
    try {
      const row = db.prepare("SELECT v FROM meta WHERE k = 'counters'").get() as { v: string } | undefined;
      return row ? (JSON.parse(row.v) as { frames: number }).frames : 0;
    } finally {
      db.close();
    }
  } catch {
    return 0;
  }
}

describe('pes --e2e and guardian with --state (processes)', () => {
  it('each killed with SIGKILL mid-stream and restarted: the MDMS gets exactly the aggregates of an uninterrupted run', async () => {
    writeFileSync(join(dir, 'fleet.csv'), ['meter,household,neighbourhood,source', ...[1, 2, 3, 4].map((i) => `m${i},hh-${i},nb-a,synthetic:${i}`)].join('\n') + '\n');
    const keys = join(dir, 'keys');
    await provision({ fleetCsv: join(dir, 'fleet.csv'), out: keys, rsaBits: 2048, paillierBits: 1024, e2e: true });
    const fleet = loadFleet(keys);
    const gdir = join(keys, GUARDIAN_DIR);

    // The uplinks: 4 meters, one gateway, a frame per meter every 15 minutes; meter 4 is silent for two hours.
    const pub = loadMeterPaillierKey(keys);
    const per = fleet.meters.map((m, i) => ({ m, key: loadMeterKey(keys, m.meter), enc: new E2eEncoder(pub, { intervalS: 3600, tariff: FLAT_TARIFF }), reg: 1000 * (i + 1) }));
    const uplinks: Buffer[] = [];
    let ic = 0;
    for (let t = T0; t < T0 + HOURS * 3600; t += BATCH_S) {
      ic++;
      const frames = per.flatMap((p, i) => {
        const hour = (t - T0) / 3600;
        if (i === 3 && hour >= 5 && hour < 7) return [];
        const prevWh = p.reg;
        const readings = Array.from({ length: BATCH_S / 60 }, (_, j) => ({ time: t + 60 * j, period: 60, importWh: (p.reg += 1 + ((j + i) % 4)), powerW: 0, status: 0 }));
        return [encodeFrame(sealFrame(p.key, { systemTitle: Buffer.from(p.m.meter, 'hex'), sc: SC_AES256GCM, ic }, p.enc.encode({ prevWh, readings })))];
      });
      uplinks.push(encodeUplink({ gateway: 'gw-nb-a', frames }));
    }
    const totalFrames = HOURS * 4 * 4 - 2 * 4;

    // The uninterrupted run, in this process: the blind PES and the guardian fed every uplink, then flushed.
    const blind = (mk: Map<string, Buffer>) => new Map<string, BlindMeter>(fleet.meters.map((m) => [m.meter, { key: mk.get(m.meter)!, household: m.household, neighbourhood: m.neighbourhood }]));
    const pk = loadPesKeys(keys, { e2e: true });
    const gk = loadGuardianKeys(gdir);
    const refPes = new PesE2e(settings, { share: pk.paillierShare, mdmsPublic: pk.mdmsPublic, signer: pk.signer, meters: blind(pk.meterKeys) });
    const refGuardian = new GuardianCore(settings, { share: gk.paillierShare, meters: blind(gk.meterKeys) });
    const combiner = new Combiner(pub);
    const expected: Aggregate[] = [];
    const mdmsKey = loadMdmsKey(keys);
    const take = () => {
      for (const m of refPes.takeOutbox()) {
        if (m.topic.startsWith(REQUEST_PREFIX)) {
          refGuardian.ingestRequest(m.payload, parseTopic.request(m.topic));
          continue;
        }
        const a = combiner.release(parseRelease(pub, openAggregate(mdmsKey, m.topic, m.payload, loadPesVerifyKey(keys))));
        if (a) expected.push(a);
      }
      for (const p of refGuardian.takePartials()) {
        const a = combiner.guardian(p);
        if (a) expected.push(a);
      }
    };
    for (const u of uplinks) {
      refPes.ingestUplink(u, 'gw-nb-a');
      refGuardian.ingestUplink(u, 'gw-nb-a');
      take();
    }
    refPes.flush();
    refGuardian.flush();
    take();
    expect(combiner.waiting).toBe(0);
    expect(expected.filter((a) => a.kind === 'neighbourhood').length).toBeGreaterThan(30);

    // The broker (in this process, it stays up) and the MDMS's combining ingest.
    const broker = await startBroker({ port: 0, users: loadUsers(brokerUsersPath(keys)), logger: pino({ level: 'silent' }) });
    closers.push(() => broker.close());
    const store = await openStore(join(dir, 'mdms.sqlite'));
    closers.push(() => store.close());
    const ingest = startMdmsE2eIngest({ store, privateKey: mdmsKey, pesVerifyKey: loadPesVerifyKey(keys), guardianVerifyKey: loadGuardianVerifyKey(keys), paillier: pub, mqtt: { url: broker.url, ...loadCredentials(keys, 'mdms') }, k: K, fleet, log: pino({ level: 'silent' }) });
    closers.push(() => ingest.close());
    await ingest.ready;

    const pesState = join(dir, 'pes-e2e.sqlite');
    const guardianState = join(dir, 'guardian.sqlite');
    const start = async (who: 'pes' | 'guardian') => {
      const p = who === 'pes' ? runCli(['pes', '--e2e', '--keys', keys, '--mqtt', broker.url, '--state', pesState, ...FLAGS]) : runCli(['guardian', '--keys', gdir, '--mqtt', broker.url, '--state', guardianState, ...FLAGS]);
      procs.push(p);
      await p.waitFor(new RegExp(`"msg":"${who}: subscribed"`), 60_000);
      return p;
    };
    const kill9 = async (p: CliProcess) => {
      p.proc.kill('SIGKILL');
      await p.exited;
    };
    let pes = await start('pes');
    let guardian = await start('guardian');

    const gw = await mqtt.connectAsync(broker.url, { ...loadCredentials(keys, 'gateway-gw-nb-a'), clientId: 'gateway-gw-nb-a-test', protocolVersion: 4, reconnectPeriod: 0 });
    closers.push(() => gw.endAsync(true));
    for (const u of uplinks) await gw.publishAsync(topics.frames('gw-nb-a'), u, { qos: 1 });

    // Each is killed while it is working through the stream (some of it committed, not all), then started again.
    await until(() => committedFrames(pesState) >= totalFrames / 4, 'the PES to commit a quarter of the frames');
    await kill9(pes);
    const pesAtKill = committedFrames(pesState);
    await until(() => committedFrames(guardianState) >= totalFrames / 3, 'the guardian to commit a third of the frames');
    await kill9(guardian);
    const guardianAtKill = committedFrames(guardianState);
    console.log(JSON.stringify({ totalFrames, pesAtKill, guardianAtKill }));
    expect(pesAtKill).toBeLessThan(totalFrames);
    expect(guardianAtKill).toBeLessThan(totalFrames);
    pes = await start('pes');
    guardian = await start('guardian');
    expect(pes.out()).toContain('pes: state restored');
    expect(guardian.out()).toContain('guardian: state restored');

    // Every frame taken exactly once by each (a redelivered uplink already committed counts as a replay).
    await until(() => committedFrames(pesState) === totalFrames && committedFrames(guardianState) === totalFrames, 'both to take every frame', 60_000);
    pes.proc.kill('SIGUSR2');
    guardian.proc.kill('SIGUSR2');
    await pes.waitFor(/"msg":"pes: flushed on SIGUSR2/, 30_000);
    await guardian.waitFor(/"msg":"guardian: flushed on SIGUSR2/, 30_000);
    await until(() => ingest.counters.stored >= expected.length, `the MDMS to store ${expected.length} aggregates`, 60_000);

    for (const p of [pes, guardian]) {
      p.proc.kill('SIGTERM');
      expect(await p.exited).toBe(0);
    }
    // Every release and partial reached the broker: nothing left in either outbox after a clean stop.
    for (const file of [pesState, guardianState]) {
      const db = new Database(file, { readonly: true });
      expect(db.prepare('SELECT count(*) AS n FROM outbox').get()).toEqual({ n: 0 });
      db.close();
    }
    expect(ingest.counters.rejectedPrivacy + ingest.counters.refusedCombine + ingest.counters.conflicts + ingest.counters.badSignature).toBe(0);
    const ref = await openStore(join(dir, 'ref.sqlite'));
    closers.push(() => ref.close());
    for (const a of expected) await (a.kind === 'neighbourhood' ? ref.insertNeighbourhood(a) : ref.insertBilling(a));
    expect(await exportCsv(store, 'neighbourhood')).toBe(await exportCsv(ref, 'neighbourhood'));
    expect(await exportCsv(store, 'billing')).toBe(await exportCsv(ref, 'billing'));
    expect(ingest.counters.stored).toBe(expected.length);
  }, 120_000);
});
