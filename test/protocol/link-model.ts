/**
 * Test helpers for the link layer: a whole-buffer reference model of LinkParser (split on flags, unstuff,
 * classify — no state machine), an encoder that skips the size check, and a runner for chunked input.
 */
import { crc16x25 } from '../../protocol/crc.js';
import { LinkParser, MAX_PAYLOAD, type LinkCounters, type LinkParserOptions } from '../../protocol/link.js';

export const zeroCounters = (): LinkCounters => ({ frames: 0, badCrc: 0, oversize: 0, malformed: 0, resyncs: 0, garbageBytes: 0 });

/** What docs/protocol.md §3 says a receiver delivers and counts for the whole byte stream `wire`. */
export function linkModel(wire: Uint8Array, maxPayload = MAX_PAYLOAD): { payloads: Buffer[]; counters: LinkCounters } {
  const counters = zeroCounters();
  const payloads: Buffer[] = [];
  const flags: number[] = [];
  wire.forEach((b, i) => b === 0x7e && flags.push(i));
  const garbage = (n: number) => {
    if (n > 0) {
      counters.garbageBytes += n;
      counters.resyncs++;
    }
  };
  if (flags.length === 0) {
    garbage(wire.length);
    return { payloads, counters };
  }
  garbage(flags[0]!);
  for (let k = 0; k + 1 < flags.length; k++) {
    const seg = wire.subarray(flags[k]! + 1, flags[k + 1]!);
    if (seg.length === 0) continue; // "7E 7E": fill
    const out: number[] = [];
    let bad = false;
    let esc = false;
    for (let b of seg) {
      if (b === 0x7d) {
        if (esc) bad = true; // "7D 7D": invalid; the second 7D is consumed with the first
        esc = !esc;
        continue;
      }
      if (esc) {
        b ^= 0x20;
        esc = false;
      }
      out.push(b);
    }
    if (out.length > maxPayload + 2) counters.oversize++;
    else if (bad || esc || out.length < 3) counters.malformed++;
    else {
      const payload = Buffer.from(out.slice(0, -2));
      if (crc16x25(payload) === (out.at(-2)! | (out.at(-1)! << 8))) {
        counters.frames++;
        payloads.push(payload);
        continue;
      }
      counters.badCrc++;
    }
    counters.resyncs++;
  }
  garbage(wire.length - flags.at(-1)! - 1);
  return { payloads, counters };
}

/** A link frame for any payload, even an empty or oversized one (what a non-conforming sender might put on the wire). */
export function forceLinkFrame(payload: Uint8Array): Buffer {
  const fcs = crc16x25(payload);
  const out = [0x7e];
  for (const b of [...payload, fcs & 0xff, fcs >>> 8]) {
    if (b === 0x7e || b === 0x7d) out.push(0x7d, b ^ 0x20);
    else out.push(b);
  }
  out.push(0x7e);
  return Buffer.from(out);
}

/** Feeds `chunks` to a fresh LinkParser, ends it, and resolves with what came out. */
export async function runParser(chunks: Uint8Array[], options?: LinkParserOptions): Promise<{ payloads: Buffer[]; counters: LinkCounters }> {
  const parser = new LinkParser(options);
  const payloads: Buffer[] = [];
  parser.on('data', (p: Buffer) => payloads.push(p));
  const ended = new Promise<void>((resolve, reject) => {
    parser.on('end', resolve);
    parser.on('error', reject);
  });
  for (const c of chunks) parser.write(Buffer.from(c));
  parser.end();
  await ended;
  return { payloads, counters: { ...parser.counters } };
}
