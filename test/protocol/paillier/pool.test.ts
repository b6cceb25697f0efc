import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generatePaillier, RandomiserPool, type PrivateKey } from '../../../protocol/paillier/engine.js';

let key: PrivateKey;
beforeAll(async () => {
  key = await generatePaillier(512);
});
afterAll(async () => {
  await key.destroy();
});

describe('randomiser pool', () => {
  it('hands out distinct encryptions of zero made by worker threads, each once', async () => {
    const pool = key.startPool({ capacity: 32, batch: 8, workers: 1 });
    expect(key.startPool()).toBe(pool);
    await pool.filled(32);
    const seen = new Set<bigint>();
    for (let i = 0; i < 32; i++) {
      const r = pool.take()!;
      expect(key.isCiphertext(r)).toBe(true);
      expect(key.decrypt(r)).toBe(0n);
      seen.add(r);
    }
    expect(seen.size).toBe(32);
    expect(pool.counters.taken).toBe(32);
    await key.closePool();
  });

  it('refills to full capacity after takes that leave less than a batch missing', async () => {
    const pool = new RandomiserPool({ kind: 'public', hs: key.hs, n: key.n, n2: key.n2, bits: 64, w: 4 }, { capacity: 10, batch: 4, workers: 1 });
    try {
      const timeout = (ms: number) => new Promise((_, reject) => setTimeout(() => reject(new Error('pool never refilled')), ms).unref());
      await Promise.race([pool.filled(10), timeout(10_000)]);
      for (let i = 0; i < 7; i++) expect(pool.take()).toBeTypeOf('bigint'); // 7 = one batch + 3
      await Promise.race([pool.filled(10), timeout(10_000)]);
      expect(pool.available).toBe(10);
    } finally {
      await pool.close();
    }
  });

  it('falls back to inline computation when empty, and counts the misses', async () => {
    const pool = key.publicKey.startPool({ capacity: 2, batch: 1, workers: 1 });
    await pool.filled(2);
    const before = pool.counters.misses;
    const cs = Array.from({ length: 10 }, (_, i) => key.publicKey.encrypt(BigInt(i))); // drains faster than it refills
    expect(cs.map((c) => key.decrypt(c))).toEqual(Array.from({ length: 10 }, (_, i) => BigInt(i)));
    expect(pool.counters.misses).toBeGreaterThan(before);
    expect(pool.counters.taken + pool.counters.misses - before).toBe(10);
    await key.publicKey.closePool();
  });

  it('keeps encrypting after close; close is idempotent; filled() rejects once closed', async () => {
    const pool = key.startPool({ capacity: 4, batch: 2 });
    await key.closePool();
    await pool.close();
    expect(pool.take()).toBeUndefined();
    await expect(pool.filled(1)).rejects.toThrow(/closed/);
    expect(key.decrypt(key.rerandomize(key.encrypt(5n)))).toBe(5n);
  });

  it('reports a worker that fails instead of hanging', async () => {
    const pool = new RandomiserPool({ kind: 'public', hs: 2n, n: 3n, n2: 9n, bits: 8, w: 99 }, { capacity: 4, batch: 2, workers: 1 });
    await expect(pool.filled(1)).rejects.toThrow(/window/);
    expect(pool.counters.errors).toBe(1);
    expect(pool.take()).toBeUndefined();
    await pool.close();
  });

  it('validates its options', () => {
    const spec = { kind: 'public' as const, hs: 4n, n: 3n, n2: 9n, bits: 8, w: 4 };
    expect(() => new RandomiserPool(spec, { capacity: 0 })).toThrow(RangeError);
    expect(() => new RandomiserPool(spec, { capacity: 4, batch: 5 })).toThrow(RangeError);
    expect(() => new RandomiserPool(spec, { workers: 0 })).toThrow(RangeError);
  });

  it('does not keep the process alive, even while its worker is busy', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pool-'));
    try {
      const script = join(dir, 'alive.mts');
      const engine = pathToFileURL(join(process.cwd(), 'protocol/paillier/engine.ts')).href;
      // A table of 293 rows x 16383 products mod a 4096-bit modulus: the worker is busy for minutes.
      writeFileSync(
        script,
        `import { RandomiserPool } from '${engine}';\n` +
          `const n = (1n << 2048n) + 1n;\n` +
          `new RandomiserPool({ kind: 'public', hs: 3n, n, n2: n * n, bits: 4096, w: 14 }, { capacity: 4, batch: 2 });\n` +
          `console.log('started');\n`,
      );
      const r = spawnSync(process.execPath, ['--import', 'tsx', script], { encoding: 'utf8', timeout: 20_000 });
      expect(r.error).toBeUndefined(); // ETIMEDOUT if the worker kept the process alive
      expect(r.stderr).toBe('');
      expect(r.stdout.trim()).toBe('started');
      expect(r.status).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
