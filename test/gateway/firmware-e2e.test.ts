/**
 * End to end through real parts: firmware Meters -> serial line (crossed mock pair, or a socat pty) ->
 * gateway -> aedes on a loopback port -> an MQTT subscriber that decodes the uplinks and deciphers every
 * frame with the meter keys. Every frame must arrive exactly once, and the register deltas must add up
 * to the energy of the source, computed independently from its samples.
 */
import { randomBytes } from 'node:crypto';
import { spawn, spawnSync } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { startBroker } from '../../broker/broker.js';
import { MockBinding, openCrossedMockPair } from '../../firmware/hal/crossed-mock.js';
import { streamLine, type SerialLine } from '../../firmware/hal/line.js';
import { MemoryNvStore } from '../../firmware/hal/nv.js';
import { Meter } from '../../firmware/meter.js';
import { ReconnectingSerialLine } from '../../firmware/serial.js';
import { mulberry32, SyntheticSource } from '../../firmware/sources/synthetic.js';
import { startGateway } from '../../gateway/gateway.js';
import { decodeFrame, meterId, openFrame, systemTitle } from '../../protocol/frame.js';
import { decodeReadingBatch, readingEnergies, type ReadingBatch } from '../../protocol/reading.js';
import { topics } from '../../protocol/topics.js';
import { decodeUplink } from '../../protocol/uplink.js';
import mqtt from 'mqtt';
import { quiet, until } from './helpers.js';

const START = Date.UTC(2016, 4, 2) / 1000;
let cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.reverse()) await c();
  cleanups = [];
  MockBinding.reset();
});

interface TestMeter {
  id: string;
  key: Buffer;
  st: Uint8Array;
  source: SyntheticSource;
}

function fleet(n: number, days: number): TestMeter[] {
  return Array.from({ length: n }, (_, i) => {
    const st = systemTitle('SMR', 1000 + i);
    return { id: meterId(st), key: randomBytes(32), st, source: new SyntheticSource({ seed: 500 + i, start: START, days }) };
  });
}

/** Energy of a source in Wh at register resolution, from its samples (exact integer mW·s arithmetic). */
async function sourceWh(m: TestMeter): Promise<number> {
  let milliWs = 0n;
  for await (const s of m.source.samples()) milliWs += BigInt(s.powerMilliW) * BigInt(s.period);
  return Number(milliWs / 3_600_000n);
}

/** A subscriber that deciphers every frame of every uplink; keeps (meter -> ic -> batch) and every arrival. */
async function decipheringSubscriber(url: string, gateway: string, meters: TestMeter[]) {
  const keys = new Map(meters.map((m) => [m.id, m.key]));
  const batches = new Map<string, Map<number, ReadingBatch>>(meters.map((m) => [m.id, new Map()]));
  const arrivals: string[] = [];
  const client = await mqtt.connectAsync(url, { reconnectPeriod: 0 });
  cleanups.push(() => client.endAsync());
  client.on('message', (_t, payload) => {
    for (const bytes of decodeUplink(payload).frames) {
      const f = decodeFrame(bytes);
      const id = meterId(f.systemTitle);
      arrivals.push(`${id}:${f.ic}`);
      batches.get(id)!.set(f.ic, decodeReadingBatch(openFrame(keys.get(id)!, f)));
    }
  });
  await client.subscribeAsync(topics.frames(gateway), { qos: 1 });
  return { batches, arrivals };
}

async function checkDelivery(meters: TestMeter[], running: Meter[], sub: Awaited<ReturnType<typeof decipheringSubscriber>>) {
  const totalFrames = running.reduce((a, m) => a + m.counters.frames, 0);
  await until(() => sub.arrivals.length >= totalFrames, 'every frame at the subscriber');
  expect(sub.arrivals.length).toBe(totalFrames); // exactly once: no (meter, ic) arrived twice
  expect(new Set(sub.arrivals).size).toBe(totalFrames);
  for (const [i, m] of meters.entries()) {
    const byIc = [...sub.batches.get(m.id)!.entries()].sort((a, b) => a[0] - b[0]).map(([, b]) => b);
    expect(byIc.length).toBe(running[i]!.counters.frames);
    let register = 0;
    for (const b of byIc) {
      expect(b.prevWh).toBe(register); // no gap between consecutive frames
      register = b.readings[b.readings.length - 1]!.importWh;
    }
    const energy = byIc.flatMap(readingEnergies).reduce((a, e) => a + e, 0);
    expect(energy).toBe(await sourceWh(m));
    expect(energy).toBe(running[i]!.registerWh);
    expect(byIc.reduce((a, b) => a + b.readings.length, 0)).toBe(running[i]!.counters.readings);
  }
}

async function startMeter(m: TestMeter, line: SerialLine): Promise<Meter> {
  const meter = await Meter.start({ systemTitle: m.st, key: m.key, line, source: m.source, nv: new MemoryNvStore(), ackTimeoutMs: 300, batch: 15 });
  cleanups.push(() => meter.stop());
  return meter;
}

describe('firmware -> gateway -> aedes -> subscriber', () => {
  it('delivers every frame of every meter exactly once, over clean and noisy lines', async () => {
    const broker = await startBroker({ port: 0, logger: quiet });
    cleanups.push(() => broker.close());
    const meters = fleet(4, 1);
    const sub = await decipheringSubscriber(broker.url, 'gw-e2e', meters);

    // Meter 0's line is noisy: the 2nd and 5th downlink chunks (acks) vanish, the 3rd and 10th uplink chunks
    // get a bit flipped, and 3% of the other uplink chunks too.
    const rnd = mulberry32(7);
    const seen = { AtoB: 0, BtoA: 0 };
    const pairs = await Promise.all(
      meters.map((_, i) =>
        openCrossedMockPair(`/dev/e2e-meter-${i}`, `/dev/e2e-gw-${i}`, {
          noise:
            i === 0
              ? (chunk, dir) => {
                  const n = ++seen[dir];
                  if (dir === 'BtoA') return n === 2 || n === 5 ? null : chunk;
                  if (n === 3 || n === 10 || rnd() < 0.03) chunk[Math.floor(rnd() * chunk.length)]! ^= 1 << Math.floor(rnd() * 8);
                  return chunk;
                }
              : undefined,
        }),
      ),
    );
    cleanups.push(() => Promise.all(pairs.flat().map((p) => new Promise((r) => (p.isOpen ? p.close(r) : r(null))))));
    const gw = await startGateway({ id: 'gw-e2e', lines: pairs.map((p) => p[1]), mqtt: { url: broker.url }, queuePath: ':memory:', logger: quiet });
    cleanups.push(() => gw.close());
    await until(() => gw.connected, 'the broker connection');

    const running = await Promise.all(meters.map((m, i) => startMeter(m, streamLine(pairs[i]![0]))));
    await Promise.all(running.map((m) => m.done(60_000)));
    await checkDelivery(meters, running, sub);

    const noisy = pairs[0]!.line.counters;
    expect(noisy.dropped.BtoA).toBeGreaterThan(0); // the noise did happen...
    expect(running[0]!.counters.retransmits).toBeGreaterThan(0); // ...and was repaired by retransmission
    expect(gw.counters.resyncs).toBeGreaterThan(0); // the gateway saw the damage and resynchronised
    expect(gw.counters.pending).toBe(0);
    expect(gw.counters.forwarded).toBe(sub.arrivals.length);
  });

  const haveSocat = spawnSync('socat', ['-V']).status === 0;
  it.skipIf(!haveSocat && process.env.CI !== 'true')('does the same over a socat pty pair at 115200 baud', async () => {
    expect(haveSocat, 'socat must be installed when CI=true').toBe(true);
    const broker = await startBroker({ port: 0, logger: quiet });
    cleanups.push(() => broker.close());
    const meters = fleet(1, 1);
    const sub = await decipheringSubscriber(broker.url, 'gw-e2e-pty', meters);

    const proc = spawn('socat', ['-d', '-d', 'pty,raw,echo=0', 'pty,raw,echo=0'], { stdio: ['ignore', 'ignore', 'pipe'] });
    const stopped = new Promise((r) => proc.once('exit', r));
    cleanups.push(() => (proc.kill(), stopped));
    const [a, b] = await new Promise<[string, string]>((resolve, reject) => {
      let err = '';
      proc.stderr!.on('data', (d: Buffer) => {
        err += String(d);
        const paths = [...err.matchAll(/PTY is (\/dev\/pts\/\d+)/g)].map((m) => m[1]!);
        if (paths.length === 2 && /starting data transfer loop/.test(err)) resolve([paths[0]!, paths[1]!]);
      });
      proc.once('error', reject);
    });

    const gw = await startGateway({ id: 'gw-e2e-pty', lines: [b], mqtt: { url: broker.url }, queuePath: ':memory:', logger: quiet });
    cleanups.push(() => gw.close());
    await until(() => gw.connected && gw.counters.linesUp === 1, 'the gateway');
    const line = new ReconnectingSerialLine({ path: a, baudRate: 115200 });
    cleanups.push(() => line.close());
    await line.opened();
    const meter = await startMeter(meters[0]!, line);
    await meter.done(60_000);
    await checkDelivery(meters, [meter], sub);
  });
});
