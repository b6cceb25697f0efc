/**
 * The UCS routes' schemas: every route refuses malformed input with a 400 naming the field (never a 500,
 * never a crash), counted per route on /healthz; and the answers are serialised through the response
 * schemas, so the login hash (and any field not declared) never reaches a client.
 */
import Fastify from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { accountJson } from '../../ucs/server/login.js';
import { accountReply, replies } from '../../ucs/server/schemas.js';
import { NodeHousehold, startStack, type Stack } from './helpers.js';

const PASSWORD = 'a long enough passphrase';
let stack: Stack;
let a: NodeHousehold;

beforeAll(async () => {
  stack = await startStack({ ucs: { attemptsPerMinute: 1000 } });
  a = new NodeHousehold(stack.ucs.url, 'hh1');
  expect((await a.register(stack.set.code('hh1'), PASSWORD)).status).toBe(200);
});
afterAll(async () => {
  await stack?.close();
});

const b64 = (n: number, fill = 1) => Buffer.alloc(n, fill).toString('base64url');
const goodKdf = { alg: 'scrypt', N: 32768, r: 8, p: 1, salt: b64(16) };
const goodKey = { iv: b64(12), ct: b64(700) };
const health = async () => (await (await fetch(stack.ucs.url + '/healthz')).json()) as { requests: { badInput: Record<string, number> } };

/** Raw bodies (sent as application/json) and what the 400 must name. */
type Case = [what: string, body: string, names: RegExp];
const json = (v: unknown) => JSON.stringify(v);
const notJson: Case[] = [
  ['not JSON', '{"household":', /not valid JSON/],
  ['an array', '[]', /body must be object/],
  ['null', 'null', /body must be object/],
  ['a string', '"hh1"', /body must be object/],
];

const bodies: Record<string, Case[]> = {
  '/api/register/begin': [
    ...notJson,
    ['no verifier', json({ household: 'hh1' }), /body must have required property 'verifier'/],
    ['the code in clear instead of its verifier', json({ household: 'hh1', code: 'AAAA-BBBB-CCCC' }), /body must have required property 'verifier'/],
    ['a numeric verifier', json({ household: 'hh1', verifier: { a: 1 } }), /expected form/],
    ['a huge verifier', json({ household: 'hh1', verifier: 'A'.repeat(10_000) }), /expected form/],
    ['a verifier of 31 bytes', json({ household: 'hh1', verifier: Buffer.alloc(31).toString('base64url') }), /expected form/],
    ['a bad household', json({ household: '../etc', verifier: Buffer.alloc(32).toString('base64url') }), /A household id is letters, digits/],
    ['an extra field', json({ household: 'hh1', verifier: Buffer.alloc(32).toString('base64url'), admin: true }), /body has an unknown field "admin"/],
  ],
  '/api/register/finish': [
    ...notJson,
    ['no ticket', json({ household: 'hh1', spki: b64(300), kdf: goodKdf, key: goodKey, auth: b64(32) }), /required property 'ticket'/],
    ['a short auth', json({ household: 'hh1', ticket: 'x', spki: b64(300), kdf: goodKdf, key: goodKey, auth: b64(31) }), /body\/auth must NOT have fewer than 43 characters/],
    ['a key without iv', json({ household: 'hh1', ticket: 'x', spki: b64(300), kdf: goodKdf, key: { ct: goodKey.ct }, auth: b64(32) }), /body\/key must have required property 'iv'/],
    ['a kdf of another alg', json({ household: 'hh1', ticket: 'x', spki: b64(300), kdf: { ...goodKdf, alg: 'md5' }, key: goodKey, auth: b64(32) }), /body\/kdf\/alg must be equal to one of the allowed values/],
    ['spki not base64url', json({ household: 'hh1', ticket: 'x', spki: '!'.repeat(300), kdf: goodKdf, key: goodKey, auth: b64(32) }), /body\/spki must match pattern/],
  ],
  '/api/login': [
    ...notJson,
    ['no auth', json({ household: 'hh1' }), /required property 'auth'/],
    ['auth as a number', json({ household: 'hh1', auth: 12 }), /body\/auth must/],
    ['household as an object', json({ household: { $ne: 1 }, auth: b64(32) }), /A household id is letters, digits/],
  ],
  '/api/password': [
    ...notJson,
    ['no newAuth', json({ auth: b64(32), kdf: goodKdf, key: goodKey }), /required property 'newAuth'/],
    ['a kdf N not a power of two', json({ auth: b64(32), newAuth: b64(32), kdf: { ...goodKdf, N: 40000 }, key: goodKey }), /kdf\.N must be a power of two/],
    ['a ct too short', json({ auth: b64(32), newAuth: b64(32), kdf: goodKdf, key: { iv: goodKey.iv, ct: b64(10) } }), /body\/key\/ct must NOT have fewer than/],
  ],
  '/api/account/delete': [...notJson, ['an empty object', json({}), /required property 'auth'/], ['auth of 33 bytes', json({ auth: b64(33) }), /body\/auth must NOT have more than 43 characters/]],
};

const queries: Record<string, [what: string, query: string, names: RegExp][]> = {
  '/api/kdf': [
    ['no household', '', /querystring must have required property 'household'/],
    ['a bad household', '?household=a%2Fb', /A household id is letters, digits/],
    ['two households', '?household=hh1&household=hh2', /A household id is letters, digits/],
  ],
  '/api/archive': [
    ['a negative after', '?after=-1', /querystring\/after must be >= 0/],
    ['a fraction', '?limit=1.5', /querystring\/limit must be integer/],
    ['a word', '?after=abc', /querystring\/after must be integer/],
    ['a limit over 2000', '?limit=2001', /querystring\/limit must be <= 2000/],
  ],
};

describe('malformed input', () => {
  it.each(Object.keys(bodies))('POST %s: every malformed body is a 400 naming what is wrong, counted on /healthz', async (route) => {
    const before = (await health()).requests.badInput[route] ?? 0;
    for (const [what, body, names] of bodies[route]!) {
      const res = await fetch(stack.ucs.url + route, { method: 'POST', headers: { 'content-type': 'application/json', cookie: a.cookie }, body });
      const reply = (await res.json()) as { error: string; message: string };
      expect(res.status, what).toBe(400);
      expect(reply.message, what).toMatch(names);
      expect(Object.keys(reply).sort(), what).toEqual(['error', 'message']);
    }
    expect((await health()).requests.badInput[route]).toBe(before + bodies[route]!.length);
  });

  it.each(Object.keys(queries))('GET %s: every malformed query is a 400 naming the parameter, counted on /healthz', async (route) => {
    const before = (await health()).requests.badInput[route] ?? 0;
    for (const [what, query, names] of queries[route]!) {
      const r = await a.call('GET', route + query);
      expect(r.status, what).toBe(400);
      expect(r.json.message, what).toMatch(names);
    }
    expect((await health()).requests.badInput[route]).toBe(before + queries[route]!.length);
  });

  it('a body too large is a 413 and a form post a 415, both counted; the server still answers', async () => {
    const big = await fetch(stack.ucs.url + '/api/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body: json({ household: 'hh1', auth: 'A'.repeat(70_000) }) });
    expect(big.status).toBe(413);
    const form = await fetch(stack.ucs.url + '/api/login', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'household=hh1' });
    expect(form.status).toBe(415);
    expect((await health()).requests.badInput['/api/login']).toBeGreaterThanOrEqual(bodies['/api/login']!.length + 2);
    expect((await a.call('GET', '/api/session')).status).toBe(200);
    expect(stack.log()).not.toMatch(/request failed/); // no 500 on the way
  });

  it('a session route answers 401 for a stale session before looking at the body', async () => {
    const r = await new NodeHousehold(stack.ucs.url, 'hh1').call('POST', '/api/password', { nonsense: true });
    expect(r).toMatchObject({ status: 401, json: { error: 'no-session' } });
  });
});

describe('nothing leaks through the answers', () => {
  it('the login hash appears in no answer of any route', async () => {
    const account = stack.ucs.db.account('hh1')!;
    const [, , , salt, hash] = account.authHash.split(':');
    const b = new NodeHousehold(stack.ucs.url, 'hh1');
    const texts: string[] = [];
    const keep = async (p: Promise<{ json: unknown }>) => texts.push(JSON.stringify((await p).json));
    await keep(b.login(PASSWORD));
    for (const path of ['/api/kdf?household=hh1', '/api/session', '/api/key', '/api/broker', '/api/archive', '/healthz']) await keep(b.call('GET', path));
    await keep(b.call('POST', '/api/session/touch'));
    expect(texts.join('\n')).toContain(account.spki.toString('base64url')); // the answers are really there
    for (const t of texts) {
      expect(t).not.toContain(salt);
      expect(t).not.toContain(hash);
      expect(t).not.toMatch(/authHash|auth_hash|16384:8:1/);
    }
  });

  it('the login answer’s schema drops fields a handler did not mean to send', async () => {
    const app = Fastify();
    const account = stack.ucs.db.account('hh1')!;
    // A careless handler that spreads the whole account row into its answer.
    app.get('/careless', { schema: { response: replies(accountReply) } }, async () => ({ ...account, ...accountJson(account), authHash: account.authHash }));
    const res = await app.inject({ url: '/careless' });
    expect(res.statusCode).toBe(200);
    expect(Object.keys(res.json()).sort()).toEqual(['boundAt', 'household', 'kdf', 'key', 'spki']);
    expect(res.body).not.toContain(account.authHash.split(':')[4]);
    await app.close();
  });
});
