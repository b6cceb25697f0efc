/**
 * The paced cable used by the retransmission tests and `npm run bench -- serial` carries bytes at its rate,
 * completes a write once it fits in the driver buffer (not once it is on the wire), calls back `drain` once
 * the last byte has left, and damages bytes only when noise is set.
 */
import { describe, expect, it } from 'vitest';
import { PacedLine } from '../../bench/harness/paced-line.js';

describe('PacedLine', () => {
  it('carries bytes at the line rate; a write completes at the buffer, drain when the bytes are out', async () => {
    const cable = new PacedLine({ bytesPerSecond: 2000, driverBuffer: 4096 });
    try {
      let received = 0;
      cable.gatewayEnd.on('data', (b: Buffer) => (received += b.length));
      const t0 = performance.now();
      const accepted = await new Promise<number>((r) => cable.meterEnd.write(Buffer.alloc(1000, 0x55), () => r(performance.now() - t0)));
      const drained = await new Promise<number>((r) => cable.meterEnd.drain(() => r(performance.now() - t0)));
      expect(accepted).toBeLessThan(100); // 1000 bytes fit in the 4 kB buffer
      expect(drained).toBeGreaterThanOrEqual(490); // 1000 bytes at 2000 B/s: 500 ms
      expect(drained).toBeLessThan(1500);
      expect(received).toBe(1000);
      expect(cable.counters.up).toMatchObject({ sent: 1000, delivered: 1000, flipped: 0, dropped: 0, inserted: 0, bursts: 0 });
    } finally {
      cable.close();
    }
  });

  it('holds a write that does not fit in the driver buffer until enough has left', async () => {
    const cable = new PacedLine({ bytesPerSecond: 4000, driverBuffer: 400 });
    try {
      const t0 = performance.now();
      const accepted = await new Promise<number>((r) => cable.meterEnd.write(Buffer.alloc(1200), () => r(performance.now() - t0)));
      expect(accepted).toBeGreaterThanOrEqual(190); // 800 bytes had to leave first: 200 ms
    } finally {
      cable.close();
    }
  });

  it('damages bytes in transit when noise is set, and counts it', async () => {
    const cable = new PacedLine({ bytesPerSecond: 100_000, noise: { flip: 0.01, drop: 0.01, insert: 0.01, burstEveryMs: 0 }, seed: 5 });
    try {
      const sent = Buffer.alloc(20_000, 0x11);
      const got: Buffer[] = [];
      cable.meterEnd.on('data', (b: Buffer) => got.push(b));
      await new Promise<void>((r) => cable.gatewayEnd.write(sent, () => cable.gatewayEnd.drain(() => r())));
      const c = cable.counters.down;
      expect(c.flipped).toBeGreaterThan(100);
      expect(c.dropped).toBeGreaterThan(100);
      expect(c.inserted).toBeGreaterThan(100);
      expect(Buffer.concat(got).length).toBe(20_000 - c.dropped + c.inserted);
    } finally {
      cable.close();
    }
  });
});
