/**
 * The meter's side of a key transfer (docs/protocol.md §7.1): what it refuses, what it keeps in NV, when it
 * switches, and that all of it survives a restart.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { MockBinding, openCrossedMockPair } from '../../firmware/hal/crossed-mock.js';
import { streamLine } from '../../firmware/hal/line.js';
import { FileNvStore } from '../../firmware/hal/nv.js';
import { Meter } from '../../firmware/meter.js';
import { decodeMeterState, encodeMeterState } from '../../firmware/state.js';
import { cborDecode, cborEncode } from '../../protocol/cbor.js';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { spawn, spawnSync } from 'node:child_process';
import { Command } from 'commander';
import { SerialPort } from 'serialport';
import { registerMeterCommand } from '../../firmware/cli.js';
import { meterId } from '../../protocol/frame.js';
import { SyntheticSource } from '../../firmware/sources/synthetic.js';
import { decodeFrame, decodeMessage, encodeAck, encodeKeyTransfer, MSG_FRAME, MSG_KEY_ACK, openFrame, systemTitle } from '../../protocol/frame.js';
import { wrapMeterKey } from '../../protocol/key-wrap.js';
import { encodeLinkFrame, LinkParser } from '../../protocol/link.js';
import type { Duplex } from 'node:stream';

const START = Date.UTC(2016, 4, 2) / 1000;
const ST = systemTitle('SMR', 77);
let cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.reverse()) await c();
  cleanups = [];
  MockBinding.reset();
});

/** Gateway stand-in: records which key opens each frame, acknowledges while `acking`, records key acks. */
class Peer {
  acking = true;
  readonly keyAcks: number[] = [];
  /** Counter -> index of the key (in `keys`) that opens it. */
  readonly frames = new Map<number, number>();
  constructor(private readonly port: Duplex, private readonly keys: Uint8Array[]) {
    port.pipe(new LinkParser()).on('data', (p: Buffer) => {
      const m = decodeMessage(p);
      if (m.type === MSG_KEY_ACK) return void this.keyAcks.push(m.generation);
      if (m.type !== MSG_FRAME) return;
      const k = this.keys.findIndex((key) => {
        try {
          return openFrame(key, decodeFrame(p)) !== undefined;
        } catch {
          return false;
        }
      });
      if (k < 0) throw new Error(`frame ${m.ic} opens under no known key`);
      this.frames.set(m.ic, k);
      if (this.acking) this.port.write(encodeLinkFrame(encodeAck({ systemTitle: ST, ic: m.ic })));
    });
  }
  send(message: Uint8Array): void {
    this.port.write(encodeLinkFrame(message));
  }
}

async function until(cond: () => boolean, what: string, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function rig(n: number) {
  const dir = mkdtempSync(join(tmpdir(), 'meter-rot-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const [meterEnd, gwEnd] = await openCrossedMockPair(`/dev/mrot${n}`, `/dev/grot${n}`);
  cleanups.push(() => Promise.all([meterEnd, gwEnd].map((p) => new Promise((r) => (p.isOpen ? p.close(r) : r(null))))));
  const key0 = randomBytes(32);
  const key1 = randomBytes(32);
  const kek = randomBytes(32);
  const peer = new Peer(gwEnd, [key0, key1]);
  const nvPath = join(dir, 'nv.cbor');
  const start = async (o: { kek?: Uint8Array; days?: number } = { kek }) => {
    const meter = await Meter.start({ systemTitle: ST, key: key0, ...(o.kek ? { kek: o.kek } : {}), line: streamLine(meterEnd), source: new SyntheticSource({ seed: 3, start: START, days: o.days ?? 1 }), nv: new FileNvStore(nvPath), batch: 15, window: 4, ackTimeoutMs: 200 });
    cleanups.push(() => meter.stop());
    return meter;
  };
  return { peer, key0, key1, kek, nvPath, start };
}

describe('meter key transfer', () => {
  it('refuses and counts a tampered, re-labelled, stale or foreign transfer, and keeps its key and NV as they were', async () => {
    const r = await rig(1);
    const meter = await r.start();
    await until(() => r.peer.frames.size >= 3, 'frames');
    const wrapped = wrapMeterKey(r.kek, 2, r.key1);
    const tampered = Buffer.from(wrapped);
    tampered[17]! ^= 0x01;
    const nvBefore = readFileSync(r.nvPath);
    r.peer.send(encodeKeyTransfer({ systemTitle: ST, generation: 2, wrapped: tampered })); // one bit flipped
    r.peer.send(encodeKeyTransfer({ systemTitle: ST, generation: 3, wrapped })); // re-labelled generation
    r.peer.send(encodeKeyTransfer({ systemTitle: ST, generation: 2, wrapped: wrapMeterKey(randomBytes(32), 2, r.key1) })); // another KEK
    await until(() => meter.counters.badKeyTransfer === 3, 'three refusals');
    expect(r.peer.keyAcks).toEqual([]);
    expect(meter.keyGeneration).toBe(0);
    const nvAfter = readFileSync(r.nvPath);
    expect(nvAfter.includes(Buffer.from(wrapped)) || nvAfter.includes(tampered)).toBe(false);
    expect(nvBefore.length).toBeGreaterThan(0);

    // The genuine one is accepted and acknowledged; an older generation afterwards is stale.
    r.peer.send(encodeKeyTransfer({ systemTitle: ST, generation: 2, wrapped }));
    await until(() => r.peer.keyAcks.length === 1, 'the key acknowledgement');
    r.peer.send(encodeKeyTransfer({ systemTitle: ST, generation: 1, wrapped: wrapMeterKey(r.kek, 1, randomBytes(32)) }));
    r.peer.send(encodeKeyTransfer({ systemTitle: systemTitle('SMR', 78), generation: 5, wrapped: wrapMeterKey(r.kek, 5, r.key1) })); // another meter's
    await until(() => meter.counters.badKeyTransfer === 4 && meter.counters.badDownlink === 1, 'the stale and foreign refusals');
    expect([meter.counters.keyTransfers, r.peer.keyAcks]).toEqual([1, [2]]);
    // A meter without a KEK accepts no transfer (out of band either).
    await meter.stop();
    const r2 = await rig(2);
    const plain = await r2.start({});
    expect(await plain.acceptKeyTransfer(encodeKeyTransfer({ systemTitle: ST, generation: 1, wrapped: wrapMeterKey(r2.kek, 1, r2.key1) }))).toBe('refused');
    expect(plain.counters.badKeyTransfer).toBe(1);
  }, 60_000);

  it('keeps an acknowledged transfer across a power cut, switches once its old-key frames are acknowledged, and boots with the new key', async () => {
    const r = await rig(3);
    let meter = await r.start({ kek: r.kek, days: 2 });
    await until(() => r.peer.frames.size >= 3, 'frames');
    r.peer.acking = false; // old-key frames stay unacknowledged: the meter may not switch
    await until(() => meter.unacked >= 4, 'a full window');
    const transfer = encodeKeyTransfer({ systemTitle: ST, generation: 1, wrapped: wrapMeterKey(r.kek, 1, r.key1) });
    expect(await meter.acceptKeyTransfer(transfer)).toBe('accepted');
    await until(() => r.peer.keyAcks.length === 1, 'the key acknowledgement'); // acknowledged on the line once saved
    expect(await meter.acceptKeyTransfer(transfer)).toBe('repeat'); // acknowledged again
    await until(() => r.peer.keyAcks.length === 2, 'the repeated acknowledgement');
    expect(r.peer.keyAcks).toEqual([1, 1]);
    await new Promise((res) => setTimeout(res, 300));
    expect([meter.keyGeneration, meter.counters.keySwitches]).toEqual([0, 0]);
    expect([...r.peer.frames.values()].every((k) => k === 0)).toBe(true);
    const nv = readFileSync(r.nvPath);
    expect(nv.includes(Buffer.from(r.key1))).toBe(false); // the new key is in NV only wrapped
    expect(nv.includes(Buffer.from(r.key1.toString('hex')))).toBe(false);
    meter.halt(); // power cut before the switch

    await expect(r.start({})).rejects.toThrow(/KEK is needed/); // NV holds a transferred key: no boot without the KEK
    r.peer.acking = true;
    meter = await r.start({ kek: r.kek, days: 2 });
    expect(meter.keyGeneration).toBe(0); // still pending: the restored old-key frames go first
    await until(() => meter.counters.keySwitches === 1, 'the switch', 30_000);
    await until(() => [...r.peer.frames.values()].filter((k) => k === 1).length >= 3, 'frames under the new key');
    const byIc = [...r.peer.frames.entries()].sort((a, b) => a[0] - b[0]);
    const firstNew = byIc.findIndex(([, k]) => k === 1);
    expect(byIc.slice(firstNew).every(([, k]) => k === 1)).toBe(true); // one boundary, the counter continuing
    expect(byIc.slice(0, firstNew).every(([, k]) => k === 0)).toBe(true);
    const switchedAt = byIc[firstNew]![0];
    await meter.stop();

    // Booted again: the key in use comes from NV (unwrapped with the KEK), not from the provisioned key.
    meter = await r.start({ kek: r.kek, days: 2 });
    expect(meter.keyGeneration).toBe(1);
    const seen = r.peer.frames.size;
    await until(() => r.peer.frames.size >= seen + 3, 'frames after the reboot');
    const after = [...r.peer.frames.entries()].filter(([ic]) => ic > switchedAt);
    expect(after.every(([, k]) => k === 1)).toBe(true);
    await meter.done(60_000);
    expect(meter.counters.badKeyTransfer).toBe(0);
  }, 90_000);

  it('refuses to boot from NV whose transferred key does not unwrap, or whose pending key is not newer', async () => {
    const r = await rig(4);
    const base = { systemTitle: ST, reservedIc: 64, registerMilliWs: 0n, exportMilliWs: 0n, resumeAt: -1, samples: 0, ring: [] };
    const good = { generation: 2, wrapped: wrapMeterKey(r.kek, 2, r.key1) };
    const tampered = { generation: 2, wrapped: Buffer.from(good.wrapped).fill(0x55, 10, 11) };
    writeFileSync(r.nvPath, cborEncode(encodeMeterState({ ...base, key: tampered })));
    await expect(r.start()).rejects.toThrow(/does not authenticate/);
    writeFileSync(r.nvPath, cborEncode(encodeMeterState({ ...base, key: { ...good, generation: 3 } }))); // re-labelled in NV
    await expect(r.start()).rejects.toThrow(/does not authenticate/);
    const stale = cborDecode(cborEncode(encodeMeterState({ ...base, key: good, next: { generation: 1, wrapped: wrapMeterKey(r.kek, 1, r.key0) } })));
    expect(() => decodeMeterState(stale, ST)).toThrow(/not above/);
    writeFileSync(r.nvPath, cborEncode(encodeMeterState({ ...base, key: good })));
    const meter = await r.start();
    expect(meter.keyGeneration).toBe(2);
    await until(() => r.peer.frames.size >= 2, 'frames');
    expect([...r.peer.frames.values()].every((k) => k === 1)).toBe(true); // sealed under the key from NV
  });
});

describe('smartermeter meter --key-transfer', () => {
  // A real serial line: a socat pty pair (as test/firmware/cli.test.ts).
  const socat = spawnSync('socat', ['-V']).status === 0;
  it.skipIf(!socat && process.env.CI !== 'true')('applies the transfer file with the KEK from the key set: acknowledged, kept in NV, every frame from the switch on under the new key', async () => {
    expect(socat, 'socat is required in CI').toBe(true);
    const dir = mkdtempSync(join(tmpdir(), 'meter-rot-cli-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const id = meterId(ST);
    const [key0, key1, kek] = [randomBytes(32), randomBytes(32), randomBytes(32)];
    mkdirSync(join(dir, 'keys', 'meters'), { recursive: true, mode: 0o700 });
    writeFileSync(join(dir, 'keys', 'meters', `${id}.key`), key0.toString('hex'), { mode: 0o600 });
    writeFileSync(join(dir, 'keys', 'meters', `${id}.kek`), kek.toString('hex'), { mode: 0o600 });
    const transferFile = join(dir, 'keys', 'meters', `${id}.transfer`);
    writeFileSync(transferFile, encodeKeyTransfer({ systemTitle: ST, generation: 1, wrapped: wrapMeterKey(kek, 1, key1) }), { mode: 0o600 });
    const fleet = { version: 1, meters: [{ meter: id, label: 'm', household: 'hh', neighbourhood: 'nb', gateway: 'gw-nb', source: 'synthetic:5' }], gateways: ['gw-nb'], households: ['hh'], neighbourhoods: ['nb'] };
    writeFileSync(join(dir, 'keys', 'fleet.json'), JSON.stringify(fleet));
    const [ttyMeter, ttyGateway] = [join(dir, 'ttyM'), join(dir, 'ttyG')];
    const pty = spawn('socat', [`pty,raw,echo=0,link=${ttyMeter}`, `pty,raw,echo=0,link=${ttyGateway}`], { stdio: 'ignore' });
    cleanups.push(() => pty.kill());
    await until(() => existsSync(ttyMeter) && existsSync(ttyGateway), 'the pty pair', 10_000);
    const gw = new SerialPort({ path: ttyGateway, baudRate: 115200 });
    await new Promise((resolve, reject) => (gw.once('open', resolve), gw.once('error', reject)));
    cleanups.push(() => new Promise((r) => (gw.isOpen ? gw.close(r) : r(null))));
    const peer = new Peer(gw, [key0, key1]);
    const program = new Command('smartermeter').exitOverride().configureOutput({ writeErr: () => undefined, writeOut: () => undefined });
    registerMeterCommand(program);
    const nv = join(dir, 'nv.cbor');
    await program.parseAsync(['meter', '--keys', join(dir, 'keys'), '--meter', id, '--port', ttyMeter, '--speed', 'max', '--start', '2016-05-06', '--days', '1', '--nv', nv, '--key-transfer', transferFile], { from: 'user' });
    expect(peer.keyAcks).toEqual([1]);
    const byIc = [...peer.frames.entries()].sort((a, b) => a[0] - b[0]);
    expect(byIc).toHaveLength(96);
    const firstNew = byIc.findIndex(([, k]) => k === 1);
    expect(firstNew).toBeGreaterThanOrEqual(0);
    expect(byIc.slice(firstNew).every(([, k]) => k === 1)).toBe(true);
    expect(decodeMeterState(cborDecode(readFileSync(nv)), ST).key?.generation).toBe(1);
  }, 60_000);
});
