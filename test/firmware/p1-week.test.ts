/**
 * A week of P1 captures in four dialects, prosumers among them, each with a corrupted telegram and a cable
 * pulled for 45 minutes inside one hour, replayed through `p1:` sources into meters: the readings a receiver
 * decodes, attributed to 15-minute windows by their start (as the PES does, pes/README.md "Windows"), give per
 * window exactly the telegrams' import and export register differences at the window boundaries, and over the
 * week exactly the last telegram's registers minus the first's.
 *
 * The captures are not recordings (none are copied into the repository): each household is the synthetic
 * model (firmware/sources/synthetic.ts) behind a real meter's registers. The meter integrates the net of load
 * and panels per minute into its tariff registers (NL/LU: low tariff 23:00-07:00 and weekends; e-MUCS:
 * 1.8.1 day, 1.8.2 night), each shown as floor(Wh) as a meter display does; a capture keeps one telegram
 * every two minutes (as a reader that stores sparsely does), at the second the meter happens to send it, so
 * window boundaries fall between telegrams. The expected numbers come from those registers alone.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DateTime } from 'luxon';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { MockBinding, openCrossedMockPair, type CrossedPair } from '../../firmware/hal/crossed-mock.js';
import { streamLine } from '../../firmware/hal/line.js';
import { MemoryNvStore } from '../../firmware/hal/nv.js';
import { Meter } from '../../firmware/meter.js';
import { sealP1Frame } from '../../firmware/sources/p1/dlms.js';
import { buildTelegram } from '../../firmware/sources/p1/generate.js';
import { P1Source } from '../../firmware/sources/p1/source.js';
import type { Dialect } from '../../firmware/sources/p1/telegram.js';
import { SyntheticModel } from '../../firmware/sources/synthetic.js';
import { systemTitle } from '../../protocol/frame.js';
import { readingEnergies, readingExports } from '../../protocol/reading.js';
import { TestPeer } from './helpers/peer.js';

const START = Date.UTC(2024, 5, 16, 22) / 1000; // Monday 2024-06-17 00:00 CEST
const DAYS = 7;
const WINDOW = 900;
/** A telegram kept every this many seconds. */
const STEP = 120;
const KEY = Buffer.alloc(32, 0x77);
const P1_KEYS = { key: Buffer.alloc(16, 0x21), authKey: Buffer.alloc(16, 0x42) };
/** Cable pulled on Friday from 11:05 to 11:50 local (inside one hour); a telegram corrupted on Wednesday at 12:00. */
const OUTAGE = [START + 4 * 86400 + 11 * 3600 + 5 * 60, START + 4 * 86400 + 11 * 3600 + 50 * 60] as const;
const CORRUPT = START + 2 * 86400 + 12 * 3600;

interface Household {
  dialect: Dialect;
  seed: number;
  tz: string;
  /** Panels, kWp (0: none). */
  kWp: number;
  /** Second of the minute the capture's telegrams carry. */
  offset: number;
  /** The meter's registers when the capture starts, Wh: import and export per tariff. */
  startImport: [number, number];
  startExport: [number, number];
  encrypted?: boolean;
}

const HOUSEHOLDS: Household[] = [
  { dialect: 'dsmr4', seed: 101, tz: 'Europe/Amsterdam', kWp: 0, offset: 7, startImport: [4_123_456, 3_987_654], startExport: [0, 0] },
  { dialect: 'dsmr5', seed: 102, tz: 'Europe/Amsterdam', kWp: 4, offset: 0, startImport: [2_345_678, 2_111_222], startExport: [1_234_567, 987_654] },
  { dialect: 'emucs', seed: 103, tz: 'Europe/Brussels', kWp: 6, offset: 31, startImport: [5_555_000, 1_999_999], startExport: [765_432, 12_345] },
  { dialect: 'smarty', seed: 104, tz: 'Europe/Luxembourg', kWp: 3, offset: 13, startImport: [999_999, 888_888], startExport: [100_000, 50_000], encrypted: true },
];

/** Which tariff register (0 or 1) a minute counts in (it changes on the hour: one zone lookup per hour). */
function tariffOf(h: Household, time: number): 0 | 1 {
  const hour = time - (time % 3600);
  const key = `${h.tz}/${hour}`;
  let t = tariffs.get(key);
  if (t === undefined) tariffs.set(key, (t = tariffAt(h, hour)));
  return t;
}
const tariffs = new Map<string, 0 | 1>();

function tariffAt(h: Household, time: number): 0 | 1 {
  const local = DateTime.fromSeconds(time, { zone: h.tz });
  const night = local.hour < 7 || local.hour >= 23;
  if (h.dialect === 'emucs') return night ? 1 : 0; // Fluvius: 1.8.1 day, 1.8.2 night
  return night || local.weekday >= 6 ? 0 : 1; // NL/LU: 1.8.1 low, 1.8.2 normal
}

interface Telegram {
  time: number;
  imp: [number, number];
  exp: [number, number];
  importW: number;
  exportW: number;
}

/** One telegram every {@link STEP} for the week: the registers as the meter shows them at that instant. */
function week(h: Household): Telegram[] {
  const model = new SyntheticModel(h.seed, h.tz, { kWp: h.kWp });
  const mws = (wh: number) => BigInt(wh) * 3_600_000n;
  const imp = [mws(h.startImport[0]), mws(h.startImport[1])];
  const exp = [mws(h.startExport[0]), mws(h.startExport[1])];
  const wh = (v: bigint) => Number(v / 3_600_000n);
  const out: Telegram[] = [];
  for (let m = START; m < START + DAYS * 86400; m += 60) {
    const { importMilliW, exportMilliW } = model.flows(m);
    const tariff = tariffOf(h, m);
    // The telegram at m + offset shows the registers `offset` seconds into this minute.
    const at = (reg: bigint[], p: number, s: number) => reg.map((v, i) => wh(i === tariff ? v + BigInt(p) * BigInt(s) : v)) as [number, number];
    if ((m - START) % STEP === 0) out.push({ time: m + h.offset, imp: at(imp, importMilliW, h.offset), exp: at(exp, exportMilliW, h.offset), importW: Math.round(importMilliW / 1000), exportW: Math.round(exportMilliW / 1000) });
    imp[tariff]! += BigInt(importMilliW) * 60n;
    exp[tariff]! += BigInt(exportMilliW) * 60n;
  }
  return out;
}

const sum = (a: [number, number]) => a[0] + a[1];
const dir = mkdtempSync(join(tmpdir(), 'sm-p1week-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const pairs: CrossedPair[] = [];
afterEach(async () => {
  for (const p of pairs.splice(0)) for (const port of p) if (port.isOpen) await new Promise((r) => port.close(r));
  MockBinding.reset();
});

/** Writes the capture (corrupted telegram in, outage out); returns the telegrams a reader can get. */
function writeCapture(h: Household, all: Telegram[], file: string): Telegram[] {
  const st = Buffer.from(`SAG${String(h.seed).padStart(5, '0')}`, 'latin1');
  const parts: Buffer[] = [];
  const kept: Telegram[] = [];
  all.forEach((t, i) => {
    if (t.time >= OUTAGE[0] && t.time < OUTAGE[1]) return; // cable pulled: nothing on the line
    let bytes = buildTelegram({ dialect: h.dialect, time: t.time, tz: h.tz, importWh: t.imp, exportWh: t.exp, powerW: t.importW, exportPowerW: t.exportW, tariff: tariffOf(h, t.time) + 1, equipmentId: `E00000000000${h.seed}` });
    if (h.encrypted) bytes = sealP1Frame(bytes, P1_KEYS, st, 1000 + i);
    if (t.time - h.offset === CORRUPT) {
      bytes = Buffer.from(bytes);
      bytes[h.encrypted ? bytes.length - 40 : bytes.indexOf('1-0:2.8.1') + 14]! ^= 0x01; // the CRC (or the GCM tag) fails
    } else kept.push(t);
    parts.push(bytes);
    if (t.time === OUTAGE[1] + h.offset) parts.push(Buffer.from('\r\n<cable back>\r\n')); // noise as the plug goes in
  });
  writeFileSync(file, Buffer.concat(parts));
  return kept;
}

/**
 * Import and export per window from the telegrams alone: a reading starts at the telegram before it, so a
 * window holds the registers' movement from the first telegram at or after its start to the first at or after
 * its end (the last telegram for the last window).
 */
function expectedWindows(kept: Telegram[]): Map<number, [number, number]> {
  const firstAtOrAfter = (t: number) => kept.find((k) => k.time >= t) ?? kept.at(-1)!;
  const out = new Map<number, [number, number]>();
  const first = kept[0]!.time - (kept[0]!.time % WINDOW) - WINDOW; // the first reading starts before the first telegram
  for (let w = first; w <= kept.at(-1)!.time; w += WINDOW) {
    const [a, b] = [firstAtOrAfter(w), firstAtOrAfter(w + WINDOW)];
    out.set(w, [sum(b.imp) - sum(a.imp), sum(b.exp) - sum(a.exp)]);
  }
  return out;
}

describe('a week of P1 captures in four dialects, prosumers among them', () => {
  it('gives every 15-minute window exactly its import and export register differences, through a corrupted telegram and an outage', async () => {
    const runs = await Promise.all(
      HOUSEHOLDS.map(async (h, n) => {
        const all = week(h);
        const file = join(dir, `${h.dialect}.p1`);
        const kept = writeCapture(h, all, file);
        const st = systemTitle('SMR', 7000 + n);
        const pair = await openCrossedMockPair(`/dev/p1w-m${n}`, `/dev/p1w-g${n}`);
        pairs.push(pair);
        const peer = new TestPeer(pair[1], KEY, st);
        const source = new P1Source(file, { tz: h.tz, dialect: h.dialect, ...(h.encrypted ? { keys: P1_KEYS } : {}) });
        const meter = await Meter.start({ systemTitle: st, key: KEY, line: streamLine(pair[0]), source, nv: new MemoryNvStore(), batch: 60 });
        const counters = await meter.done(60_000);
        await meter.stop();
        return { h, all, kept, peer, source, meter, counters };
      }),
    );

    for (const { h, all, kept, peer, source, meter, counters } of runs) {
      const who = `${h.dialect} (${h.kWp} kWp)`;
      // What the reader saw: every telegram but the corrupted one and those of the outage.
      expect(all.length - kept.length, who).toBe(1 + all.filter((t) => t.time >= OUTAGE[0] && t.time < OUTAGE[1]).length);
      expect(source.counters, who).toMatchObject({ parsed: kept.length, malformed: 0, outOfOrder: 0, gaps: 0, ...(h.encrypted ? { decryptFailures: 1 } : { crcErrors: 1 }) });
      expect(counters, who).toMatchObject({ readings: kept.length, registerResets: 0, exportHeld: 0 });
      expect(peer.rejected, who).toBe(0);

      // The receiver's side: decode, take register differences, attribute each reading to its start's window.
      const got = new Map<number, [number, number]>();
      for (const f of peer.frames()) {
        const [imports, exports] = [readingEnergies(f.batch), readingExports(f.batch)];
        f.batch.readings.forEach((r, i) => {
          const w = r.time - (r.time % WINDOW);
          const acc = got.get(w) ?? [0, 0];
          got.set(w, [acc[0] + imports[i]!, acc[1] + exports[i]!]);
        });
      }
      const want = expectedWindows(kept);
      for (const w of want.keys()) if (!got.has(w)) got.set(w, [0, 0]); // windows no reading starts in (the outage's)
      expect(got, who).toEqual(want);
      expect(got.size, who).toBeGreaterThanOrEqual(DAYS * 96);

      // Over the week: the last registers minus the first, and the meter ends on the P1 meter's registers.
      const total = [...got.values()].reduce((a, v) => [a[0] + v[0], a[1] + v[1]], [0, 0]);
      expect(total, who).toEqual([sum(all.at(-1)!.imp) - sum(all[0]!.imp), sum(all.at(-1)!.exp) - sum(all[0]!.exp)]);
      expect([meter.startWh, meter.startExportWh, meter.registerWh, meter.exportRegisterWh], who).toEqual([sum(all[0]!.imp), sum(all[0]!.exp), sum(all.at(-1)!.imp), sum(all.at(-1)!.exp)]);

      // Windows away from the damage are the meter's true register movement at the boundaries.
      const truth = (t: number) => all.find((k) => k.time >= t)!;
      const damaged = (w: number) => (w <= CORRUPT && CORRUPT < w + 2 * WINDOW) || (w + WINDOW > OUTAGE[0] - 60 && w < OUTAGE[1]);
      let checked = 0;
      for (const [w, v] of got) {
        if (damaged(w) || w + WINDOW > all.at(-1)!.time || w < all[0]!.time) continue;
        expect(v, `${who} window ${w}`).toEqual([sum(truth(w + WINDOW).imp) - sum(truth(w).imp), sum(truth(w + WINDOW).exp) - sum(truth(w).exp)]);
        checked++;
      }
      expect(checked, who).toBeGreaterThan(DAYS * 96 - 10);

      // Prosumers export, in some windows more than they import; a meter without panels sends the short form.
      const exporting = [...got.values()].filter(([imp, exp]) => exp > imp).length;
      if (h.kWp > 0) {
        expect(exporting, who).toBeGreaterThan(DAYS * 4 * 3);
        expect(peer.frames().every((f) => f.batch.prevExportWh !== undefined), who).toBe(true);
      } else {
        expect(total[1], who).toBe(0);
        expect(peer.frames().every((f) => f.batch.prevExportWh === undefined && f.batch.readings.every((r) => r.exportWh === undefined)), who).toBe(true);
      }
    }
    // The outage's energy is not lost: it lands in the window of the last telegram before the cable was pulled.
    const pv = runs[1]!;
    const outageWindow = OUTAGE[0] - (OUTAGE[0] % WINDOW);
    const before = pv.kept.filter((k) => k.time < OUTAGE[0]).at(-1)!;
    const after = pv.kept.find((k) => k.time >= OUTAGE[1])!;
    expect(after.time - before.time).toBe(46 * 60);
    expect(expectedWindows(pv.kept).get(outageWindow)![1]).toBeGreaterThanOrEqual(sum(after.exp) - sum(before.exp));
  }, 120_000);
});
