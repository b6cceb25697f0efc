import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { MockBinding, openCrossedMockPair, type MockSerialPort } from '../../firmware/hal/crossed-mock.js';

/** Collects everything `port` receives until `n` bytes arrived. */
function collect(port: MockSerialPort, n: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  let got = 0;
  return new Promise((resolve) => {
    const onData = (b: Buffer) => {
      parts.push(b);
      got += b.length;
      if (got >= n) {
        port.off('data', onData);
        resolve(Buffer.concat(parts));
      }
    };
    port.on('data', onData);
  });
}

function drained(port: MockSerialPort): Promise<void> {
  return new Promise((resolve, reject) => port.drain((err) => (err ? reject(err) : resolve())));
}

function closePort(port: MockSerialPort): Promise<void> {
  return new Promise((resolve) => (port.isOpen ? port.close(() => resolve()) : resolve()));
}

const opened: MockSerialPort[] = [];
afterEach(async () => {
  await Promise.all(opened.splice(0).map(closePort));
  MockBinding.reset();
});

async function pair(...args: Parameters<typeof openCrossedMockPair>) {
  const p = await openCrossedMockPair(...args);
  opened.push(p[0], p[1]);
  return p;
}

describe('openCrossedMockPair', () => {
  it('carries bytes both ways, in order, at high throughput', async () => {
    const [a, b] = await pair('/dev/xa', '/dev/xb');
    const toB = randomBytes(4 * 1024 * 1024);
    const toA = randomBytes(1024 * 1024);
    const gotB = collect(b, toB.length);
    const gotA = collect(a, toA.length);
    // Many writes of irregular size, interleaved in both directions.
    for (let i = 0, j = 0; i < toB.length || j < toA.length; ) {
      const n = 1 + ((i * 7919) % 3000);
      if (i < toB.length) a.write(toB.subarray(i, (i += n)));
      if (j < toA.length) b.write(toA.subarray(j, (j += 700)));
    }
    expect((await gotB).equals(toB)).toBe(true);
    expect((await gotA).equals(toA)).toBe(true);
  });

  it('drops and counts bytes while the line is cut, and delivers again after restore', async () => {
    const p = await pair('/dev/ca', '/dev/cb');
    const [a, b] = p;
    const received: Buffer[] = [];
    b.on('data', (d: Buffer) => received.push(d));
    p.line.cut();
    expect(p.line.isCut).toBe(true);
    a.write(Buffer.from('lost in transit'));
    await drained(a);
    p.line.restore();
    const got = collect(b, 5);
    a.write(Buffer.from('hello'));
    expect((await got).toString()).toBe('hello');
    expect(Buffer.concat(received).toString()).toBe('hello');
    expect(p.line.counters.dropped.AtoB).toBe('lost in transit'.length);
    expect(p.line.counters.delivered.AtoB).toBe(5);
    expect(p.line.counters.sent.AtoB).toBe(5 + 'lost in transit'.length);
  });

  it('lets a noise hook mutate, drop and insert bytes in transit', async () => {
    const seen: string[] = [];
    const p = await pair('/dev/na', '/dev/nb', {
      noise: (chunk, dir) => {
        seen.push(dir);
        const s = chunk.toString();
        if (s === 'drop') return null;
        if (s === 'flip') return Buffer.from('FLIP');
        return Buffer.concat([chunk, Buffer.from('!')]);
      },
    });
    const [a, b] = p;
    const got = collect(b, 'FLIP'.length + 'keep!'.length);
    for (const s of ['drop', 'flip', 'keep']) {
      a.write(Buffer.from(s));
      await drained(a);
    }
    expect((await got).toString()).toBe('FLIPkeep!');
    expect(p.line.counters.dropped.AtoB).toBe(4);
    expect(seen).toEqual(['AtoB', 'AtoB', 'AtoB']);
  });

  it('rewires a port that is closed and reopened', async () => {
    const [a, b] = await pair('/dev/ra', '/dev/rb');
    await closePort(b);
    a.write(Buffer.from('nobody listens'));
    await drained(a);
    await new Promise<void>((resolve, reject) => b.open((err) => (err ? reject(err) : resolve())));
    const got = collect(b, 4);
    a.write(Buffer.from('back'));
    expect((await got).toString()).toBe('back');
    const back = collect(a, 3);
    b.write(Buffer.from('ack'));
    expect((await back).toString()).toBe('ack');
  });

  it('uses the registry serialport itself uses, so MockBinding.reset() clears its ports', async () => {
    await pair('/dev/ga', '/dev/gb');
    expect((await MockBinding.list()).map((p) => p.path)).toEqual(['/dev/ga', '/dev/gb']);
  });

  it('rejects identical or empty paths', async () => {
    await expect(openCrossedMockPair('/dev/same', '/dev/same')).rejects.toThrow(/distinct/);
    await expect(openCrossedMockPair('', '/dev/x')).rejects.toThrow(/non-empty/);
  });
});
