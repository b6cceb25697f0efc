/**
 * `npm run bench -- scale` (issue 14): how the classic PES scales. The JSON section `scale` has exactly
 * `pes1_readings_per_s`, `pes2_readings_per_s`, `rss_bytes_per_meter_10k`, `rss_bytes_per_meter_100k`,
 * `meters_100k_seconds`, `takeover_s`, and a nested `detail` object with what they were measured on.
 *
 * - Memory: each run in a child process of its own (`scale.ts memory <meters> <days> <billing>`), so that RSS
 *   is the PES's and not an earlier run's. Meters with random keys (what provisioning gives the PES), 2048-bit
 *   Paillier (`SCALE_PAILLIER_BITS`), SQLite state (`synchronous = NORMAL`), the engine's randomiser pool; one
 *   day of 15-minute readings, `SCALE_READINGS_PER_FRAME` (default 16: a concentrator polling every 4 hours)
 *   readings per frame, one uplink per neighbourhood (`SCALE_NB_SIZE` meters, default 200) per frame period,
 *   committed per uplink as the MQTT service does, then the flush that releases every window (sealed to the
 *   MDMS key). RSS is taken after a forced GC at the end of the day, before the flush (every household's billing
 *   window open), minus the RSS before the meters were loaded, per meter. The billing period's effect: the
 *   10,000-meter fleet again for two days with a one-month period (retention 62 days) in
 *   `detail.rss_bytes_per_meter_10k_1mo_2d`.
 * - The 100,000-meter day through provision -> PES -> MDMS (`scale.ts pipeline <meters>`, {@link pipelineRun}):
 *   `provision` writes the key set to disk, the PES loads it as `smartermeter pes --keys` does and runs the day
 *   as above (its RSS gives `rss_bytes_per_meter_100k`, the baseline taken after the key set is loaded: the
 *   pages the loading freed are inside it, so it reads low; docs/operations.md §1d), and
 *   the MDMS ingest stores every release over the embedded broker. `meters_100k_seconds` is the sum of the
 *   three phases, each in `detail` (`provision_s`, `pes_s`, `mdms_s`).
 * - Ingest over the NATS cluster (`smartermeter cluster` parts, nats-server needed) and PostgreSQL (the PES
 *   state): one `smartermeter pes` process for the whole fleet, then two partitioned ones (`--partitions 2`),
 *   same run, same stream: readings/s from the first publish until every neighbourhood window but the last has
 *   been released (read back as the MDMS would). On a 2-core machine the ratio is what matters.
 * - `takeover_s`: two PES processes for one partition, kill -9 of the active one, until the standby logs that
 *   it holds the lease and is active (the way test/pes/ha.test.ts measures it).
 *
 * A part that cannot run here (no nats-server, no PostgreSQL) reports null and says why on stderr (and in
 * `detail.<part>_error`). `SCALE_SKIP_100K=1` skips the 100,000-meter run, `SCALE_ONLY_100K=1` runs it alone;
 * `SCALE_100K_PAILLIER_BITS` runs it with another key size than the others (docs/operations.md §1d has the
 * figures: 2,490 s on two free cores, 1,750 s of it provisioning's one scrypt per household; 4,530 s and 3,620 s
 * with the two scrypts of derivation 1).
 * @module
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import mqtt from 'mqtt';
import { pino } from 'pino';
import { startBroker } from '../broker/broker.js';
import { loadUsers } from '../lib/broker-users.js';
import { brokerUsersPath, loadCredentials, loadFleet, loadMdmsKey, loadMeterKey, loadPesKeys, loadPesVerifyKey } from '../lib/keyset.js';
import { startMdmsIngest, type IngestCounters } from '../mdms/ingest.js';
import { openStore } from '../mdms/store/index.js';
import { fleetMeters } from '../pes/cli.js';
import { provision } from '../provision/keys.js';
import { encodeFrame, meterId, SC_AES256GCM, sealFrame, systemTitle } from '../protocol/frame.js';
import { generatePaillier } from '../protocol/paillier/engine.js';
import { encodeReadingBatch, type Reading } from '../protocol/reading.js';
import { encodeUplink } from '../protocol/uplink.js';
import { createPes, type MeterInfo, type OutMessage, type PesKeySet } from '../pes/pes.js';
import { progress, round, table } from './index.js';
import { clusterIngest, takeover } from './scale-cluster.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const T0 = 1_700_000_000 - (1_700_000_000 % 86400);
const QUARTER = 900;

function envInt(name: string, dflt: number, min: number, max: number): number {
  const v = Number(process.env[name] ?? dflt);
  if (!Number.isInteger(v) || v < min || v > max) throw new Error(`${name} must be an integer in ${min}..${max}`);
  return v;
}

function gc(): void {
  setFlagsFromString('--expose-gc');
  (runInNewContext('gc') as () => void)();
}

/** One memory run's figures (printed by the child as its last line). */
export interface MemoryFigures {
  meters: number;
  days: number;
  billing: string;
  readings: number;
  seconds: number;
  readings_per_s: number;
  rss_bytes_per_meter: number;
  heap_bytes_per_meter: number;
  windows_in_memory: number;
  released: number;
  paillier_bits: number;
}

/** Where a PES run gets its keys: made up in memory (the memory runs), or a provisioned key set (the pipeline). */
interface PesRunKeys {
  /** A key set made by `provision` for this fleet (bench/scale.ts `pipelineRun`): the PES loads it as `smartermeter pes` does. */
  keysDir?: string;
  /** Where each release goes: default the PES's own list (`handle.sent`), dropped at the end. */
  publish?: (m: OutMessage) => void;
  /** Meters per neighbourhood; default `SCALE_NB_SIZE` or 200. */
  nbSize?: number;
}

/** The child's work: a fleet of `meters` for `days` days through an in-process PES. */
async function memoryRun(meters: number, days: number, billing: string, from: PesRunKeys = {}): Promise<MemoryFigures> {
  const perFrame = envInt('SCALE_READINGS_PER_FRAME', 16, 1, 96);
  const nbSize = from.nbSize ?? envInt('SCALE_NB_SIZE', 200, 1, 100_000);
  const bits = envInt('SCALE_PAILLIER_BITS', 2048, 512, 4096);
  if (96 % perFrame !== 0) throw new Error('SCALE_READINGS_PER_FRAME must divide 96');
  // The simulation's own state, allocated before the baseline: registers, invocation counters, and the keys the
  // meters hold (a provisioned meter reads its meters/<id>.key).
  const register = new Float64Array(meters).map((_, i) => 1_000_000 + i * 7);
  const ic = new Uint32Array(meters).fill(1);
  const ids = Array.from({ length: meters }, (_, i) => meterId(systemTitle('SMR', i + 1)));
  const keys: Buffer[] = from.keysDir ? ids.map((id) => loadMeterKey(from.keysDir!, id)) : [];
  let t0 = process.hrtime.bigint();
  let info: Map<string, MeterInfo>;
  let pesKeys: Omit<PesKeySet, 'meters'>;
  let rss0: number;
  let heap0: number;
  if (from.keysDir) {
    // What `smartermeter pes --keys` does at start (pes/cli.ts): unwrap every meter key, build the meter table.
    // Timed from here; the memory baseline comes after the key set is loaded and the randomiser pool is warm
    // (the unwrapped keys, 32 bytes a meter, are inside the baseline).
    const loaded = loadPesKeys(from.keysDir);
    const fleet = loadFleet(from.keysDir).meters;
    if (fleet.length !== meters || fleet.some((m, i) => m.meter !== ids[i])) throw new Error(`${from.keysDir} is not the key set of this ${meters}-meter fleet`);
    pesKeys = loaded;
    await loaded.paillier.startPool().filled(64);
    gc();
    rss0 = process.memoryUsage().rss;
    heap0 = process.memoryUsage().heapUsed;
    info = fleetMeters(fleet, loaded.meterKeys, loaded.meterRotations);
  } else {
    const paillier = await generatePaillier(bits);
    pesKeys = { paillier, rsa: generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey, mdmsPublic: generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey, signer: generateKeyPairSync('ed25519').privateKey };
    // The randomiser pool's workers and the modules a PES loads are fixed costs, not per meter: before the baseline.
    await paillier.startPool().filled(64);
    gc();
    rss0 = process.memoryUsage().rss;
    heap0 = process.memoryUsage().heapUsed;
    t0 = process.hrtime.bigint();
    info = new Map<string, MeterInfo>();
    for (let i = 0; i < meters; i++) {
      const key = randomBytes(32);
      keys.push(key);
      info.set(ids[i]!, { key, household: `hh${i}`, neighbourhood: `nb${Math.floor(i / nbSize)}` });
    }
  }
  const dir = mkdtempSync(join(tmpdir(), 'sm-bench-scale-'));
  const pes = createPes({
    keys: { ...pesKeys, meters: info },
    stateFile: join(dir, 'pes.db'),
    billing,
    k: 20,
    synchronous: 'NORMAL',
    pool: true,
    logger: pino({ level: 'silent' }),
    ...(from.publish ? { publish: from.publish } : {}),
  });
  let readings = 0;
  const periods = (days * 96) / perFrame;
  try {
    for (let p = 0; p < periods; p++) {
      for (let first = 0; first < meters; first += nbSize) {
        const frames: Uint8Array[] = [];
        for (let i = first; i < Math.min(meters, first + nbSize); i++) {
          const prevWh = register[i]!;
          const rs: Reading[] = [];
          for (let j = 0; j < perFrame; j++) {
            const q = p * perFrame + j;
            const e = 20 + ((q * 13 + i * 7) % 180); // 80 W .. 800 W over a quarter hour
            register[i] = register[i]! + e;
            rs.push({ time: T0 + q * QUARTER, period: QUARTER, importWh: register[i]!, powerW: e * 4, status: 0 });
          }
          readings += perFrame;
          frames.push(encodeFrame(sealFrame(keys[i]!, { systemTitle: systemTitle('SMR', i + 1), sc: SC_AES256GCM, ic: ic[i]!++ }, encodeReadingBatch({ prevWh, readings: rs }))));
        }
        pes.ingestUplink(encodeUplink({ gateway: `gw-nb${first / nbSize}`, frames }));
        // As the MQTT service does between messages: the randomiser pool's workers deliver through the event loop.
        await new Promise((r) => setImmediate(r));
      }
      progress(`scale: ${meters} meters, ${billing}: frame period ${p + 1}/${periods}, ${pes.windowCount} windows in memory, ${Math.round(Number(process.hrtime.bigint() - t0) / 1e9)} s`);
    }
    await pes.idle();
    gc();
    const mem = process.memoryUsage();
    const windows = pes.windowCount;
    pes.flush();
    await pes.idle();
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    return {
      meters,
      days,
      billing,
      readings,
      seconds: round(seconds),
      readings_per_s: round(readings / seconds),
      rss_bytes_per_meter: Math.round((mem.rss - rss0) / meters),
      heap_bytes_per_meter: Math.round((mem.heapUsed - heap0) / meters),
      windows_in_memory: windows,
      released: pes.counters.released,
      paillier_bits: pesKeys.paillier.bits,
    };
  } finally {
    await pes.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The whole-pipeline run's figures (issue 14): the PES run's, and each phase's wall time. */
export interface PipelineFigures extends MemoryFigures {
  /** `provision` of the fleet (every key, credential and activation code on disk). */
  provision_s: number;
  /** The PES: key set loaded, one day ingested, every release sealed (= `seconds`). */
  pes_s: number;
  /** The MDMS ingest: every release published to the broker until the MDMS store committed it. */
  mdms_s: number;
  mdms: Pick<IngestCounters, 'received' | 'stored' | 'duplicates' | 'conflicts' | 'malformed' | 'badSignature' | 'rejectedPrivacy' | 'rejectedUnknown' | 'rejectedNegative' | 'rejectedGap' | 'policyStored'>;
}

/** An append-only file of the PES's releases, as sealed (nothing in clear: each is sealed to the MDMS key). */
class Spool {
  private readonly fd: number;
  count = 0;
  constructor(readonly path: string) {
    this.fd = openSync(path, 'wx', 0o600);
  }
  write(m: OutMessage): void {
    const topic = Buffer.from(m.topic);
    const head = Buffer.alloc(6);
    head.writeUInt16BE(topic.length, 0);
    head.writeUInt32BE(m.payload.length, 2);
    writeSync(this.fd, Buffer.concat([head, topic, m.payload]));
    this.count++;
  }
  close(): void {
    closeSync(this.fd);
  }
  static *read(path: string): Generator<{ topic: string; payload: Buffer }> {
    const b = readFileSync(path);
    for (let at = 0; at < b.length; ) {
      const tl = b.readUInt16BE(at);
      const pl = b.readUInt32BE(at + 2);
      const topic = b.subarray(at + 6, at + 6 + tl).toString();
      yield { topic, payload: b.subarray(at + 6 + tl, at + 6 + tl + pl) };
      at += 6 + tl + pl;
    }
  }
}

const outcomes = (c: Readonly<IngestCounters>) =>
  c.stored + c.duplicates + c.conflicts + c.malformed + c.badSignature + c.rejectedPrivacy + c.rejectedUnknown + c.rejectedNegative + c.rejectedGap + c.policyStored + c.policyIgnored + c.unsealFailed;

/**
 * The child's work for `meters_100k_seconds`: provision -> PES -> MDMS, each phase the real code path, in this
 * process and timed apart. 1) `provision` writes the fleet's key set to disk (2048-bit RSA, Paillier of
 * `SCALE_PAILLIER_BITS`). 2) The PES loads it as `smartermeter pes --keys` does and ingests one day
 * ({@link memoryRun}); its releases, sealed, go to a spool file. 3) The embedded broker (broker/broker.ts, with
 * the provisioned users file) and the MDMS ingest (mdms/ingest.ts, SQLite store, the provisioned MDMS key and
 * fleet, k = 20) run; the releases are published as the `pes` user until the store holds every one.
 * `SCALE_NB_SIZE` and `SCALE_PAILLIER_BITS` unless given in `o`.
 * @example
 * ```ts
 * const f = await pipelineRun(2000); // f.provision_s + f.pes_s + f.mdms_s
 * ```
 */
export async function pipelineRun(meters: number, o: { nbSize?: number; paillierBits?: number } = {}): Promise<PipelineFigures> {
  const nbSize = o.nbSize ?? envInt('SCALE_NB_SIZE', 200, 1, 100_000);
  const bits = o.paillierBits ?? envInt('SCALE_PAILLIER_BITS', 2048, 512, 4096);
  const dir = mkdtempSync(join(tmpdir(), 'sm-bench-pipeline-'));
  const silent = pino({ level: 'silent' });
  try {
    const keys = join(dir, 'keys');
    const csv = ['meter,household,neighbourhood,source', ...Array.from({ length: meters }, (_, i) => `m${i},hh${i},nb${Math.floor(i / nbSize)},synthetic:${i}`)];
    writeFileSync(join(dir, 'fleet.csv'), csv.join('\n') + '\n');
    progress(`scale pipeline: provision ${meters} meters`);
    let t = process.hrtime.bigint();
    await provision({ fleetCsv: join(dir, 'fleet.csv'), out: keys, rsaBits: 2048, paillierBits: bits });
    const provisionS = Number(process.hrtime.bigint() - t) / 1e9;
    progress(`scale pipeline: provisioned in ${Math.round(provisionS)} s; the PES`);

    const spool = new Spool(join(dir, 'releases.spool'));
    let pes: MemoryFigures;
    try {
      pes = await memoryRun(meters, 1, '1d', { keysDir: keys, publish: (m) => spool.write(m), nbSize });
    } finally {
      spool.close();
    }
    progress(`scale pipeline: PES in ${Math.round(pes.seconds)} s, ${spool.count} releases; the MDMS ingest`);

    const broker = await startBroker({ users: loadUsers(brokerUsersPath(keys)), port: 0, wsPort: false, logger: silent });
    const store = await openStore(join(dir, 'mdms.sqlite'));
    const ingest = startMdmsIngest({
      store,
      privateKey: loadMdmsKey(keys),
      pesVerifyKey: loadPesVerifyKey(keys),
      mqtt: { url: broker.url, ...loadCredentials(keys, 'mdms') },
      k: 20,
      fleet: loadFleet(keys),
      log: silent,
    });
    const pub = await mqtt.connectAsync(broker.url, { ...loadCredentials(keys, 'pes'), clientId: 'pes', clean: true, reconnectPeriod: 0 });
    try {
      await ingest.ready;
      t = process.hrtime.bigint();
      const inFlight = new Set<Promise<unknown>>();
      let sent = 0;
      for (const m of Spool.read(spool.path)) {
        const p = pub.publishAsync(m.topic, m.payload, { qos: 1 }).finally(() => inFlight.delete(p));
        inFlight.add(p);
        if (inFlight.size >= 256) await Promise.race(inFlight);
        if (++sent % 10_000 === 0) progress(`scale pipeline: ${sent} releases published, ${ingest.counters.stored} stored by the MDMS, ${Math.round(Number(process.hrtime.bigint() - t) / 1e9)} s`);
      }
      await Promise.all(inFlight);
      await ingest.waitFor((c) => outcomes(c) >= spool.count, 3_600_000);
      const mdmsS = Number(process.hrtime.bigint() - t) / 1e9;
      const c = ingest.counters;
      return {
        ...pes,
        provision_s: round(provisionS),
        pes_s: pes.seconds,
        mdms_s: round(mdmsS),
        mdms: {
          received: c.received, stored: c.stored, duplicates: c.duplicates, conflicts: c.conflicts, malformed: c.malformed, badSignature: c.badSignature,
          rejectedPrivacy: c.rejectedPrivacy, rejectedUnknown: c.rejectedUnknown, rejectedNegative: c.rejectedNegative, rejectedGap: c.rejectedGap, policyStored: c.policyStored,
        },
      };
    } finally {
      await pub.endAsync().catch(() => undefined);
      await ingest.close();
      await store.close();
      await broker.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Runs {@link pipelineRun} in a child process (fresh heap and RSS); resolves with its figures. */
function pipelineChild(meters: number, bits: number): Promise<PipelineFigures> {
  return child<PipelineFigures>(['pipeline', String(meters)], bits, `pipeline run ${meters}`);
}

/** Runs {@link memoryRun} in a child process (fresh heap and RSS); resolves with its figures. */
function memoryChild(meters: number, days: number, billing: string, bits: number): Promise<MemoryFigures> {
  return child<MemoryFigures>(['memory', String(meters), String(days), billing], bits, `memory run ${meters}x${days}d ${billing}`);
}

/** Runs this file in a child process with `args`; resolves with the JSON of its last stdout line. */
function child<T>(args: string[], bits: number, what: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, ['--max-old-space-size=8192', join(ROOT, 'bin/run-ts.js'), fileURLToPath(import.meta.url), ...args], {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, SCALE_PAILLIER_BITS: String(bits) },
    });
    let out = '';
    c.stdout.on('data', (d) => (out += String(d)));
    c.once('error', reject);
    c.once('exit', (code, signal) => {
      const last = out.trim().split('\n').pop() ?? '';
      if (code !== 0) return reject(new Error(`${what} ${signal ? `was killed by ${signal}` : `exited with ${code}`}`));
      try {
        resolve(JSON.parse(last) as T);
      } catch {
        reject(new Error(`${what} printed no figures: ${last.slice(0, 200)}`));
      }
    });
  });
}

/**
 * Runs the scale benchmark and returns its section.
 * @example
 * ```ts
 * const scale = await run(); // { pes1_readings_per_s, pes2_readings_per_s, rss_bytes_per_meter_10k, ... }
 * ```
 */
export async function run(): Promise<Record<string, unknown>> {
  const detail: Record<string, unknown> = {};
  const attempt = async <T>(what: string, fn: () => Promise<T>): Promise<T | null> => {
    try {
      return await fn();
    } catch (e) {
      progress(`scale: ${what} not measured: ${(e as Error).message}`);
      detail[`${what}_error`] = (e as Error).message.split('\n')[0];
      return null;
    }
  };
  // SCALE_ONLY_100K=1: the provision -> PES -> MDMS run alone (it takes the better part of an hour).
  const only100k = Boolean(process.env.SCALE_ONLY_100K);
  const unless = async <T>(skip: boolean, what: string, fn: () => Promise<T>): Promise<T | null> => (skip ? null : attempt(what, fn));
  if (!only100k) progress('scale: ingest over the NATS cluster, 1 then 2 PES instances');
  const ingest = await unless(only100k, 'cluster_ingest', () => clusterIngest());
  if (ingest) Object.assign(detail, { cluster: ingest.detail });
  if (!only100k) progress('scale: takeover after kill -9 of the active PES');
  const take = await unless(only100k, 'takeover', () => takeover());
  const bits = envInt('SCALE_PAILLIER_BITS', 2048, 512, 4096);
  const bits100k = envInt('SCALE_100K_PAILLIER_BITS', bits, 512, 4096);
  if (!only100k) progress('scale: memory, 10,000 meters x 1 day');
  const m10k = await unless(only100k, 'memory_10k', () => memoryChild(10_000, 1, '1d', bits));
  if (!only100k) progress('scale: memory, 10,000 meters x 2 days, one-month billing period');
  const m10kMo = await unless(only100k, 'memory_10k_1mo', () => memoryChild(10_000, 2, '1mo', bits));
  const skip100k = Boolean(process.env.SCALE_SKIP_100K);
  if (!skip100k) progress(`scale: 100,000 meters x 1 day through provision -> PES -> MDMS (${bits100k}-bit Paillier)`);
  const m100k = await unless(skip100k, 'pipeline_100k', () => pipelineChild(100_000, bits100k));
  if (m10k) detail.run_10k = m10k;
  if (m10kMo) {
    detail.run_10k_1mo_2d = m10kMo;
    detail.rss_bytes_per_meter_10k_1mo_2d = m10kMo.rss_bytes_per_meter;
  }
  if (m100k) Object.assign(detail, { provision_s: m100k.provision_s, pes_s: m100k.pes_s, mdms_s: m100k.mdms_s, run_100k: m100k });
  return {
    pes1_readings_per_s: ingest?.pes1 ?? null,
    pes2_readings_per_s: ingest?.pes2 ?? null,
    rss_bytes_per_meter_10k: m10k?.rss_bytes_per_meter ?? null,
    rss_bytes_per_meter_100k: m100k?.rss_bytes_per_meter ?? null,
    meters_100k_seconds: m100k ? round(m100k.provision_s + m100k.pes_s + m100k.mdms_s) : null,
    takeover_s: take,
    detail,
  };
}

const entry = process.argv[1];
if (entry && pathToFileURL(entry).href === import.meta.url) {
  if (process.argv[2] === 'memory') {
    const [meters, days, billing] = [Number(process.argv[3]), Number(process.argv[4]), process.argv[5] ?? '1d'];
    if (!Number.isInteger(meters) || meters < 1 || !Number.isInteger(days) || days < 1) {
      console.error('usage: scale.ts memory <meters> <days> <billing>');
      process.exit(2);
    }
    memoryRun(meters, days, billing).then(
      (f) => console.log(JSON.stringify(f)),
      (e: Error) => {
        console.error(e.stack);
        process.exit(1);
      },
    );
  } else if (process.argv[2] === 'pipeline') {
    const meters = Number(process.argv[3]);
    if (!Number.isInteger(meters) || meters < 1) {
      console.error('usage: scale.ts pipeline <meters>');
      process.exit(2);
    }
    pipelineRun(meters).then(
      (f) => console.log(JSON.stringify(f)),
      (e: Error) => {
        console.error(e.stack);
        process.exit(1);
      },
    );
  } else void run().then((r) => console.log(table('scale', r)));
}
