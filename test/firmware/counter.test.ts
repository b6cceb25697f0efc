import { describe, expect, it } from 'vitest';
import { CounterExhaustedError, InvocationCounter } from '../../firmware/counter.js';
import { MemoryNvStore } from '../../firmware/hal/nv.js';

/** A counter whose mark lives in `nv` like the meter's (the mark is the whole record here). */
async function bootCounter(nv: MemoryNvStore, block: number): Promise<InvocationCounter> {
  const mark = ((await nv.load()) as number | undefined) ?? 0;
  return new InvocationCounter(mark, (m) => nv.save(m), block);
}

describe('InvocationCounter', () => {
  it('persists a mark a block ahead before handing out the block', async () => {
    const persisted: number[] = [];
    const c = new InvocationCounter(0, async (m) => void persisted.push(m), 4);
    const got = [];
    for (let i = 0; i < 9; i++) got.push(await c.next());
    expect(got).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8]);
    expect(persisted).toEqual([4, 8, 12]);
    expect(c.reservedUpTo).toBe(12);
  });

  it('never reuses a counter across restarts, whatever the power cut', async () => {
    for (const when of ['before-save', 'after-save'] as const) {
      for (let cutAt = 1; cutAt <= 4; cutAt++) {
        const nv = new MemoryNvStore();
        const used = new Set<number>();
        let c = await bootCounter(nv, 3);
        nv.cutAt(cutAt, when);
        // Use counters until the power cut freezes the meter in the middle of a reservation.
        const run = (async () => {
          for (;;) {
            const ic = await c.next();
            expect(used.has(ic)).toBe(false);
            used.add(ic);
          }
        })();
        await nv.powerCut;
        void run;
        nv.powerOn();
        c = await bootCounter(nv, 3);
        for (let i = 0; i < 10; i++) {
          const ic = await c.next();
          expect(used.has(ic), `${when} at save ${cutAt}: counter ${ic} reused`).toBe(false);
          expect(ic).toBeGreaterThan(Math.max(-1, ...used));
          used.add(ic);
        }
      }
    }
  });

  it('refuses to pass 2^32 - 1', async () => {
    const c = new InvocationCounter(0xffffffff - 1, async () => undefined, 64);
    expect(await c.next()).toBe(0xfffffffe);
    expect(await c.next()).toBe(0xffffffff);
    expect(c.reservedUpTo).toBe(2 ** 32);
    await expect(c.next()).rejects.toThrow(CounterExhaustedError);
    await expect(c.next()).rejects.toThrow(/key must be renewed/);
    const booted = new InvocationCounter(2 ** 32, async () => undefined);
    await expect(booted.next()).rejects.toThrow(CounterExhaustedError);
  });

  it('rejects a bad mark or block', () => {
    expect(() => new InvocationCounter(-1, async () => undefined)).toThrow(RangeError);
    expect(() => new InvocationCounter(2 ** 32 + 1, async () => undefined)).toThrow(RangeError);
    expect(() => new InvocationCounter(0, async () => undefined, 0)).toThrow(RangeError);
  });

  it('does not hand out a counter when persisting the mark fails', async () => {
    let fail = true;
    const c = new InvocationCounter(0, async () => {
      if (fail) throw new Error('disk full');
    });
    await expect(c.next()).rejects.toThrow('disk full');
    fail = false;
    expect(await c.next()).toBe(0);
  });
});
