/**
 * A scripted gateway stand-in for meter tests: parses link frames from its end of a crossed mock line,
 * deciphers every frame with the meter key (which a real gateway never holds), and acknowledges frames
 * as its `ack` hook decides.
 */
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { LinkParser, encodeLinkFrame } from '../../../protocol/link.js';
import { decodeFrame, encodeAck, openFrame } from '../../../protocol/frame.js';
import { decodeReadingBatch, type Reading, type ReadingBatch } from '../../../protocol/reading.js';
import type { Duplex } from 'node:stream';

export interface Received {
  ic: number;
  bytes: string; // hex of the CBOR frame, to compare retransmissions
  batch: ReadingBatch;
}

export class TestPeer {
  /** Every frame received, in arrival order, duplicates included. */
  readonly received: Received[] = [];
  /** Payloads that did not decode or authenticate. */
  rejected = 0;
  /** Decides whether to acknowledge the `nth` (1-based) arrival of frame `ic`; default: always. */
  ack: (ic: number, nth: number) => boolean = () => true;
  readonly parser = new LinkParser();
  private readonly seen = new Map<number, number>();
  private waiters: { n: number; resolve: () => void }[] = [];

  constructor(private readonly port: Duplex, private readonly key: Uint8Array, private readonly st: Uint8Array) {
    port.pipe(this.parser).on('data', (payload: Buffer) => this.onPayload(payload));
  }

  private onPayload(payload: Buffer): void {
    let r: Received;
    try {
      const f = decodeFrame(payload);
      r = { ic: f.ic, bytes: payload.toString('hex'), batch: decodeReadingBatch(openFrame(this.key, f)) };
    } catch {
      this.rejected++;
      return;
    }
    this.received.push(r);
    const nth = (this.seen.get(r.ic) ?? 0) + 1;
    this.seen.set(r.ic, nth);
    if (this.ack(r.ic, nth)) this.sendAck(r.ic);
    this.waiters = this.waiters.filter((w) => (this.distinct().size >= w.n ? (w.resolve(), false) : true));
  }

  sendAck(ic: number, st = this.st): void {
    this.port.write(encodeLinkFrame(encodeAck({ systemTitle: st, ic })));
  }

  /** Resolves once `n` distinct frames arrived. */
  until(n: number): Promise<void> {
    if (this.distinct().size >= n) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ n, resolve }));
  }

  /** Distinct frames by counter; throws if one counter ever carried two different frames (IV reuse). */
  distinct(): Map<number, Received> {
    const m = new Map<number, Received>();
    for (const r of this.received) {
      const prev = m.get(r.ic);
      if (prev && prev.bytes !== r.bytes) throw new Error(`invocation counter ${r.ic} reused for a different frame`);
      m.set(r.ic, r);
    }
    return m;
  }

  /** Distinct frames in counter order. */
  frames(): Received[] {
    return [...this.distinct().values()].sort((a, b) => a.ic - b.ic);
  }

  /** Readings of all distinct frames, in counter order. */
  readings(): Reading[] {
    return this.frames().flatMap((f) => f.batch.readings);
  }
}

/**
 * The register the meter must show after each sample of a UMass-format CSV whose kW values have at most
 * 6 decimals, computed independently of the firmware: integer mW from the text, period = next time -
 * this time (the last keeps the previous period), cumulative mW·s, floor to Wh.
 */
export async function expectedRegisterFromCsv(file: string): Promise<{ time: number; importWh: number }[]> {
  const rows: { time: number; mw: bigint }[] = [];
  for await (const line of createInterface({ input: createReadStream(file) })) {
    if (!line) continue;
    const [stamp, kw] = line.split(',') as [string, string];
    const [int, frac = ''] = kw.split('.');
    rows.push({ time: Date.parse(`${stamp.replace(' ', 'T')}Z`) / 1000, mw: BigInt(int!) * 1_000_000n + BigInt(frac.padEnd(6, '0')) });
  }
  let total = 0n;
  return rows.map((r, i) => {
    const next = rows[i + 1];
    const period = next ? next.time - r.time : r.time - rows[i - 1]!.time;
    total += r.mw * BigInt(period);
    return { time: r.time, importWh: Number(total / 3_600_000n) };
  });
}
