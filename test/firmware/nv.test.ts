import { existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FileNvStore, MemoryNvStore } from '../../firmware/hal/nv.js';
import { decodeMeterState, encodeMeterState, type MeterState } from '../../firmware/state.js';
import { systemTitle } from '../../protocol/frame.js';

const dir = mkdtempSync(join(tmpdir(), 'sm-nv-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('FileNvStore', () => {
  it('returns undefined before the first save, then the last record saved', async () => {
    const nv = new FileNvStore(join(dir, 'a.cbor'));
    expect(await nv.load()).toBeUndefined();
    await nv.save({ v: 1, n: 1 });
    await nv.save({ v: 1, n: 2, bytes: Buffer.from('abc') });
    const got = (await nv.load()) as { v: number; n: number; bytes: Uint8Array };
    expect({ ...got, bytes: Buffer.from(got.bytes).toString() }).toEqual({ v: 1, n: 2, bytes: 'abc' });
  });

  it('writes mode 0600 and leaves no temporary file behind', async () => {
    const path = join(dir, 'b.cbor');
    writeFileSync(`${path}.tmp`, 'leftover of a cut save', { mode: 0o644 });
    await new FileNvStore(path).save({ v: 1 });
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(existsSync(`${path}.tmp`)).toBe(false);
    expect(readdirSync(dir).filter((f) => f.startsWith('b.'))).toEqual(['b.cbor']);
  });

  it('names the file when the record is corrupt or unreadable', async () => {
    const path = join(dir, 'c.cbor');
    writeFileSync(path, Buffer.from([0xff, 0x00, 0x13]));
    await expect(new FileNvStore(path).load()).rejects.toThrow(`NV store ${path} is corrupt`);
    await expect(new FileNvStore(dir).load()).rejects.toThrow(`cannot read NV store ${dir}`);
  });
});

describe('MemoryNvStore', () => {
  it('loses a save cut before it, keeps one cut after it, and freezes the caller', async () => {
    for (const when of ['before-save', 'after-save'] as const) {
      const nv = new MemoryNvStore();
      await nv.save({ n: 1 });
      nv.cutAt(2, when);
      let returned = false;
      void nv.save({ n: 2 }).then(() => (returned = true));
      await nv.powerCut;
      void nv.save({ n: 3 }).then(() => (returned = true)); // a dead store ignores saves
      await new Promise((r) => setTimeout(r, 20));
      expect(returned).toBe(false);
      expect(nv.isCut).toBe(true);
      nv.powerOn();
      expect(await nv.load()).toEqual({ n: when === 'before-save' ? 1 : 2 });
      await nv.save({ n: 4 });
      expect(await nv.load()).toEqual({ n: 4 });
    }
  });
});

describe('meter state record', () => {
  const st = systemTitle('SMR', 9);
  const state: MeterState = {
    systemTitle: st,
    reservedIc: 128,
    registerMilliWs: 2n ** 60n + 12345n, // beyond 2^53: stored as [Wh, mW·s]
    exportMilliWs: 2n ** 58n + 777n,
    resumeAt: 1462147200,
    samples: 42,
    ring: [{ ic: 100, bytes: Buffer.from('frame-100') }, { ic: 101, bytes: Buffer.from('frame-101') }],
  };

  it('round-trips through the file store', async () => {
    const nv = new FileNvStore(join(dir, 'state.cbor'));
    await nv.save(encodeMeterState(state));
    const got = decodeMeterState(await nv.load(), st);
    const plain = (s: MeterState) => ({ ...s, systemTitle: Buffer.from(s.systemTitle).toString('hex'), ring: s.ring.map((f) => [f.ic, Buffer.from(f.bytes).toString()]) });
    expect(plain(got)).toEqual(plain(state));
  });

  it('refuses a record of another meter or a damaged one', () => {
    const rec = encodeMeterState(state);
    expect(() => decodeMeterState(rec, systemTitle('SMR', 10))).toThrow(/belongs to meter 534d520000000009/);
    expect(() => decodeMeterState({ ...rec, v: 3 }, st)).toThrow(/unsupported version/);
    expect(() => decodeMeterState({ ...rec, ic: -1 }, st)).toThrow(/NV record of meter 534d520000000009 is invalid: ic/);
    expect(() => decodeMeterState({ ...rec, reg: [1, 3_600_000] }, st)).toThrow(/reg.milliWs/);
    expect(() => decodeMeterState({ ...rec, xreg: [1, 3_600_000] }, st)).toThrow(/xreg.milliWs/);
    const { xreg: _, ...noExport } = rec;
    expect(() => decodeMeterState(noExport, st)).toThrow(/xreg/); // version 2 must carry it
    expect(() => decodeMeterState({ ...rec, ring: [[1]] }, st)).toThrow(/ring\[0\]/);
    expect(() => decodeMeterState([1, 2], st)).toThrow(/map/);
  });

  it('reads a version 1 record (before the export register) as export 0 and writes version 2', async () => {
    // A record exactly as the firmware before the export register wrote it.
    const v1 = { v: 1, st, ic: 128, reg: [12_345, 678], at: 1462147200, n: 42, ring: [[100, Buffer.from('frame-100')]] };
    const nv = new FileNvStore(join(dir, 'v1.cbor'));
    await nv.save(v1);
    const got = decodeMeterState(await nv.load(), st);
    expect(got.registerMilliWs).toBe(12_345n * 3_600_000n + 678n);
    expect(got.exportMilliWs).toBe(0n);
    expect(got.reservedIc).toBe(128);
    const again = encodeMeterState(got);
    expect(again.v).toBe(2);
    expect(again.xreg).toEqual([0, 0]);
    expect(decodeMeterState(again, st)).toEqual(got);
  });
});
