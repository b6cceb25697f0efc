/**
 * The PES's key rule for rotated meter keys (docs/protocol.md §7.1): the key in use, else a newer one (the
 * switch), never an older one once a newer one was seen.
 */
import { randomBytes } from 'node:crypto';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { createPes } from '../../pes/pes.js';
import { encodeFrame, SC_AES256GCM, sealFrame } from '../../protocol/frame.js';
import { encodeReadingBatch } from '../../protocol/reading.js';
import { makeFleet, uplink } from './helpers.js';

const T0 = 1_700_000_000 - (1_700_000_000 % 86400);

describe('PES with rotated meter keys', () => {
  it('accepts the old key until a newer one is seen (a skipped generation too), then refuses it; a redelivered old frame is a duplicate', async () => {
    const f = await makeFleet({ n: 1, start: T0 });
    const m = f.meters[0]!;
    const [k1, k2] = [randomBytes(32), randomBytes(32)];
    f.info.get(m.id)!.rotated = [k1, k2];
    const pes = createPes({ keys: f.keys, intervalS: 900, k: 1, logger: pino({ level: 'silent' }) });
    const under = (key: Uint8Array) => {
      const batch = m.batch(15);
      return encodeFrame(sealFrame(key, { systemTitle: m.st, sc: SC_AES256GCM, ic: m.ic++ }, encodeReadingBatch(batch)));
    };
    const old = [under(m.key), under(m.key)];
    pes.ingestUplink(uplink(old));
    expect([pes.counters.framesOk, pes.counters.keySwitches]).toEqual([2, 0]);

    pes.ingestUplink(uplink([under(k2)])); // the meter went straight to generation 2
    expect([pes.counters.framesOk, pes.counters.keySwitches]).toEqual([3, 1]);

    pes.ingestUplink(uplink([old[1]!])); // a broker redelivering a frame accepted before the switch
    expect([pes.counters.duplicateFrame, pes.counters.retiredKey]).toEqual([1, 0]);
    const c = pes.counters.framesOk;
    pes.ingestUplink(uplink([under(m.key), under(k1)])); // fresh counters under generations 0 and 1: both retired
    expect([pes.counters.retiredKey, pes.counters.framesOk, pes.counters.badTag]).toEqual([2, c, 0]);
    pes.ingestUplink(uplink([under(randomBytes(32))])); // no generation at all
    expect(pes.counters.badTag).toBe(1);
    pes.ingestUplink(uplink([under(k2)]));
    expect([pes.counters.framesOk, pes.counters.keySwitches]).toEqual([c + 1, 1]);
    await pes.close();
  });
});
