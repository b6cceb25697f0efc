/**
 * `npm run bench -- scale` (issue 14): how the classic PES scales. The JSON section `scale` has exactly
 * `pes1_readings_per_s`, `pes2_readings_per_s`, `rss_bytes_per_meter_10k`, `rss_bytes_per_meter_100k`,
 * `meters_100k_seconds`, `takeover_s`, and a nested `detail` object with what they were measured on.
 *
 * - Memory and the 100,000-meter day: each run in a child process of its own (`scale.ts memory <meters>
 *   <days> <billing>`), so that RSS is the PES's and not an earlier run's. Meters with random keys (what
 *   provisioning gives the PES), 2048-bit Paillier (`SCALE_PAILLIER_BITS`), SQLite state (`synchronous =
 *   NORMAL`), the engine's randomiser pool; one day of 15-minute readings, `SCALE_READINGS_PER_FRAME`
 *   (default 16: a concentrator polling every 4 hours) readings per frame, one uplink per neighbourhood
 *   (`SCALE_NB_SIZE` meters, default 200) per frame period, committed per uplink as the MQTT service does, then
 *   the flush that releases every window (sealed to the MDMS key). RSS is taken after a forced GC at the end of
 *   the day, before the flush (every household's billing window open), minus the RSS before the meters were
 *   loaded, per meter. `meters_100k_seconds` is that run's wall time, key loading to the last release sealed.
 *   The billing period's effect: the 10,000-meter fleet again for two days with a one-month period
 *   (retention 62 days) in `detail.rss_bytes_per_meter_10k_1mo_2d`.
 * - Ingest over the NATS cluster (`smartermeter cluster` parts, nats-server needed) and PostgreSQL (the PES
 *   state): one `smartermeter pes` process for the whole fleet, then two partitioned ones (`--partitions 2`),
 *   same run, same stream: readings/s from the first publish until every neighbourhood window but the last has
 *   been released (read back as the MDMS would). On a 2-core machine the ratio is what matters.
 * - `takeover_s`: two PES processes for one partition, kill -9 of the active one, until the standby logs that
 *   it holds the lease and is active (the way test/pes/ha.test.ts measures it).
 *
 * A part that cannot run here (no nats-server, no PostgreSQL) reports null and says why on stderr (and in
 * `detail.<part>_error`). `SCALE_SKIP_100K=1` skips the 100,000-meter run; `SCALE_100K_PAILLIER_BITS` runs it
 * with another key size than the others (about 860 CPU-seconds at 2048 bits: docs/operations.md §1d).
 * @module
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { pino } from 'pino';
import { encodeFrame, meterId, SC_AES256GCM, sealFrame, systemTitle } from '../protocol/frame.js';
import { generatePaillier } from '../protocol/paillier/engine.js';
import { encodeReadingBatch, type Reading } from '../protocol/reading.js';
import { encodeUplink } from '../protocol/uplink.js';
import { createPes, type MeterInfo } from '../pes/pes.js';
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

/** The child's work: a fleet of `meters` for `days` days through an in-process PES. */
async function memoryRun(meters: number, days: number, billing: string): Promise<MemoryFigures> {
  const perFrame = envInt('SCALE_READINGS_PER_FRAME', 16, 1, 96);
  const nbSize = envInt('SCALE_NB_SIZE', 200, 1, 100_000);
  const bits = envInt('SCALE_PAILLIER_BITS', 2048, 512, 4096);
  if (96 % perFrame !== 0) throw new Error('SCALE_READINGS_PER_FRAME must divide 96');
  const paillier = await generatePaillier(bits);
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const mdms = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const signer = generateKeyPairSync('ed25519').privateKey;
  // The simulation's own state, allocated before the baseline.
  const register = new Float64Array(meters).map((_, i) => 1_000_000 + i * 7);
  const ic = new Uint32Array(meters).fill(1);
  const keys: Buffer[] = [];
  // The randomiser pool's workers and the modules a PES loads are fixed costs, not per meter: before the baseline.
  await paillier.startPool().filled(64);
  gc();
  const rss0 = process.memoryUsage().rss;
  const heap0 = process.memoryUsage().heapUsed;
  const t0 = process.hrtime.bigint();
  const info = new Map<string, MeterInfo>();
  for (let i = 0; i < meters; i++) {
    const key = randomBytes(32);
    keys.push(key);
    info.set(meterId(systemTitle('SMR', i + 1)), { key, household: `hh${i}`, neighbourhood: `nb${Math.floor(i / nbSize)}` });
  }
  const dir = mkdtempSync(join(tmpdir(), 'sm-bench-scale-'));
  const pes = createPes({
    keys: { rsa: rsa.privateKey, signer, paillier, mdmsPublic: mdms.publicKey, meters: info },
    stateFile: join(dir, 'pes.db'),
    billing,
    k: 20,
    synchronous: 'NORMAL',
    pool: true,
    logger: pino({ level: 'silent' }),
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
      paillier_bits: bits,
    };
  } finally {
    await pes.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Runs {@link memoryRun} in a child process (fresh heap and RSS); resolves with its figures. */
function memoryChild(meters: number, days: number, billing: string, bits: number): Promise<MemoryFigures> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--max-old-space-size=8192', join(ROOT, 'bin/run-ts.js'), fileURLToPath(import.meta.url), 'memory', String(meters), String(days), billing], {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, SCALE_PAILLIER_BITS: String(bits) },
    });
    let out = '';
    child.stdout.on('data', (d) => (out += String(d)));
    child.once('error', reject);
    child.once('exit', (code) => {
      const last = out.trim().split('\n').pop() ?? '';
      if (code !== 0) return reject(new Error(`memory run ${meters}x${days}d ${billing} exited with ${code}`));
      try {
        resolve(JSON.parse(last) as MemoryFigures);
      } catch {
        reject(new Error(`memory run printed no figures: ${last.slice(0, 200)}`));
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
  progress('scale: ingest over the NATS cluster, 1 then 2 PES instances');
  const ingest = await attempt('cluster_ingest', () => clusterIngest());
  if (ingest) Object.assign(detail, { cluster: ingest.detail });
  progress('scale: takeover after kill -9 of the active PES');
  const take = await attempt('takeover', () => takeover());
  const bits = envInt('SCALE_PAILLIER_BITS', 2048, 512, 4096);
  const bits100k = envInt('SCALE_100K_PAILLIER_BITS', bits, 512, 4096);
  progress('scale: memory, 10,000 meters x 1 day');
  const m10k = await attempt('memory_10k', () => memoryChild(10_000, 1, '1d', bits));
  progress('scale: memory, 10,000 meters x 2 days, one-month billing period');
  const m10kMo = await attempt('memory_10k_1mo', () => memoryChild(10_000, 2, '1mo', bits));
  progress(`scale: 100,000 meters x 1 day (${bits100k}-bit Paillier)`);
  const m100k = process.env.SCALE_SKIP_100K ? null : await attempt('memory_100k', () => memoryChild(100_000, 1, '1d', bits100k));
  if (m10k) detail.run_10k = m10k;
  if (m10kMo) {
    detail.run_10k_1mo_2d = m10kMo;
    detail.rss_bytes_per_meter_10k_1mo_2d = m10kMo.rss_bytes_per_meter;
  }
  if (m100k) detail.run_100k = m100k;
  return {
    pes1_readings_per_s: ingest?.pes1 ?? null,
    pes2_readings_per_s: ingest?.pes2 ?? null,
    rss_bytes_per_meter_10k: m10k?.rss_bytes_per_meter ?? null,
    rss_bytes_per_meter_100k: m100k?.rss_bytes_per_meter ?? null,
    meters_100k_seconds: m100k?.seconds ?? null,
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
  } else void run().then((r) => console.log(table('scale', r)));
}
