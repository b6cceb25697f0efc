import { afterEach, describe, expect, it, vi } from 'vitest';
import { createClock, parseSpeed } from '../../firmware/hal/clock.js';

afterEach(() => vi.useRealTimers());

function settled(p: Promise<unknown>): () => boolean {
  let done = false;
  p.then(() => (done = true), () => (done = true));
  return () => done;
}

describe('clock', () => {
  it('maps simulated time to wall time at the chosen speed', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
    const clock = createClock(60);
    clock.start(1_000_000);
    const minute = settled(clock.waitUntil(1_000_060)); // one simulated minute = one real second at 60x
    await vi.advanceTimersByTimeAsync(990);
    expect(minute()).toBe(false);
    await vi.advanceTimersByTimeAsync(20);
    expect(minute()).toBe(true);
    await clock.waitUntil(1_000_000); // the past: resolves without any timer (fake timers would hang it)
    const hour = settled(clock.waitUntil(1_003_600));
    await vi.advanceTimersByTimeAsync(58_900);
    expect(hour()).toBe(false);
    await vi.advanceTimersByTimeAsync(200);
    expect(hour()).toBe(true);
  });

  it('stops waiting when aborted', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance'] });
    const clock = createClock(1);
    clock.start(0);
    const ac = new AbortController();
    const wait = clock.waitUntil(3600, ac.signal);
    ac.abort(new Error('stopped'));
    await expect(wait).rejects.toThrow('stopped');
    await expect(clock.waitUntil(1, ac.signal)).rejects.toThrow('stopped');
  });

  it('does not wait at max speed, and parses speeds', async () => {
    const clock = createClock('max');
    clock.start(0);
    await clock.waitUntil(10 * 365 * 86400); // ten simulated years, no timer involved
    expect(clock.speed).toBe('max');
    expect(parseSpeed('1')).toBe(1);
    expect(parseSpeed('60')).toBe(60);
    expect(parseSpeed('0.5')).toBe(0.5);
    expect(parseSpeed('max')).toBe('max');
    expect(parseSpeed('live')).toBe('live');
    for (const bad of ['0', '-1', 'fast', '', '1e3', 'Infinity']) expect(() => parseSpeed(bad), bad).toThrow(/speed/);
    expect(() => createClock(0)).toThrow(/speed/);
  });

  it('live: the past at once (a back-fill), the future when the wall clock gets there', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date', 'setImmediate'], now: Date.UTC(2024, 0, 2, 12) });
    const clock = createClock('live');
    const now = Date.now() / 1000;
    clock.start(now - 2 * 86400); // a start in the past does not shift anything: simulated time is wall time
    const yesterday = settled(clock.waitUntil(now - 86400));
    await vi.advanceTimersByTimeAsync(0);
    expect(yesterday()).toBe(true);
    const nextMinute = settled(clock.waitUntil(now + 60));
    await vi.advanceTimersByTimeAsync(59_000);
    expect(nextMinute()).toBe(false);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(nextMinute()).toBe(true);
  });
});
