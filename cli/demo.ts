/**
 * `smartermeter demo` (what `npm start` runs): provisions a synthetic demo fleet, starts every component in
 * one process on embedded defaults (aedes, SQLite) and prints the URLs and the generated credentials.
 * Nothing is hard-coded: every password and activation code is generated for this run and printed once.
 *
 * The meters are live: they back-fill `--history` days up to now as fast as the system takes them, then
 * send each reading when the wall clock reaches it, so both apps show today and nothing later, and only
 * ended billing periods are billed. `--speed N` is a time-lapse instead (N simulated seconds per second,
 * from the start of the history on); both apps then say on every page that the time is simulated.
 * @module
 */
import { randomBytes } from 'node:crypto';
import { DEFAULT_K } from '../lib/policy.js';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { InvalidArgumentError, type Command } from 'commander';
import { DateTime } from 'luxon';
import { startMdmsWeb } from '../mdms/web/server.js';
import { generatePassword } from '../mdms/web/users.js';
import { parseTariff } from '../lib/tariff.js';
import { startUcs } from '../ucs/server.js';
import { householdTariff } from '../ucs/tariff.js';
import { loadFleet } from '../lib/keyset.js';
import { provision } from '../provision/keys.js';
import { intOption } from '../lib/flags.js';
import { createLogger } from '../lib/log.js';
import { preferPort } from '../lib/ports.js';
import { startSystem, type SystemHandle } from './system.js';
import { checkDp, pesIdOption } from './replay.js';
import { SyntheticModel } from '../firmware/sources/synthetic.js';
import { pvShareOption } from '../firmware/cli.js';
import { budgetOption, epsilonOption } from '../lib/flags.js';

export interface DemoOptions {
  dir: string;
  neighbourhoods: number;
  householdsPerNeighbourhood: number;
  k: number;
  /** `live` (default): history up to now at once, then real time; a number: a time-lapse from the history's start. */
  speed: number | 'live';
  /** Days of history before now (live) or of the time-lapse's start before now. Default 2. */
  historyDays?: number;
  days?: number;
  brokerPort: number;
  wsPort: number;
  mdmsPort: number;
  ucsPort: number;
  /** Share of the synthetic households with solar panels, 0..1 (default {@link DEMO_PV_SHARE}). */
  pvShare?: number;
  /** Differential privacy on neighbourhood releases, epsilon per release (default none). */
  dpEpsilon?: number;
  /** With `dpEpsilon`: most epsilon per neighbourhood per UTC day (default none). */
  dpBudget?: number;
  /** The PES's id, the topic of its policy statement (default `pes`). */
  pesId?: string;
  /**
   * The end-to-end mode (docs/paillier.md): meters encrypt under Paillier and seal their household's stream
   * themselves, the PES aggregates blind and the guardian co-decrypts.
   */
  e2e?: boolean;
}

/**
 * Share of the demo's households with solar panels: enough that a newcomer sees export (and net below zero at
 * noon on sunny days) in the MDMS demand chart and the household app.
 */
export const DEMO_PV_SHARE = 0.3;

/**
 * The demo's time-of-use tariff: the PES splits household energy by these bands, the MDMS prices them.
 * Evening peak 16:00-20:00 every day, day rate 07:00-16:00 and 20:00-23:00, night otherwise.
 */
const DEMO_SCHEDULE = {
  tz: 'UTC',
  bands: [
    { name: 'peak', rules: [{ days: [1, 2, 3, 4, 5, 6, 7], from: '16:00', to: '20:00' }] },
    { name: 'day', rules: [{ days: [1, 2, 3, 4, 5, 6, 7], from: '07:00', to: '16:00' }, { days: [1, 2, 3, 4, 5, 6, 7], from: '20:00', to: '23:00' }] },
    { name: 'night', default: true },
  ],
};
export const DEMO_TARIFF = parseTariff(DEMO_SCHEDULE);

/** The demo's prices, as the MDMS holds them and the household app prices its readings (from the demo's start). */
const demoPrices = (effectiveFrom: string) => ({
  currency: 'GBP',
  minorDigits: 2,
  tz: 'UTC',
  effectiveFrom,
  standingMilliPerDay: 53_350,
  vatBasisPoints: 500,
  bands: [
    // Feed-in paid per band (the households with panels get a credit line on their bills).
    { band: 'peak', priceMilliPerKwh: 38_000, feedInMilliPerKwh: 15_000 },
    { band: 'day', priceMilliPerKwh: 26_000, feedInMilliPerKwh: 8_000 },
    { band: 'night', priceMilliPerKwh: 14_000, feedInMilliPerKwh: 5_000 },
  ],
});

export interface DemoHandle {
  system: SystemHandle;
  /** Generated credentials, printed once by the command. */
  credentials: Record<string, string>;
  urls: Record<string, string>;
  /** Things the operator should know (a preferred port was busy, ...). */
  notes: string[];
  /** The banner both apps show in a time-lapse, or null when live. */
  banner: string | null;
  close(): Promise<void>;
}

/**
 * Starts the demo and returns once everything is up.
 * @example
 * ```ts
 * const demo = await startDemo({ dir, neighbourhoods: 3, householdsPerNeighbourhood: 20, k: 20, speed: 1440, brokerPort: 1883, wsPort: 8083, mdmsPort: 8080, ucsPort: 8081 });
 * ```
 */
export async function startDemo(o: DemoOptions): Promise<DemoHandle> {
  checkDp(o.dpEpsilon, o.dpBudget);
  mkdirSync(o.dir, { recursive: true, mode: 0o700 });
  const rows = ['meter,household,neighbourhood,source'];
  const panels = new Set<string>();
  for (let n = 1; n <= o.neighbourhoods; n++) {
    for (let h = 1; h <= o.householdsPerNeighbourhood; h++) {
      const id = `${String(n).padStart(2, '0')}${String(h).padStart(3, '0')}`;
      // Household ids are not guessable (security finding 7: a sequential id let anyone aim at a household):
      // 40 random bits, in the alphabet of topic ids.
      const hh = `hh-${randomBytes(5).toString('hex')}`;
      rows.push(`m${id},${hh},nb${String(n).padStart(2, '0')},synthetic:${n * 1000 + h}`);
      if (new SyntheticModel(n * 1000 + h, 'UTC', { share: o.pvShare ?? DEMO_PV_SHARE }).pv) panels.add(hh);
    }
  }
  const fleetCsv = join(o.dir, 'fleet.csv');
  writeFileSync(fleetCsv, rows.join('\n') + '\n');
  const keysDir = join(o.dir, 'keys');
  const fleet = await provision({ fleetCsv, out: keysDir, ...(o.e2e ? { e2e: true } : {}) });
  const broker = await preferPort(o.brokerPort);
  const ws = await preferPort(o.wsPort);
  // The history starts at midnight UTC `historyDays` ago: live, it is back-filled as fast as it goes.
  const start = DateTime.utc().startOf('day').minus({ days: o.historyDays ?? 2 }).toSeconds();
  const banner = o.speed === 'live' ? null : `Simulated time: this demo runs ${o.speed}x faster than real time, so its dates run ahead of the calendar.`;
  const system = await startSystem({
    keysDir,
    fleet,
    db: join(o.dir, 'mdms.sqlite'),
    stateDir: join(o.dir, 'state'),
    intervalS: 900,
    billing: '1d',
    k: o.k,
    latenessS: 1800,
    tz: 'UTC',
    tariff: DEMO_TARIFF,
    speed: o.speed,
    synthetic: { start, days: o.days, pv: { share: o.pvShare ?? DEMO_PV_SHARE } },
    ...(o.dpEpsilon !== undefined ? { dpEpsilon: o.dpEpsilon } : {}),
    ...(o.dpBudget !== undefined ? { dpBudget: o.dpBudget } : {}),
    ...(o.pesId !== undefined ? { pesId: o.pesId } : {}),
    brokerPort: broker.port,
    wsPort: ws.port,
    pool: true,
    ...(o.e2e ? { e2e: true } : {}),
    log: createLogger(undefined, { level: process.env.SM_LOG ?? 'warn' }),
  });
  const urls: Record<string, string> = { broker: system.mqttUrl };
  if (system.broker?.wsUrl) urls.brokerWebSocket = system.broker.wsUrl;
  const notes: string[] = [];
  const credentials: Record<string, string> = {};
  const closers: (() => Promise<void>)[] = [() => system.close()];

  const busy = (p: { holder?: string }) => `is busy${p.holder ? ` (${p.holder})` : ''}`;
  const mdmsPort = await preferPort(o.mdmsPort);
  if (!mdmsPort.preferred) notes.push(`port ${o.mdmsPort} ${busy(mdmsPort)}: the MDMS web app listens on ${mdmsPort.port} instead (--mdms-port)`);
  const mdms = await startMdmsWeb({ db: join(o.dir, 'mdms.sqlite'), fleet: loadFleet(keysDir), port: mdmsPort.port, host: '127.0.0.1', portFlag: '--mdms-port', banner });
  closers.unshift(() => mdms.close());
  const adminPassword = generatePassword();
  await mdms.web.users.create({ username: 'admin', roles: ['admin', 'analyst', 'billing'], password: adminPassword });
  const prices = demoPrices(DateTime.fromSeconds(start, { zone: 'utc' }).toISODate()!);
  await mdms.web.tariffs.create({ code: 'demo-tou', name: 'Demo time of use', ...prices }, 'admin');
  await mdms.web.settings.set({ defaultTariff: 'demo-tou' });
  urls.mdms = mdms.url;
  credentials['MDMS web login'] = `admin / ${adminPassword}`;

  const ucsPort = await preferPort(o.ucsPort);
  if (!ucsPort.preferred) notes.push(`port ${o.ucsPort} ${busy(ucsPort)}: the household app listens on ${ucsPort.port} instead (--ucs-port)`);
  const ucs = await startUcs({
    keysDir,
    dbPath: join(o.dir, 'ucs.sqlite'),
    brokerUrl: system.mqttUrl,
    brokerWsUrl: system.broker!.wsUrl!,
    port: ucsPort.port,
    host: '127.0.0.1',
    portFlag: '--ucs-port',
    // The same schedule, billing period and prices as the PES and the MDMS: the app's costs and bill preview
    // agree with the utility's bill.
    tariff: householdTariff({ ...DEMO_SCHEDULE, name: 'Demo time of use', billing: { period: '1d', tz: 'UTC' }, prices: [prices] }),
    ...(banner ? { banner } : {}),
    logger: createLogger('ucs', { level: process.env.SM_LOG ?? 'warn' }),
  });
  closers.unshift(() => ucs.close());
  urls.household = ucs.url;
  // Three households to try, one with solar panels among them if the fleet has any (its app shows export).
  const shown = [...fleet.households.filter((h) => panels.has(h)).slice(0, 1), ...fleet.households.filter((h) => !panels.has(h))].slice(0, 3);
  for (const hh of shown) {
    credentials[`household ${hh}${panels.has(hh) ? ' (solar panels)' : ''}`] = `activation code ${readFileSync(join(keysDir, 'households', `${hh}.activation`), 'utf8').trim()}`;
  }
  if (!broker.preferred) notes.push(`port ${o.brokerPort} ${busy(broker)}: the embedded broker listens on ${broker.port} instead (--broker-port)`);
  if (!ws.preferred) notes.push(`port ${o.wsPort} ${busy(ws)}: the broker's WebSocket listener is on ${ws.port} instead (--ws-port)`);
  return {
    system,
    urls,
    notes,
    banner,
    credentials,
    close: async () => {
      for (const c of closers) await c().catch(() => undefined);
    },
  };
}

/** Registers `smartermeter demo`. */
export function registerDemoCommand(program: Command): void {
  program
    .command('demo')
    .description('run the whole system on embedded defaults with a synthetic fleet: history back-filled, then live (npm start)')
    .option('--dir <dir>', 'where the demo keeps its keys, databases and state (default .smartermeter/demo-<time>)')
    .option('--neighbourhoods <n>', 'neighbourhoods', intOption('--neighbourhoods', 1, 50), 3)
    .option('--households <n>', 'households per neighbourhood', intOption('--households', 1, 500), 20)
    .option('--k <n>', 'fewest meters in a released neighbourhood aggregate', intOption('--k', 1, 100000), DEFAULT_K)
    .option('--history <n>', 'days of history before now, back-filled at once', intOption('--history', 0, 366), 2)
    .option('--speed <n>', 'time-lapse instead of live: simulated seconds per second from the start of the history (1440: a day per minute); both apps then say the time is simulated', intOption('--speed', 1, 1_000_000))
    .option('--days <n>', 'stop the meters after this many days from the start of the history (default: run until interrupted)', intOption('--days', 1, 3660))
    .option('--broker-port <n>', 'MQTT port (a busy port is replaced by a free one)', intOption('--broker-port', 0, 65535), 1883)
    .option('--ws-port <n>', 'MQTT-over-WebSocket port', intOption('--ws-port', 0, 65535), 8083)
    .option('--mdms-port <n>', 'MDMS web app port', intOption('--mdms-port', 0, 65535), 8080)
    .option('--ucs-port <n>', 'household app port', intOption('--ucs-port', 0, 65535), 8081)
    .option('--pv-share <0..1>', 'share of the synthetic households with solar panels, drawn per seed', pvShareOption, DEMO_PV_SHARE)
    .option('--dp-epsilon <e>', 'differential privacy: discrete Laplace noise on every neighbourhood release, epsilon per release (docs/privacy.md)', epsilonOption)
    .option('--dp-budget <e>', 'with --dp-epsilon: most epsilon spent per neighbourhood per UTC day; releases beyond it are held', budgetOption)
    .option('--pes-id <id>', "the PES's id, the topic of its policy statement sm/v1/agg/policy/<id>", pesIdOption, 'pes')
    .option('--e2e', 'end-to-end mode: meters encrypt under Paillier and seal their household\'s stream themselves; the PES aggregates blind and the guardian co-decrypts (docs/paillier.md)', false)
    .action(async (f) => {
      const dir = resolve(f.dir ?? join('.smartermeter', `demo-${DateTime.utc().toFormat("yyyyLLdd'T'HHmmss")}`));
      const speed: number | 'live' = f.speed ?? 'live';
      console.log(`Smarter Metering demo — provisioning ${f.neighbourhoods * f.households} synthetic households into ${dir} ...`);
      const demo = await startDemo({
        dir,
        neighbourhoods: f.neighbourhoods,
        householdsPerNeighbourhood: f.households,
        k: f.k,
        speed,
        historyDays: f.history,
        days: f.days,
        brokerPort: f.brokerPort,
        wsPort: f.wsPort,
        mdmsPort: f.mdmsPort,
        ucsPort: f.ucsPort,
        pvShare: f.pvShare,
        dpEpsilon: f.dpEpsilon,
        dpBudget: f.dpBudget,
        pesId: f.pesId,
        e2e: f.e2e,
      });
      for (const n of demo.notes) console.log(`note: ${n}`);
      console.log(Object.entries(demo.urls).map(([k, v]) => `  ${k.padEnd(18)} ${v}`).join('\n'));
      console.log('Generated for this run (the admin password is shown only here; the activation codes are also in keys/households/, mode 0600):');
      console.log(Object.entries(demo.credentials).map(([k, v]) => `  ${k.padEnd(18)} ${v}`).join('\n'));
      console.log('Register a household at the household app with its id and activation code; its readings then');
      console.log(
        f.e2e
          ? 'stream to your browser sealed by its meters under a key derived from the code (end-to-end mode: the PES sees no reading).'
          : 'stream to your browser, sealed to a key that never leaves it.',
      );
      console.log(
        speed === 'live'
          ? `The meters back-fill ${f.history} day${f.history === 1 ? '' : 's'} of history, then run live: a reading a minute, aggregates every 15 minutes (after 30 minutes' allowed lateness), bills for ended days.`
          : `Time-lapse: ${speed} simulated seconds per second from ${DateTime.utc().startOf('day').minus({ days: f.history }).toISODate()}; both apps say the time is simulated.`,
      );
      const pc = demo.system.pes.pes.counters;
      let caughtUp = false;
      const timer = setInterval(() => {
        const wm = demo.system.pes.pes.watermark;
        const when = wm ? `${DateTime.fromSeconds(wm, { zone: 'utc' }).toFormat('yyyy-LL-dd HH:mm')} UTC` : '—';
        // Live, the watermark trails the wall clock by the open interval: within an hour counts as caught up.
        const state = speed !== 'live' ? 'simulated time' : wm && wm > Date.now() / 1000 - 3600 ? 'live' : 'back-filling history';
        if (speed === 'live' && state === 'live' && !caughtUp) {
          caughtUp = true;
          console.log('history back-filled: from now on the meters run in real time');
        }
        console.log(`[${when} ${state}] readings folded ${pc.readings}, aggregates released ${pc.released}, suppressed ${pc.suppressed}, stored by MDMS ${demo.system.mdms.counters.stored}`);
      }, 10_000);
      let stopping = false;
      const stop = () => {
        if (stopping) return;
        stopping = true;
        clearInterval(timer);
        console.log('stopping ...');
        void demo.close().then(
          () => process.exit(0),
          (e: unknown) => {
            console.error(`smartermeter: demo did not stop cleanly: ${(e as Error).message}`);
            process.exit(1);
          },
        );
      };
      process.on('SIGINT', stop);
      process.on('SIGTERM', stop);
      if (f.days !== undefined) {
        await demo.system.metersDone();
        await demo.system.drain();
        console.log(`all ${f.days} days sent; services stay up until Ctrl-C`);
      }
    });
}
