/**
 * Bounded fuzz of the MDMS ingest handler (mdms/ingest.ts handleMessage -> openAggregate -> parseAggregate ->
 * privacy policy -> store): genuine seals, seals moved to other topics, mutated and spliced envelopes, seals
 * for another key, and bodies sealed by a holder of the MDMS public key. `npm run fuzz` runs it at scale.
 */
import { describe, expect, it } from 'vitest';
import { fuzzCheck } from './fuzz-check.js';
import { mdmsTarget } from '../../bench/harness/fuzz-targets.js';

describe('fuzz: MDMS ingest handler', () => {
  it('stores only genuine aggregates on their own topic and valid key-holder bodies; never acks a seal for another key; counts every message once', async () => {
    const r = await fuzzCheck(mdmsTarget({ rsaBits: 1024 }), 700);
    expect(r.figures.stored).toBeGreaterThan(0);
    expect(r.figures.malformed).toBeGreaterThan(0);
    expect(r.figures.unsealFailed).toBeGreaterThan(0);
  });
});
