/**
 * The end-to-end section of `npm run bench`: `smartermeter replay` of a synthetic fleet (every real component
 * in one process: meters on mock serial lines, gateways, embedded broker, PES with a 2048-bit Paillier key,
 * MDMS on SQLite). Figures: readings/s, peak RSS, and whether every reading was accounted for.
 * Size with SM_BENCH_METERS (default 100) and SM_BENCH_DAYS (default 7): the figure is 100 x 7 days
 * at 1-minute resolution (~1M readings).
 * @module
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { replay } from '../cli/replay.js';

export async function run(): Promise<Record<string, unknown>> {
  const meters = Number(process.env.SM_BENCH_METERS ?? 100);
  const days = Number(process.env.SM_BENCH_DAYS ?? 7);
  const dir = mkdtempSync(join(tmpdir(), 'sm-bench-replay-'));
  try {
    const rows = ['meter,household,neighbourhood,source'];
    for (let i = 0; i < meters; i++) rows.push(`m${i},h${i},nb${i % 4},synthetic:${i + 1}`);
    writeFileSync(join(dir, 'fleet.csv'), rows.join('\n') + '\n');
    let peakRss = 0;
    const sample = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 250);
    const cpu0 = process.cpuUsage();
    try {
      const s = await replay({
        fleetCsv: join(dir, 'fleet.csv'),
        db: join(dir, 'out.sqlite'),
        intervalS: 900,
        billing: '1d',
        k: Math.min(20, Math.floor(meters / 4)) || 1,
        tz: 'UTC',
        latenessS: 1800,
        start: Date.UTC(2024, 0, 1) / 1000,
        days,
        pool: true,
      });
      const cpu = process.cpuUsage(cpu0);
      return {
        meters,
        days,
        readings: s.readings,
        seconds: Number(s.seconds.toFixed(1)),
        readings_per_s: s.readingsPerSecond,
        cpu_s: Number(((cpu.user + cpu.system) / 1e6).toFixed(1)),
        peak_rss_mb: Math.round(peakRss / 2 ** 20),
        released: s.released,
        suppressed: s.suppressed,
        all_accounted: s.ok,
      };
    } finally {
      clearInterval(sample);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const entry = process.argv[1];
if (entry && pathToFileURL(entry).href === import.meta.url) console.log(JSON.stringify(await run()));
