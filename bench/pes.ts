/**
 * PES throughput: readings per second through `ingestUplink` with real frames (random meter keys, AES-256-GCM,
 * CBOR), a 2048-bit Paillier key and the SQLite state file with `synchronous = FULL` (a commit per uplink,
 * as the MQTT service does), then the flush that closes and releases every window. Shares of the time: AES
 * (frame opening, measured by opening the same frames again on their own), Paillier (every engine call,
 * timed through a proxy) and the rest (CBOR, attribution, SQLite, sealing). `_baseline` figures: the same
 * run without the engine's randomiser pool. `_pv` figures: the same fleet in the same run with a share of
 * prosumers (`PES_BENCH_PV`, default 0.3: solar panels, so their frames carry the export register and their
 * windows an export total), pooled; `pv_ratio` is its readings/s over the import-only fleet's.
 *
 * Shape: `PES_BENCH_METERS` meters (default 100) in 5 neighbourhoods, `PES_BENCH_HOURS` hours (default 24)
 * of 1-minute readings, 15 readings per frame, one uplink per neighbourhood per 15 minutes.
 * @module
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { pino } from 'pino';
import { decodeFrame, encodeFrame, meterId, openFrame, SC_AES256GCM, sealFrame, systemTitle } from '../protocol/frame.js';
import { generatePaillier, type PaillierPrivate } from '../protocol/paillier/engine.js';
import { encodeReadingBatch, type Reading } from '../protocol/reading.js';
import { decodeUplink, encodeUplink } from '../protocol/uplink.js';
import { createPes, type MeterInfo } from '../pes/pes.js';
import { progress, round, table } from './index.js';

const TIMED = ['encrypt', 'addPlain', 'rerandomize', 'decrypt', 'add'] as const;

/** The engine with every call of TIMED accumulated into `ns` (nanoseconds) and `calls`. */
function timedEngine(engine: PaillierPrivate, ns: Record<string, number>, calls: Record<string, number>): PaillierPrivate {
  return new Proxy(engine, {
    get(target, prop) {
      const v = Reflect.get(target, prop, target) as unknown;
      if (typeof v !== 'function') return v;
      if (!(TIMED as readonly (string | symbol)[]).includes(prop)) return (v as (...a: unknown[]) => unknown).bind(target);
      const name = prop as string;
      return (...args: unknown[]) => {
        const t0 = process.hrtime.bigint();
        try {
          return (v as (...a: unknown[]) => unknown).apply(target, args);
        } finally {
          ns[name] = (ns[name] ?? 0) + Number(process.hrtime.bigint() - t0);
          calls[name] = (calls[name] ?? 0) + 1;
        }
      };
    },
  });
}

interface Workload {
  uplinks: Buffer[];
  meters: Map<string, MeterInfo>;
  readings: number;
}

/**
 * A prosumer's solar output in the minute starting `t`, Wh: a clear-sky bell from 06:00 to 18:00 UTC, up to
 * 60 Wh a minute (3.6 kW) at noon.
 */
function solarWh(t: number): number {
  const h = (t % 86400) / 3600;
  return h <= 6 || h >= 18 ? 0 : Math.round(60 * Math.sin((Math.PI * (h - 6)) / 12));
}

function workload(nMeters: number, hours: number, pvShare = 0): Workload {
  const t0 = 1_700_000_000 - (1_700_000_000 % 86400);
  const meters = new Map<string, MeterInfo>();
  const sims = Array.from({ length: nMeters }, (_, i) => {
    const st = systemTitle('SMR', i + 1);
    const key = randomBytes(32);
    meters.set(meterId(st), { key, household: `hh${i}`, neighbourhood: `nb${i % 5}` });
    // Every 1 / pvShare-th meter has panels (spread over the neighbourhoods).
    const pv = pvShare > 0 && Math.floor((i + 1) * pvShare) > Math.floor(i * pvShare);
    return { st, key, register: 1_000_000 + i * 1000, exportRegister: 0, pv, ic: 1, nb: i % 5 };
  });
  const uplinks: Buffer[] = [];
  let readings = 0;
  for (let slot = 0; slot < hours * 4; slot++) {
    const byNb: Uint8Array[][] = [[], [], [], [], []];
    for (const m of sims) {
      const prevWh = m.register;
      const prevExportWh = m.exportRegister;
      const rs: Reading[] = [];
      for (let j = 0; j < 15; j++) {
        const time = t0 + (slot * 15 + j) * 60;
        const load = 1 + ((slot * 15 + j + m.nb * 7) % 40);
        const sun = m.pv ? solarWh(time) : 0;
        const e = Math.max(0, load - sun);
        m.register += e;
        m.exportRegister += Math.max(0, sun - load);
        rs.push({ time, period: 60, importWh: m.register, powerW: e * 60, status: 0, ...(m.pv ? { exportWh: m.exportRegister } : {}) });
      }
      readings += rs.length;
      const batch = m.pv ? { prevWh, prevExportWh, readings: rs } : { prevWh, readings: rs };
      byNb[m.nb]!.push(encodeFrame(sealFrame(m.key, { systemTitle: m.st, sc: SC_AES256GCM, ic: m.ic++ }, encodeReadingBatch(batch))));
    }
    byNb.forEach((frames, nb) => uplinks.push(encodeUplink({ gateway: `gw-nb${nb}`, frames })));
  }
  return { uplinks, meters, readings };
}

async function once(w: Workload, paillier: PaillierPrivate, pool: boolean) {
  const dir = mkdtempSync(join(tmpdir(), 'pes-bench-'));
  const ns: Record<string, number> = {};
  const calls: Record<string, number> = {};
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const mdms = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const pes = createPes({
    keys: { rsa: rsa.privateKey, signer: generateKeyPairSync('ed25519').privateKey, paillier: timedEngine(paillier, ns, calls), mdmsPublic: mdms.publicKey, meters: w.meters },
    stateFile: join(dir, 'pes.db'),
    k: 20,
    pool,
    logger: pino({ level: 'silent' }),
  });
  try {
    if (pool) await paillier.startPool().filled(64);
    const poolCounters = () => (pool ? { ...paillier.startPool().counters } : undefined);
    const t0 = process.hrtime.bigint();
    for (const u of w.uplinks) {
      pes.ingestUplink(u);
      // Yield between messages as the MQTT service does (the pool's workers deliver through the event loop).
      await new Promise((r) => setImmediate(r));
    }
    const tIngest = Number(process.hrtime.bigint() - t0);
    pes.flush();
    const total = Number(process.hrtime.bigint() - t0);
    await pes.idle();
    if (pes.counters.readings !== w.readings) throw new Error(`folded ${pes.counters.readings} of ${w.readings} readings`);
    return { total, tIngest, ns, calls, counters: { ...pes.counters }, pool: poolCounters() };
  } finally {
    await pes.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** AES-GCM time for opening every frame of the workload once (what the PES does per frame). */
function aesTime(w: Workload): number {
  const frames = w.uplinks.flatMap((u) => decodeUplink(u).frames.map((f) => decodeFrame(f)));
  const t0 = process.hrtime.bigint();
  for (const f of frames) openFrame(w.meters.get(meterId(f.systemTitle))!.key, f).fill(0);
  return Number(process.hrtime.bigint() - t0);
}

/**
 * The `pes` section of `npm run bench`.
 * @example
 * ```ts
 * const section = await run(); // { readings_per_s, share_aes, share_paillier, share_rest, ... }
 * ```
 */
export async function run(): Promise<Record<string, unknown>> {
  const nMeters = Number(process.env.PES_BENCH_METERS ?? 100);
  const hours = Number(process.env.PES_BENCH_HOURS ?? 24);
  const pvShare = Number(process.env.PES_BENCH_PV ?? 0.3);
  progress(`pes: building ${nMeters} meters x ${hours} h of 1-minute readings`);
  const w = workload(nMeters, hours);
  const wPv = workload(nMeters, hours, pvShare);
  progress('pes: 2048-bit Paillier key');
  const paillier = await generatePaillier(2048);
  paillier.precompute();
  progress('pes: run without the randomiser pool (baseline)');
  const inline = await once(w, paillier, false);
  progress('pes: run with the randomiser pool');
  const pooled = await once(w, paillier, true);
  progress(`pes: run with ${Math.round(pvShare * 100)} % prosumers (pooled)`);
  const pv = await once(wPv, paillier, true);
  const aes = aesTime(w);
  const paillierNs = Object.values(pooled.ns).reduce((a, b) => a + b, 0);
  const s = (ns: number) => round(ns / 1e9);
  const perCall: Record<string, unknown> = {};
  for (const k of TIMED) if (pooled.calls[k]) perCall[`${k}_us`] = round(pooled.ns[k]! / pooled.calls[k]! / 1e3);
  for (const k of TIMED) if (pooled.calls[k]) perCall[`${k}_calls`] = pooled.calls[k];
  for (const k of TIMED) if (pv.calls[k]) perCall[`${k}_calls_pv`] = pv.calls[k];
  return {
    meters: nMeters,
    hours,
    readings: w.readings,
    uplinks: w.uplinks.length,
    readings_per_s: round(w.readings / (pooled.total / 1e9)),
    readings_per_s_baseline: round(w.readings / (inline.total / 1e9)),
    pv_share: pvShare,
    readings_per_s_pv: round(wPv.readings / (pv.total / 1e9)),
    pv_ratio: round(wPv.readings / (pv.total / 1e9) / (w.readings / (pooled.total / 1e9))),
    total_s_pv: s(pv.total),
    paillier_s: s(paillierNs),
    paillier_s_pv: s(Object.values(pv.ns).reduce((a, b) => a + b, 0)),
    total_s: s(pooled.total),
    total_s_baseline: s(inline.total),
    flush_s: s(pooled.total - pooled.tIngest),
    share_aes: round(aes / pooled.total),
    share_paillier: round(paillierNs / pooled.total),
    share_rest: round(1 - (aes + paillierNs) / pooled.total),
    week_100_meters_s: round((100 * 7 * 24 * 60) / (w.readings / (pooled.total / 1e9))),
    released: pooled.counters.released,
    pool_misses: pooled.pool?.misses ?? 0,
    pool_taken: pooled.pool?.taken ?? 0,
    paillier: perCall,
  };
}

const entry = process.argv[1];
if (entry && pathToFileURL(entry).href === import.meta.url) {
  void run().then((r) => console.log(table('pes', r)));
}
