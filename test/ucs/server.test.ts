/**
 * The UCS server over HTTP, with a real broker: registration bound to the activation code, the key path to
 * the real PES core, login, sessions, limits, the ciphertext archive, and no plaintext in its database or logs.
 * The browser's side is played in Node with the browser's own modules (test/ucs/helpers.ts NodeHousehold).
 */
import { activationMessage } from '../protocol/binding-fixture.js';
import { generateKeyPairSync } from 'node:crypto';
import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBroker } from '../../broker/broker.js';
import { cborEncode } from '../../protocol/cbor.js';
import { encodeFrame, SC_AES256GCM, sealFrame } from '../../protocol/frame.js';
import { encodeReadingBatch, type ReadingBatch } from '../../protocol/reading.js';
import { keyId, openStream } from '../../protocol/seal.js';
import { topics } from '../../protocol/topics.js';
import { activationSecretsSync, meterStreamKeySync } from '../../protocol/household-key.js';
import { openMeterStream, sealMeterStream } from '../../protocol/meter-seal.js';
import { parseStreamBody, streamBody } from '../../protocol/stream.js';
import { encodeUplink } from '../../protocol/uplink.js';
import { createPes } from '../../pes/pes.js';
import { loadCredentials, loadMeterKey, loadPesKeys, loadPesVerifyKey } from '../../lib/keyset.js';
import { loadActivation } from '../../ucs/activation.js';
import { startUcs } from '../../ucs/server.js';
import { fromB64u } from '../../ucs/web/bytes.js';
import { asDerivation1, beginBody, FakePes, pesAcceptsBinding, prosumerBatches, makeKeySet, memoryLogger, NodeHousehold, retainedHouseholdKey, sourceBatches, startStack, waitFor, type Stack } from './helpers.js';

const PASSWORD = 'a long enough passphrase';
let stack: Stack;
let skew = 0;
const IDLE_S = 600;

beforeAll(async () => {
  stack = await startStack({ ucs: { now: () => Date.now() + skew, sessionIdleS: IDLE_S, sessionMaxS: 3600, attemptsPerMinute: 40 } });
});
afterAll(async () => {
  await stack?.close();
});

const hh = (name: string) => new NodeHousehold(stack.ucs.url, name);
const privOf = (pkcs8: Uint8Array): KeyObject => createPrivateKey({ key: Buffer.from(pkcs8), format: 'der', type: 'pkcs8' });

describe('registration bound to the meter', () => {
  let a: NodeHousehold;
  let spki: Uint8Array;
  let pkcs8: Uint8Array;

  it('registers with the activation code, starts a session and publishes the key for the PES', async () => {
    a = hh('hh1');
    const r = await a.register(stack.set.code('hh1').toLowerCase().replace(/-/g, ' '), PASSWORD);
    expect(r.status).toBe(200);
    expect(r.json).toEqual({ household: 'hh1', keyPublished: true });
    spki = r.spki!;
    pkcs8 = r.pkcs8!;
    expect(a.cookie).toMatch(/^ucs_session=/);
    expect((await a.call('GET', '/api/session')).json).toMatchObject({ household: 'hh1', idleS: IDLE_S });
    const retained = await retainedHouseholdKey(stack.broker.url, stack.set.keys, 'hh1');
    expect(retained.export({ type: 'spki', format: 'der' })).toEqual(Buffer.from(spki));
    expect(stack.ucs.db.account('hh1')!.keyPublished).toBe(true);
  });

  it('the real PES accepts that key and seals hh1’s stream to it', async () => {
    const keys = loadPesKeys(stack.set.keys);
    const meter = stack.set.fleet.meters.find((m) => m.household === 'hh1')!;
    const meters = new Map(stack.set.fleet.meters.map((m) => [m.meter, { key: keys.meterKeys.get(m.meter)!, household: m.household, neighbourhood: m.neighbourhood }]));
    const pes = createPes({ keys: { rsa: keys.rsa, signer: keys.signer, paillier: keys.paillier, mdmsPublic: keys.mdmsPublic, bindingKeys: keys.bindingKeys, meters }, k: 1, logger: pino({ level: 'silent' }) });
    try {
      // What the household app's server and its broker password alone can make is refused (security finding 1):
      // the old proof-less message, and a binding under a made-up code.
      expect(pes.householdKey(topics.householdKey('hh1'), cborEncode([1, 'hh1', spki]))).toBe(false);
      const forger = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
      expect(pes.householdKey(topics.householdKey('hh1'), activationMessage('hh1', 'ZZZZ-ZZZZ-ZZZZ', forger))).toBe(false);
      // The binding the browser made with the activation code, exactly as the server published it, is accepted.
      const payload = stack.ucs.db.account('hh1')!.binding!;
      expect(pes.householdKey(topics.householdKey('hh1'), payload)).toBe(true);
      const batch = sourceBatches(11, 1_717_200_000, 15)[0]!;
      const frame = encodeFrame(sealFrame(loadMeterKey(stack.set.keys, meter.meter), { systemTitle: Buffer.from(meter.meter, 'hex'), sc: SC_AES256GCM, ic: 1 }, encodeReadingBatch(batch)));
      pes.ingestUplink(encodeUplink({ gateway: meter.gateway, frames: [frame] }), meter.gateway);
      await pes.idle();
      const sent = pes.sent.filter((m) => m.kind === 'household');
      expect(sent).toHaveLength(1);
      expect(sent[0]!.topic).toBe(topics.household('hh1'));
      const body = openStream(privOf(pkcs8), loadPesVerifyKey(stack.set.keys), sent[0]!.topic, sent[0]!.payload) as { meter: string; prevWh: number; readings: number[][] };
      expect(body).toEqual({ meter: meter.meter, prevWh: batch.prevWh, readings: batch.readings.map((r) => [r.time, r.period, r.importWh, r.powerW, r.status]) });
    } finally {
      await pes.close();
    }
  });

  it('refuses a reused activation code with a clear message', async () => {
    const again = await hh('hh1').register(stack.set.code('hh1'), 'another long passphrase');
    expect(again.status).toBe(409);
    expect(again.json).toMatchObject({ error: 'code-used' });
    expect(again.json.message).toMatch(/already been used.*Log in with your password/);
    // The account and its key are untouched.
    expect(Buffer.from(stack.ucs.db.account('hh1')!.spki)).toEqual(Buffer.from(spki));
  });

  it('an outstanding ticket cannot register once the code was used', async () => {
    const b = hh('hh2');
    const begin = await b.call('POST', '/api/register/begin', await beginBody('hh2', stack.set.code('hh2')));
    expect(begin.status).toBe(200);
    const r1 = await b.register(stack.set.code('hh2'), PASSWORD); // uses its own fresh ticket
    expect(r1.status).toBe(200);
    const stale = await b.call('POST', '/api/register/finish', {
      household: 'hh2',
      ticket: begin.json.ticket,
      spki: Buffer.from(r1.spki!).toString('base64url'),
      kdf: { alg: 'scrypt', N: 32768, r: 8, p: 1, salt: 'AAAAAAAAAAAAAAAAAAAAAA' },
      key: { iv: 'AAAAAAAAAAAAAAAA', ct: Buffer.alloc(700).toString('base64url') },
      auth: Buffer.alloc(32).toString('base64url'),
    });
    expect(stale.status).toBe(409); // the code was consumed by r1
    expect(stale.json.error).toBe('code-used');
  });

  it('explains unknown households, malformed codes and wrong codes, and pauses after five wrong codes', async () => {
    const x = hh('hh9');
    // A household not in the fleet is answered as a wrong code (no oracle of which ids exist).
    expect(await x.call('POST', '/api/register/begin', await beginBody('hh9', 'AAAA-BBBB-CCCC'))).toMatchObject({ status: 403, json: { error: 'wrong-code' } });
    // The server gets only the code's verifier (the browser refuses a malformed code itself); a malformed verifier:
    expect(await x.call('POST', '/api/register/begin', { household: 'hh2', verifier: 'short' })).toMatchObject({ status: 400, json: { error: 'bad-code' } });
    expect(await x.call('POST', '/api/register/begin', { household: 'hh2', code: stack.set.code('hh2') })).toMatchObject({ status: 400, json: { error: 'bad-request' } });
    expect(await x.call('POST', '/api/register/begin', { household: 'a/b', verifier: (await beginBody('hh2', 'AAAA-BBBB-CCCC')).verifier })).toMatchObject({ status: 400, json: { error: 'bad-household' } });
    // hh2 is registered, but wrong codes are still counted (and the right one would say "already used").
    const msgs: string[] = [];
    for (let i = 0; i < 5; i++) {
      const r = await x.call('POST', '/api/register/begin', await beginBody('hh2', 'AAAA-BBBB-CCCC'));
      expect(r).toMatchObject({ status: 403, json: { error: 'wrong-code' } });
      msgs.push(r.json.message as string);
    }
    expect(msgs[0]).toMatch(/not right for household hh2\. 4 attempts left before a 15-minute pause/);
    expect(msgs[3]).toMatch(/1 attempt left/);
    const locked = await x.call('POST', '/api/register/begin', await beginBody('hh2', stack.set.code('hh2')));
    expect(locked).toMatchObject({ status: 429, json: { error: 'too-many-attempts' } });
    expect(locked.json.message).toMatch(/Too many wrong activation codes for household hh2\. Try again in 15 minutes/);
    skew += 16 * 60_000; // the pause ends
    expect((await x.call('POST', '/api/register/begin', await beginBody('hh2', stack.set.code('hh2')))).json.error).toBe('code-used');
  });

  it('logs in with the password only: the reply is the wrapped key, opened here to the same private key', async () => {
    const again = hh('hh1');
    const wrong = await again.login('not the passphrase');
    expect(wrong).toMatchObject({ status: 403, json: { error: 'wrong-password', message: 'Wrong password for household hh1.' } });
    expect(again.cookie).toBe('');
    const ok = await again.login(PASSWORD);
    expect(ok.status).toBe(200);
    expect(Buffer.from(ok.pkcs8!)).toEqual(Buffer.from(pkcs8));
    expect(fromB64u(ok.json.spki, 'spki')).toEqual(spki);
    // No account: decoy parameters, the same at every request (no oracle of who registered).
    const decoy = await hh('hh2x').call('GET', '/api/kdf?household=hh2x');
    expect(decoy).toMatchObject({ status: 200, json: { kdf: { alg: 'scrypt', N: 131072, r: 8, p: 1 } } });
    expect((await hh('hh2x').call('GET', '/api/kdf?household=hh2x')).json).toEqual(decoy.json);
  });

  it('expires idle sessions with a clear message, and logout ends them', async () => {
    const s = hh('hh1');
    expect((await s.login(PASSWORD)).status).toBe(200);
    skew += (IDLE_S - 60) * 1000;
    expect((await s.call('POST', '/api/session/touch')).status).toBe(200);
    skew += (IDLE_S - 60) * 1000; // idle timeout measured from the touch
    expect((await s.call('GET', '/api/broker')).status).toBe(200);
    skew += (IDLE_S + 1) * 1000;
    const expired = await s.call('GET', '/api/broker');
    expect(expired).toMatchObject({ status: 401, json: { error: 'session-expired' } });
    expect(expired.json.message).toMatch(/Your session has expired \(after 10 minutes without activity, or 1 hour after logging in\)\. Please log in again\./);
    expect((await s.login(PASSWORD)).status).toBe(200);
    expect((await s.call('POST', '/api/logout')).status).toBe(200);
    expect(await new NodeHousehold(stack.ucs.url, 'hh1').call('GET', '/api/session')).toMatchObject({ status: 401, json: { error: 'no-session' } });
  });

  it('pauses logins after ten wrong passwords for the household', async () => {
    const s = hh('hh2');
    for (let i = 0; i < 10; i++) expect((await s.login('wrong wrong wrong')).status).toBe(403);
    const locked = await s.login(PASSWORD);
    expect(locked).toMatchObject({ status: 429, json: { error: 'too-many-attempts' } });
    expect(locked.json.message).toMatch(/Too many wrong passwords for household hh2/);
    skew += 16 * 60_000;
    expect((await s.login(PASSWORD)).status).toBe(200);
  });

  it('refuses cross-origin and non-JSON posts', async () => {
    const s = hh('hh1');
    const cross = await s.call('POST', '/api/logout', {}, { origin: 'http://evil.example' });
    expect(cross).toMatchObject({ status: 403, json: { error: 'cross-origin' } });
    const res = await fetch(stack.ucs.url + '/api/logout', { method: 'POST', headers: { 'content-type': 'text/plain' }, body: '{}' });
    expect(res.status).toBe(415);
  });

  it('serves the app with a strict Content-Security-Policy that allows only this site and the broker', async () => {
    const res = await fetch(stack.ucs.url + '/');
    expect(res.status).toBe(200);
    expect(await res.text()).toContain('<script type="module" src="/app.js">');
    const csp = res.headers.get('content-security-policy')!;
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain(`connect-src 'self' ${stack.broker.wsUrl}`);
    expect(csp).toContain("frame-ancestors 'none'");
    const js = await fetch(stack.ucs.url + '/app.js');
    expect(js.headers.get('content-type')).toMatch(/javascript/);
    expect((await js.arrayBuffer()).byteLength).toBeGreaterThan(100_000);
  });
});

describe('broker credentials and the ciphertext archive', () => {
  let a: NodeHousehold;
  let b: NodeHousehold;
  let keyA: KeyObject;
  let batches: ReadingBatch[];
  const sent: Buffer[] = [];

  beforeAll(async () => {
    a = hh('hh1');
    b = hh('hh2');
    keyA = privOf((await a.login(PASSWORD)).pkcs8!);
    expect((await b.login(PASSWORD)).status).toBe(200);
    // A prosumer: the export register is as revealing as import, and as absent from the server.
    batches = prosumerBatches(11, 1_717_286_400, 90, 15, 987_654_321, 765_432_109, () => true);
    const pes = await FakePes.connect(stack.broker.url, stack.set.keys);
    try {
      for (const batch of batches) sent.push(await pes.publish('hh1', createPublicKey(keyA), stack.set.fleet.meters[0]!.meter, batch));
      // A redelivery of the same message is stored once.
      await pes.publishRaw('hh1', sent[0]!);
    } finally {
      await pes.close();
    }
    await waitFor(() => stack.ucs.link.counters.archived >= batches.length && stack.ucs.link.counters.duplicates >= 1, 'archive');
  });

  it('gives the household its own broker user, WebSocket URL and topic', async () => {
    const r = await a.call('GET', '/api/broker');
    expect(r.json).toEqual({ ...loadCredentials(stack.set.keys, 'household-hh1'), wsUrl: stack.broker.wsUrl, mqttUrl: stack.broker.wsUrl, topic: 'sm/v1/household/hh1/readings', archive: true });
    expect(await new NodeHousehold(stack.ucs.url, 'hh1').call('GET', '/api/broker')).toMatchObject({ status: 401, json: { error: 'no-session' } });
  });

  it('serves hh1 its archived messages as sealed by the PES, in order and in pages, and hh2 none of them', async () => {
    const page1 = await a.call('GET', '/api/archive?after=0&limit=4');
    const items1 = page1.json.items as [number, string][];
    expect(items1).toHaveLength(4);
    expect(page1.json.more).toBe(true);
    const page2 = await a.call('GET', `/api/archive?after=${items1[3]![0]}&limit=4`);
    const items = [...items1, ...(page2.json.items as [number, string][])];
    expect(page2.json.more).toBe(false);
    expect(items.map(([, p]) => Buffer.from(fromB64u(p, 'payload')))).toEqual(sent);
    const cache = new Map<string, Buffer>();
    const opened = items.map(([, p]) => openStream(keyA, loadPesVerifyKey(stack.set.keys), topics.household('hh1'), fromB64u(p, 'payload'), cache));
    expect(opened.map((o) => (o as { prevWh: number }).prevWh)).toEqual(batches.map((x) => x.prevWh));
    expect((await b.call('GET', '/api/archive')).json.items).toEqual([]);
    expect((await a.call('GET', '/api/archive?after=-1')).status).toBe(400);
  });

  it('archives only stream seals of fleet households, counting (and acknowledging) the rest', async () => {
    const before = { ...stack.ucs.link.counters };
    const pes = await FakePes.connect(stack.broker.url, stack.set.keys);
    try {
      await pes.publishRaw('hh1', Buffer.from('not a sealed message'));
      await pes.publishRaw('hh9', sent[0]!); // not a household of this fleet
      await pes.publishRaw('hh1', Buffer.alloc(20_000, 1)); // too large
    } finally {
      await pes.close();
    }
    await waitFor(() => stack.ucs.link.counters.rejected === before.rejected + 3, 'three rejected');
    expect(stack.ucs.link.counters.archived).toBe(before.archived);
    expect(((await a.call('GET', '/api/archive')).json.items as unknown[]).length).toBe(batches.length);
    expect((await (await fetch(stack.ucs.url + '/healthz')).json()).counters).toMatchObject({ rejected: before.rejected + 3 });
    expect(stack.log()).toMatch(/stream message not archived/);
  });

  it('keeps no plaintext reading, password, code or unwrapped key in its database or logs', async () => {
    stack.ucs.db.db.pragma('wal_checkpoint(TRUNCATE)');
    const files = [stack.dbPath, `${stack.dbPath}-wal`].filter(existsSync).map((f) => readFileSync(f));
    const haystacks = [...files, Buffer.from(stack.log())];
    const needles: [string, Buffer][] = [];
    for (const batch of batches) {
      for (const r of batch.readings) {
        needles.push([`register ${r.importWh} (decimal)`, Buffer.from(String(r.importWh))]);
        needles.push([`register ${r.importWh} (CBOR)`, cborEncode(r.importWh)]);
        needles.push([`export register ${r.exportWh} (decimal)`, Buffer.from(String(r.exportWh))]);
        needles.push([`export register ${r.exportWh} (CBOR)`, cborEncode(r.exportWh)]);
      }
      needles.push(['a reading row (CBOR)', cborEncode(batch.readings.map((r) => [r.time, r.period, r.importWh, r.powerW, r.status, r.exportWh])[0])]);
    }
    needles.push(['the password', Buffer.from(PASSWORD)], ['an activation code', Buffer.from(stack.set.code('hh1'))]);
    needles.push(['the private exponent', Buffer.from(keyA.export({ format: 'jwk' }).d!, 'base64url').subarray(0, 32)]);
    expect(stack.log()).toContain('ucs: household registered'); // the log is really captured
    expect(files[0]!.includes(sent[0]!.subarray(-40))).toBe(true); // and the database really holds the ciphertext
    for (const f of [stack.dbPath, `${stack.dbPath}-wal`].filter(existsSync)) expect(statSync(f).mode & 0o777, f).toBe(0o600);
    for (const h of haystacks) for (const [what, n] of needles) expect(h.includes(n), what).toBe(false);
  });

  it("archives the end-to-end mode's meter-sealed messages for every registration of the household, which opens them with the stream key its login unwraps", async () => {
    const streamKey = (await a.login(PASSWORD)).streamKey!;
    expect(Buffer.from(streamKey)).toEqual(Buffer.from(activationSecretsSync(stack.set.code('hh1'), 'hh1', 2).stream));
    const meter = stack.set.fleet.meters[0]!.meter;
    const sealed = sealMeterStream(streamKey, topics.household('hh1'), Buffer.from(meter, 'hex'), 41, streamBody(meter, batches[0]!));
    const before = stack.ucs.link.counters.archived;
    const pes = await FakePes.connect(stack.broker.url, stack.set.keys);
    try {
      await pes.publishRaw('hh1', sealed);
    } finally {
      await pes.close();
    }
    await waitFor(() => stack.ucs.link.counters.archived === before + 1, 'the meter-sealed message archived');
    const items = (await a.call('GET', '/api/archive?after=0&limit=500')).json.items as [number, string][];
    const last = fromB64u(items[items.length - 1]![1], 'payload');
    expect(Buffer.from(last)).toEqual(sealed);
    expect(parseStreamBody(openMeterStream(streamKey, topics.household('hh1'), last)).prevWh).toBe(batches[0]!.prevWh);
    expect((await b.call('GET', '/api/archive')).json.items).toEqual([]);
  });
});

describe('password change and account deletion', () => {
  it('re-wraps the same key under a new password and logs other devices out', async () => {
    const a = hh('hh1');
    const other = hh('hh1');
    const first = await a.login(PASSWORD);
    expect((await other.login(PASSWORD)).status).toBe(200);
    const { deriveSecrets, newKdfParams } = await import('../../ucs/web/kdf.js');
    const { sealPrivateKey } = await import('../../ucs/web/keys.js');
    const kdf = (await a.call('GET', '/api/kdf?household=hh1')).json.kdf as never;
    const old = await deriveSecrets(PASSWORD, kdf);
    const nk = newKdfParams({ N: 1 << 15, r: 8, p: 1 });
    const fresh = await deriveSecrets('a brand new passphrase', nk);
    const sealed = await sealPrivateKey(first.pkcs8!, fresh.wrapKey, 'hh1');
    const b64 = (u: Uint8Array) => Buffer.from(u).toString('base64url');
    const bad = await a.call('POST', '/api/password', { auth: b64(fresh.auth), newAuth: b64(fresh.auth), kdf: nk, key: { iv: b64(sealed.iv), ct: b64(sealed.ct) } });
    expect(bad).toMatchObject({ status: 403, json: { error: 'wrong-password' } });
    const ok = await a.call('POST', '/api/password', { auth: b64(old.auth), newAuth: b64(fresh.auth), kdf: nk, key: { iv: b64(sealed.iv), ct: b64(sealed.ct) } });
    expect(ok.status).toBe(200);
    expect((await other.call('GET', '/api/session')).json.error).toBe('no-session');
    expect((await a.call('GET', '/api/session')).status).toBe(200);
    expect((await hh('hh1').login(PASSWORD)).status).toBe(403);
    const relog = await hh('hh1').login('a brand new passphrase');
    expect(Buffer.from(relog.pkcs8!)).toEqual(Buffer.from(first.pkcs8!));
  });

  it('deletes the account: key withdrawn from the PES, archive gone, code stays used', async () => {
    const b = hh('hh2');
    expect((await b.login(PASSWORD)).status).toBe(200);
    const { deriveSecrets } = await import('../../ucs/web/kdf.js');
    const kdf = (await b.call('GET', '/api/kdf?household=hh2')).json.kdf as never;
    const { auth } = await deriveSecrets(PASSWORD, kdf);
    const r = await b.call('POST', '/api/account/delete', { auth: Buffer.from(auth).toString('base64url') });
    expect(r.json).toEqual({ ok: true, keyWithdrawn: true });
    expect(stack.ucs.db.account('hh2')).toBeUndefined();
    // The retained key is gone: a fresh subscriber gets nothing.
    const c = await mqtt.connectAsync(stack.broker.url, { ...loadCredentials(stack.set.keys, 'pes'), clientId: 'pes-probe-del', reconnectPeriod: 0 });
    const got: Buffer[] = [];
    c.on('message', (_t, p) => got.push(p));
    await c.subscribeAsync(topics.householdKey('hh2'), { qos: 1 });
    await new Promise((res) => setTimeout(res, 300));
    await c.endAsync();
    expect(got).toEqual([]);
    expect((await b.call('GET', '/api/session')).status).toBe(401);
    expect((await hh('hh2').login(PASSWORD)).json.error).toBe('wrong-password'); // as for any household without an account
    expect((await hh('hh2').register(stack.set.code('hh2'), PASSWORD)).json.error).toBe('code-used');
  });
});

describe('a key set of derivation 1 (activation file version 2, provisioned before derivation 2)', () => {
  let old: Stack;
  beforeAll(async () => {
    old = await startStack({ set: asDerivation1(await makeKeySet()), ucs: { attemptsPerMinute: 40 } });
  });
  afterAll(async () => {
    await old?.close();
    old?.set.cleanup();
  });

  it('tells the browser which derivation its key set uses before it derives', async () => {
    expect(await hh('hh1').call('GET', '/api/activation')).toEqual({ status: 200, json: { derivation: 2 } });
    expect(await new NodeHousehold(old.ucs.url, 'hh1').call('GET', '/api/activation')).toEqual({ status: 200, json: { derivation: 1 } });
  });

  it("a derivation-2 verifier of the right code is a wrong code there, counted as any; the browser's derivation-1 registration is accepted and the real PES takes its binding", async () => {
    const x = new NodeHousehold(old.ucs.url, 'hh1');
    const wrong = await x.call('POST', '/api/register/begin', await beginBody('hh1', old.set.code('hh1'), 2));
    expect(wrong).toMatchObject({ status: 403, json: { error: 'wrong-code' } });
    expect(wrong.json.message).toMatch(/4 attempts left/);
    const r = await x.register(old.set.code('hh1'), PASSWORD);
    expect(r).toMatchObject({ status: 200, json: { household: 'hh1', keyPublished: true } });
    // Its stream key is derivation 1's, as the meters of that key set hold it.
    expect(Buffer.from(r.streamKey!)).toEqual(Buffer.from(meterStreamKeySync(old.set.code('hh1'), 'hh1')));
    expect(Buffer.from(loadPesKeys(old.set.keys).bindingKeys.get('hh1')!)).toEqual(Buffer.from(activationSecretsSync(old.set.code('hh1'), 'hh1', 1).binding));
    expect(await pesAcceptsBinding(old.set, 'hh1', old.ucs.db.account('hh1')!.binding!)).toBe(true);
  });

  it('reads version 3 as derivation 2 and version 2 as derivation 1; refuses version 1 and unknown versions', () => {
    expect(loadActivation(stack.set.keys)).toMatchObject({ version: 3, derivation: 2 });
    expect(loadActivation(old.set.keys)).toMatchObject({ version: 2, derivation: 1 });
    const file = join(old.set.keys, 'ucs', 'activation.json');
    const saved = readFileSync(file);
    try {
      writeFileSync(file, JSON.stringify({ version: 1, codes: {} }));
      expect(() => loadActivation(old.set.keys)).toThrow(/version-1 activation file.*provision the key set again/);
      writeFileSync(file, JSON.stringify({ version: 4, codes: {} }));
      expect(() => loadActivation(old.set.keys)).toThrow(/not a version-2 or version-3 activation file/);
    } finally {
      writeFileSync(file, saved);
    }
  });
});

describe('a broker that is down at registration', () => {
  it('registers anyway and publishes the key once the broker is up', async () => {
    const set = await makeKeySet();
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', () => r()));
    const port = (probe.address() as AddressInfo).port;
    await new Promise<void>((r) => probe.close(() => r()));
    const mem = memoryLogger();
    const ucs = await startUcs({ keysDir: set.keys, dbPath: join(set.dir, 'ucs.sqlite'), brokerUrl: `mqtt://127.0.0.1:${port}`, brokerWsUrl: 'ws://127.0.0.1:1', logger: mem.logger });
    try {
      const a = new NodeHousehold(ucs.url, 'hh1');
      const r = await a.register(set.code('hh1'), PASSWORD);
      expect(r.json).toEqual({ household: 'hh1', keyPublished: false });
      expect(ucs.db.account('hh1')!.keyPublished).toBe(false);
      const broker = await startBroker({ users: (await import('./helpers.js')).usersOf(set.keys), port, logger: pino({ level: 'silent' }) });
      try {
        await waitFor(() => ucs.db.account('hh1')!.keyPublished, 'the key published after reconnect', 20_000);
        const retained = await retainedHouseholdKey(broker.url, set.keys, 'hh1');
        expect(keyId(retained)).toEqual(keyId(createPublicKey({ key: Buffer.from(r.spki!), format: 'der', type: 'spki' })));
        // Per-address limit (default 20 a minute) on the login routes of this fresh server.
        const statuses: number[] = [];
        for (let i = 0; i < 21; i++) statuses.push((await a.call('GET', '/api/kdf?household=hh1')).status);
        expect(statuses.slice(0, 19).every((x) => x === 200)).toBe(true);
        const limited = await a.call('GET', '/api/kdf?household=hh1');
        expect(limited).toMatchObject({ status: 429, json: { error: 'too-many-requests' } });
        expect(limited.json.message).toMatch(/Too many attempts from your network address\. Try again in \d+ seconds\./);
      } finally {
        await ucs.close();
        await broker.close();
      }
    } finally {
      await ucs.close();
      set.cleanup();
    }
  });
});
