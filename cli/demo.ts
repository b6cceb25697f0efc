/**
 * `smartermeter demo` (what `npm start` runs): provisions a synthetic demo fleet, starts every component in
 * one process on embedded defaults (aedes, SQLite), replays accelerated so that a day passes in about a
 * minute, and prints the URLs and the generated credentials. Nothing is hard-coded: every password and
 * activation code is generated for this run and printed once.
 * @module
 */
import { randomBytes } from 'node:crypto';
import { DEFAULT_K } from '../lib/policy.js';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { DateTime } from 'luxon';
import { pino } from 'pino';
import { startMdmsWeb } from '../mdms/web/server.js';
import { generatePassword } from '../mdms/web/users.js';
import { parseTariff } from '../lib/tariff.js';
import { startUcs } from '../ucs/server.js';
import { loadFleet } from '../lib/keyset.js';
import { provision } from '../provision/keys.js';
import { intOption } from '../lib/flags.js';
import { startSystem, type SystemHandle } from './system.js';
import { checkDp, pesIdOption } from './replay.js';
import { SyntheticModel } from '../firmware/sources/synthetic.js';
import { pvShareOption } from '../firmware/cli.js';
import { budgetOption, epsilonOption } from '../pes/cli.js';

/** `port` if it is free on 127.0.0.1, else a free one. */
export async function preferPort(port: number): Promise<{ port: number; preferred: boolean }> {
  const tryListen = (p: number) =>
    new Promise<number | null>((res) => {
      const s = createServer();
      s.once('error', () => res(null));
      s.listen(p, '127.0.0.1', () => {
        const got = (s.address() as { port: number }).port;
        s.close(() => res(got));
      });
    });
  const got = await tryListen(port);
  if (got !== null) return { port: got, preferred: true };
  return { port: (await tryListen(0))!, preferred: false };
}

export interface DemoOptions {
  dir: string;
  neighbourhoods: number;
  householdsPerNeighbourhood: number;
  k: number;
  speed: number;
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
export const DEMO_TARIFF = parseTariff({
  tz: 'UTC',
  bands: [
    { name: 'peak', rules: [{ days: [1, 2, 3, 4, 5, 6, 7], from: '16:00', to: '20:00' }] },
    { name: 'day', rules: [{ days: [1, 2, 3, 4, 5, 6, 7], from: '07:00', to: '16:00' }, { days: [1, 2, 3, 4, 5, 6, 7], from: '20:00', to: '23:00' }] },
    { name: 'night', default: true },
  ],
});

export interface DemoHandle {
  system: SystemHandle;
  /** Generated credentials, printed once by the command. */
  credentials: Record<string, string>;
  urls: Record<string, string>;
  /** Things the operator should know (a preferred port was busy, ...). */
  notes: string[];
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
  const fleet = await provision({ fleetCsv, out: keysDir });
  const broker = await preferPort(o.brokerPort);
  const ws = await preferPort(o.wsPort);
  // Two days ago at midnight UTC: the first two days pass in about two minutes at the default speed.
  const start = DateTime.utc().startOf('day').minus({ days: 2 }).toSeconds();
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
    log: pino({ level: process.env.SM_LOG ?? 'warn' }),
  });
  const urls: Record<string, string> = { broker: system.mqttUrl };
  if (system.broker?.wsUrl) urls.brokerWebSocket = system.broker.wsUrl;
  const notes: string[] = [];
  const credentials: Record<string, string> = {};
  const closers: (() => Promise<void>)[] = [() => system.close()];

  const mdmsPort = await preferPort(o.mdmsPort);
  if (!mdmsPort.preferred) notes.push(`port ${o.mdmsPort} is busy: the MDMS web app listens on ${mdmsPort.port} instead`);
  const mdms = await startMdmsWeb({ db: join(o.dir, 'mdms.sqlite'), fleet: loadFleet(keysDir), port: mdmsPort.port, host: '127.0.0.1' });
  closers.unshift(() => mdms.close());
  const adminPassword = generatePassword();
  await mdms.web.users.create({ username: 'admin', roles: ['admin', 'analyst', 'billing'], password: adminPassword });
  await mdms.web.tariffs.create(
    {
      code: 'demo-tou',
      name: 'Demo time of use',
      currency: 'GBP',
      minorDigits: 2,
      tz: 'UTC',
      effectiveFrom: DateTime.fromSeconds(start, { zone: 'utc' }).toISODate()!,
      standingMilliPerDay: 53_350,
      vatBasisPoints: 500,
      bands: [
        // Feed-in paid per band (the households with panels get a credit line on their bills).
        { band: 'peak', priceMilliPerKwh: 38_000, feedInMilliPerKwh: 15_000 },
        { band: 'day', priceMilliPerKwh: 26_000, feedInMilliPerKwh: 8_000 },
        { band: 'night', priceMilliPerKwh: 14_000, feedInMilliPerKwh: 5_000 },
      ],
    },
    'admin',
  );
  await mdms.web.settings.set({ defaultTariff: 'demo-tou' });
  urls.mdms = mdms.url;
  credentials['MDMS web login'] = `admin / ${adminPassword}`;

  const ucsPort = await preferPort(o.ucsPort);
  if (!ucsPort.preferred) notes.push(`port ${o.ucsPort} is busy: the household app listens on ${ucsPort.port} instead`);
  const ucs = await startUcs({
    keysDir,
    dbPath: join(o.dir, 'ucs.sqlite'),
    brokerUrl: system.mqttUrl,
    brokerWsUrl: system.broker!.wsUrl!,
    port: ucsPort.port,
    host: '127.0.0.1',
    logger: pino({ level: process.env.SM_LOG ?? 'warn' }),
  });
  closers.unshift(() => ucs.close());
  urls.household = ucs.url;
  // Three households to try, one with solar panels among them if the fleet has any (its app shows export).
  const shown = [...fleet.households.filter((h) => panels.has(h)).slice(0, 1), ...fleet.households.filter((h) => !panels.has(h))].slice(0, 3);
  for (const hh of shown) {
    credentials[`household ${hh}${panels.has(hh) ? ' (solar panels)' : ''}`] = `activation code ${readFileSync(join(keysDir, 'households', `${hh}.activation`), 'utf8').trim()}`;
  }
  if (!broker.preferred) notes.push(`port ${o.brokerPort} is busy (Mosquitto?): the embedded broker listens on ${broker.port} instead`);
  if (!ws.preferred) notes.push(`port ${o.wsPort} is busy: the broker's WebSocket listener is on ${ws.port} instead`);
  return {
    system,
    urls,
    notes,
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
    .description('run the whole system on embedded defaults with a synthetic fleet, a day per minute (npm start)')
    .option('--dir <dir>', 'where the demo keeps its keys, databases and state (default .smartermeter/demo-<time>)')
    .option('--neighbourhoods <n>', 'neighbourhoods', intOption('--neighbourhoods', 1, 50), 3)
    .option('--households <n>', 'households per neighbourhood', intOption('--households', 1, 500), 20)
    .option('--k <n>', 'fewest meters in a released neighbourhood aggregate', intOption('--k', 1, 100000), DEFAULT_K)
    .option('--speed <n>', 'simulated seconds per second (1440: a day per minute)', intOption('--speed', 1, 1_000_000), 1440)
    .option('--days <n>', 'stop the meters after this many simulated days (default: run until interrupted)', intOption('--days', 1, 3660))
    .option('--broker-port <n>', 'MQTT port (a busy port is replaced by a free one)', intOption('--broker-port', 0, 65535), 1883)
    .option('--ws-port <n>', 'MQTT-over-WebSocket port', intOption('--ws-port', 0, 65535), 8083)
    .option('--mdms-port <n>', 'MDMS web app port', intOption('--mdms-port', 0, 65535), 8080)
    .option('--ucs-port <n>', 'household app port', intOption('--ucs-port', 0, 65535), 8081)
    .option('--pv-share <0..1>', 'share of the synthetic households with solar panels, drawn per seed', pvShareOption, DEMO_PV_SHARE)
    .option('--dp-epsilon <e>', 'differential privacy: discrete Laplace noise on every neighbourhood release, epsilon per release (docs/privacy.md)', epsilonOption)
    .option('--dp-budget <e>', 'with --dp-epsilon: most epsilon spent per neighbourhood per UTC day; releases beyond it are held', budgetOption)
    .option('--pes-id <id>', "the PES's id, the topic of its policy statement sm/v1/agg/policy/<id>", pesIdOption, 'pes')
    .action(async (f) => {
      const dir = resolve(f.dir ?? join('.smartermeter', `demo-${DateTime.utc().toFormat("yyyyLLdd'T'HHmmss")}`));
      console.log(`Smarter Metering demo — provisioning ${f.neighbourhoods * f.households} synthetic households into ${dir} ...`);
      const demo = await startDemo({
        dir,
        neighbourhoods: f.neighbourhoods,
        householdsPerNeighbourhood: f.households,
        k: f.k,
        speed: f.speed,
        days: f.days,
        brokerPort: f.brokerPort,
        wsPort: f.wsPort,
        mdmsPort: f.mdmsPort,
        ucsPort: f.ucsPort,
        pvShare: f.pvShare,
        dpEpsilon: f.dpEpsilon,
        dpBudget: f.dpBudget,
        pesId: f.pesId,
      });
      for (const n of demo.notes) console.log(`note: ${n}`);
      console.log(Object.entries(demo.urls).map(([k, v]) => `  ${k.padEnd(18)} ${v}`).join('\n'));
      console.log('Generated for this run (the admin password is shown only here; the activation codes are also in keys/households/, mode 0600):');
      console.log(Object.entries(demo.credentials).map(([k, v]) => `  ${k.padEnd(18)} ${v}`).join('\n'));
      console.log('Register a household at the household app with its id and activation code; its readings then');
      console.log('stream to your browser, sealed to a key that never leaves it.');
      const pc = demo.system.pes.pes.counters;
      const timer = setInterval(() => {
        const wm = demo.system.pes.pes.watermark;
        console.log(
          `[${wm ? new Date(wm * 1000).toISOString().slice(0, 16).replace('T', ' ') : '—'}] readings folded ${pc.readings}, aggregates released ${pc.released}, ` +
            `suppressed ${pc.suppressed}, stored by MDMS ${demo.system.mdms.counters.stored}`,
        );
      }, 10_000);
      const stop = () => {
        clearInterval(timer);
        console.log('stopping ...');
        void demo.close().then(() => process.exit(0));
      };
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      if (f.days !== undefined) {
        await demo.system.metersDone();
        await demo.system.drain();
        console.log('all simulated days replayed; services stay up until Ctrl-C');
      }
    });
}
