/**
 * Pipeline throughput: firmware meters (clock speed 'max', in-memory NV) -> crossed mock serial pairs ->
 * gateway (SQLite WAL queue file, batches of 256, 20 ms) -> embedded aedes on a loopback port -> one MQTT
 * subscriber that decodes every uplink (the PES's seat, without deciphering). Everything runs in this one
 * process, so the figures are for the whole chain on one core, not for the gateway alone.
 *
 * Figures: frames/s and readings/s from meter start until every meter has every frame acknowledged (acks
 * come only after the broker's PUBACK) and the subscriber has every frame, for 10 meters x 7 days and
 * 100 meters x 1 day (each meter keeps at most 32 frames in flight, so 10 meters are latency-bound); then the
 * process RSS and heap (after a forced GC) once ~1M readings went through (100 meters x 7 days of
 * 1-minute readings; PIPELINE_BENCH_DAYS overrides the 7), beside the same figures before the run.
 * @module
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import mqtt from 'mqtt';
import { pino } from 'pino';
import { startBroker } from '../broker/broker.js';
import { MockBinding, openCrossedMockPair } from '../firmware/hal/crossed-mock.js';
import { streamLine } from '../firmware/hal/line.js';
import { MemoryNvStore } from '../firmware/hal/nv.js';
import { Meter } from '../firmware/meter.js';
import { SyntheticSource } from '../firmware/sources/synthetic.js';
import { startGateway } from '../gateway/gateway.js';
import { systemTitle } from '../protocol/frame.js';
import { topics } from '../protocol/topics.js';
import { decodeUplink } from '../protocol/uplink.js';
import { progress, round, table } from './index.js';

const START = Date.UTC(2016, 4, 2) / 1000;
const quiet = pino({ level: 'silent' });
let runSeq = 0;

function collectGarbage(): void {
  setFlagsFromString('--expose-gc');
  (runInNewContext('gc') as () => void)();
}

const mb = (bytes: number) => round(bytes / 1024 / 1024);

/** Runs `meters` meters for `days` days of 1-minute readings through the whole chain; returns figures. */
async function pipeline(meters: number, days: number) {
  const run = ++runSeq;
  const dir = mkdtempSync(join(tmpdir(), 'sm-bench-pipeline-'));
  const broker = await startBroker({ port: 0, logger: quiet });
  const sub = await mqtt.connectAsync(broker.url, { reconnectPeriod: 0 });
  let received = 0;
  let uplinks = 0;
  sub.on('message', (_t, payload) => {
    received += decodeUplink(payload).frames.length;
    uplinks++;
  });
  await sub.subscribeAsync(topics.frames('gw-bench'), { qos: 1 });

  const pairs = await Promise.all(Array.from({ length: meters }, (_, i) => openCrossedMockPair(`/dev/bench-m${run}-${i}`, `/dev/bench-g${run}-${i}`)));
  const gw = await startGateway({ id: 'gw-bench', lines: pairs.map((p) => p[1]), mqtt: { url: broker.url }, queuePath: join(dir, 'queue.db'), logger: quiet });
  while (!gw.connected) await new Promise((r) => setTimeout(r, 5));

  const t0 = process.hrtime.bigint();
  const cpu0 = process.cpuUsage();
  const running = await Promise.all(
    pairs.map((p, i) =>
      Meter.start({
        systemTitle: systemTitle('SMR', 10_000 + i),
        key: randomBytes(32),
        line: streamLine(p[0]),
        source: new SyntheticSource({ seed: 900 + i, start: START, days }),
        nv: new MemoryNvStore(),
      }),
    ),
  );
  await Promise.all(running.map((m) => m.done(600_000)));
  const frames = running.reduce((a, m) => a + m.counters.frames, 0);
  const readings = running.reduce((a, m) => a + m.counters.readings, 0);
  while (received < frames) await new Promise((r) => setTimeout(r, 5));
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  const cpuSeconds = (cpu.user + cpu.system) / 1e6;

  const c = gw.counters;
  if (received !== frames || c.forwarded !== frames || c.pending !== 0) {
    throw new Error(`pipeline lost or duplicated frames: ${frames} sealed, ${c.forwarded} forwarded, ${received} received`);
  }
  const retransmits = running.reduce((a, m) => a + m.counters.retransmits, 0);
  await Promise.all(running.map((m) => m.stop()));
  await gw.close();
  await sub.endAsync();
  await broker.close();
  await Promise.all(pairs.flat().map((p) => new Promise((r) => (p.isOpen ? p.close(r) : r(null)))));
  MockBinding.reset();
  rmSync(dir, { recursive: true, force: true });
  return {
    frames,
    readings,
    seconds,
    framesPerS: round(frames / seconds),
    readingsPerS: round(readings / seconds),
    // Per second of this process's CPU time: less sensitive to other load on a shared machine.
    readingsPerCpuS: round(readings / cpuSeconds),
    framesPerUplink: round(frames / uplinks),
    retransmits,
    publishErrors: c.publishErrors,
  };
}

/**
 * Runs the pipeline benchmark and returns its figures.
 * @example
 * ```ts
 * const figures = await run(); // { meters_10_frames_per_s: ..., ... }
 * ```
 */
export async function run(): Promise<Record<string, number>> {
  const longDays = Number(process.env.PIPELINE_BENCH_DAYS ?? 7);
  if (!(Number.isInteger(longDays) && longDays >= 1 && longDays <= 365)) throw new Error('PIPELINE_BENCH_DAYS must be an integer in 1..365');
  const out: Record<string, number> = {};

  progress('pipeline: 10 meters x 7 days');
  const ten = await pipeline(10, 7);
  progress('pipeline: 100 meters x 1 day');
  const hundred = await pipeline(100, 1);
  Object.assign(out, {
    meters_10_frames_per_s: ten.framesPerS,
    meters_10_readings_per_s: ten.readingsPerS,
    meters_10_readings_per_cpu_s: ten.readingsPerCpuS,
    meters_10_frames_per_uplink: ten.framesPerUplink,
    meters_100_frames_per_s: hundred.framesPerS,
    meters_100_readings_per_s: hundred.readingsPerS,
    meters_100_readings_per_cpu_s: hundred.readingsPerCpuS,
    meters_100_frames_per_uplink: hundred.framesPerUplink,
  });

  collectGarbage();
  const before = process.memoryUsage();
  progress(`pipeline: 100 meters x ${longDays} days (~${(100 * longDays * 1440) / 1e6}M readings) for memory`);
  const long = await pipeline(100, longDays);
  const peakRss = process.memoryUsage().rss;
  collectGarbage();
  const after = process.memoryUsage();
  Object.assign(out, {
    long_readings: long.readings,
    long_frames: long.frames,
    long_readings_per_s: long.readingsPerS,
    long_readings_per_cpu_s: long.readingsPerCpuS,
    long_retransmits: long.retransmits,
    long_publish_errors: long.publishErrors,
    rss_mb_before: mb(before.rss),
    rss_mb_after_run: mb(peakRss),
    rss_mb_after_gc: mb(after.rss),
    heap_used_mb_before: mb(before.heapUsed),
    heap_used_mb_after_gc: mb(after.heapUsed),
  });
  return out;
}

const entry = process.argv[1];
if (entry && pathToFileURL(entry).href === import.meta.url) {
  void run().then((r) => console.log(table('pipeline', r)));
}
