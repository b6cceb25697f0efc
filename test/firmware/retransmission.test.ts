/**
 * Retransmission timing that fits slow lines (issue 15): a meter on a 9600-baud line (paced, with a 4 kB
 * transmit buffer like a real UART driver's) does not retransmit spuriously, where the old timer (fixed 1 s,
 * running from when a frame was queued) retransmits many frames that were only waiting for the line; and a
 * frame already queued for the line is never queued a second time.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { streamLine, type SerialLine } from '../../firmware/hal/line.js';
import { MemoryNvStore } from '../../firmware/hal/nv.js';
import type { Sample, Source } from '../../firmware/hal/source.js';
import { Meter, type MeterOptions } from '../../firmware/meter.js';
import { decodeFrame, encodeAck, systemTitle } from '../../protocol/frame.js';
import { encodeLinkFrame, LinkParser } from '../../protocol/link.js';
import { PacedLine } from '../../bench/harness/paced-line.js';
import { TestPeer } from './helpers/peer.js';

const KEY = Buffer.alloc(32, 0x3c);
const ST = systemTitle('SMR', 15);

/** `n` one-minute samples of a steady 500 W. */
function minutes(n: number, t0 = 1_704_067_200): Source {
  return {
    name: 'test',
    async *samples(from?: number): AsyncGenerator<Sample> {
      for (let i = 0; i < n; i++) {
        const s: Sample = { time: t0 + i * 60, period: 60, powerMilliW: 500_000 + (i % 7) * 1000 };
        if (from === undefined || s.time >= from) yield s;
      }
    },
  };
}

const cleanups: (() => Promise<unknown> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function meterOn(line: SerialLine, o: Partial<MeterOptions>): Promise<Meter> {
  const meter = await Meter.start({ systemTitle: ST, key: KEY, line, source: minutes(240), nv: new MemoryNvStore(), ...o });
  cleanups.push(() => meter.stop());
  return meter;
}

describe('retransmission on a 9600-baud line', () => {
  it('adaptive: no spurious retransmission; the old fixed 1 s timer from queueing retransmits many', async () => {
    const run = async (retransmission: 'adaptive' | 'fixed') => {
      const cable = new PacedLine({ bytesPerSecond: 960 }); // 9600 baud 8N1, no noise
      cleanups.push(() => cable.close());
      const peer = new TestPeer(cable.gatewayEnd, KEY, ST); // acknowledges every frame at once
      // 16 frames of 15 readings (~4 kB): about 4 s on the wire, so most are queued longer than 1 s.
      const meter = await meterOn(streamLine(cable.meterEnd), { retransmission, ackTimeoutMs: 1000 });
      const counters = await meter.done(20_000);
      expect(counters.acked).toBe(16);
      expect(peer.frames().map((f) => f.ic)).toEqual([...Array(16).keys()]);
      return { counters, rto: meter.ackTimeout };
    };
    const adaptive = await run('adaptive');
    const fixed = await run('fixed');
    expect(adaptive.counters.retransmits).toBeLessThanOrEqual(1);
    expect(adaptive.counters.timeouts).toBeLessThanOrEqual(1);
    // Round trips are tens of ms here: the estimate fell from 1 s to its floor.
    expect(adaptive.rto).toBeLessThan(1000);
    expect(fixed.counters.retransmits).toBeGreaterThanOrEqual(8);
    expect(fixed.counters.bytesSent).toBeGreaterThan(1.5 * adaptive.counters.bytesSent);
  }, 30_000);

  it('adaptive: backs off on a cut line and recovers every frame once it is back', async () => {
    const cable = new PacedLine({ bytesPerSecond: 960 });
    cleanups.push(() => cable.close());
    const peer = new TestPeer(cable.gatewayEnd, KEY, ST);
    let cut = true;
    peer.ack = () => !cut; // acks lost while "cut"
    const meter = await meterOn(streamLine(cable.meterEnd), { ackTimeoutMs: 300, source: minutes(60) });
    await new Promise((r) => setTimeout(r, 2500));
    const backedOff = meter.ackTimeout;
    expect(meter.counters.timeouts).toBeGreaterThan(0);
    expect(backedOff).toBeGreaterThanOrEqual(1200); // 300 doubled at least twice
    cut = false;
    const counters = await meter.done(20_000);
    expect(counters.acked).toBe(4);
    expect(peer.frames().map((f) => f.ic)).toEqual([0, 1, 2, 3]);
  }, 30_000);
});

describe('retransmission options', () => {
  it('refuses an unknown timer or a floor above the ceiling', async () => {
    const line: SerialLine = { write: async () => undefined, onData: () => () => undefined };
    await expect(meterOn(line, { retransmission: 'tcp' as 'fixed' })).rejects.toThrow(/"retransmission" must be "adaptive" or "fixed"/);
    await expect(meterOn(line, { minAckTimeoutMs: 5000, maxAckTimeoutMs: 1000 })).rejects.toThrow(/"minAckTimeoutMs" must not exceed "maxAckTimeoutMs"/);
    await expect(meterOn(line, { minAckTimeoutMs: 0 })).rejects.toThrow(/"minAckTimeoutMs" must be an integer/);
  });
});

describe('the transmit queue', () => {
  /**
   * A line whose writes each take `writeMs` to be accepted (a stalled driver); it records how many copies of
   * each frame are pending at once, and acknowledges each frame once its write completed.
   */
  function slowLine(writeMs: number) {
    const pending = new Map<number, number>();
    const writes: number[] = [];
    let maxCopiesPending = 0;
    let listener: ((b: Buffer) => void) | undefined;
    const parser = new LinkParser();
    let inWrite: number[] = [];
    parser.on('data', (p: Buffer) => inWrite.push(decodeFrame(p).ic));
    const line: SerialLine & { writes: number[]; maxCopiesPending: () => number } = {
      writes,
      maxCopiesPending: () => maxCopiesPending,
      write: async (bytes) => {
        inWrite = [];
        parser.write(bytes);
        const ics = inWrite; // a write may carry several frames
        for (const ic of ics) {
          writes.push(ic);
          pending.set(ic, (pending.get(ic) ?? 0) + 1);
          maxCopiesPending = Math.max(maxCopiesPending, pending.get(ic)!);
        }
        await new Promise((r) => setTimeout(r, writeMs));
        for (const ic of ics) {
          pending.set(ic, pending.get(ic)! - 1);
          setTimeout(() => listener?.(encodeLinkFrame(encodeAck({ systemTitle: ST, ic }))), 5);
        }
      },
      onData: (l) => {
        listener = l;
        return () => (listener = undefined);
      },
    };
    return line;
  }

  for (const retransmission of ['fixed', 'adaptive'] as const) {
    it(`${retransmission}: a frame whose timer expires while it waits for the line is not queued again`, async () => {
      const line = slowLine(60);
      // The timer (20 ms) is shorter than one write (60 ms): every waiting frame times out while queued.
      const meter = await meterOn(line, { retransmission, ackTimeoutMs: 20, minAckTimeoutMs: 20, batch: 1, source: minutes(12) });
      const counters = await meter.done(20_000);
      expect(counters.acked).toBe(12);
      expect(line.maxCopiesPending()).toBe(1);
      // Fixed: the timer runs from queueing, so frames did time out while queued (the guard was needed).
      if (retransmission === 'fixed') expect(counters.timeouts).toBeGreaterThan(0);
      expect(new Set(line.writes).size).toBe(12);
    }, 30_000);
  }
});
