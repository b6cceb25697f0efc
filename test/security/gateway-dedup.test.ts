/**
 * The gateway de-duplicates retransmissions, but it cannot authenticate frames: a copy with the (meter, ic)
 * of a genuine frame and other bytes (a forgery written on the line, damage that passed the FCS, a meter
 * reusing counters after a wiped store) must be forwarded like any other frame (docs/protocol.md §8.6), and
 * must not get the genuine frame acknowledged before the genuine frame itself is upstream — else a keyless
 * attacker who sends the next counter first makes the meter free, and the gateway drop, the genuine frame.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { classifyPayload, type OpaqueFrame } from '../../gateway/core.js';
import { Forwarder } from '../../gateway/forwarder.js';
import { openFrameQueue } from '../../gateway/queue.js';
import { encodeFrame, SC_AES256GCM, sealFrame, systemTitle } from '../../protocol/frame.js';
import { decodeUplink } from '../../protocol/uplink.js';

const st = systemTitle('SMR', 77);
const genuineKey = randomBytes(32);
const attackerKey = randomBytes(32);
const copy = (key: Uint8Array, ic: number): OpaqueFrame => {
  const c = classifyPayload(encodeFrame(sealFrame(key, { systemTitle: st, sc: SC_AES256GCM, ic }, Buffer.from(`reading ${ic}`))));
  if (c.kind !== 'frame') throw new Error('not a frame');
  return c.frame;
};

function harness() {
  const published: { frames: string[]; done: (err?: Error | null) => void }[] = [];
  const acks: string[] = [];
  const store = openFrameQueue(':memory:');
  const fwd = new Forwarder<string>({
    gatewayId: 'gw-t',
    store,
    maxBatch: 1,
    publish: (payload, done) => published.push({ frames: decodeUplink(payload).frames.map((f) => Buffer.from(f).toString('hex')), done }),
    ack: (line, f) => acks.push(`${line}:${f.ic}`),
  });
  fwd.setOnline(true);
  return { fwd, published, acks, store };
}
const hex = (f: OpaqueFrame) => Buffer.from(f.bytes).toString('hex');

describe('gateway forwarder: copies of a (meter, ic) with other bytes', () => {
  it('a forged copy queued first does not swallow the genuine frame, and the ack waits for both', () => {
    const { fwd, published, acks } = harness();
    const forged = copy(attackerKey, 5);
    const genuine = copy(genuineKey, 5);
    expect(fwd.offer('meter-line', forged)).toBe('queued');
    expect(fwd.offer('meter-line', genuine)).toBe('queued');
    expect(published.map((p) => p.frames[0])).toEqual([hex(forged), hex(genuine)]);
    published[0]!.done();
    expect(acks).toEqual([]); // the genuine copy is not upstream yet: the meter must keep it
    published[1]!.done();
    expect(acks).toEqual(['meter-line:5']);
    expect(fwd.forwarded).toBe(2);
  });

  it('a forged copy forwarded earlier does not get the genuine frame re-acknowledged and dropped', () => {
    const { fwd, published, acks } = harness();
    const forged = copy(attackerKey, 6);
    expect(fwd.offer('meter-line', forged)).toBe('queued');
    published[0]!.done(); // the meter holds no frame 6 yet and ignores this ack
    const genuine = copy(genuineKey, 6);
    expect(fwd.offer('meter-line', genuine)).toBe('queued');
    expect(published).toHaveLength(2);
    expect(published[1]!.frames).toEqual([hex(genuine)]);
    published[1]!.done();
    expect(acks).toEqual(['meter-line:6', 'meter-line:6']);
  });

  it('a byte-identical retransmission is still de-duplicated (queued once, re-acknowledged after PUBACK)', () => {
    const { fwd, published, acks } = harness();
    const f = copy(genuineKey, 7);
    expect(fwd.offer('L', f)).toBe('queued');
    expect(fwd.offer('L', f)).toBe('duplicate');
    published[0]!.done();
    expect(fwd.offer('L', f)).toBe('reacked');
    expect(published).toHaveLength(1);
    expect(acks).toEqual(['L:7', 'L:7']);
  });

  it('a retransmission of a copy forwarded earlier waits for the ack of another copy still in flight', () => {
    const { fwd, published, acks } = harness();
    const a = copy(genuineKey, 8);
    const b = copy(attackerKey, 8);
    fwd.offer('L', a);
    published[0]!.done();
    fwd.offer('L', b); // in flight now
    expect(fwd.offer('L', a)).toBe('reacked');
    expect(acks).toEqual(['L:8']); // only the ack of a's own PUBACK so far
    published[1]!.done();
    expect(acks).toEqual(['L:8', 'L:8']);
  });
});
