/**
 * A small but complete system for the security tests: a provisioned key set, the embedded broker with its
 * users and ACLs, the MDMS ingest on SQLite, the PES service, one gateway per neighbourhood, and a crossed
 * mock serial line per meter whose meter end the test drives (a firmware Meter, or an attacker writing raw
 * link frames). Like cli/system.ts, every component is the real one with its own credentials; unlike it, the
 * test owns the lines and the meters.
 * @module
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino, type Logger } from 'pino';
import { startBroker, type BrokerHandle } from '../../broker/broker.js';
import { loadUsers } from '../../lib/broker-users.js';
import { openCrossedMockPair, type CrossedPair } from '../../firmware/hal/crossed-mock.js';
import { streamLine } from '../../firmware/hal/line.js';
import { MemoryNvStore, type NvStore } from '../../firmware/hal/nv.js';
import { Meter } from '../../firmware/meter.js';
import { SyntheticSource } from '../../firmware/sources/synthetic.js';
import type { Source } from '../../firmware/hal/source.js';
import { startGateway, type GatewayHandle } from '../../gateway/gateway.js';
import { startMdmsIngest, type MdmsIngest } from '../../mdms/ingest.js';
import { openStore } from '../../mdms/store/index.js';
import type { Store } from '../../mdms/store/types.js';
import { startPesService, type PesService } from '../../pes/mqtt.js';
import type { MeterInfo } from '../../pes/pes.js';
import { brokerUsersPath, loadCredentials, loadMdmsKey, loadMeterKey, loadPesKeys, loadPesVerifyKey, type Fleet } from '../../lib/keyset.js';
import { provision } from '../../provision/keys.js';

/** A UTC midnight, so day-long synthetic runs fill whole billing days. */
export const DAY0 = 1_717_200_000 - (1_717_200_000 % 86400);

/**
 * Provisions a fleet (RSA 2048, Paillier 1024, household keys) under `dir/keys` from `rows`
 * (`label,household,neighbourhood,source`).
 * @example
 * ```ts
 * const { keysDir, fleet } = await provisionFleet(dir, [['m1', 'hh1', 'nb1', 'synthetic:1']]);
 * ```
 */
export async function provisionFleet(dir: string, rows: [string, string, string, string][]): Promise<{ keysDir: string; fleet: Fleet }> {
  mkdirSync(dir, { recursive: true });
  const csv = join(dir, 'fleet.csv');
  writeFileSync(csv, ['meter,household,neighbourhood,source', ...rows.map((r) => r.join(','))].join('\n') + '\n');
  const keysDir = join(dir, 'keys');
  const fleet = await provision({ fleetCsv: csv, out: keysDir, rsaBits: 2048, paillierBits: 1024, householdKeys: true });
  return { keysDir, fleet };
}

export interface Rig {
  keysDir: string;
  fleet: Fleet;
  broker: BrokerHandle;
  store: Store;
  mdms: MdmsIngest;
  pes: PesService;
  gateways: Map<string, GatewayHandle>;
  /** The crossed line of each meter (by meter id): `[meterEnd, gatewayEnd]`, and `.line` to add noise. */
  pairs: Map<string, CrossedPair>;
  /**
   * Starts a firmware meter on its line with the provisioned key; `nv` defaults to a fresh memory store,
   * the source to `synthetic:<seed>` from `start` for `days`.
   */
  startMeter(meter: string, o: { seed: number; start?: number; days: number; samples?: number; nv?: NvStore; batch?: number }): Promise<Meter>;
  close(): Promise<void>;
}

/**
 * Starts the rig. `k` (PES and MDMS) defaults to 1 so that every window is released.
 * @example
 * ```ts
 * const rig = await startRig({ dir, keysDir, fleet });
 * const m = await rig.startMeter(fleet.meters[0].meter, { seed: 1, days: 1 });
 * await m.done();
 * ```
 */
export async function startRig(o: { dir: string; keysDir: string; fleet: Fleet; log?: Logger; k?: number }): Promise<Rig> {
  const log = o.log ?? pino({ level: 'silent' });
  const closers: (() => Promise<unknown>)[] = [];
  const close = async () => {
    for (const c of closers.reverse()) await c().catch(() => undefined);
  };
  try {
    const broker = await startBroker({ users: loadUsers(brokerUsersPath(o.keysDir)), port: 0, logger: log.child({ c: 'broker' }) });
    closers.push(() => broker.close());
    const creds = (u: string) => loadCredentials(o.keysDir, u);
    const store = await openStore(join(o.dir, 'mdms.sqlite'));
    closers.push(() => store.close());
    const mdms = startMdmsIngest({ store, privateKey: loadMdmsKey(o.keysDir), pesVerifyKey: loadPesVerifyKey(o.keysDir), mqtt: { url: broker.url, ...creds('mdms') }, k: o.k ?? 1, log: log.child({ c: 'mdms' }) });
    closers.push(() => mdms.close());
    await mdms.ready;
    const pk = loadPesKeys(o.keysDir);
    const meters = new Map<string, MeterInfo>(o.fleet.meters.map((m) => [m.meter, { key: pk.meterKeys.get(m.meter)!, household: m.household, neighbourhood: m.neighbourhood }]));
    const pes = startPesService({
      keys: { rsa: pk.rsa, signer: pk.signer, paillier: pk.paillier, mdmsPublic: pk.mdmsPublic, bindingKeys: pk.bindingKeys, householdPublic: pk.householdPublic, meters },
      stateFile: join(o.dir, 'pes.sqlite'),
      intervalS: 900,
      billing: '1d',
      latenessS: 900,
      k: o.k ?? 1,
      mqtt: { url: broker.url, ...creds('pes') },
      logger: log.child({ c: 'pes' }),
    });
    closers.push(() => pes.close());
    await pes.ready;
    const pairs = new Map<string, CrossedPair>();
    for (const m of o.fleet.meters) pairs.set(m.meter, await openCrossedMockPair(`/sec/${m.meter}/meter`, `/sec/${m.meter}/gateway`));
    closers.push(async () => {
      const shut = (p: CrossedPair[number]) => new Promise<void>((r) => (p.isOpen ? p.close(() => r()) : r()));
      for (const [a, b] of pairs.values()) await Promise.all([shut(a), shut(b)]);
    });
    const gateways = new Map<string, GatewayHandle>();
    for (const gw of o.fleet.gateways) {
      const lines = o.fleet.meters.filter((m) => m.gateway === gw).map((m) => pairs.get(m.meter)![1]);
      const g = await startGateway({ id: gw, lines, mqtt: { url: broker.url, ...creds(`gateway-${gw}`) }, queuePath: join(o.dir, `${gw}.queue.sqlite`), logger: log.child({ c: gw }) });
      gateways.set(gw, g);
      closers.push(() => g.close());
    }
    const rig: Rig = {
      keysDir: o.keysDir,
      fleet: o.fleet,
      broker,
      store,
      mdms,
      pes,
      gateways,
      pairs,
      async startMeter(meter, m) {
        const key = loadMeterKey(o.keysDir, meter);
        const started = await Meter.start({
          systemTitle: Buffer.from(meter, 'hex'),
          key,
          line: streamLine(pairs.get(meter)![0]),
          source: firstSamples(new SyntheticSource({ seed: m.seed, start: m.start ?? DAY0, days: m.days, tz: 'UTC' }), m.samples ?? Infinity),
          nv: m.nv ?? new MemoryNvStore(),
          batch: m.batch ?? 15,
          ackTimeoutMs: 500,
          log: log.child({ c: 'meter' }),
        });
        key.fill(0);
        closers.push(() => started.stop());
        return started;
      },
      close,
    };
    return rig;
  } catch (e) {
    await close();
    throw e;
  }
}

/** The first `n` samples of `source`. */
function firstSamples(source: Source, n: number): Source {
  return {
    name: source.name,
    async *samples(from?: number) {
      let i = 0;
      for await (const s of source.samples(from)) {
        if (i++ >= n) return;
        yield s;
      }
    },
  };
}

/**
 * Polls `cond` every 20 ms; throws naming `what` after `ms`.
 * @example
 * ```ts
 * await until(() => pes.counters.framesOk === 96, () => 'all frames');
 * ```
 */
export async function until(cond: () => boolean | Promise<boolean>, what: () => string, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
