/**
 * The `p1` section of `npm run bench`: how fast the P1 source reads a capture, beside the CSV source.
 *
 * - `telegrams_per_s`: a DSMR 5 capture (20,000 telegrams, 10 s apart, Europe/Amsterdam) through P1Source
 *   end to end: file stream, P1TelegramParser (CRC-16/ARC, resync), parseTelegram, samples;
 * - `csv_samples_per_s`: the baseline, a 30-day one-minute UMass CSV (43,200 lines) through UmassSource;
 * - `encrypted_telegrams_per_s`: the same telegrams as Luxembourg encrypted frames (DLMS framing, AES-128-GCM);
 * - `parse_us`: parseTelegram alone on one telegram (median);
 * - `uplink_bytes_per_reading_import_only` and `_pv`: what the export register costs on the serial uplink, the
 *   bytes a meter writes to its line (link-framed, ciphered frames of 15 readings) per reading over a June day
 *   of the same synthetic household, without panels (the short form: version 1's bytes) and with 4 kWp (the
 *   long form once the export register has moved, i.e. from the first sunny minute on).
 * Medians of 3 passes each, interleaved so that load drifts hit both sources alike. Standalone:
 * `npx tsx bench/p1.ts`.
 * @module
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { MockBinding, openCrossedMockPair } from '../firmware/hal/crossed-mock.js';
import { streamLine } from '../firmware/hal/line.js';
import { MemoryNvStore } from '../firmware/hal/nv.js';
import { Meter } from '../firmware/meter.js';
import { sealP1Frame } from '../firmware/sources/p1/dlms.js';
import { buildTelegram } from '../firmware/sources/p1/generate.js';
import { P1Source } from '../firmware/sources/p1/source.js';
import { parseTelegram } from '../firmware/sources/p1/telegram.js';
import { SyntheticSource, writeSyntheticCsv } from '../firmware/sources/synthetic.js';
import { decodeMessage, encodeAck, MSG_FRAME, systemTitle } from '../protocol/frame.js';
import { encodeLinkFrame, LinkParser } from '../protocol/link.js';
import { UmassSource } from '../firmware/sources/umass.js';
import { measure, progress } from './index.js';

const START = Date.UTC(2024, 0, 8) / 1000;
const TELEGRAMS = 20_000;

async function perSecond(source: { samples(): AsyncIterable<unknown> }): Promise<number> {
  const t = performance.now();
  let n = 0;
  for await (const _ of source.samples()) n++;
  return n / ((performance.now() - t) / 1000);
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** Bytes a meter writes to its line per reading over a June day of household 3, with or without panels. */
async function uplinkBytesPerReading(kWp: number): Promise<number> {
  const [meterEnd, gatewayEnd] = await openCrossedMockPair(`/bench/p1-uplink-m${kWp}`, `/bench/p1-uplink-g${kWp}`);
  // A peer that acknowledges every frame at once, as a gateway whose broker is instant: no retransmissions.
  gatewayEnd.pipe(new LinkParser()).on('data', (p: Buffer) => {
    const m = decodeMessage(p);
    if (m.type === MSG_FRAME) gatewayEnd.write(encodeLinkFrame(encodeAck({ systemTitle: m.systemTitle, ic: m.ic })));
  });
  const source = new SyntheticSource({ seed: 3, start: Date.UTC(2024, 5, 19) / 1000, days: 1, pv: { kWp } });
  const meter = await Meter.start({ systemTitle: systemTitle('SMR', 1), key: Buffer.alloc(32, 1), line: streamLine(meterEnd), source, nv: new MemoryNvStore() });
  const c = await meter.done();
  await meter.stop();
  await Promise.all([meterEnd, gatewayEnd].map((p) => new Promise((r) => p.close(r))));
  if (c.retransmits !== 0) throw new Error(`uplink bench: ${c.retransmits} retransmissions`);
  return c.bytesSent / c.readings;
}

/**
 * Runs the P1 benchmarks; returns the JSON section.
 * @example
 * ```ts
 * const { telegrams_per_s, csv_samples_per_s } = await run();
 * ```
 */
export async function run(): Promise<Record<string, unknown>> {
  const dir = mkdtempSync(join(tmpdir(), 'sm-p1bench-'));
  try {
    progress('p1: writing a capture and a CSV');
    const keys = { key: Buffer.alloc(16, 7), authKey: Buffer.alloc(16, 9) };
    const st = Buffer.from('SAG10030', 'latin1');
    const plain: Buffer[] = [];
    const sealed: Buffer[] = [];
    let t1 = 1_234_567;
    for (let i = 0; i < TELEGRAMS; i++) {
      t1 += i % 7;
      const t = buildTelegram({ dialect: 'dsmr5', time: START + i * 10, importWh: [t1, 7_654_321], powerW: (i * 37) % 4000 });
      plain.push(t);
      sealed.push(sealP1Frame(t, keys, st, i + 1));
    }
    const capture = join(dir, 'capture.p1');
    const encrypted = join(dir, 'encrypted.p1');
    writeFileSync(capture, Buffer.concat(plain));
    writeFileSync(encrypted, Buffer.concat(sealed));
    const csv = join(dir, 'apt.csv');
    await writeSyntheticCsv(csv, { seed: 1, start: START, days: 30 });

    const p1: number[] = [];
    const umass: number[] = [];
    const enc: number[] = [];
    for (let pass = 0; pass < 3; pass++) {
      progress(`p1: pass ${pass + 1} of 3`);
      const source = new P1Source(capture, { tz: 'Europe/Amsterdam', dialect: 'dsmr5' });
      p1.push(await perSecond(source));
      if (source.counters.parsed !== TELEGRAMS) throw new Error(`P1 bench read ${source.counters.parsed} of ${TELEGRAMS} telegrams`);
      umass.push(await perSecond(new UmassSource(csv)));
      const e = new P1Source(encrypted, { tz: 'Europe/Amsterdam', dialect: 'smarty', keys });
      enc.push(await perSecond(e));
      if (e.counters.parsed !== TELEGRAMS) throw new Error(`encrypted P1 bench read ${e.counters.parsed} of ${TELEGRAMS} telegrams`);
    }
    progress('p1: uplink bytes per reading, with and without panels');
    const importOnly = await uplinkBytesPerReading(0);
    const withPv = await uplinkBytesPerReading(4);
    MockBinding.reset();
    const one = plain[1234]!;
    const parse = measure(() => parseTelegram(one, 'Europe/Amsterdam'), { unit: 'us', minReps: 2000, minMs: 500 });
    return {
      telegrams_per_s: Math.round(median(p1)),
      csv_samples_per_s: Math.round(median(umass)),
      encrypted_telegrams_per_s: Math.round(median(enc)),
      parse_us: Number(parse.median.toFixed(2)),
      telegram_bytes: one.length,
      uplink_bytes_per_reading_import_only: Number(importOnly.toFixed(2)),
      uplink_bytes_per_reading_pv: Number(withPv.toFixed(2)),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) console.log(JSON.stringify(await run()));
