/**
 * The gateway on a real serial device: a pty pair made by socat, opened by path with serialport at
 * 115200 8N1. Skipped when socat is missing, except under CI=true where that is a failure.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SerialPort } from 'serialport';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { startBroker } from '../../broker/broker.js';
import { startGateway } from '../../gateway/gateway.js';
import { topics } from '../../protocol/topics.js';
import { ackReader, quiet, sleep, testMeter, until, uplinkSubscriber } from './helpers.js';

const haveSocat = spawnSync('socat', ['-V']).status === 0;
const inCi = process.env.CI === 'true';
const dir = mkdtempSync(join(tmpdir(), 'sm-gw-pty-'));
let cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.reverse()) await c();
  cleanups = [];
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Starts `socat -d -d pty,raw,echo=0 pty,raw,echo=0` and returns the two /dev/pts paths from its stderr. */
function socatPair(links?: [string, string]): Promise<{ a: string; b: string; proc: ChildProcess }> {
  const end = (l?: string) => `pty,raw,echo=0${l ? `,link=${l}` : ''}`;
  const proc = spawn('socat', ['-d', '-d', end(links?.[0]), end(links?.[1])], { stdio: ['ignore', 'ignore', 'pipe'] });
  const stopped = new Promise((r) => proc.once('exit', r));
  cleanups.push(() => {
    if (proc.exitCode === null) proc.kill();
    return stopped;
  });
  return new Promise((resolve, reject) => {
    let err = '';
    const t = setTimeout(() => reject(new Error(`socat gave no pty paths: ${err}`)), 5000);
    proc.stderr!.on('data', (d: Buffer) => {
      err += String(d);
      const paths = [...err.matchAll(/PTY is (\/dev\/pts\/\d+)/g)].map((m) => m[1]!);
      if (paths.length === 2 && /starting data transfer loop/.test(err)) {
        clearTimeout(t);
        resolve({ a: paths[0]!, b: paths[1]!, proc });
      }
    });
    proc.once('error', reject);
  });
}

function openPort(path: string): Promise<SerialPort> {
  return new Promise((resolve, reject) => {
    const p: SerialPort = new SerialPort({ path, baudRate: 115200 }, (err) => (err ? reject(err) : resolve(p)));
    cleanups.push(() => new Promise((r) => (p.isOpen ? p.close(() => r(null)) : r(null))));
  });
}

describe.skipIf(!haveSocat && !inCi)('gateway on a socat pty pair at 115200 baud', () => {
  it('socat is installed (required when CI=true)', () => {
    expect(haveSocat, 'socat must be installed when CI=true').toBe(true);
  });

  it('forwards frames from a real serial device and writes the acks back', async () => {
    const broker = await startBroker({ port: 0, logger: quiet });
    cleanups.push(() => broker.close());
    const sub = await uplinkSubscriber(broker.url, topics.frames('gw-pty'));
    cleanups.push(() => sub.client.endAsync());
    const { a, b } = await socatPair();
    const gw = await startGateway({ id: 'gw-pty', lines: [b], mqtt: { url: broker.url }, queuePath: ':memory:', logger: quiet });
    cleanups.push(() => gw.close());
    await until(() => gw.counters.linesUp === 1 && gw.connected, 'the line and the broker');

    const meter = await openPort(a);
    const acks = ackReader(meter);
    const m = testMeter(31);
    const sent: string[] = [];
    for (let ic = 1; ic <= 200; ic++) {
      meter.write(m.link(ic));
      sent.push(m.frame(ic).toString('hex'));
      if (ic === 100) meter.write(Buffer.from([0x7e, 0x01, 0x02, 0x03, 0x7e, 0xaa, 0xbb])); // line noise
    }
    await until(() => acks.acks.length === 200, 'all acks over the pty', 30_000);
    expect(sub.frames).toEqual(sent);
    expect(acks.acks).toEqual(sent.map((_, i) => `${m.id}:${i + 1}`));
    expect(gw.counters).toMatchObject({ framesOk: 200, forwarded: 200, badCrc: 1 });
    expect(gw.lineCounters()[b]!.resyncs).toBeGreaterThanOrEqual(1);
  });

  it('reopens its device after it disappears and comes back', async () => {
    const broker = await startBroker({ port: 0, logger: quiet });
    cleanups.push(() => broker.close());
    const links: [string, string] = [join(dir, 'meter'), join(dir, 'gw')];
    const first = await socatPair(links);
    const gw = await startGateway({ id: 'gw-pty2', lines: [links[1]], mqtt: { url: broker.url }, queuePath: ':memory:', logger: quiet, backoff: { minMs: 50, maxMs: 200 } });
    cleanups.push(() => gw.close());
    await until(() => gw.counters.linesUp === 1 && gw.connected, 'the line');
    const m = testMeter(32);
    let meter = await openPort(links[0]);
    let acks = ackReader(meter);
    meter.write(m.link(1));
    await until(() => acks.acks.length === 1, 'the first ack');

    await new Promise((r) => meter.close(r));
    first.proc.kill(); // the device disappears
    await until(() => gw.counters.linesUp === 0, 'the line to go down');
    await until(() => !existsSync(links[1]), 'socat to remove its links');
    await sleep(300); // a few failed reopen attempts

    await socatPair(links); // and comes back under the same name
    await until(() => gw.counters.linesUp === 1, 'the line to be reopened', 10_000);
    meter = await openPort(links[0]);
    acks = ackReader(meter);
    meter.write(m.link(2));
    await until(() => acks.acks.length === 1, 'the ack after reopening');
    expect(acks.acks).toEqual([`${m.id}:2`]);
    expect(gw.counters.forwarded).toBe(2);
  });
});
