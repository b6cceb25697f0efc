/**
 * Firmware figures, in the bench/ section convention (`run()` returns the section's JSON; wire it with
 * `export { run } from '../firmware/bench.js'` in bench/firmware.ts). Standalone: `npx tsx firmware/bench.ts`.
 *
 * - `umassLinesPerS`: UMass CSV parse rate (30 days at 1 min, UTC and America/New_York);
 * - `syntheticSamplesPerS`: synthetic model rate;
 * - `meter*`: readings and frames per second of one meter at speed max over a crossed mock line with an
 *   acknowledging peer, NV in memory and in a file (two fsyncs per save);
 * - `nvSaveMs`: one file NV save with a full 256-frame ring.
 * @module
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { LinkParser, encodeLinkFrame } from '../protocol/link.js';
import { decodeMessage, encodeAck, MSG_FRAME, systemTitle } from '../protocol/frame.js';
import { MockBinding, openCrossedMockPair } from './hal/crossed-mock.js';
import { streamLine } from './hal/line.js';
import { FileNvStore, MemoryNvStore, type NvStore } from './hal/nv.js';
import { Meter } from './meter.js';
import { encodeMeterState } from './state.js';
import { SyntheticSource, writeSyntheticCsv } from './sources/synthetic.js';
import { UmassSource } from './sources/umass.js';

const START = Date.UTC(2016, 4, 2) / 1000;

async function rate(count: () => Promise<number>): Promise<number> {
  const t = performance.now();
  const n = await count();
  return Math.round(n / ((performance.now() - t) / 1000));
}

async function drain(iterable: AsyncIterable<unknown>): Promise<number> {
  let n = 0;
  for await (const _ of iterable) n++;
  return n;
}

async function meterRun(nv: NvStore, days: number, n: number): Promise<{ readingsPerS: number; framesPerS: number }> {
  const st = systemTitle('SMR', 1);
  const [meterEnd, gatewayEnd] = await openCrossedMockPair(`/bench/m${n}`, `/bench/g${n}`);
  // The peer acknowledges every frame straight away, like a gateway whose broker is instant.
  gatewayEnd.pipe(new LinkParser()).on('data', (p: Buffer) => {
    const m = decodeMessage(p);
    if (m.type === MSG_FRAME) gatewayEnd.write(encodeLinkFrame(encodeAck({ systemTitle: m.systemTitle, ic: m.ic })));
  });
  const t = performance.now();
  const meter = await Meter.start({ systemTitle: st, key: Buffer.alloc(32, 1), line: streamLine(meterEnd), source: new SyntheticSource({ seed: 1, start: START, days }), nv });
  const c = await meter.done();
  const s = (performance.now() - t) / 1000;
  await meter.stop();
  await Promise.all([meterEnd, gatewayEnd].map((p) => new Promise((r) => p.close(r))));
  return { readingsPerS: Math.round(c.readings / s), framesPerS: Math.round(c.frames / s) };
}

/**
 * Runs the firmware benchmarks; returns the JSON section.
 * @example
 * ```ts
 * console.log((await run()).meterReadingsPerS_fileNv);
 * ```
 */
export async function run(): Promise<Record<string, unknown>> {
  const dir = mkdtempSync(join(tmpdir(), 'sm-fwbench-'));
  try {
    const csvUtc = join(dir, 'utc.csv');
    const csvNy = join(dir, 'ny.csv');
    await writeSyntheticCsv(csvUtc, { seed: 1, start: START, days: 30 });
    await writeSyntheticCsv(csvNy, { seed: 1, start: START, days: 30, tz: 'America/New_York' });
    const umassLinesPerS = await rate(() => drain(new UmassSource(csvUtc).samples()));
    const umassLinesPerS_newYork = await rate(() => drain(new UmassSource(csvNy, { tz: 'America/New_York' }).samples()));
    const syntheticSamplesPerS = await rate(() => drain(new SyntheticSource({ seed: 1, start: START, days: 30 }).samples()));
    const memory = await meterRun(new MemoryNvStore(), 10, 1);
    const file = await meterRun(new FileNvStore(join(dir, 'nv.cbor')), 10, 2);

    const nv = new FileNvStore(join(dir, 'full.cbor'));
    const ring = Array.from({ length: 256 }, (_, ic) => ({ ic, bytes: Buffer.alloc(330, ic) }));
    const record = encodeMeterState({ systemTitle: systemTitle('SMR', 1), reservedIc: 320, registerMilliWs: 10n ** 12n, exportMilliWs: 0n, resumeAt: START, samples: 3840, ring });
    const times: number[] = [];
    for (let i = 0; i < 50; i++) {
      const t = performance.now();
      await nv.save(record);
      times.push(performance.now() - t);
    }
    times.sort((a, b) => a - b);
    return {
      umassLinesPerS,
      umassLinesPerS_newYork,
      syntheticSamplesPerS,
      meterReadingsPerS_memoryNv: memory.readingsPerS,
      meterFramesPerS_memoryNv: memory.framesPerS,
      meterReadingsPerS_fileNv: file.readingsPerS,
      meterFramesPerS_fileNv: file.framesPerS,
      nvSaveMs_fullRing: Number(times[25]!.toFixed(2)),
    };
  } finally {
    MockBinding.reset();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) console.log(JSON.stringify(await run()));
