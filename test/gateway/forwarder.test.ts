import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { classifyPayload, type OpaqueFrame } from '../../gateway/core.js';
import { Forwarder, type ForwarderOptions } from '../../gateway/forwarder.js';
import { openFrameQueue } from '../../gateway/queue.js';
import { decodeUplink } from '../../protocol/uplink.js';
import { sleep, testMeter, until } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'sm-fwd-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const meter = testMeter(42);

function opaque(ic: number): OpaqueFrame {
  const c = classifyPayload(meter.frame(ic));
  if (c.kind !== 'frame') throw new Error('test frame did not classify');
  return c.frame;
}

/** A forwarder over an in-memory SQLite queue whose publishes wait until the test completes them. */
function harness(opts: Partial<ForwarderOptions<string>> = {}, path = ':memory:') {
  const store = openFrameQueue(path);
  const published: { ics: number[]; done: (err?: Error | null) => void }[] = [];
  const acks: string[] = [];
  const fwd = new Forwarder<string>({
    gatewayId: 'gw-t',
    store,
    publish: (payload, done) => {
      const u = decodeUplink(payload);
      expect(u.gateway).toBe('gw-t');
      published.push({ ics: u.frames.map((f) => (classifyPayload(f) as { frame: OpaqueFrame }).frame.ic), done });
    },
    ack: (line, f) => acks.push(`${line}:${f.ic}`),
    maxDelayMs: 5,
    ...opts,
  });
  return { fwd, store, published, acks };
}

describe('Forwarder', () => {
  it('batches up to maxBatch frames, and sends a partial batch after maxDelayMs', async () => {
    const { fwd, published } = harness({ maxBatch: 4, maxDelayMs: 30 });
    fwd.setOnline(true);
    for (let ic = 1; ic <= 10; ic++) expect(fwd.offer('L1', opaque(ic))).toBe('queued');
    expect(published.map((p) => p.ics)).toEqual([
      [1, 2, 3, 4],
      [5, 6, 7, 8],
    ]);
    await until(() => published.length === 3, 'the partial batch');
    expect(published[2]!.ics).toEqual([9, 10]);
  });

  it('acknowledges a frame only after the PUBACK of the uplink that carried it', async () => {
    const { fwd, published, acks, store } = harness({ maxBatch: 2 });
    fwd.setOnline(true);
    fwd.offer('L1', opaque(1));
    fwd.offer('L2', opaque(2));
    fwd.offer('L1', opaque(3));
    await until(() => published.length === 2, 'two uplinks');
    await sleep(20);
    expect(acks).toEqual([]);
    expect(store.load().length).toBe(3); // queued on disk before publishing
    published[1]!.done(); // PUBACK of the second uplink only
    expect(acks).toEqual(['L1:3']);
    published[0]!.done();
    expect(acks).toEqual(['L1:3', 'L1:1', 'L2:2']);
    expect(fwd.forwarded).toBe(3);
    expect(fwd.pending).toBe(0);
    expect(store.load()).toEqual([]);
  });

  it('has every frame of an uplink on disk before it publishes the uplink', () => {
    const path = join(dir, 'durable.db');
    const reader = () => new Database(path, { readonly: true });
    const seen: number[] = [];
    const { fwd, store } = harness(
      {
        maxBatch: 3,
        publish: (payload) => {
          const db = reader();
          const onDisk = new Set(db.prepare('SELECT frame FROM frames').all().map((r) => Buffer.from((r as { frame: Buffer }).frame).toString('hex')));
          db.close();
          const frames = decodeUplink(payload).frames.map((f) => Buffer.from(f).toString('hex'));
          seen.push(frames.filter((f) => onDisk.has(f)).length);
        },
      },
      path,
    );
    fwd.setOnline(true);
    for (let ic = 1; ic <= 6; ic++) fwd.offer('L', opaque(ic));
    expect(seen).toEqual([3, 3]);
    store.close();
  });

  it('queues a retransmitted frame once and acks every line that sent it', () => {
    const { fwd, published, acks, store } = harness({ maxBatch: 1 });
    expect(fwd.offer('L1', opaque(5))).toBe('queued');
    expect(fwd.offer('L1', opaque(5))).toBe('duplicate');
    expect(fwd.offer('L2', opaque(5))).toBe('duplicate');
    expect(store.load().length).toBe(1);
    fwd.setOnline(true);
    expect(published.length).toBe(1);
    expect(fwd.offer('L1', opaque(5))).toBe('duplicate'); // while in flight
    published[0]!.done();
    expect(acks.sort()).toEqual(['L1:5', 'L2:5']);
    // After PUBACK the ack may have been lost on the line: a retransmission is acked at once, not re-queued.
    expect(fwd.offer('L1', opaque(5))).toBe('reacked');
    expect(acks.length).toBe(3);
    expect(published.length).toBe(1);
    expect(fwd.pending).toBe(0);
  });

  it('refuses frames beyond its bounds without acking them', () => {
    const one = opaque(1).bytes.length;
    const { fwd, acks, store } = harness({ maxQueueFrames: 2 });
    expect(fwd.offer('L', opaque(1))).toBe('queued');
    expect(fwd.offer('L', opaque(2))).toBe('queued');
    expect(fwd.offer('L', opaque(3))).toBe('full');
    expect(store.load().length).toBe(2);
    const byBytes = harness({ maxQueueBytes: one * 2 + 1 });
    byBytes.fwd.offer('L', opaque(1));
    byBytes.fwd.offer('L', opaque(2));
    expect(byBytes.fwd.offer('L', opaque(3))).toBe('full');
    expect(acks).toEqual([]);
  });

  it('publishes nothing while offline and everything, in order, once online', async () => {
    const { fwd, published } = harness({ maxBatch: 3 });
    for (let ic = 1; ic <= 7; ic++) fwd.offer('L', opaque(ic));
    await sleep(30);
    expect(published).toEqual([]);
    fwd.setOnline(true);
    expect(published.map((p) => p.ics)).toEqual([[1, 2, 3], [4, 5, 6], [7]]);
  });

  it('after a failed publish re-publishes the same frames first, in queue order', async () => {
    const { fwd, published, acks } = harness({ maxBatch: 2, retryMs: 20 });
    fwd.setOnline(true);
    for (let ic = 1; ic <= 5; ic++) fwd.offer('L', opaque(ic));
    await until(() => published.length === 3, 'three uplinks');
    published[0]!.done(new Error('connection lost'));
    published[1]!.done(new Error('connection lost'));
    published[2]!.done(new Error('connection lost'));
    expect(fwd.publishErrors).toBe(3);
    expect(acks).toEqual([]);
    await until(() => published.length === 6, 'the retry');
    expect(published.slice(3).map((p) => p.ics)).toEqual([[1, 2], [3, 4], [5]]);
    for (const p of published.slice(3)) p.done();
    expect(acks).toEqual(['L:1', 'L:2', 'L:3', 'L:4', 'L:5']);
  });

  it('does not spin when publish fails synchronously', async () => {
    let calls = 0;
    const { fwd } = harness({
      retryMs: 50,
      publish: (_p, done) => {
        calls++;
        done(new Error('not connected'));
      },
    });
    fwd.setOnline(true);
    fwd.offer('L', opaque(1));
    await sleep(120);
    expect(calls).toBeGreaterThanOrEqual(1);
    expect(calls).toBeLessThanOrEqual(5);
    fwd.close();
  });

  it('publishes nothing it could not write to disk, and retries the write', async () => {
    const inner = openFrameQueue(':memory:');
    let failures = 2;
    const errors: string[] = [];
    const { fwd, published, acks } = harness({
      retryMs: 20,
      store: {
        ...inner,
        flush: () => {
          if (failures > 0) {
            failures--;
            throw new Error('disk full');
          }
          inner.flush();
        },
      },
      onStoreError: (e) => errors.push(e.message),
    });
    fwd.setOnline(true);
    fwd.offer('L', opaque(1));
    await sleep(15);
    expect(published).toEqual([]);
    await until(() => published.length === 1, 'the publish after the disk recovered');
    expect(fwd.storeErrors).toBe(2);
    expect(errors).toEqual(['disk full', 'disk full']);
    published[0]!.done();
    expect(acks).toEqual(['L:1']);
  });

  it('restores the frames a previous run left on disk and publishes them first', () => {
    const path = join(dir, 'restore.db');
    const first = harness({}, path);
    for (let ic = 1; ic <= 3; ic++) first.fwd.offer('L', opaque(ic));
    first.fwd.close();
    first.store.close();

    const second = harness({ maxBatch: 10 }, path);
    expect(second.fwd.restore()).toBe(3);
    expect(second.fwd.pending).toBe(3);
    second.fwd.offer('L', opaque(4));
    expect(second.fwd.offer('L', opaque(2))).toBe('duplicate'); // the meter retransmits a restored frame
    second.fwd.setOnline(true);
    expect(second.published.map((p) => p.ics)).toEqual([[1, 2, 3, 4]]);
    second.published[0]!.done();
    expect(second.acks).toEqual(['L:2', 'L:4']); // only frames whose line is known this run
    second.store.close();
    const third = harness({}, path);
    expect(third.fwd.restore()).toBe(0);
    third.store.close();
  });

  it('validates its options', () => {
    expect(() => harness({ maxBatch: 0 })).toThrow(/maxBatch/);
    expect(() => harness({ maxBatch: 2000 })).toThrow(/maxBatch/);
    expect(() => harness({ maxDelayMs: -1 })).toThrow(/maxDelayMs/);
    expect(() => new Forwarder({} as ForwarderOptions<string>)).toThrow(/required/);
  });
});
