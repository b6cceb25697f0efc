/**
 * Bounded fuzz of the seal openers: protocol/seal.ts (openAggregate, openStream with a long-lived key cache)
 * and the household app's WebCrypto opener (ucs/web/seal.ts). A tampered, spliced or re-topiced envelope
 * never opens. Regression: both caches were keyed on the first 16 bytes of the wrapped key, so an envelope
 * whose wrapped key was altered further on opened from the cache.
 */
import { describe, it } from 'vitest';
import { fuzzCheck } from './fuzz-check.js';
import { sealTarget, ucsStreamTarget } from '../../bench/harness/fuzz-targets.js';

describe('fuzz: seal openers', () => {
  it('openAggregate / openStream open only what was sealed for that topic', async () => {
    await fuzzCheck(sealTarget({ rsaBits: 1024 }), 2000);
  });

  it('the browser stream opener opens only what was sealed for that topic', async () => {
    await fuzzCheck(ucsStreamTarget({ rsaBits: 1024 }), 1000);
  });
});
