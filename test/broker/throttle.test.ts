import { Writable } from 'node:stream';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { createRefusalLog } from '../../broker/refusal-log.js';
import { AuthThrottle, FairQueue } from '../../broker/throttle.js';

const A = '10.0.0.1';
const B = '10.0.0.2';
const fail = (t: AuthThrottle, user: string | undefined, address: string, n: number, now = 0) => {
  for (let i = 0; i < n; i++) t.failed(user, address, now);
};

describe('AuthThrottle', () => {
  it('lets the free failures through, then backs off exponentially up to the maximum', () => {
    const t = new AuthThrottle({ freeFailures: 3, baseDelayMs: 1000, maxDelayMs: 4000 });
    fail(t, undefined, A, 3);
    expect(t.check(undefined, A, 0)).toEqual({ allowed: true });
    t.failed(undefined, A, 0); // 4th: 1 s
    expect(t.check(undefined, A, 999)).toEqual({ allowed: false, retryInMs: 1, by: 'address' });
    expect(t.check(undefined, A, 1000)).toEqual({ allowed: true });
    t.failed(undefined, A, 1000); // 5th: 2 s
    expect(t.check(undefined, A, 2999)).toMatchObject({ allowed: false });
    t.failed(undefined, A, 3000); // 6th: 4 s
    t.failed(undefined, A, 7000); // 7th: 8 s, capped at 4 s
    expect(t.check(undefined, A, 10_999)).toMatchObject({ allowed: false, retryInMs: 1 });
    expect(t.check(undefined, A, 11_000)).toEqual({ allowed: true });
  });

  it('forgets failures after a quiet period', () => {
    const t = new AuthThrottle({ freeFailures: 2, forgetAfterMs: 60_000 });
    fail(t, undefined, A, 2, 0);
    t.failed(undefined, A, 60_000); // the count restarts: 1 of 2 free
    expect(t.check(undefined, A, 60_000)).toEqual({ allowed: true });
  });

  it('an address in backoff does not stop another address, nor a user that logged in from it before', () => {
    const t = new AuthThrottle({ freeFailures: 2 });
    t.succeeded('pes', A, 0);
    fail(t, 'mdms', A, 5);
    expect(t.check('mdms', A, 1)).toMatchObject({ allowed: false, by: 'pair' });
    expect(t.check('ucs', A, 1)).toMatchObject({ allowed: false, by: 'address' }); // newcomer from A
    expect(t.check('pes', A, 1)).toEqual({ allowed: true }); // known pair
    expect(t.check('ucs', B, 1)).toEqual({ allowed: true });
  });

  it('a user under attack from many addresses keeps its own addresses, newcomers back off', () => {
    const t = new AuthThrottle({ freeFailures: 3 });
    t.succeeded('pes', A, 0);
    for (let i = 0; i < 10; i++) t.failed('pes', `192.0.2.${i}`, 0);
    expect(t.check('pes', '192.0.2.200', 1)).toMatchObject({ allowed: false, by: 'user' });
    expect(t.check('pes', A, 1)).toEqual({ allowed: true });
  });

  it('guessing from a known address backs off on the pair only', () => {
    const t = new AuthThrottle({ freeFailures: 3 });
    t.succeeded('pes', A, 0);
    fail(t, 'pes', A, 4);
    expect(t.check('pes', A, 1)).toMatchObject({ allowed: false, by: 'pair' });
    expect(t.check('mdms', A, 1)).toEqual({ allowed: true }); // the address is not blamed
    expect(t.check('pes', B, 1)).toEqual({ allowed: true }); // nor the user
  });

  it('keeps at most maxEntries per table', () => {
    const t = new AuthThrottle({ freeFailures: 1, maxEntries: 100 });
    fail(t, undefined, A, 2);
    for (let i = 0; i < 1000; i++) t.failed(undefined, `198.51.100.${i}`, 0);
    expect(t.check(undefined, A, 1)).toEqual({ allowed: true }); // evicted: the oldest go first
  });
});

describe('FairQueue', () => {
  const gate = () => {
    let open!: () => void;
    const p = new Promise<void>((r) => (open = r));
    return { p, open };
  };

  it('runs at most `concurrency` tasks, at most maxRunningPerLane of one lane, and serves lanes in turn', async () => {
    const q = new FairQueue({ concurrency: 3, maxRunningPerLane: 2 });
    const started: string[] = [];
    const gates: ReturnType<typeof gate>[] = [];
    const task = (name: string) => () => {
      started.push(name);
      const g = gate();
      gates.push(g);
      return g.p.then(() => name);
    };
    const flood = Array.from({ length: 10 }, (_, i) => q.run('flood', task(`f${i}`)));
    await Promise.resolve();
    expect(started).toEqual(['f0', 'f1']); // the third slot stays free for another lane
    const legit = q.run('other', task('legit'));
    await Promise.resolve();
    expect(started).toEqual(['f0', 'f1', 'legit']);
    gates[0]!.open();
    await expect(flood[0]).resolves.toBe('f0');
    expect(started).toEqual(['f0', 'f1', 'legit', 'f2']);
    for (const g of gates) g.open();
    gates.length = 0;
    await expect(legit).resolves.toBe('legit');
  });

  it('refuses at once when the lane or the whole queue is full', () => {
    const q = new FairQueue({ concurrency: 1, maxPerLane: 2, maxWaiting: 3 });
    const never = () => new Promise<void>(() => {});
    expect(q.run('a', never)).toBeDefined(); // running
    expect(q.run('a', never)).toBeDefined();
    expect(q.run('a', never)).toBeDefined();
    expect(q.run('a', never)).toBeUndefined(); // lane full
    expect(q.run('b', never)).toBeDefined();
    expect(q.run('c', never)).toBeUndefined(); // queue full
    expect(q.size).toBe(3);
  });

  it('passes a task error to its caller and goes on', async () => {
    const q = new FairQueue({ concurrency: 1 });
    await expect(q.run('a', () => Promise.reject(new Error('scrypt failed')))).rejects.toThrow('scrypt failed');
    await expect(q.run('a', async () => 1)).resolves.toBe(1);
  });
});

describe('createRefusalLog', () => {
  it('logs the first refusal at once and the rest as one summary per interval', async () => {
    const lines: { msg: string; refused?: number; byReason?: Record<string, number>; byAddress?: Record<string, number> }[] = [];
    const sink = new Writable({ write: (c, _e, cb) => (lines.push(JSON.parse(String(c))), cb()) });
    const log = createRefusalLog(pino(sink), 100);
    log.note({ reason: 'wrong password', address: A, username: 'pes' });
    for (let i = 0; i < 299; i++) log.note({ reason: i % 3 ? 'wrong password' : 'busy', address: i < 200 ? A : `192.0.2.${i}` });
    await new Promise((r) => setTimeout(r, 20));
    expect(lines.map((l) => l.msg)).toEqual(['broker: connection refused']);
    await new Promise((r) => setTimeout(r, 150));
    expect(lines).toHaveLength(2);
    expect(lines[1]).toMatchObject({ refused: 299, byReason: { busy: 100, 'wrong password': 199 } });
    expect(lines[1]!.byAddress).toMatchObject({ [A]: 200, others: 95 }); // top five named (A and four of one each), the rest together
    // A quiet interval ends the summaries; the next refusal is logged at once again.
    await new Promise((r) => setTimeout(r, 250));
    log.note({ reason: 'unknown user', address: B });
    expect(lines).toHaveLength(3);
    expect(lines[2]).toMatchObject({ msg: 'broker: connection refused', reason: 'unknown user' });
    log.close();
  });
});
