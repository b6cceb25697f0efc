/**
 * P1 captures generated from numbers, for the tests that check issue 18 from outside (p1-week.test.ts at the
 * meter/receiver level, test/cli/replay-p1-week.test.ts through `replay` into the MDMS).
 *
 * The captures are not recordings (none are copied into the repository): each household is the synthetic
 * model (firmware/sources/synthetic.ts) behind a real meter's registers. The meter integrates the net of load
 * and panels per minute into its tariff registers (NL/LU: low tariff 23:00-07:00 and weekends; e-MUCS:
 * 1.8.1 day, 1.8.2 night), each shown as floor(Wh) as a meter display does; a capture keeps one telegram
 * every `step` seconds (as a reader that stores sparsely does), at the second the meter happens to send it, so
 * window boundaries fall between telegrams. The expected numbers come from those registers alone.
 * @module
 */
import { writeFileSync } from 'node:fs';
import { DateTime } from 'luxon';
import { sealP1Frame, type P1Keys } from '../../firmware/sources/p1/dlms.js';
import { buildTelegram } from '../../firmware/sources/p1/generate.js';
import type { Dialect } from '../../firmware/sources/p1/telegram.js';
import { SyntheticModel } from '../../firmware/sources/synthetic.js';

/** One household behind one P1 meter. */
export interface Household {
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

/** One telegram: its time and the registers it shows, Wh per tariff. */
export interface Telegram {
  time: number;
  imp: [number, number];
  exp: [number, number];
  importW: number;
  exportW: number;
}

/** Where a capture is damaged: the cable pulled over `outage` [from, to), the telegram of minute `corrupt` corrupted. */
export interface Damage {
  outage: readonly [number, number];
  corrupt: number;
}

const tariffs = new Map<string, 0 | 1>();

/**
 * Which tariff register (0 or 1) a minute counts in (it changes on the hour: one zone lookup per hour).
 * @example
 * ```ts
 * tariffOf(household, Date.UTC(2024, 5, 17, 12) / 1000); // 1: a weekday's normal tariff in NL
 * ```
 */
export function tariffOf(h: Household, time: number): 0 | 1 {
  const hour = time - (time % 3600);
  const key = `${h.tz}/${h.dialect}/${hour}`;
  let t = tariffs.get(key);
  if (t === undefined) tariffs.set(key, (t = tariffAt(h, hour)));
  return t;
}

function tariffAt(h: Household, time: number): 0 | 1 {
  const local = DateTime.fromSeconds(time, { zone: h.tz });
  const night = local.hour < 7 || local.hour >= 23;
  if (h.dialect === 'emucs') return night ? 1 : 0; // Fluvius: 1.8.1 day, 1.8.2 night
  return night || local.weekday >= 6 ? 0 : 1; // NL/LU: 1.8.1 low, 1.8.2 normal
}

/**
 * One telegram every `step` seconds from `start` for `days`: the registers as the meter shows them then.
 * @example
 * ```ts
 * const all = telegrams(household, { start: 1718575200, days: 2, step: 120 });
 * ```
 */
export function telegrams(h: Household, o: { start: number; days: number; step: number }): Telegram[] {
  const model = new SyntheticModel(h.seed, h.tz, { kWp: h.kWp });
  const mws = (wh: number) => BigInt(wh) * 3_600_000n;
  const imp = [mws(h.startImport[0]), mws(h.startImport[1])];
  const exp = [mws(h.startExport[0]), mws(h.startExport[1])];
  const wh = (v: bigint) => Number(v / 3_600_000n);
  const out: Telegram[] = [];
  for (let m = o.start; m < o.start + o.days * 86400; m += 60) {
    const { importMilliW, exportMilliW } = model.flows(m);
    const tariff = tariffOf(h, m);
    // The telegram at m + offset shows the registers `offset` seconds into this minute.
    const at = (reg: bigint[], p: number, s: number) => reg.map((v, i) => wh(i === tariff ? v + BigInt(p) * BigInt(s) : v)) as [number, number];
    if ((m - o.start) % o.step === 0) out.push({ time: m + h.offset, imp: at(imp, importMilliW, h.offset), exp: at(exp, exportMilliW, h.offset), importW: Math.round(importMilliW / 1000), exportW: Math.round(exportMilliW / 1000) });
    imp[tariff]! += BigInt(importMilliW) * 60n;
    exp[tariff]! += BigInt(exportMilliW) * 60n;
  }
  return out;
}

/**
 * Writes the capture (corrupted telegram in, outage out, noise as the plug goes back in); returns the
 * telegrams a reader can get. `keys` seals every telegram as Luxembourg's encrypted P1 (for `encrypted` households).
 * @example
 * ```ts
 * const kept = writeCapture(household, all, '/tmp/m1.p1', { outage: [t0, t0 + 2700], corrupt: t1 });
 * ```
 */
export function writeCapture(h: Household, all: Telegram[], file: string, damage: Damage, keys?: P1Keys): Telegram[] {
  const { outage, corrupt } = damage;
  const st = Buffer.from(`SAG${String(h.seed).padStart(5, '0')}`, 'latin1');
  const parts: Buffer[] = [];
  const kept: Telegram[] = [];
  all.forEach((t, i) => {
    if (t.time >= outage[0] && t.time < outage[1]) return; // cable pulled: nothing on the line
    let bytes = buildTelegram({ dialect: h.dialect, time: t.time, tz: h.tz, importWh: t.imp, exportWh: t.exp, powerW: t.importW, exportPowerW: t.exportW, tariff: tariffOf(h, t.time) + 1, equipmentId: `E00000000000${h.seed}` });
    if (h.encrypted) {
      if (!keys) throw new Error(`household ${h.seed} is encrypted: give its keys`);
      bytes = sealP1Frame(bytes, keys, st, 1000 + i);
    }
    if (t.time - h.offset === corrupt) {
      bytes = Buffer.from(bytes);
      bytes[h.encrypted ? bytes.length - 40 : bytes.indexOf('1-0:2.8.1') + 14]! ^= 0x01; // the CRC (or the GCM tag) fails
    } else kept.push(t);
    parts.push(bytes);
    if (t.time === outage[1] + h.offset) parts.push(Buffer.from('\r\n<cable back>\r\n')); // noise as the plug goes in
  });
  writeFileSync(file, Buffer.concat(parts));
  return kept;
}

/**
 * Sum of a register pair (both tariffs), Wh.
 * @example
 * ```ts
 * sum([10, 5]); // 15
 * ```
 */
export const sum = (a: readonly [number, number]): number => a[0] + a[1];

/**
 * Import and export per window from the telegrams alone: a reading starts at the telegram before it, so a
 * window holds the registers' movement from the first telegram at or after its start to the first at or after
 * its end (the last telegram for the last window).
 * @example
 * ```ts
 * expectedWindows(kept, 900).get(1718575200); // [import Wh, export Wh] of the first quarter hour
 * ```
 */
export function expectedWindows(kept: Telegram[], window: number): Map<number, [number, number]> {
  const firstAtOrAfter = (t: number) => kept.find((k) => k.time >= t) ?? kept.at(-1)!;
  const out = new Map<number, [number, number]>();
  const first = kept[0]!.time - (kept[0]!.time % window) - window; // the first reading starts before the first telegram
  for (let w = first; w <= kept.at(-1)!.time; w += window) {
    const [a, b] = [firstAtOrAfter(w), firstAtOrAfter(w + window)];
    out.set(w, [sum(b.imp) - sum(a.imp), sum(b.exp) - sum(a.exp)]);
  }
  return out;
}
