/**
 * `smartermeter meter ...`: run a simulated meter on a serial port, or write a synthetic dataset.
 * @module
 */
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { DateTime } from 'luxon';
import type { Logger } from 'pino';
import { createLogger } from '../lib/log.js';
import { durationOption, intOption, meterIdOption, parseDuration, zoneOption } from '../lib/flags.js';
import { loadFleet, loadMeterKek, loadMeterKey, loadMeterPaillierKey, loadMeterStreamKey, METER_PAILLIER_PUBLIC, readFile } from '../lib/keyset.js';
import { FLAT_TARIFF, loadTariff } from '../lib/tariff.js';
import type { MeterOptions } from './meter.js';
import { createClock, parseSpeed, type Speed } from './hal/clock.js';
import { FileNvStore } from './hal/nv.js';
import type { Source } from './hal/source.js';
import { Meter, MeterStoppedError } from './meter.js';
import { ReconnectingSerialLine } from './serial.js';
import { openSource } from './sources/open.js';
import type { P1Keys } from './sources/p1/dlms.js';
import { loadP1KeyFile, parseP1Keys } from './sources/p1/keys.js';
import { parseP1Spec } from './sources/p1/source.js';
import { DIALECTS, isDialect, type Dialect, type SerialSettings } from './sources/p1/telegram.js';
import { parseSyntheticSource, parseSyntheticSpec, writeGroundTruth, writeSyntheticCsv, type SyntheticOptions } from './sources/synthetic.js';

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

/**
 * Parses `--pv-share`: the share of synthetic households with solar panels, a decimal in 0..1.
 * @example
 * ```ts
 * pvShareOption('0.3'); // 0.3
 * ```
 */
export function pvShareOption(v: string): number {
  const share = Number(v);
  if (!/^(0(\.\d{1,6})?|1(\.0{1,6})?|\.\d{1,6})$/.test(v) || !(share >= 0 && share <= 1)) throw new InvalidArgumentError(`--pv-share must be a decimal in 0..1, got "${v}"`);
  return share;
}

/**
 * Parses `--interval`: the end-to-end mode's aggregation interval (the PES's and the guardian's), 1m .. 1d,
 * dividing a day. Returns seconds.
 * @example
 * ```ts
 * intervalOption('15m'); // 900
 * ```
 */
export function intervalOption(v: string): number {
  const s = parseDuration(v, '--interval');
  if (s < 60 || s > 86400 || 86400 % s !== 0) throw new InvalidArgumentError(`--interval must be between 1m and 1d and divide a day (e.g. 5m, 15m, 1h), got "${v}"`);
  return s;
}

function dialectOption(v: string): Dialect | 'auto' {
  if (v !== 'auto' && !isDialect(v)) throw new InvalidArgumentError(`--p1-dialect must be auto or one of ${Object.keys(DIALECTS).join(', ')}, got "${v}"`);
  return v;
}

/**
 * Parses `--p1-serial`: `<baud>,<7E1|8N1>`.
 * @example
 * ```ts
 * p1SerialOption('9600,7E1'); // { baudRate: 9600, dataBits: 7, parity: 'even', stopBits: 1 }
 * ```
 */
export function p1SerialOption(v: string): SerialSettings {
  const m = /^(\d{3,7}),(7E1|8N1)$/.exec(v);
  const baudRate = Number(m?.[1]);
  if (!m || baudRate < 300 || baudRate > 4_000_000) throw new InvalidArgumentError(`--p1-serial must look like 115200,8N1 or 9600,7E1, got "${v}"`);
  return m[2] === '7E1' ? { baudRate, dataBits: 7, parity: 'even', stopBits: 1 } : { baudRate, dataBits: 8, parity: 'none', stopBits: 1 };
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
  pvShare?: number;
  ackTimeout: number;
  window: number;
  portWait: number;
  p1Dialect: Dialect | 'auto';
  p1Serial?: SerialSettings;
  p1Key?: string;
  p1AuthKey?: string;
  p1KeyFile?: string;
  keyTransfer?: string;
  e2e?: boolean;
  interval?: number;
  tariff?: string;
}

/**
 * Builds the meter's source from a `--source` spec (a UMass CSV path, `synthetic:<seed>` or `p1:<port or
 * capture>`) with the flags that apply to it.
 */
function meterSource(spec: string, f: RunFlags, log: Logger): { source: Source; synthetic?: SyntheticOptions } {
  const parsed = parseSyntheticSource(spec);
  if (parsed === undefined && (f.start !== undefined || f.days !== undefined || f.groundTruth !== undefined || f.pvShare !== undefined)) {
    throw new InvalidArgumentError('--start, --days, --ground-truth and --pv-share apply to synthetic sources only');
  }
  const isP1 = parseP1Spec(spec) !== undefined;
  if (!isP1 && (f.p1Dialect !== 'auto' || f.p1Serial !== undefined || f.p1Key !== undefined || f.p1AuthKey !== undefined || f.p1KeyFile !== undefined)) {
    throw new InvalidArgumentError('--p1-* flags apply to p1: sources only');
  }
  // Without --start a synthetic meter starts at the current minute; pass --start for a reproducible series
  // (a restarted meter resumes from its NV store on the grid of the start it is given).
  const start = f.start !== undefined ? parseStart(f.start, f.tz) : Math.floor(Date.now() / 60_000) * 60;
  const share = f.pvShare === undefined ? {} : { pv: { share: f.pvShare } };
  const source = openSource(spec, { tz: f.tz, synthetic: { start, days: f.days, ...share }, p1: isP1 ? { dialect: f.p1Dialect, serial: f.p1Serial, keys: p1Keys(f), log, openTimeoutMs: f.portWait * 1000 } : undefined });
  // The same household as the source's, for its ground truth: the spec's panels override the share.
  const pv = parsed?.kWp === undefined ? share : { pv: { ...share.pv, kWp: parsed.kWp } };
  const synthetic = parsed === undefined ? undefined : { seed: parsed.seed, start, days: f.days, tz: f.tz, ...pv };
  return { source, synthetic };
}

function p1Keys(f: RunFlags): P1Keys | undefined {
  if (f.p1KeyFile !== undefined) {
    if (f.p1Key !== undefined || f.p1AuthKey !== undefined) throw new InvalidArgumentError('--p1-key-file and --p1-key/--p1-auth-key exclude each other');
    return loadP1KeyFile(f.p1KeyFile);
  }
  if ((f.p1Key === undefined) !== (f.p1AuthKey === undefined)) throw new InvalidArgumentError('--p1-key and --p1-auth-key go together');
  if (f.p1Key === undefined) return undefined;
  try {
    return parseP1Keys(f.p1Key, f.p1AuthKey!);
  } catch (e) {
    throw new InvalidArgumentError(`--p1-key/--p1-auth-key: ${(e as Error).message}`);
  }
}

/**
 * The end-to-end mode's settings from `--e2e`, `--interval` and `--tariff`: the fleet's Paillier public key
 * (meters/paillier.pub, from `provision --e2e`) with its fixed-base table built once for this process, and the
 * household stream key (meters/<id>.stream) when provisioning gave the meter one.
 */
function e2eMode(f: RunFlags, household: string | undefined): MeterOptions['e2e'] {
  if (!f.e2e) {
    if (f.interval !== undefined || f.tariff !== undefined) throw new InvalidArgumentError('--interval and --tariff apply to --e2e only');
    return undefined;
  }
  if (!existsSync(join(f.keys, METER_PAILLIER_PUBLIC))) throw new InvalidArgumentError(`--e2e needs ${join(f.keys, METER_PAILLIER_PUBLIC)}: provision the fleet with --e2e`);
  const tariff = f.tariff === undefined ? FLAT_TARIFF : loadTariff(f.tariff);
  // The household stream sealed here (docs/protocol.md §11.5), when provisioning gave this meter its key.
  const streamFile = join(f.keys, 'meters', `${f.meter}.stream`);
  const stream = household !== undefined && existsSync(streamFile) ? { key: loadMeterStreamKey(f.keys, f.meter), systemTitle: Buffer.from(f.meter, 'hex'), household } : undefined;
  return { publicKey: loadMeterPaillierKey(f.keys).precompute(), intervalS: f.interval ?? 900, tariff, ...(stream ? { stream } : {}) };
}

async function runMeter(f: RunFlags): Promise<void> {
  const log = createLogger('meter');
  const key = loadMeterKey(f.keys, f.meter);
  const kek = existsSync(join(f.keys, 'meters', `${f.meter}.kek`)) ? loadMeterKek(f.keys, f.meter) : undefined;
  const transfer = f.keyTransfer === undefined ? undefined : readFile(f.keyTransfer, 'key transfer');
  const entry = loadFleet(f.keys).meters.find((m) => m.meter === f.meter);
  if (!entry && f.source === undefined) throw new Error(`meter ${f.meter} is not in ${join(f.keys, 'fleet.json')}; pass --source`);
  const { source, synthetic } = meterSource(f.source ?? entry!.source, f, log.child({ meter: f.meter }));
  if (f.groundTruth !== undefined) {
    if (synthetic?.days === undefined) throw new InvalidArgumentError('--ground-truth needs a synthetic source and --days');
    await writeGroundTruth(f.groundTruth, synthetic);
  }
  const e2e = e2eMode(f, entry?.household);
  const nvPath = resolve(f.nv ?? join('.smartermeter', 'nv', `${f.meter}.cbor`));
  mkdirSync(dirname(nvPath), { recursive: true, mode: 0o700 });
  const line = new ReconnectingSerialLine({ path: f.port, baudRate: f.baud, log, openTimeoutMs: f.portWait * 1000 });
  // A device that is absent or mistyped is an error after --port-wait, not an endless retry loop; once it
  // has opened, it is reopened for as long as it takes (an unplugged adapter).
  await line.opened();
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
    ...(kek ? { kek } : {}),
    ...(e2e ? { e2e } : {}),
  });
  key.fill(0);
  kek?.fill(0);
  if (transfer) {
    const r = await meter.acceptKeyTransfer(transfer);
    if (r === 'refused') log.error({ file: f.keyTransfer }, 'key transfer refused (see the warning above); the meter keeps its key');
    else log.info({ file: f.keyTransfer, generation: meter.keyGeneration }, r === 'accepted' ? 'key transfer accepted: the meter switches once its frames under the old key are acknowledged' : 'key transfer already held');
  }
  const shutdown = async () => {
    await meter.stop();
    await line.close();
  };
  const onSignal = () => void shutdown().then(() => process.exit(0));
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const counters = await meter.done().catch((e: Error) => {
      if (e instanceof MeterStoppedError) return undefined; // a signal stopped it: a clean end
      throw e;
    });
    if (counters) log.info({ meter: meter.id, ...counters, registerWh: meter.registerWh }, 'meter finished: source exhausted, every frame acknowledged');
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
    .option('--keys <dir>', 'provisioned key directory (fleet.json, meters/<id>.key) (required)')
    .option('--meter <id>', 'meter id (hex system title) (required)', meterIdOption)
    .option('--port <path>', 'serial device, e.g. /dev/ttyUSB0 (required)')
    .option('--baud <n>', 'baud rate (8N1)', intOption('--baud', 50, 4_000_000), 115200)
    .option('--source <spec>', 'UMass-format CSV, synthetic:<seed>[:pv=<kWp>], or p1:<serial device or capture file> (default: the fleet entry)')
    .option('--tz <zone>', 'time zone of the CSV timestamps / the synthetic routine / the P1 meter clock', zoneOption, 'UTC')
    .option('--p1-dialect <name>', `p1 source: auto or ${Object.keys(DIALECTS).join(', ')} (sets serial settings; CRC required from dsmr4 on)`, dialectOption, 'auto')
    .option('--p1-serial <baud,format>', 'p1 source: serial settings overriding the dialect, e.g. 9600,7E1 (default: the dialect\'s; auto: 115200,8N1)', p1SerialOption)
    .option('--p1-key-file <file>', 'p1 source, encrypted (Luxembourg): JSON {"key","authKey"} in hex, mode 0600')
    .option('--p1-key <hex>', 'p1 source, encrypted: the 16-byte key (prefer --p1-key-file: flags show in ps)')
    .option('--p1-auth-key <hex>', 'p1 source, encrypted: the 16-byte authentication key')
    .option('--speed <n|max>', 'simulated time per real time: 1, 60, ... or max; live: the wall clock (history up to now at once, then real time)', speedOption, 1 as Speed)
    .option('--batch <n>', 'readings per frame', intOption('--batch', 1, 60), 15)
    .option('--nv <file>', 'NV store file (default .smartermeter/nv/<id>.cbor)')
    .option('--start <iso>', 'synthetic source: first sample time (default: the current minute)')
    .option('--days <n>', 'synthetic source: days to generate (default: endless)', intOption('--days', 1, 36600))
    .option('--ground-truth <file>', 'synthetic source: write appliance and occupancy intervals (and PV production) as JSON')
    .option('--pv-share <0..1>', 'synthetic source: share of households with solar panels, drawn per seed (default 0; synthetic:<seed>:pv=<kWp> sets one)', pvShareOption)
    .option('--ack-timeout <ms>', 'retransmit a frame unacknowledged for this long', intOption('--ack-timeout', 1, 3_600_000), 1000)
    .option('--window <n>', 'most frames in flight', intOption('--window', 1, 65536), 32)
    .addOption(new Option('--port-wait <duration>', 'give up if the serial port (and a p1: device) has not opened within this time, e.g. 30s, 5m').argParser(durationOption('--port-wait')).default(30, '30s'))
    .option('--e2e', 'end-to-end mode: frames carry Paillier snapshots of the band registers under the fleet\'s key (meters/paillier.pub from provision --e2e) instead of readings')
    .option('--interval <duration>', '--e2e: the aggregation interval, as the PES\'s and the guardian\'s (default 15m)', intervalOption)
    .option('--tariff <file.json>', '--e2e: the time-of-use bands, as the PES\'s and the guardian\'s (default: one flat band)')
    .option('--key-transfer <file>', 'a key transfer from `provision rotate` (meters/<id>.transfer), applied at boot as a technician\'s tool would')
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
