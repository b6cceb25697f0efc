/**
 * `smartermeter meter ...`: run a simulated meter on a serial port, or write a synthetic dataset.
 * @module
 */
import { mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { InvalidArgumentError, type Command } from 'commander';
import { DateTime } from 'luxon';
import pino from 'pino';
import { intOption, zoneOption } from '../lib/flags.js';
import { loadFleet, loadMeterKey } from '../lib/keyset.js';
import { createClock, parseSpeed, type Speed } from './hal/clock.js';
import { FileNvStore } from './hal/nv.js';
import type { Source } from './hal/source.js';
import { Meter } from './meter.js';
import { ReconnectingSerialLine } from './serial.js';
import { parseSyntheticSpec, SyntheticSource, writeGroundTruth, writeSyntheticCsv, type SyntheticOptions } from './sources/synthetic.js';
import { UmassSource } from './sources/umass.js';

function speedOption(v: string): Speed {
  try {
    return parseSpeed(v);
  } catch (e) {
    throw new InvalidArgumentError(`--speed: ${(e as Error).message}`);
  }
}

function seedOption(v: string): number {
  try {
    return parseSyntheticSpec(`synthetic:${v}`)!;
  } catch (e) {
    throw new InvalidArgumentError(`--seed: ${(e as Error).message}`);
  }
}

function meterIdOption(v: string): string {
  if (!/^[0-9a-f]{16}$/.test(v)) throw new InvalidArgumentError(`--meter must be a meter id (16 lower-case hex digits, the system title), got "${v}"`);
  return v;
}

/**
 * Parses `--start`: an ISO 8601 date or date-time, read in `tz` when it carries no offset; must fall on a
 * whole minute. Returns Unix seconds.
 * @example
 * ```ts
 * parseStart('2016-05-01', 'UTC'); // 1462060800
 * ```
 */
export function parseStart(text: string, tz: string): number {
  const dt = DateTime.fromISO(text, { zone: tz, setZone: true });
  if (!dt.isValid) throw new InvalidArgumentError(`--start must be an ISO 8601 date or date-time, got "${text}" (${dt.invalidReason})`);
  const t = dt.toSeconds();
  if (!Number.isInteger(t) || t % 60 !== 0) throw new InvalidArgumentError(`--start must fall on a whole minute, got "${text}"`);
  return t;
}

interface RunFlags {
  keys: string;
  meter: string;
  port: string;
  baud: number;
  source?: string;
  tz: string;
  speed: Speed;
  batch: number;
  nv?: string;
  start?: string;
  days?: number;
  groundTruth?: string;
  ackTimeout: number;
  window: number;
}

/** Builds the meter's source from a `--source` spec (a UMass CSV path or `synthetic:<seed>`). */
function openSource(spec: string, f: RunFlags): { source: Source; synthetic?: SyntheticOptions } {
  const seed = parseSyntheticSpec(spec);
  if (seed === undefined) {
    if (f.start !== undefined || f.days !== undefined || f.groundTruth !== undefined) {
      throw new InvalidArgumentError('--start, --days and --ground-truth apply to synthetic sources only');
    }
    return { source: new UmassSource(resolve(spec), { tz: f.tz }) };
  }
  // Without --start a synthetic meter starts at the current minute; pass --start for a reproducible series
  // (a restarted meter resumes from its NV store on the grid of the start it is given).
  const start = f.start !== undefined ? parseStart(f.start, f.tz) : Math.floor(Date.now() / 60_000) * 60;
  const synthetic = { seed, start, days: f.days, tz: f.tz };
  return { source: new SyntheticSource(synthetic), synthetic };
}

async function runMeter(f: RunFlags): Promise<void> {
  const log = pino({ name: 'meter' });
  const key = loadMeterKey(f.keys, f.meter);
  const entry = loadFleet(f.keys).meters.find((m) => m.meter === f.meter);
  if (!entry && f.source === undefined) throw new Error(`meter ${f.meter} is not in ${join(f.keys, 'fleet.json')}; pass --source`);
  const { source, synthetic } = openSource(f.source ?? entry!.source, f);
  if (f.groundTruth !== undefined) {
    if (synthetic?.days === undefined) throw new InvalidArgumentError('--ground-truth needs a synthetic source and --days');
    await writeGroundTruth(f.groundTruth, synthetic);
  }
  const nvPath = resolve(f.nv ?? join('.smartermeter', 'nv', `${f.meter}.cbor`));
  mkdirSync(dirname(nvPath), { recursive: true, mode: 0o700 });
  const line = new ReconnectingSerialLine({ path: f.port, baudRate: f.baud, log });
  const meter = await Meter.start({
    systemTitle: Buffer.from(f.meter, 'hex'),
    key,
    line,
    source,
    nv: new FileNvStore(nvPath),
    clock: createClock(f.speed),
    batch: f.batch,
    ackTimeoutMs: f.ackTimeout,
    window: f.window,
    log,
  });
  key.fill(0);
  const shutdown = async () => {
    await meter.stop();
    await line.close();
  };
  const onSignal = () => void shutdown().then(() => process.exit(0));
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const counters = await meter.done();
    log.info({ meter: meter.id, ...counters, registerWh: meter.registerWh }, 'meter finished: source exhausted, every frame acknowledged');
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await shutdown();
  }
}

/**
 * Adds `smartermeter meter` (run a meter) and `smartermeter meter synth` (write a synthetic UMass-format CSV).
 * @example
 * ```ts
 * registerMeterCommand(program);
 * // smartermeter meter --keys keys --meter 534d520000000001 --port /dev/ttyUSB0 --speed max
 * // smartermeter meter synth --seed 1 --start 2016-05-02 --days 2 --out apt-01.csv
 * ```
 */
export function registerMeterCommand(program: Command): void {
  const meter = program.command('meter').description('simulated smart meter: run one on a serial port, or write synthetic data');

  meter
    .command('run', { isDefault: true })
    .description('run a meter: read its source, send ciphered frames on the serial port until every one is acknowledged')
    .option('--keys <dir>', 'provisioned key directory (fleet.json, meters/<id>.key)')
    .option('--meter <id>', 'meter id (hex system title)', meterIdOption)
    .option('--port <path>', 'serial device, e.g. /dev/ttyUSB0')
    .option('--baud <n>', 'baud rate (8N1)', intOption('--baud', 50, 4_000_000), 115200)
    .option('--source <spec>', 'UMass-format CSV or synthetic:<seed> (default: the fleet entry)')
    .option('--tz <zone>', 'time zone of the CSV timestamps / the synthetic routine', zoneOption, 'UTC')
    .option('--speed <n|max>', 'simulated time per real time: 1, 60, ... or max', speedOption, 1 as Speed)
    .option('--batch <n>', 'readings per frame', intOption('--batch', 1, 60), 15)
    .option('--nv <file>', 'NV store file (default .smartermeter/nv/<id>.cbor)')
    .option('--start <iso>', 'synthetic source: first sample time (default: the current minute)')
    .option('--days <n>', 'synthetic source: days to generate (default: endless)', intOption('--days', 1, 36600))
    .option('--ground-truth <file>', 'synthetic source: write appliance and occupancy intervals as JSON')
    .option('--ack-timeout <ms>', 'retransmit a frame unacknowledged for this long', intOption('--ack-timeout', 1, 3_600_000), 1000)
    .option('--window <n>', 'most frames in flight', intOption('--window', 1, 65536), 32)
    .action(async (f: RunFlags) => {
      for (const flag of ['keys', 'meter', 'port'] as const) {
        if (f[flag] === undefined) throw new InvalidArgumentError(`--${flag} is required`);
      }
      await runMeter(f);
    });

  meter
    .command('synth')
    .description('write a UMass-format CSV (YYYY-MM-DD HH:MM:SS,kW; local time) from the synthetic household model')
    .requiredOption('--seed <n>', 'household seed (0..4294967295)', seedOption)
    .requiredOption('--start <iso>', 'first sample time (ISO 8601; read in --tz without an offset)')
    .requiredOption('--days <n>', 'days to generate', intOption('--days', 1, 36600))
    .requiredOption('--out <file>', 'CSV file to write')
    .option('--tz <zone>', 'time zone of the routine and of the CSV timestamps', zoneOption, 'UTC')
    .option('--ground-truth <file>', 'also write appliance and occupancy intervals as JSON')
    .action(async (f: { seed: number; start: string; days: number; out: string; tz: string; groundTruth?: string }) => {
      const options = { seed: f.seed, start: parseStart(f.start, f.tz), days: f.days, tz: f.tz };
      const lines = await writeSyntheticCsv(f.out, options);
      if (f.groundTruth !== undefined) await writeGroundTruth(f.groundTruth, options);
      console.log(`wrote ${lines} samples of synthetic:${f.seed} to ${f.out}${f.groundTruth ? ` and its ground truth to ${f.groundTruth}` : ''}`);
    });
}
