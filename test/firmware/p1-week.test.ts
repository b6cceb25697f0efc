/**
 * A week of P1 captures in four dialects, prosumers among them, each with a corrupted telegram and a cable
 * pulled for 45 minutes inside one hour, replayed through `p1:` sources into meters: the readings a receiver
 * decodes, attributed to 15-minute windows by their start (as the PES does, pes/README.md "Windows"), give per
 * window exactly the telegrams' import and export register differences at the window boundaries, and over the
 * week exactly the last telegram's registers minus the first's.
 *
 * The captures come from test/firmware/p1-captures.ts (the synthetic model behind a real meter's registers).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { MockBinding, openCrossedMockPair, type CrossedPair } from '../../firmware/hal/crossed-mock.js';
import { streamLine } from '../../firmware/hal/line.js';
import { MemoryNvStore } from '../../firmware/hal/nv.js';
import { Meter } from '../../firmware/meter.js';
import { P1Source } from '../../firmware/sources/p1/source.js';
import { systemTitle } from '../../protocol/frame.js';
import { readingEnergies, readingExports } from '../../protocol/reading.js';
import { TestPeer } from './helpers/peer.js';
import { expectedWindows as windowsOf, sum, telegrams, writeCapture as write, type Household, type Telegram } from './p1-captures.js';

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

const HOUSEHOLDS: Household[] = [
  { dialect: 'dsmr4', seed: 101, tz: 'Europe/Amsterdam', kWp: 0, offset: 7, startImport: [4_123_456, 3_987_654], startExport: [0, 0] },
  { dialect: 'dsmr5', seed: 102, tz: 'Europe/Amsterdam', kWp: 4, offset: 0, startImport: [2_345_678, 2_111_222], startExport: [1_234_567, 987_654] },
  { dialect: 'emucs', seed: 103, tz: 'Europe/Brussels', kWp: 6, offset: 31, startImport: [5_555_000, 1_999_999], startExport: [765_432, 12_345] },
  { dialect: 'smarty', seed: 104, tz: 'Europe/Luxembourg', kWp: 3, offset: 13, startImport: [999_999, 888_888], startExport: [100_000, 50_000], encrypted: true },
];

/** One telegram every {@link STEP} for the week. */
const week = (h: Household): Telegram[] => telegrams(h, { start: START, days: DAYS, step: STEP });

const dir = mkdtempSync(join(tmpdir(), 'sm-p1week-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const pairs: CrossedPair[] = [];
afterEach(async () => {
  for (const p of pairs.splice(0)) for (const port of p) if (port.isOpen) await new Promise((r) => port.close(r));
  MockBinding.reset();
});

/** Writes the capture (corrupted telegram in, outage out); returns the telegrams a reader can get. */
const writeCapture = (h: Household, all: Telegram[], file: string): Telegram[] => write(h, all, file, { outage: OUTAGE, corrupt: CORRUPT }, P1_KEYS);
const expectedWindows = (kept: Telegram[]) => windowsOf(kept, WINDOW);

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
