/**
 * The end-to-end mode's section of `npm run bench` (issue 12), each figure beside the classic mode's in the same
 * run, at 2048 bits:
 * - meter: encrypting one interval's snapshot with the key's fixed-base table (`encrypt_snapshot_ms`), its
 *   online part with a precomputed randomiser (one multiplication, `encrypt_online_us`), the randomiser's
 *   precomputation (`randomiser_ms`) and the table's construction, once per key (`table_build_ms`);
 * - uplink bytes per reading (ciphered frames of an hour of 1-minute readings in 15-reading batches, 1 h interval);
 * - replay readings/s, e2e vs classic, same synthetic fleet (SM_BENCH_E2E_METERS, default 20; SM_BENCH_E2E_DAYS,
 *   default 1; interval 1 h, billing 1 d, k 5);
 * - guardian: partial decryption per aggregate (`partial_decrypt_ms`) beside the classic PES's CRT decryption.
 * @module
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { replay } from '../cli/replay.js';
import { E2eEncoder } from '../firmware/e2e.js';
import { FLAT_TARIFF } from '../lib/tariff.js';
import { registerLayout } from '../protocol/e2e.js';
import { encodeFrame, SC_AES256GCM, sealFrame } from '../protocol/frame.js';
import { generatePaillier, partialDecrypt, PublicKey, splitKey } from '../protocol/paillier/engine.js';
import { encodeReadingBatch, type Reading } from '../protocol/reading.js';
import { measure } from './index.js';

const round = (x: number, d = 3) => Number(x.toFixed(d));

function uplinkBytes(pub: PublicKey): { e2e: number; e2eStream: number; classic: number } {
  const key = Buffer.alloc(32, 7);
  const st = Buffer.from('4d4d4d0000000001', 'hex');
  const enc = new E2eEncoder(pub, { intervalS: 3600, tariff: FLAT_TARIFF });
  // The same meter sealing its household's stream too (docs/protocol.md §11.5), what `provision --e2e` sets up.
  const withStream = new E2eEncoder(pub, { intervalS: 3600, tariff: FLAT_TARIFF, stream: { key: Buffer.alloc(32, 9), systemTitle: st, household: 'hh1' } });
  let reg = 100_000;
  let prev = reg;
  const t0 = Date.UTC(2024, 0, 1) / 1000;
  let classic = 0;
  let e2e = 0;
  let e2eStream = 0;
  let ic = 0;
  // Two hours; the second (steady state, no baseline snapshot) is counted.
  for (let b = 0; b < 8; b++) {
    const readings: Reading[] = [];
    for (let i = 0; i < 15; i++) readings.push({ time: t0 + (b * 15 + i) * 60, period: 60, importWh: (reg += 3), powerW: 180, status: 0 });
    const batch = { prevWh: prev, readings };
    prev = reg;
    const h = { systemTitle: st, sc: SC_AES256GCM, ic: ++ic };
    const c = encodeFrame(sealFrame(key, h, encodeReadingBatch(batch))).length;
    const e = encodeFrame(sealFrame(key, h, enc.encode(batch))).length;
    const es = encodeFrame(sealFrame(key, h, withStream.encode(batch, h.ic))).length;
    if (b >= 4) {
      classic += c;
      e2e += e;
      e2eStream += es;
    }
  }
  return { e2e: round(e2e / 60, 1), e2eStream: round(e2eStream / 60, 1), classic: round(classic / 60, 1) };
}

async function replayBoth(meters: number, days: number): Promise<Record<string, unknown>> {
  const dir = mkdtempSync(join(tmpdir(), 'sm-bench-e2e-'));
  try {
    const rows = ['meter,household,neighbourhood,source'];
    for (let i = 0; i < meters; i++) rows.push(`m${i},h${i},nb${i % 2},synthetic:${i + 1}`);
    writeFileSync(join(dir, 'fleet.csv'), rows.join('\n') + '\n');
    const out: Record<string, number | boolean> = {};
    for (const mode of ['classic', 'e2e'] as const) {
      const s = await replay({ fleetCsv: join(dir, 'fleet.csv'), db: join(dir, `${mode}.sqlite`), intervalS: 3600, billing: '1d', k: 5, tz: 'UTC', latenessS: 1800, start: Date.UTC(2024, 0, 1) / 1000, days, pool: true, e2e: mode === 'e2e' });
      if (mode === 'e2e') {
        out.readings_per_s = s.readingsPerSecond;
        out.all_accounted = s.ok;
      } else {
        out.readings_per_s_baseline = s.readingsPerSecond;
        out.all_accounted_baseline = s.ok;
      }
    }
    return { meters, days, ...out };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function run(): Promise<Record<string, unknown>> {
  const key = await generatePaillier(2048);
  const layout = registerLayout(key, 2);
  const m = layout.pack([123_456n, 7_890n, 0n, 0n]);
  const t0 = performance.now();
  const pub = new PublicKey(key.n).precompute();
  const tableBuildMs = performance.now() - t0;
  const snapshot = measure(() => pub.encrypt(m), { unit: 'ms', minMs: 2000 });
  const randomiser = measure(() => pub.randomiser(), { unit: 'ms', minMs: 2000 });
  const r = pub.randomiser();
  const online = measure(() => pub.addPlain(r, m), { unit: 'us', minMs: 1000 });
  const shares = splitKey(key);
  const c = pub.encrypt(m);
  const partial = measure(() => partialDecrypt(shares.guardian, c), { unit: 'ms', minMs: 2000, clock: 'cpu' });
  const crt = measure(() => key.decrypt(c), { unit: 'ms', minMs: 2000, clock: 'cpu' });
  const bytes = uplinkBytes(pub);
  const rp = await replayBoth(Number(process.env.SM_BENCH_E2E_METERS ?? 20), Number(process.env.SM_BENCH_E2E_DAYS ?? 1));
  return {
    meter: { encrypt_snapshot_ms: round(snapshot.median), randomiser_ms: round(randomiser.median), encrypt_online_us: round(online.median, 1), table_build_ms: Math.round(tableBuildMs) },
    uplink: { bytes_per_reading: bytes.e2e, bytes_per_reading_with_stream: bytes.e2eStream, bytes_per_reading_baseline: bytes.classic },
    replay: rp,
    guardian: { partial_decrypt_ms: round(partial.median), partial_decrypt_ms_baseline: round(crt.median) },
  };
}

const entry = process.argv[1];
if (entry && pathToFileURL(entry).href === import.meta.url) console.log(JSON.stringify(await run()));
