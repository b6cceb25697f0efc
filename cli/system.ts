/**
 * The whole system in one process: embedded broker, MDMS ingest, PES, one gateway per neighbourhood and one
 * simulated meter per fleet entry on cross-connected mock serial lines. Used by `replay` (as fast as it goes)
 * and `demo` (accelerated), and by the end-to-end tests. Every component is the real one, talking over the
 * real broker with its own credentials; only the serial cable is simulated.
 * @module
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { pino, type Logger } from 'pino';
import { startBroker, type BrokerHandle } from '../broker/broker.js';
import { loadUsers } from '../lib/broker-users.js';
import { createClock, type Clock, type Speed } from '../firmware/hal/clock.js';
import { openCrossedMockPair, type CrossedPair } from '../firmware/hal/crossed-mock.js';
import { streamLine } from '../firmware/hal/line.js';
import { FileNvStore, MemoryNvStore } from '../firmware/hal/nv.js';
import type { Source } from '../firmware/hal/source.js';
import { Meter } from '../firmware/meter.js';
import { openSource, type OpenSourceOptions } from '../firmware/sources/open.js';
import type { P1SourceOptions } from '../firmware/sources/p1/source.js';
import { startGateway, type GatewayHandle } from '../gateway/gateway.js';
import { startMdmsIngest, type MdmsIngest } from '../mdms/ingest.js';
import { auditRefusals } from '../mdms/refusal-audit.js';
import { isPostgresUrl, openStoreOn } from '../mdms/store/index.js';
import { openPostgres } from '../mdms/store/postgres.js';
import { openSqlite } from '../mdms/store/sqlite.js';
import { openWebDb } from '../mdms/web/db.js';
import type { Store } from '../mdms/store/types.js';
import { startPesService, type PesService } from '../pes/mqtt.js';
import type { Tariff } from '../lib/tariff.js';
import type { MeterInfo } from '../pes/pes.js';
import { brokerUsersPath, loadCredentials, loadMdmsKey, loadPesVerifyKey, loadMeterKey, loadPesKeys, type Fleet } from '../lib/keyset.js';

export interface SystemOptions {
  keysDir: string;
  fleet: Fleet;
  /** MDMS database: a SQLite path or a postgres:// URL. */
  db: string;
  /** Where the PES state, gateway queues and meter NV stores live. */
  stateDir: string;
  intervalS: number;
  billing: string;
  k: number;
  /** The PES's differencing guard (docs/privacy.md); default on. */
  membershipGuard?: boolean;
  /** Differential privacy on neighbourhood releases (docs/privacy.md); default none. */
  dpEpsilon?: number;
  latenessS: number;
  tz: string;
  tariff?: Tariff;
  speed: Speed;
  /** Synthetic sources: first sample (Unix s), length in days (omitted = endless), solar panels (default none). */
  synthetic: NonNullable<OpenSourceOptions['synthetic']>;
  /** P1 sources (`p1:<capture>` in the fleet file): dialect and serial settings; the zone is `tz`. */
  p1?: Omit<P1SourceOptions, 'tz' | 'log'>;
  /** Readings per frame. Default 15. */
  batch?: number;
  /** External broker URL; default: an embedded broker on a free port. */
  mqttUrl?: string;
  /** Embedded broker ports (0 = free). */
  brokerPort?: number;
  wsPort?: number | false;
  /**
   * Keep meter NV stores in memory (no fsync per frame): for replays whose state is thrown away anyway.
   * Default false: each meter persists to `<stateDir>/nv/<meter>.cbor` before every transmission.
   */
  volatileMeters?: boolean;
  /** Use the PES's background randomiser pool. */
  pool?: boolean;
  log?: Logger;
}

export interface SystemHandle {
  broker: BrokerHandle | null;
  mqttUrl: string;
  store: Store;
  mdms: MdmsIngest;
  pes: PesService;
  gateways: GatewayHandle[];
  meters: Meter[];
  /** Resolves when every meter's source is exhausted and every frame acknowledged. */
  metersDone(): Promise<void>;
  /** Waits until the PES has taken every frame the meters sealed, then closes all windows and waits for the MDMS. */
  drain(opts?: { stallMs?: number; onProgress?: () => void }): Promise<void>;
  close(): Promise<void>;
}

/**
 * Keeps meters within `slackS` of event time of each other, as real meters are by their wall clocks, while
 * pacing each at `speed`. Without it one fast meter drags the PES watermark hours ahead of the others and their
 * readings arrive after their windows closed (revisions, and windows closed below k). Each meter gets a clock
 * whose `waitUntil(t)` returns once every unfinished meter has reached `t - slackS`; a meter whose source is
 * exhausted is finished and no longer holds anyone back.
 * @example
 * ```ts
 * const step = lockstep(300); const clock = step.clock(); const source = step.track(src, clock);
 * ```
 */
export function lockstep(slackS: number, speed: Speed): { clock(): Clock; track(source: Source, clock: Clock): Source } {
  const progress: number[] = [];
  const waiters: { need: number; resolve: () => void }[] = [];
  let min = -Infinity;
  const update = () => {
    min = progress.reduce((a, b) => Math.min(a, b), Infinity);
    for (let i = waiters.length - 1; i >= 0; i--) {
      if (waiters[i]!.need <= min) waiters.splice(i, 1)[0]!.resolve();
    }
  };
  const slots = new WeakMap<Clock, number>();
  return {
    clock() {
      const slot = progress.push(-Infinity) - 1;
      const paced = createClock(speed); // wall-clock pacing at the chosen speed ('max': none)
      const c: Clock = {
        speed,
        nowMs: () => paced.nowMs(),
        start: (t) => {
          paced.start(t);
          progress[slot] = Math.max(progress[slot]!, t);
          update();
        },
        async waitUntil(t, signal) {
          await paced.waitUntil(t, signal);
          progress[slot] = Math.max(progress[slot]!, t);
          update();
          if (t - slackS <= min) return;
          await new Promise<void>((resolve, reject) => {
            const onAbort = () => reject(signal!.reason);
            waiters.push({
              need: t - slackS,
              resolve: () => {
                signal?.removeEventListener('abort', onAbort);
                resolve();
              },
            });
            signal?.addEventListener('abort', onAbort, { once: true });
          });
        },
      };
      slots.set(c, slot);
      return c;
    },
    track(source, clock) {
      const slot = slots.get(clock)!;
      return {
        name: source.name,
        async *samples(from) {
          yield* source.samples(from);
          progress[slot] = Infinity;
          update();
        },
      };
    },
  };
}

async function until(check: () => boolean, what: () => string, stallMs: number, progress: () => number, tick?: () => void): Promise<void> {
  let last = progress();
  let lastChange = Date.now();
  while (!check()) {
    await new Promise((r) => setTimeout(r, 50));
    tick?.();
    const p = progress();
    if (p !== last) {
      last = p;
      lastChange = Date.now();
    } else if (Date.now() - lastChange > stallMs) {
      throw new Error(`no progress for ${stallMs / 1000} s while waiting for ${what()}`);
    }
  }
}

/**
 * Starts every component of the system in this process.
 * @example
 * ```ts
 * const sys = await startSystem({ keysDir, fleet: loadFleet(keysDir), db: 'out.sqlite', stateDir, ... });
 * await sys.metersDone(); await sys.drain(); await sys.close();
 * ```
 */
export async function startSystem(o: SystemOptions): Promise<SystemHandle> {
  const log = o.log ?? pino({ level: process.env.SM_LOG ?? 'silent' });
  mkdirSync(join(o.stateDir, 'nv'), { recursive: true, mode: 0o700 });
  const closers: (() => Promise<void>)[] = [];
  const close = async () => {
    for (const c of closers.reverse()) await c().catch((e) => log.warn({ err: (e as Error).message }, 'close failed'));
  };
  try {
    let broker: BrokerHandle | null = null;
    let url = o.mqttUrl;
    if (!url) {
      broker = await startBroker({
        users: loadUsers(brokerUsersPath(o.keysDir)),
        port: o.brokerPort ?? 0,
        wsPort: o.wsPort ?? false,
        stateFile: join(o.stateDir, 'broker.sqlite'),
        logger: log.child({ c: 'broker' }),
      });
      closers.push(() => broker!.close());
      url = broker.url;
    }
    const creds = (user: string) => (o.mqttUrl && !existsSync(join(o.keysDir, 'credentials', `${user}.json`)) ? {} : loadCredentials(o.keysDir, user));

    const driver = isPostgresUrl(o.db) ? openPostgres(o.db) : openSqlite(o.db);
    const store = await openStoreOn(driver);
    closers.push(() => store.close());
    const audit = (await openWebDb(driver)).audit;
    // The MDMS enforces the PES's own k and the fleet (one setting: o.k), and audits what it refuses.
    const mdms = startMdmsIngest({
      store,
      privateKey: loadMdmsKey(o.keysDir),
      pesVerifyKey: loadPesVerifyKey(o.keysDir),
      mqtt: { url, ...creds('mdms') },
      k: o.k,
      fleet: o.fleet,
      onRefused: auditRefusals(audit),
      log: log.child({ c: 'mdms' }),
    });
    closers.push(() => mdms.close());
    await mdms.ready;

    const pk = loadPesKeys(o.keysDir);
    const meters = new Map<string, MeterInfo>();
    for (const m of o.fleet.meters) {
      const key = pk.meterKeys.get(m.meter);
      if (!key) throw new Error(`no PES key for meter ${m.meter}`);
      const rotated = pk.meterRotations.get(m.meter);
      meters.set(m.meter, { key, household: m.household, neighbourhood: m.neighbourhood, ...(rotated?.length ? { rotated } : {}) });
    }
    const pes = startPesService({
      keys: { rsa: pk.rsa, paillier: pk.paillier, mdmsPublic: pk.mdmsPublic, signer: pk.signer, bindingKeys: pk.bindingKeys, householdPublic: pk.householdPublic, meters },
      stateFile: join(o.stateDir, 'pes.sqlite'),
      intervalS: o.intervalS,
      billing: o.billing,
      tariff: o.tariff,
      tz: o.tz,
      latenessS: o.latenessS,
      k: o.k,
      ...(o.membershipGuard === false ? { membershipGuard: false } : {}),
      ...(o.dpEpsilon !== undefined ? { dpEpsilon: o.dpEpsilon } : {}),
      pool: o.pool,
      mqtt: { url, ...creds('pes') },
      logger: log.child({ c: 'pes' }),
    });
    closers.push(() => pes.close());
    await pes.ready;

    const pairs = new Map<string, CrossedPair>();
    for (const m of o.fleet.meters) pairs.set(m.meter, await openCrossedMockPair(`/mock/${m.meter}/meter`, `/mock/${m.meter}/gateway`));
    closers.push(async () => {
      const shut = (p: CrossedPair[number]) => new Promise<void>((r) => (p.isOpen ? p.close(() => r()) : r()));
      for (const [a, b] of pairs.values()) await Promise.all([shut(a), shut(b)]);
    });
    const gateways: GatewayHandle[] = [];
    for (const gw of o.fleet.gateways) {
      const lines = o.fleet.meters.filter((m) => m.gateway === gw).map((m) => pairs.get(m.meter)![1]);
      const g = await startGateway({ id: gw, lines, mqtt: { url, ...creds(`gateway-${gw}`) }, queuePath: join(o.stateDir, `${gw}.queue.sqlite`), logger: log.child({ c: gw }) });
      gateways.push(g);
      closers.push(() => g.close());
    }

    const started: Meter[] = [];
    // Meters keep within half the allowed lateness (at least two frames) of each other in event time, as
    // real meters do by their wall clocks (see lockstep); otherwise a meter that falls behind an accelerated
    // clock has its readings arrive after their windows closed.
    const step = lockstep(Math.max(1800, Math.floor(o.latenessS / 2)), o.speed);
    for (const m of o.fleet.meters) {
      const key = loadMeterKey(o.keysDir, m.meter);
      const clock = step.clock();
      const source = openSource(m.source, { tz: o.tz, synthetic: o.synthetic, p1: { ...o.p1, log: log.child({ c: 'meter', meter: m.meter }) } });
      const meter = await Meter.start({
        systemTitle: Buffer.from(m.meter, 'hex'),
        key,
        line: streamLine(pairs.get(m.meter)![0]),
        source: step.track(source, clock),
        nv: o.volatileMeters ? new MemoryNvStore() : new FileNvStore(join(o.stateDir, 'nv', `${m.meter}.cbor`)),
        clock,
        batch: o.batch ?? 15,
        log: log.child({ c: 'meter' }),
      });
      started.push(meter);
      closers.push(() => meter.stop());
    }
    // close() runs the closers in reverse: meters stop first, then gateways, lines, PES, MDMS, store, broker.

    const sealed = () => started.reduce((s, m) => s + m.counters.frames - m.counters.droppedFromRing, 0);
    const handle: SystemHandle = {
      broker,
      mqttUrl: url,
      store,
      mdms,
      pes,
      gateways,
      meters: started,
      metersDone: async () => {
        await Promise.all(started.map((m) => m.done()));
      },
      drain: async ({ stallMs = 60_000, onProgress } = {}) => {
        const c = pes.pes.counters;
        await until(() => c.framesOk >= sealed(), () => `the PES to take ${sealed()} frames (has ${c.framesOk})`, stallMs, () => c.framesOk, onProgress);
        pes.pes.flush();
        await pes.pes.idle();
        const settled = () => mdms.counters.stored + mdms.counters.duplicates + mdms.counters.rejectedPrivacy + mdms.counters.malformed;
        await until(() => settled() >= c.released, () => `the MDMS to store ${c.released} aggregates (has ${settled()})`, stallMs, settled, onProgress);
      },
      close,
    };
    return handle;
  } catch (e) {
    await close();
    throw e;
  }
}

/** Sum of the latest billing energy per household in the store. */
export async function billedEnergy(store: Store): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  let after: { household: string; start: number } | undefined;
  for (;;) {
    const rows = await store.latestBilling({ after, limit: 5000 });
    if (rows.length === 0) break;
    for (const r of rows) out.set(r.household, (out.get(r.household) ?? 0) + r.energyWh);
    const last = rows[rows.length - 1]!;
    after = { household: last.household, start: last.start };
    if (rows.length < 5000) break;
  }
  return out;
}
