import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { Command } from 'commander';
import { SerialPort } from 'serialport';
import { p1SerialOption, registerMeterCommand } from '../../firmware/cli.js';
import { buildTelegram } from '../../firmware/sources/p1/generate.js';
import { meterId, systemTitle } from '../../protocol/frame.js';
import { readingEnergies } from '../../protocol/reading.js';
import { TestPeer } from './helpers/peer.js';

const dir = mkdtempSync(join(tmpdir(), 'sm-p1cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function program(): Command {
  const p = new Command('smartermeter').exitOverride().configureOutput({ writeErr: () => undefined, writeOut: () => undefined });
  registerMeterCommand(p);
  return p;
}
const run = (...argv: string[]) => program().parseAsync(argv, { from: 'user' });

const st = systemTitle('SMR', 1818);
const id = meterId(st);
const key = Buffer.alloc(32, 0x18);
const keys = join(dir, 'keys');
mkdirSync(join(keys, 'meters'), { recursive: true });
writeFileSync(join(keys, 'meters', `${id}.key`), key.toString('hex'), { mode: 0o600 });
writeFileSync(join(keys, 'fleet.json'), JSON.stringify({ version: 1, meters: [{ meter: id, label: 'p1', household: 'hh-p1', neighbourhood: 'nb-p1', gateway: 'gw-nb-p1', source: 'synthetic:1' }], gateways: ['gw-nb-p1'], households: ['hh-p1'], neighbourhoods: ['nb-p1'] }));
const T0 = Date.UTC(2024, 5, 1, 8) / 1000;
const telegram = (i: number) => buildTelegram({ dialect: 'dsmr5', time: T0 + i, importWh: [100_000 + i * 3, 50_000], powerW: 10_800 });

describe('smartermeter meter --source p1:...', () => {
  it('parses --p1-serial and rejects p1 flags that do not fit', async () => {
    expect(p1SerialOption('9600,7E1')).toEqual({ baudRate: 9600, dataBits: 7, parity: 'even', stopBits: 1 });
    expect(p1SerialOption('115200,8N1')).toEqual({ baudRate: 115200, dataBits: 8, parity: 'none', stopBits: 1 });
    expect(() => p1SerialOption('115200,8E2')).toThrow(/--p1-serial must look like/);
    const base = ['meter', '--keys', keys, '--meter', id, '--port', '/dev/null'];
    await expect(run(...base, '--p1-dialect', 'dsmr9')).rejects.toThrow(/--p1-dialect must be auto or one of/);
    await expect(run(...base, '--source', 'synthetic:1', '--p1-dialect', 'dsmr5')).rejects.toThrow(/--p1-\* flags apply to p1: sources only/);
    await expect(run(...base, '--source', 'p1:/dev/ttyUSB0', '--pv-share', '0.3')).rejects.toThrow(/--pv-share apply to synthetic sources only/);
    await expect(run(...base, '--source', 'synthetic:1:pv=x')).rejects.toThrow(/synthetic:<seed>:pv=<kWp>/);
    await expect(run(...base, '--source', 'p1:/dev/ttyUSB0', '--p1-key', '00'.repeat(16))).rejects.toThrow(/--p1-key and --p1-auth-key go together/);
    await expect(run(...base, '--source', 'p1:/dev/ttyUSB0', '--p1-key', 'zz', '--p1-auth-key', '00'.repeat(16))).rejects.toThrow(/--p1-key\/--p1-auth-key: P1 key must be 32 hex/);
    await expect(run(...base, '--source', `p1:${join(dir, 'none.p1')}`)).rejects.toThrow(/cannot read P1 capture/);
  });

  // A real serial line: socat pty pairs, the platform serialport binding on every end.
  const socat = spawnSync('socat', ['-V']).status === 0;
  if (!socat && process.env.CI !== 'true') {
    it.skip('runs a meter on a P1 capture and on a live P1 pty (socat not installed)', () => undefined);
    return;
  }

  async function ptyPair(name: string): Promise<{ a: string; b: string; proc: ChildProcess }> {
    const [a, b] = [join(dir, `${name}A`), join(dir, `${name}B`)];
    const proc = spawn('socat', [`pty,raw,echo=0,link=${a}`, `pty,raw,echo=0,link=${b}`], { stdio: 'ignore' });
    await vi.waitFor(() => expect(existsSync(a) && existsSync(b)).toBe(true), { timeout: 10_000 });
    return { a, b, proc };
  }
  async function openPort(path: string): Promise<SerialPort> {
    const port = new SerialPort({ path, baudRate: 115200 });
    await new Promise((resolve, reject) => (port.once('open', resolve), port.once('error', reject)));
    return port;
  }

  it('runs a meter on a P1 capture until every frame is acknowledged', async () => {
    expect(socat, 'socat is required in CI').toBe(true);
    const capture = join(dir, 'capture.p1');
    writeFileSync(capture, Buffer.concat(Array.from({ length: 30 }, (_, i) => telegram(i))));
    const line = await ptyPair('line');
    try {
      const gw = await openPort(line.b);
      const peer = new TestPeer(gw, key, st);
      await run('meter', '--keys', keys, '--meter', id, '--port', line.a, '--speed', 'max', '--batch', '10', '--source', `p1:${capture}`, '--tz', 'Europe/Amsterdam', '--nv', join(dir, 'nv1.cbor'));
      expect(peer.rejected).toBe(0);
      expect(peer.readings().map((r) => [r.time + r.period, r.importWh])).toEqual(Array.from({ length: 30 }, (_, i) => [T0 + i, 150_000 + i * 3]));
      expect(peer.frames().flatMap((f) => readingEnergies(f.batch))).toEqual(Array.from({ length: 30 }, (_, i) => (i === 0 ? 0 : 3)));
      await new Promise((resolve) => gw.close(resolve));
    } finally {
      line.proc.kill();
    }
  });

  it('runs a meter on a live P1 port (a pty at 115200 8N1) and stops on SIGTERM', async () => {
    expect(socat, 'socat is required in CI').toBe(true);
    const line = await ptyPair('live');
    const cable = await ptyPair('cable');
    const child = spawn(process.execPath, ['bin/smartermeter.js', 'meter', '--keys', keys, '--meter', id, '--port', line.a, '--speed', 'max', '--batch', '2', '--source', `p1:${cable.b}`, '--p1-dialect', 'dsmr5', '--tz', 'Europe/Amsterdam', '--nv', join(dir, 'nv2.cbor')], { stdio: ['ignore', 'pipe', 'pipe'] });
    let log = '';
    child.stdout!.on('data', (d: Buffer) => (log += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (log += d.toString()));
    try {
      const gw = await openPort(line.b);
      const peer = new TestPeer(gw, key, st);
      const meterSide = await openPort(cable.a);
      await vi.waitFor(() => {
        if (child.exitCode !== null) throw new Error(`meter exited: ${log}`);
        expect(log).toContain('meter booted');
      }, { timeout: 30_000 });
      // Join mid-telegram, one corrupted telegram, then four good ones.
      const bad = Buffer.from(telegram(2));
      bad[bad.length - 4] = 0x30 + ((bad[bad.length - 4]! - 0x30 + 1) % 10);
      for (const chunk of [telegram(0).subarray(25), telegram(1), bad, telegram(3), telegram(4), telegram(5), telegram(6)]) {
        meterSide.write(chunk);
        await new Promise((r) => setTimeout(r, 50));
      }
      await vi.waitFor(() => expect(peer.frames(), log).toHaveLength(2), { timeout: 20_000 });
      expect(peer.readings().map((r) => r.importWh)).toEqual([150_003, 150_009, 150_012, 150_015]);
      child.kill('SIGTERM');
      const code = await new Promise((resolve) => (child.exitCode !== null ? resolve(child.exitCode) : child.once('exit', resolve)));
      expect(code).toBe(0);
      expect(log).toMatch(/P1 telegram rejected.*"reason":"crc"|"reason":"crc".*P1 telegram rejected/);
      expect(log).toContain(`"meter":"${id}"`);
      await new Promise((resolve) => gw.close(resolve));
      await new Promise((resolve) => meterSide.close(resolve));
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
      line.proc.kill();
      cable.proc.kill();
    }
  }, 60_000);
});
