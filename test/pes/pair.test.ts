/**
 * Import and export packed in one Paillier plaintext (pes/core/pair.ts): any signed sum of pairs decodes to the
 * pair of sums, through the engine too; a window whose export (or import) total is negative or oversized is not
 * released.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { pino } from 'pino';
import { PesCore } from '../../pes/core/pes.js';
import { packPair, unpackPair } from '../../pes/core/pair.js';
import { resolveSettings } from '../../pes/pes.js';
import { ciphertextToBytes, decodeSigned } from '../../protocol/paillier/engine.js';
import { makeFleet } from './helpers.js';

const T0 = 1_700_000_000 - (1_700_000_000 % 86400);
const wh = fc.integer({ min: -(2 ** 48), max: 2 ** 48 });

describe('packed (import, export) pairs', () => {
  it('a sum of signed pairs decodes to the pair of sums, in plain integers and through Paillier', async () => {
    const f = await makeFleet({ n: 1, start: T0 });
    const pk = f.keys.paillier;
    fc.assert(
      fc.property(fc.array(fc.tuple(wh, wh), { minLength: 1, maxLength: 20 }), (pairs) => {
        const sum = pairs.reduce((s, [a, b]) => s + packPair(a, b), 0n);
        const want = [BigInt(pairs.reduce((s, [a]) => s + a, 0)), BigInt(pairs.reduce((s, [, b]) => s + b, 0))];
        expect(unpackPair(sum)).toEqual(want);
      }),
      { numRuns: 500 },
    );
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(wh, wh), { minLength: 1, maxLength: 6 }), async (pairs) => {
        let c = pk.encrypt(packPair(...pairs[0]!));
        for (const [a, b] of pairs.slice(1)) c = pk.addPlain(c, packPair(a, b));
        expect(unpackPair(decodeSigned(pk.decrypt(c), pk.n))).toEqual([BigInt(pairs.reduce((s, [a]) => s + a, 0)), BigInt(pairs.reduce((s, [, b]) => s + b, 0))]);
      }),
      { numRuns: 40 },
    );
    // A version-1 plaintext (import only) is the pair (import, 0).
    expect(unpackPair(1234n)).toEqual([1234n, 0n]);
  });

  it.each([
    ['a negative export total', 100, -5],
    ['an oversized export total', 100, 2 ** 53],
    ['a negative import total', -1, 40],
  ])('%s is counted (negativeTotal) and not released, in neighbourhood and billing windows alike', async (_what, importWh, exportWh) => {
    const f = await makeFleet({ n: 2, start: T0 });
    const pk = f.keys.paillier;
    const core = new PesCore(resolveSettings({ k: 2, intervalS: 900 }), { ...f.keys, householdPublic: new Map() }, pino({ level: 'silent' }));
    const ids = f.meters.map((m) => m.id);
    const acc = (): [string, Uint8Array][] => [['', ciphertextToBytes(pk, pk.encrypt(packPair(importWh, exportWh)))]];
    const window = { revision: -1, closed: false, suppressed: false, meters: ids, changed: ids, released: null };
    core.restore({
      windows: [
        { ...window, kind: 'neighbourhood', key: 'nb0', start: T0, end: T0 + 900, acc: acc() },
        { ...window, kind: 'billing', key: 'hh0', start: T0, end: T0 + 86400, acc: [['flat', acc()[0]![1]]], meters: [ids[0]!], changed: [ids[0]!] },
      ],
      meters: new Map(),
      households: new Map(),
      watermark: T0 + 900,
      counters: {},
    });
    core.flush();
    expect(core.counters.negativeTotal).toBe(2);
    expect(core.counters.released).toBe(0);
    expect(core.checkpoint().outbox).toEqual([]);
  });
});
