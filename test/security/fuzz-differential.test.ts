/**
 * Bounded differential fuzz of the decoders against an independent reading of docs/protocol.md
 * (test/security/fuzz-cbor.ts): cborDecode, decodeMessage, decodeFrame, the gateway's classifyPayload,
 * decodeReadingBatch, decodeUplink, and LinkParser over chunked streams. test/protocol/fuzz.test.ts checks
 * that they fail cleanly; this checks that they accept exactly what the spec accepts, with the same values.
 */
import { describe, expect, it } from 'vitest';
import { cborDecode } from '../../protocol/cbor.js';
import { fuzzCheck } from './fuzz-check.js';
import { refDecode } from '../../bench/harness/fuzz-cbor.js';
import { batchTarget, linkTarget, messageTarget, uplinkTarget } from '../../bench/harness/fuzz-targets.js';

describe('fuzz: decoders agree with the spec', () => {
  it('CBOR and serial-line messages', async () => {
    await fuzzCheck(messageTarget, 3000);
  });

  it('reading batches', async () => {
    await fuzzCheck(batchTarget, 2000);
  });

  it('uplinks', async () => {
    await fuzzCheck(uplinkTarget, 2000);
  });

  it('the link parser', async () => {
    await fuzzCheck(linkTarget, 800);
  });

  it('regression: a string length in the 8-byte form is refused whatever comes before it (cbor-x refused it only after a long text)', () => {
    const long = `7840${'78'.repeat(64)}`;
    for (const hex of ['5b0000000000000002abcd', `82${long}5b0000000000000002abcd`, `82${long}7b00000000000000026162`, '825b0000000000000002abcd01']) {
      const bytes = Buffer.from(hex, 'hex');
      expect(() => cborDecode(bytes), hex).toThrow(/8-byte form/);
      expect(refDecode(bytes).ok, hex).toBe(false);
    }
    expect(cborDecode(Buffer.from(`82${long}5a00000002abcd`, 'hex'))).toEqual(['x'.repeat(64), Buffer.from('abcd', 'hex')]);
  });
});
