/**
 * Throttling that cannot lock a household out (issue 17 items 6 and 7): the pauses fall on the source of
 * wrong guesses, with a backoff that doubles; the household's owner, from another address, gets in at once;
 * bogus registration finishes do no scrypt work and are rate-limited; `/api/kdf`, `/api/login` and
 * `/api/register/begin` do not tell which households exist or have an account. Sources are faked with
 * X-Forwarded-For on a server that trusts it (`trustProxy`).
 */
import * as nodeCrypto from 'node:crypto';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startUcs } from '../../ucs/server.js';
import { LOGIN_THROTTLE, sourceOf, verdict } from '../../ucs/server/throttle.js';
import { beginBody, NodeHousehold, startStack, type Stack } from './helpers.js';

// Counts the server's scrypt work (login hashes and their checks use the async node:crypto scrypt) and its HMACs
// (an activation code's verifier is checked against an HMAC-SHA-256 verifier, lib/password.ts).
vi.mock('node:crypto', async (importOriginal) => {
  const m = await importOriginal<typeof import('node:crypto')>();
  return { ...m, scrypt: vi.fn(m.scrypt), createHmac: vi.fn(m.createHmac) };
});
const scryptCalls = () => vi.mocked(nodeCrypto.scrypt).mock.calls.length;
const hmacCalls = () => vi.mocked(nodeCrypto.createHmac).mock.calls.length;

const PASSWORD = 'a long enough passphrase';
const OWNER = '198.51.100.7';
const ATTACKER = '203.0.113.66';
let stack: Stack;
let skew = 0;

/** A household's browser at a given address. */
class From extends NodeHousehold {
  constructor(
    base: string,
    household: string,
    readonly ip: string,
  ) {
    super(base, household);
  }
  override call(method: 'GET' | 'POST', path: string, body?: unknown, headers: Record<string, string> = {}) {
    return super.call(method, path, body, { 'x-forwarded-for': this.ip, ...headers });
  }
}

const b64 = (u: Uint8Array) => Buffer.from(u).toString('base64url');
/** One wrong login from `ip` (random authenticator: an attacker need not run the KDF to be refused). */
const wrongLogin = (ip: string, hh: string) => new From(stack.ucs.url, hh, ip).call('POST', '/api/login', { household: hh, auth: b64(nodeCrypto.randomBytes(32)) });

beforeAll(async () => {
  stack = await startStack({ ucs: { now: () => Date.now() + skew, attemptsPerMinute: 1000, trustProxy: true } });
  expect((await new From(stack.ucs.url, 'hh1', OWNER).register(stack.set.code('hh1'), PASSWORD)).status).toBe(200);
});
afterAll(async () => {
  await stack?.close();
});

describe('the backoff policy (pure)', () => {
  const t = 1_000_000_000;
  const f = (pair: number, source = pair, account = pair, last = t) => ({ pair: { count: pair, last }, source: { count: source, last }, account: { count: account, last } });

  it('lets a source fail `free` times, then makes it wait 15 minutes, doubling with each further failure', () => {
    expect(verdict(LOGIN_THROTTLE, f(8), t + 1)).toEqual({ refuse: false, delayMs: 0, left: 2, pauseIfWrongMs: 0 });
    expect(verdict(LOGIN_THROTTLE, f(9), t + 1)).toEqual({ refuse: false, delayMs: 0, left: 1, pauseIfWrongMs: 15 * 60_000 });
    expect(verdict(LOGIN_THROTTLE, f(10), t + 1)).toEqual({ refuse: true, waitMs: 15 * 60_000 - 1 });
    expect(verdict(LOGIN_THROTTLE, f(11), t)).toEqual({ refuse: true, waitMs: 30 * 60_000 });
    expect(verdict(LOGIN_THROTTLE, f(13), t)).toEqual({ refuse: true, waitMs: 120 * 60_000 });
    expect(verdict(LOGIN_THROTTLE, f(60), t)).toEqual({ refuse: true, waitMs: 24 * 3600_000 });
    expect(verdict(LOGIN_THROTTLE, f(10, 10, 10), t + 15 * 60_000)).toEqual({ refuse: false, delayMs: 100, left: 0, pauseIfWrongMs: 30 * 60_000 });
  });

  it('counts a source spraying many households, and only slows attempts on a household many sources failed on', () => {
    expect(verdict(LOGIN_THROTTLE, f(0, 30, 0), t)).toEqual({ refuse: true, waitMs: 15 * 60_000 });
    expect(verdict(LOGIN_THROTTLE, f(0, 0, 12), t)).toEqual({ refuse: false, delayMs: 400, left: 10, pauseIfWrongMs: 0 });
    expect(verdict(LOGIN_THROTTLE, f(0, 0, 10_000), t)).toEqual({ refuse: false, delayMs: 2_000, left: 10, pauseIfWrongMs: 0 });
  });

  it('keys IPv6 clients by their /64 and IPv4-mapped addresses as IPv4', () => {
    expect(sourceOf('192.0.2.1')).toBe('192.0.2.1');
    expect(sourceOf('::ffff:192.0.2.1')).toBe('192.0.2.1');
    expect(sourceOf('2001:db8:1:2:aaaa::1')).toBe('2001:db8:1:2::/64');
    expect(sourceOf('2001:0db8:0001:0002:ffff:ffff:ffff:ffff')).toBe('2001:db8:1:2::/64');
    expect(sourceOf('2001:db8::1')).toBe('2001:db8:0:0::/64');
    expect(sourceOf('::1')).toBe('0:0:0:0::/64');
  });
});

describe('an attacker cannot lock the owner out', () => {
  it('wrong passwords pause the attacker’s address, with a growing Retry-After; the owner logs in at once from home', async () => {
    for (let i = 0; i < 10; i++) expect((await wrongLogin(ATTACKER, 'hh1')).status).toBe(403);
    const refused = await fetch(stack.ucs.url + '/api/login', {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-forwarded-for': ATTACKER },
      body: JSON.stringify({ household: 'hh1', auth: b64(nodeCrypto.randomBytes(32)) }),
    });
    expect(refused.status).toBe(429);
    expect(((await refused.json()) as { error: string; message: string }).message).toMatch(/Too many wrong passwords for household hh1\. Try again in 15 minutes/);
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(14 * 60);

    // The owner, from another address, with the right password: in at once.
    const owner = new From(stack.ucs.url, 'hh1', OWNER);
    const t0 = performance.now();
    const ok = await owner.login(PASSWORD);
    expect(ok.status).toBe(200);
    expect(performance.now() - t0).toBeLessThan(10_000); // the client's own KDF is most of it

    // The attacker's address, 16 minutes later: one more guess, then a 30-minute pause (it doubles).
    skew += 16 * 60_000;
    expect(await wrongLogin(ATTACKER, 'hh1')).toMatchObject({ status: 403, json: { message: 'Wrong password for household hh1. Try again in 30 minutes.' } });
    const again = await wrongLogin(ATTACKER, 'hh1');
    expect(again).toMatchObject({ status: 429, json: { error: 'too-many-attempts' } });
    expect(again.json.message).toMatch(/Try again in 30 minutes/);
  });

  it('many attacking addresses only slow the check on the household (never refuse the owner), and it is undone by time', async () => {
    skew += 20 * 60_000; // a fresh 15-minute window for the household
    const sources = ['203.0.113.1', '203.0.113.2', '203.0.113.3'];
    await Promise.all(sources.map(async (ip) => {
      for (let i = 0; i < 5; i++) expect((await wrongLogin(ip, 'hh1')).status).toBe(403);
    }));
    // 15 failures on hh1 in the window: each check on hh1 now waits min(2 s, 100 ms x 2^5).
    const owner = new From(stack.ucs.url, 'hh1', OWNER);
    const kdf = (await owner.call('GET', '/api/kdf?household=hh1')).json.kdf;
    const { deriveSecrets } = await import('../../ucs/web/kdf.js');
    const { auth } = await deriveSecrets(PASSWORD, kdf as never);
    const t0 = performance.now();
    const ok = await owner.call('POST', '/api/login', { household: 'hh1', auth: b64(auth) });
    const slowed = performance.now() - t0;
    expect(ok.status).toBe(200);
    expect(slowed).toBeGreaterThanOrEqual(1_900);
    skew += 16 * 60_000;
    const t1 = performance.now();
    expect((await owner.call('POST', '/api/login', { household: 'hh1', auth: b64(auth) })).status).toBe(200);
    expect(performance.now() - t1).toBeLessThan(slowed - 1_000);
  });

  it('wrong activation codes pause the attacker’s address; the household registers from home with its code', async () => {
    for (let i = 0; i < 5; i++) expect((await new From(stack.ucs.url, 'hh2', ATTACKER).call('POST', '/api/register/begin', await beginBody('hh2', 'AAAA-BBBB-CCCC'))).status).toBe(403);
    expect((await new From(stack.ucs.url, 'hh2', ATTACKER).call('POST', '/api/register/begin', await beginBody('hh2', stack.set.code('hh2')))).json.error).toBe('too-many-attempts');
    const home = new From(stack.ucs.url, 'hh2', OWNER);
    expect((await home.register(stack.set.code('hh2'), PASSWORD)).status).toBe(200);
  });

  it('one address failing on one household does not pause that address for another household', async () => {
    const other = '192.0.2.99';
    for (let i = 0; i < 10; i++) expect((await wrongLogin(other, 'hh1')).status).toBe(403);
    expect((await wrongLogin(other, 'hh1')).status).toBe(429);
    expect((await new From(stack.ucs.url, 'hh2', other).login(PASSWORD)).status).toBe(200);
  });
});

describe('registration finish (issue 17 item 6)', () => {
  it('200 bogus finishes are refused on the ticket, before any scrypt work', async () => {
    const body = (i: number) => ({
      household: 'hh1',
      ticket: `bogus-${i}`,
      spki: b64(Buffer.alloc(300, 1)),
      kdf: { alg: 'scrypt', N: 32768, r: 8, p: 1, salt: b64(Buffer.alloc(16)) },
      key: { iv: b64(Buffer.alloc(12)), ct: b64(Buffer.alloc(700)) },
      auth: b64(Buffer.alloc(32)),
    });
    const h = new From(stack.ucs.url, 'hh1', '192.0.2.200');
    const before = scryptCalls();
    const t0 = performance.now();
    for (let i = 0; i < 200; i += 20) {
      const rs = await Promise.all(Array.from({ length: 20 }, (_, j) => h.call('POST', '/api/register/finish', body(i + j))));
      for (const r of rs) expect(r).toMatchObject({ status: 400, json: { error: 'ticket-expired' } });
    }
    const ms = performance.now() - t0;
    expect(scryptCalls()).toBe(before);
    console.log(`200 bogus /api/register/finish: ${ms.toFixed(0)} ms, ${scryptCalls() - before} scrypt calls`);
    // The check counts: one real login is one scrypt call.
    expect((await new From(stack.ucs.url, 'hh1', OWNER).login(PASSWORD)).status).toBe(200);
    expect(scryptCalls()).toBe(before + 1);
  });

  it('is rate-limited per address like the other secret routes', async () => {
    const ucs = await startUcs({ keysDir: stack.set.keys, dbPath: join(stack.set.dir, 'ucs-limited.sqlite'), brokerUrl: stack.broker.url, brokerWsUrl: stack.broker.wsUrl!, clientId: 'ucs-limited', archive: false, attemptsPerMinute: 3, logger: pino({ level: 'silent' }) });
    try {
      const h = new NodeHousehold(ucs.url, 'hh1');
      const statuses = [];
      for (let i = 0; i < 4; i++) statuses.push((await h.call('POST', '/api/register/finish', { household: 'hh1', ticket: 'x', spki: 'A'.repeat(300), kdf: {}, key: {}, auth: 'A'.repeat(43) })).status);
      expect(statuses).toEqual([400, 400, 400, 429]);
    } finally {
      await ucs.close();
    }
  });
});

describe('no oracle of which households exist or have an account', () => {
  const ip = '192.0.2.150';
  const ids = { registered: 'hh1', unregistered: 'hh2x', unknown: 'zz-no-such-household' };

  it('/api/kdf gives every id parameters of the same shape; an id without an account always the same ones', async () => {
    const kdfOf = async (hh: string) => (await new From(stack.ucs.url, hh, ip).call('GET', `/api/kdf?household=${hh}`)) as { status: number; json: { kdf: Record<string, unknown> } };
    const real = await kdfOf(ids.registered);
    const decoy = await kdfOf(ids.unknown);
    expect(real.status).toBe(200);
    expect(decoy.status).toBe(200);
    expect(Object.keys(decoy.json.kdf).sort()).toEqual(Object.keys(real.json.kdf).sort());
    expect(decoy.json.kdf).toMatchObject({ alg: 'scrypt', N: 131072, r: 8, p: 1 });
    expect((decoy.json.kdf.salt as string).length).toBe(22); // 16 bytes, as the browser makes them
    expect((await kdfOf(ids.unknown)).json).toEqual(decoy.json);
    expect((await kdfOf(ids.unregistered)).json.kdf.salt).not.toBe(decoy.json.kdf.salt);
  });

  it('a login for an id without an account is a wrong password, after the same scrypt work, and counts as one', async () => {
    const answers = [];
    for (const hh of Object.values(ids)) {
      const before = scryptCalls();
      const r = await wrongLogin(ip, hh);
      expect(scryptCalls() - before, hh).toBe(1);
      answers.push({ ...r, json: { ...r.json, message: (r.json.message as string).replace(hh, '<hh>') } });
    }
    expect(answers[1]).toEqual(answers[0]);
    expect(answers[2]).toEqual(answers[0]);
    expect(answers[0]).toMatchObject({ status: 403, json: { error: 'wrong-password', message: 'Wrong password for household <hh>.' } });
  });

  it('/api/register/begin answers a wrong code the same for a household of the fleet and an unknown id', async () => {
    const answers = [];
    const work: [number, number][] = [];
    for (const hh of ['hh1', ids.unknown]) {
      const body = await beginBody(hh, 'AAAA-BBBB-CCCC');
      const [scrypts, hmacs] = [scryptCalls(), hmacCalls()];
      const r = await new From(stack.ucs.url, hh, ip).call('POST', '/api/register/begin', body);
      work.push([scryptCalls() - scrypts, hmacCalls() - hmacs]);
      answers.push({ ...r, json: { ...r.json, message: (r.json.message as string).replace(hh, '<hh>') } });
    }
    // The same check for both: one verifier MAC (provisioning's kind, matched by the decoy), no scrypt.
    expect(work[0]![0]).toBe(0);
    expect(work[0]![1]).toBeGreaterThanOrEqual(1);
    expect(work[1]).toEqual(work[0]);
    expect(answers[1]).toEqual(answers[0]);
    expect(answers[0]).toMatchObject({ status: 403, json: { error: 'wrong-code' } });
  });

  it('an address spraying wrong passwords over many ids is paused after 30 of them', async () => {
    const sprayer = '192.0.2.151';
    for (let i = 0; i < 30; i++) expect((await wrongLogin(sprayer, `spray${i}`)).status).toBe(403);
    const r = await wrongLogin(sprayer, 'hh1');
    expect(r).toMatchObject({ status: 429, json: { error: 'too-many-attempts' } });
    expect((await new From(stack.ucs.url, 'hh1', OWNER).login(PASSWORD)).status).toBe(200);
  });
});
