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
import { startMdmsIngest, type IngestCounters, type MdmsIngest } from '../mdms/ingest.js';
import { auditRefusals } from '../mdms/refusal-audit.js';
import { isPostgresUrl, openStoreOn } from '../mdms/store/index.js';
import { openPostgres } from '../mdms/store/postgres.js';
import { openSqlite } from '../mdms/store/sqlite.js';
import { openWebDb } from '../mdms/web/db.js';
import type { Store } from '../mdms/store/types.js';
import { startPesService, type PesService } from '../pes/mqtt.js';
import type { Tariff } from '../lib/tariff.js';
import type { MeterInfo } from '../pes/pes.js';
import {
  brokerUsersPath,
  GUARDIAN_DIR,
  loadCredentials,
  loadGuardianKeys,
  loadGuardianVerifyKey,
  loadMdmsKey,
  loadMeterKey,
  loadMeterPaillierKey,
  loadMeterStreamKey,
  loadPesKeys,
  loadPesVerifyKey,
  type Fleet,
} from '../lib/keyset.js';
import { E2eEncoder } from '../firmware/e2e.js';
import { DP_MAX_POWER_W, intervalSensitivityWh } from '../pes/core/dp.js';
import { startGuardianService } from '../guardian/service.js';
import { parseBillingPeriod } from '../lib/billing-period.js';
import type { BlindMeter, BlindSettings } from '../lib/e2e-windows.js';
import { FLAT_TARIFF } from '../lib/tariff.js';
import { startMdmsE2eIngest, type E2eIngestCounters } from '../mdms/e2e-ingest.js';
import { startPesE2eService } from '../pes/e2e-mqtt.js';
import type { ReadingBatch } from '../protocol/reading.js';

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
  /** With `dpEpsilon`: most epsilon spent per neighbourhood per UTC day (pes --dp-budget); default none. */
  dpBudget?: number;
  /** The PES's id, the topic of its policy statement `sm/v1/agg/policy/<id>` (pes --pes-id); default `pes`. */
  pesId?: string;
  /** How often the PES checks whether its policy statement is due, ms (default the PES's, a minute). */
  policyIntervalMs?: number;
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
  /**
   * The end-to-end mode (docs/paillier.md; needs a key set from `provision --e2e`): meters send Paillier
   * snapshots (firmware/e2e.ts), the PES folds blind (pes/e2e-mqtt.ts), the guardian recomputes and adds its
   * partial (guardian/service.ts), the MDMS combines (mdms/e2e-ingest.ts).
   */
  e2e?: boolean;
  log?: Logger;
}

export interface SystemHandle {
  broker: BrokerHandle | null;
  mqttUrl: string;
  store: Store;
  /** The classic ingest, or the end-to-end mode's (counters named alike). */
  mdms: Pick<MdmsIngest, 'counters'> | { counters: E2eIngestCounters };
  /** The classic PES, or the end-to-end mode's blind PES (counters named alike). */
  pes: { pes: Pick<PesService['pes'], 'counters' | 'watermark' | 'flush' | 'idle'> };
  /** The end-to-end mode's guardian. */
  guardian?: ReturnType<typeof startGuardianService>;
  gateways: GatewayHandle[];
  meters: Meter[];
  /**
   * Per neighbourhood, per interval start (Unix s): how many of its meters had a sample starting in that
   * interval so far, i.e. the membership the PES sees for the window (a reading belongs to the interval its
   * period starts in). Counts, never values.
   */
  windowMeters: ReadonlyMap<string, ReadonlyMap<number, number>>;
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
    let mdms: SystemHandle['mdms'];
    let pes: SystemHandle['pes'];
    let guardian: SystemHandle['guardian'];
    let payloadOf: ((meter: string) => (batch: ReadingBatch, ic: number) => Uint8Array) | undefined;
    if (o.e2e) ({ mdms, pes, guardian, payloadOf } = await startE2eParties(o, url, creds, store, log, closers));
    else {
      // The MDMS enforces the PES's own k and the fleet (one setting: o.k), and audits what it refuses.
      const ingest = startMdmsIngest({
        store,
        privateKey: loadMdmsKey(o.keysDir),
        pesVerifyKey: loadPesVerifyKey(o.keysDir),
        mqtt: { url, ...creds('mdms') },
        k: o.k,
        fleet: o.fleet,
        onRefused: auditRefusals(audit),
        log: log.child({ c: 'mdms' }),
      });
      closers.push(() => ingest.close());
      await ingest.ready;
      mdms = ingest;

      const pk = loadPesKeys(o.keysDir);
      const meters = new Map<string, MeterInfo>();
      for (const m of o.fleet.meters) {
        const key = pk.meterKeys.get(m.meter);
        if (!key) throw new Error(`no PES key for meter ${m.meter}`);
        const rotated = pk.meterRotations.get(m.meter);
        meters.set(m.meter, { key, household: m.household, neighbourhood: m.neighbourhood, ...(rotated?.length ? { rotated } : {}) });
      }
      const service = startPesService({
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
        ...(o.dpBudget !== undefined ? { dpBudget: o.dpBudget } : {}),
        ...(o.pesId !== undefined ? { pesId: o.pesId } : {}),
        ...(o.policyIntervalMs !== undefined ? { policyIntervalMs: o.policyIntervalMs } : {}),
        pool: o.pool,
        mqtt: { url, ...creds('pes') },
        logger: log.child({ c: 'pes' }),
      });
      closers.push(() => service.close());
      await service.ready;
      pes = service;
    }

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
    const windowMeters = new Map<string, Map<number, number>>();
    for (const m of o.fleet.meters) {
      const key = loadMeterKey(o.keysDir, m.meter);
      const clock = step.clock();
      const source = openSource(m.source, { tz: o.tz, synthetic: o.synthetic, p1: { ...o.p1, log: log.child({ c: 'meter', meter: m.meter }) } });
      const meter = await Meter.start({
        systemTitle: Buffer.from(m.meter, 'hex'),
        key,
        line: streamLine(pairs.get(m.meter)![0]),
        source: step.track(countWindows(source, o.intervalS, windowMeters, m.neighbourhood), clock),
        nv: o.volatileMeters ? new MemoryNvStore() : new FileNvStore(join(o.stateDir, 'nv', `${m.meter}.cbor`)),
        ...(payloadOf ? { payload: payloadOf(m.meter) } : {}),
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
      ...(guardian ? { guardian } : {}),
      gateways,
      meters: started,
      windowMeters,
      metersDone: async () => {
        await Promise.all(started.map((m) => m.done()));
      },
      drain: async ({ stallMs = 60_000, onProgress } = {}) => {
        const c = pes.pes.counters;
        await until(() => c.framesOk >= sealed(), () => `the PES to take ${sealed()} frames (has ${c.framesOk})`, stallMs, () => c.framesOk, onProgress);
        pes.pes.flush();
        if (guardian) {
          const g = guardian.core.windows.counters;
          await until(() => g.frames >= sealed(), () => `the guardian to take ${sealed()} frames (has ${g.frames})`, stallMs, () => g.frames, onProgress);
          guardian.flush();
          await guardian.idle();
        }
        await pes.pes.idle();
        // Aggregates and policy statements are settled apart: a statement is no aggregate (the MDMS counts it
        // policyStored/policyIgnored), so it can neither stand in for a missing aggregate nor be waited for as one.
        const settled = () => aggregatesSettled(mdms.counters);
        await until(() => settled() >= c.released, () => `the MDMS to store ${c.released} aggregates (has ${settled()})`, stallMs, settled, onProgress);
        const statements = () => statementsSettled(mdms.counters);
        await until(() => statements() >= c.policyStatements, () => `the MDMS to take ${c.policyStatements} policy statements (has ${statements()})`, stallMs, statements, onProgress);
      },
      close,
    };
    return handle;
  } catch (e) {
    await close();
    throw e;
  }
}

/**
 * The MDMS ingest's aggregates that are settled (stored, already stored, or refused for good): what a drain
 * compares with the PES's `released`. Policy statements are not aggregates and are not counted here.
 * @example
 * ```ts
 * aggregatesSettled(mdms.counters) >= pes.pes.counters.released; // the MDMS took every aggregate
 * ```
 */
export function aggregatesSettled(c: Readonly<Partial<IngestCounters>>): number {
  const names = ['stored', 'duplicates', 'conflicts', 'rejectedPrivacy', 'rejectedUnknown', 'rejectedNegative', 'rejectedGap', 'malformed', 'badSignature'] as const;
  return names.reduce((sum, n) => sum + (c[n] ?? 0), 0);
}

/** Policy statements the MDMS took (kept or ignored as stale); the end-to-end ingest takes none. */
export function statementsSettled(c: Readonly<Partial<IngestCounters>>): number {
  return (c.policyStored ?? 0) + (c.policyIgnored ?? 0);
}

/** Import and export energy, Wh. */
export interface EnergyPair {
  importWh: number;
  exportWh: number;
}

/**
 * Sum of the latest billing energy per household in the store, imported and exported (all bands).
 * @example
 * ```ts
 * (await billedTotals(store)).get('hh-2'); // { importWh: 5120, exportWh: 1830 }
 * ```
 */
export async function billedTotals(store: Store): Promise<Map<string, EnergyPair>> {
  const out = new Map<string, EnergyPair>();
  let after: { household: string; start: number } | undefined;
  for (;;) {
    const rows = await store.latestBilling({ after, limit: 5000 });
    if (rows.length === 0) break;
    for (const r of rows) {
      const t = out.get(r.household) ?? { importWh: 0, exportWh: 0 };
      t.importWh += r.energyWh;
      t.exportWh += r.exportWh;
      out.set(r.household, t);
    }
    const last = rows[rows.length - 1]!;
    after = { household: last.household, start: last.start };
    if (rows.length < 5000) break;
  }
  return out;
}

/**
 * Sum of the latest billing import energy per household in the store.
 * @example
 * ```ts
 * (await billedEnergy(store)).get('hh-2'); // 5120
 * ```
 */
export async function billedEnergy(store: Store): Promise<Map<string, number>> {
  return new Map([...(await billedTotals(store))].map(([h, t]) => [h, t.importWh]));
}

/**
 * Sum of the latest neighbourhood aggregates per neighbourhood in the store: import, export, and how many
 * windows were released.
 * @example
 * ```ts
 * (await releasedTotals(store)).get('nb-1'); // { importWh: 15360, exportWh: 1830, windows: 96 }
 * ```
 */
export async function releasedTotals(store: Store): Promise<Map<string, EnergyPair & { windows: number }>> {
  const out = new Map<string, EnergyPair & { windows: number }>();
  let after: { neighbourhood: string; start: number } | undefined;
  for (;;) {
    const rows = await store.latestNeighbourhood({ after, limit: 5000 });
    if (rows.length === 0) break;
    for (const r of rows) {
      const t = out.get(r.neighbourhood) ?? { importWh: 0, exportWh: 0, windows: 0 };
      t.importWh += r.energyWh;
      t.exportWh += r.exportWh;
      t.windows++;
      out.set(r.neighbourhood, t);
    }
    const last = rows[rows.length - 1]!;
    after = { neighbourhood: last.neighbourhood, start: last.start };
    if (rows.length < 5000) break;
  }
  return out;
}

/**
 * Wraps a meter's source so that each interval in which it has a sample counts the meter once in
 * `into[neighbourhood]` (samples come in time order, so a meter is counted once per interval).
 */
function countWindows(source: Source, intervalS: number, into: Map<string, Map<number, number>>, neighbourhood: string): Source {
  return {
    name: source.name,
    ...(source.live !== undefined ? { live: source.live } : {}),
    async *samples(from) {
      const counts = into.get(neighbourhood) ?? into.set(neighbourhood, new Map()).get(neighbourhood)!;
      let last: number | undefined;
      for await (const s of source.samples(from)) {
        const w = s.time - (s.time % intervalS);
        if (w !== last) {
          counts.set(w, (counts.get(w) ?? 0) + 1);
          last = w;
        }
        yield s;
      }
    },
  };
}

/**
 * The end-to-end mode's parties (key set from `provision --e2e`): the MDMS's combining ingest, the blind PES,
 * the guardian (from its own key folder) and the meters' snapshot encoders (one per meter, sharing the fleet's
 * Paillier public key and its fixed-base table), each sealing its household's stream with its own
 * `meters/<id>.stream` key (docs/protocol.md §11.5; a key set made before that file existed: no stream). The PES
 * and the guardian keep their durable state in the replay's state folder (pes-e2e.sqlite, guardian.sqlite), as
 * the classic PES does (pes.sqlite).
 */
async function startE2eParties(
  o: SystemOptions,
  url: string,
  creds: (user: string) => { username?: string; password?: string },
  store: Store,
  log: Logger,
  closers: (() => Promise<void>)[],
): Promise<{ mdms: SystemHandle['mdms']; pes: SystemHandle['pes']; guardian: NonNullable<SystemHandle['guardian']>; payloadOf: (meter: string) => (batch: ReadingBatch, ic: number) => Uint8Array }> {
  const tariff = o.tariff ?? FLAT_TARIFF;
  const settings: BlindSettings = { intervalS: o.intervalS, billing: parseBillingPeriod(o.billing), tz: o.tz, tariff, latenessS: o.latenessS, k: o.k, revisionK: o.k, ...(o.membershipGuard === false ? { membershipGuard: false } : {}), ...(o.dpEpsilon !== undefined ? { dpEpsilon: o.dpEpsilon } : {}) };
  // Differential privacy: each meter adds a 1/k share of the noise (docs/privacy.md); every released window has >= k meters.
  const dp = o.dpEpsilon !== undefined ? { epsilon: o.dpEpsilon, sensitivityWh: intervalSensitivityWh(DP_MAX_POWER_W, o.intervalS), shares: o.k } : undefined;
  const paillier = loadMeterPaillierKey(o.keysDir).precompute();
  const ingest = startMdmsE2eIngest({
    store,
    privateKey: loadMdmsKey(o.keysDir),
    pesVerifyKey: loadPesVerifyKey(o.keysDir),
    guardianVerifyKey: loadGuardianVerifyKey(o.keysDir),
    paillier,
    mqtt: { url, ...creds('mdms') },
    k: o.k,
    fleet: o.fleet,
    log: log.child({ c: 'mdms' }),
  });
  closers.push(() => ingest.close());
  await ingest.ready;

  const blind = (keys: Map<string, Buffer>, rotations: Map<string, Buffer[]>) =>
    new Map<string, BlindMeter>(
      o.fleet.meters.map((m) => {
        const key = keys.get(m.meter);
        if (!key) throw new Error(`no key for meter ${m.meter}`);
        const rotated = rotations.get(m.meter);
        return [m.meter, { key, household: m.household, neighbourhood: m.neighbourhood, ...(rotated?.length ? { rotated } : {}) }];
      }),
    );
  const pk = loadPesKeys(o.keysDir, { e2e: true });
  const pes = startPesE2eService({ settings, keys: { share: pk.paillierShare, mdmsPublic: pk.mdmsPublic, signer: pk.signer, meters: blind(pk.meterKeys, pk.meterRotations) }, mqtt: { url, ...creds('pes') }, stateFile: join(o.stateDir, 'pes-e2e.sqlite'), ...(o.dpBudget !== undefined ? { dpBudget: o.dpBudget } : {}), logger: log.child({ c: 'pes' }) });
  closers.push(() => pes.close());
  await pes.ready;

  const gdir = join(o.keysDir, GUARDIAN_DIR);
  const gk = loadGuardianKeys(gdir);
  const gcreds = o.mqttUrl && !existsSync(join(gdir, 'credentials', 'guardian.json')) ? {} : loadCredentials(gdir, 'guardian');
  const guardian = startGuardianService({ settings, keys: { share: gk.paillierShare, meters: blind(gk.meterKeys, gk.meterRotations), signer: gk.signer, mdmsPublic: gk.mdmsPublic }, mqtt: { url, ...gcreds }, stateFile: join(o.stateDir, 'guardian.sqlite'), ...(o.dpBudget !== undefined ? { dpBudget: o.dpBudget } : {}), logger: log.child({ c: 'guardian' }) });
  closers.push(() => guardian.close());
  await guardian.ready;

  const household = new Map(o.fleet.meters.map((m) => [m.meter, m.household]));
  const payloadOf = (meter: string) => {
    const stream = existsSync(join(o.keysDir, 'meters', `${meter}.stream`)) ? { key: loadMeterStreamKey(o.keysDir, meter), systemTitle: Buffer.from(meter, 'hex'), household: household.get(meter)! } : undefined;
    const enc = new E2eEncoder(paillier, { intervalS: o.intervalS, tariff, ...(dp ? { dp } : {}), ...(stream ? { stream } : {}) });
    return (batch: ReadingBatch, ic: number) => enc.encode(batch, ic);
  };
  return { mdms: ingest, pes, guardian, payloadOf };
}
