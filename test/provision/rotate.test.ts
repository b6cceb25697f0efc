/**
 * `provision rotate` (docs/protocol.md §7.1): a KEK per meter at provisioning, then each rotation a new key
 * wrapped under the KEK for the meter and to the PES key, nothing secret printed or written in clear.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { loadFleet, loadMeterKek, loadMeterKey, loadPesKeys, meterTransferPath, readWrappedMeterKeys } from '../../lib/keyset.js';
import { provision } from '../../provision/keys.js';
import { registerProvisionCommand } from '../../provision/cli.js';
import { rotateMeterKey } from '../../provision/rotate.js';
import { decodeMessage, MSG_KEY_TRANSFER } from '../../protocol/frame.js';
import { unwrapMeterKey } from '../../protocol/key-wrap.js';
import { unwrapKey } from '../../protocol/seal.js';
import { MockBinding, openCrossedMockPair } from '../../firmware/hal/crossed-mock.js';
import { streamLine } from '../../firmware/hal/line.js';
import { MemoryNvStore } from '../../firmware/hal/nv.js';
import { Meter } from '../../firmware/meter.js';
import { SyntheticSource } from '../../firmware/sources/synthetic.js';

describe('provision rotate', () => {
  let dir: string;
  let keys: string;
  let meter: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sm-rotate-'));
    writeFileSync(join(dir, 'fleet.csv'), 'meter,household,neighbourhood,source\nm1,h1,nb1,synthetic:7\nm2,h2,nb1,synthetic:8\n');
    keys = join(dir, 'keys');
    await provision({ fleetCsv: join(dir, 'fleet.csv'), out: keys, rsaBits: 2048, paillierBits: 1024 });
    meter = loadFleet(keys).meters[0]!.meter;
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const transferOf = (path: string) => {
    const m = decodeMessage(readFileSync(path));
    if (m.type !== MSG_KEY_TRANSFER) throw new Error('not a key transfer');
    return m;
  };

  it('gives every meter its own KEK (0600), and the PES the same KEK wrapped to its key', () => {
    const pesFile = readWrappedMeterKeys(keys);
    const rsa = loadPesKeys(keys).rsa;
    const keks = loadFleet(keys).meters.map((m) => {
      const kek = loadMeterKek(keys, m.meter);
      expect(statSync(join(keys, 'meters', `${m.meter}.kek`)).mode & 0o777).toBe(0o600);
      expect(kek).not.toEqual(loadMeterKey(keys, m.meter));
      expect(unwrapKey(rsa, pesFile.keks![m.meter]!)).toEqual(kek);
      return kek.toString('hex');
    });
    expect(new Set(keks).size).toBe(keks.length);
  });

  it('makes generation after generation: the transfer unwraps under the KEK to the key the PES gets; nothing secret printed', async () => {
    const out: string[] = [];
    const spy = vi.spyOn(console, 'log').mockImplementation((s: string) => void out.push(s));
    const program = new Command().exitOverride();
    registerProvisionCommand(program);
    await program.parseAsync(['node', 'smartermeter', 'provision', 'rotate', '--keys', keys, '--meter', meter]);
    spy.mockRestore();
    const kek = loadMeterKek(keys, meter);
    const path = meterTransferPath(keys, meter);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    const t1 = transferOf(path);
    expect([Buffer.from(t1.systemTitle).toString('hex'), t1.generation]).toEqual([meter, 1]);
    const k1 = unwrapMeterKey(kek, 1, t1.wrapped);
    const pes = loadPesKeys(keys);
    expect(pes.meterRotations.get(meter)).toEqual([k1]);
    expect(pes.meterKeys.get(meter)).toEqual(loadMeterKey(keys, meter)); // generation 0 is unchanged
    expect(pes.meterRotations.has(loadFleet(keys).meters[1]!.meter)).toBe(false);
    expect(out.join('\n')).toMatch(/generation 1/);
    for (const secret of [k1, kek]) expect(out.join('\n')).not.toContain(secret.toString('hex'));

    expect(rotateMeterKey({ keys, meter }).generation).toBe(2);
    const t2 = transferOf(path);
    const k2 = unwrapMeterKey(kek, 2, t2.wrapped);
    expect(loadPesKeys(keys).meterRotations.get(meter)).toEqual([k1, k2]);
    expect(k2).not.toEqual(k1);
    expect(() => unwrapMeterKey(kek, 1, t2.wrapped)).toThrow('does not authenticate');
  });

  it('a meter with its KEK accepts the transfer file as written; a tampered file is refused', async () => {
    const [a, b] = await openCrossedMockPair('/dev/rot-prov-m', '/dev/rot-prov-g');
    try {
      const m = await Meter.start({ systemTitle: Buffer.from(meter, 'hex'), key: loadMeterKey(keys, meter), kek: loadMeterKek(keys, meter), line: streamLine(a), source: new SyntheticSource({ seed: 1, start: Date.UTC(2016, 4, 2) / 1000, days: 1 }), nv: new MemoryNvStore() });
      const file = readFileSync(meterTransferPath(keys, meter));
      const tampered = Buffer.from(file);
      tampered[tampered.length - 1]! ^= 0x80;
      expect(await m.acceptKeyTransfer(tampered)).toBe('refused');
      expect(await m.acceptKeyTransfer(file)).toBe('accepted');
      await m.stop();
    } finally {
      await Promise.all([a, b].map((p) => new Promise((r) => p.close(r))));
      MockBinding.reset();
    }
  });

  it('refuses a meter not in the fleet and a key set without KEKs', () => {
    expect(() => rotateMeterKey({ keys, meter: '534d5200000000ff' })).toThrow(/not in the fleet/);
    rmSync(join(keys, 'meters', `${loadFleet(keys).meters[1]!.meter}.kek`));
    expect(() => rotateMeterKey({ keys, meter: loadFleet(keys).meters[1]!.meter })).toThrow(/no KEK/);
  });
});
