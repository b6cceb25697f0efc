/**
 * Durability chain step 1, at the instant a kill -9 can land: a frame must not leave the meter before its
 * NV record holds it. If it did, a meter killed during that save would come back without the frame, rebuild
 * the same readings under a new invocation counter, and the PES would receive them twice (it refuses the
 * second copy as `timeBackwards`, but the chain's promise is broken). The save is held open here while an
 * acknowledgement arrives - the moment the meter sends whatever its ring holds.
 */
import { describe, expect, it } from 'vitest';
import { FileNvStore, type NvStore } from '../../firmware/hal/nv.js';
import type { SerialLine } from '../../firmware/hal/line.js';
import type { Sample, Source } from '../../firmware/hal/source.js';
import { Meter } from '../../firmware/meter.js';
import { decodeMessage, encodeAck, MSG_FRAME, systemTitle } from '../../protocol/frame.js';
import { encodeLinkFrame, LinkParser } from '../../protocol/link.js';

const ST = systemTitle('SMR', 77);
const KEY = new Uint8Array(32).fill(7);

/** An NV store whose saves can be held open; records the frame counters each completed save holds. */
class GatedNv implements NvStore {
  saved: number[][] = [];
  private record: unknown;
  private hold: ((record: unknown) => boolean) | undefined;
  private release: (() => void) | undefined;
  held = false;
  async load(): Promise<unknown> {
    return this.record;
  }
  async save(record: unknown): Promise<void> {
    if (this.hold?.(record)) {
      this.hold = undefined;
      this.held = true;
      await new Promise<void>((r) => (this.release = r));
      this.held = false;
    }
    this.record = record;
    this.saved.push(((record as { ring: [number, Uint8Array][] }).ring ?? []).map(([ic]) => ic));
  }
  holdWhen(pred: (record: unknown) => boolean): void {
    this.hold = pred;
  }
  open(): void {
    this.release?.();
  }
}

/** A line that records the counters of the frames the meter sends, and lets the test send downlink bytes. */
function recordingLine(): SerialLine & { sent: number[]; ack(ic: number): void } {
  const parser = new LinkParser();
  const sent: number[] = [];
  let listener: ((b: Buffer) => void) | undefined;
  parser.on('data', (payload: Buffer) => {
    const m = decodeMessage(payload);
    if (m.type === MSG_FRAME) sent.push(m.ic);
  });
  return {
    sent,
    write: async (bytes) => void parser.write(bytes),
    onData: (l) => {
      listener = l;
      return () => (listener = undefined);
    },
    ack: (ic) => listener?.(encodeLinkFrame(encodeAck({ systemTitle: ST, ic }))),
  };
}

function minutes(n: number, t0 = 1_704_067_200): Source {
  return {
    name: 'test',
    async *samples(from?: number) {
      for (let i = 0; i < n; i++) {
        const s: Sample = { time: t0 + i * 60, period: 60, powerMilliW: 500_000 };
        if (from === undefined || s.time >= from) yield s;
      }
    },
  };
}

const until = async (check: () => boolean, what: string) => {
  const t0 = Date.now();
  while (!check()) {
    if (Date.now() - t0 > 10_000) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
};

describe('meter: persist before transmit', () => {
  it('does not send a frame while the NV save that holds it is in progress, even when an acknowledgement wakes the sender', async () => {
    const nv = new GatedNv();
    const line = recordingLine();
    // Hold the first save whose ring holds frame 1.
    nv.holdWhen((r) => (r as { ring: [number, Uint8Array][] }).ring.some(([ic]) => ic === 1));
    const meter = await Meter.start({ systemTitle: ST, key: KEY, line, source: minutes(3), nv, batch: 1, ackTimeoutMs: 60_000 });
    try {
      await until(() => nv.held, 'the save of frame 1 to start');
      expect(line.sent).toEqual([0]);
      line.ack(0); // the gateway acknowledges frame 0: the meter saves its ring and sends what is waiting
      await new Promise((r) => setTimeout(r, 50));
      expect(line.sent, 'frame 1 left before its save completed').toEqual([0]);
      nv.open();
      await until(() => line.sent.includes(1), 'frame 1 to be sent after its save');
      expect(nv.saved.some((ring) => ring.includes(1))).toBe(true);
    } finally {
      nv.open();
      await meter.stop();
    }
  });

  it('FileNvStore: a frame sent was in the file first (every frame of a run)', async () => {
    const { mkdtempSync, rmSync } = await import('node:fs');
    const { join } = await import('node:path');
    const { tmpdir } = await import('node:os');
    const dir = mkdtempSync(join(tmpdir(), 'sm-nv-order-'));
    try {
      const file = new FileNvStore(join(dir, 'nv.cbor'));
      const inFile = new Set<number>();
      const nv: NvStore = {
        load: () => file.load(),
        save: async (r) => {
          await file.save(r);
          for (const [ic] of (r as { ring: [number, Uint8Array][] }).ring) inFile.add(ic);
        },
      };
      const line = recordingLine();
      const notDurable: number[] = [];
      const write = line.write;
      line.write = async (bytes) => {
        const before = line.sent.length;
        await write(bytes);
        for (const ic of line.sent.slice(before)) if (!inFile.has(ic)) notDurable.push(ic);
      };
      const meter = await Meter.start({ systemTitle: ST, key: KEY, line, source: minutes(40), nv, batch: 1, ackTimeoutMs: 60_000 });
      // Acknowledge every frame as soon as it is seen, as a fast gateway does.
      let acked = 0;
      const acker = setInterval(() => {
        while (acked < line.sent.length) line.ack(line.sent[acked++]!);
      }, 1);
      try {
        await meter.done(20_000);
      } finally {
        clearInterval(acker);
        await meter.stop();
      }
      expect(notDurable).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
