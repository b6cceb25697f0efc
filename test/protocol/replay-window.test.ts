import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { REPLAY_WINDOW, ReplayWindow } from '../../protocol/replay-window.js';

describe('anti-replay window (RFC 4303 §3.4.3)', () => {
  it('agrees with a reference model (set of accepted counters + highest) on any sequence', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 5000 }), { maxLength: 400 }), fc.integer({ min: 0, max: 2 ** 32 - 6000 }), (ics, base) => {
        const w = new ReplayWindow();
        const seen = new Set<number>();
        let highest = -1;
        for (const x of ics) {
          const ic = base + x;
          const expected = highest < 0 || ic > highest ? 'ok' : ic <= highest - REPLAY_WINDOW ? 'old' : seen.has(ic) ? 'seen' : 'ok';
          expect(w.check(ic)).toBe(expected);
          if (expected === 'ok') {
            w.mark(ic);
            seen.add(ic);
            highest = Math.max(highest, ic);
          }
        }
        // The state round-trips.
        const copy = new ReplayWindow(w.state());
        for (let ic = Math.max(0, highest - REPLAY_WINDOW - 2); ic <= highest + 2; ic++) expect(copy.check(ic)).toBe(w.check(ic));
      }),
      { numRuns: 300 },
    );
  });

  it('keeps the edges: highest - W + 1 is still tracked, highest - W is old', () => {
    const w = new ReplayWindow();
    w.mark(10_000);
    expect(w.check(10_000 - REPLAY_WINDOW + 1)).toBe('ok');
    w.mark(10_000 - REPLAY_WINDOW + 1);
    expect(w.check(10_000 - REPLAY_WINDOW + 1)).toBe('seen');
    expect(w.check(10_000 - REPLAY_WINDOW)).toBe('old');
    w.mark(10_001);
    expect(w.check(10_000 - REPLAY_WINDOW + 1)).toBe('old');
    expect(w.check(10_000)).toBe('seen');
    expect(() => new ReplayWindow({ highest: 1, bitmap: new Uint8Array(3) })).toThrow(/128 bytes/);
  });
});
