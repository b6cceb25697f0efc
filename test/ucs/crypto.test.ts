/**
 * The browser's cryptography, run in Node (same WebCrypto API): password derivation, private-key wrapping,
 * the household key pair, and opening the PES's stream seal — checked against node:crypto and the document.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, hkdfSync, scryptSync, sign } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { cborDecode, cborEncode } from '../../protocol/cbor.js';
import { streamEpochSigned } from '../../protocol/envelope.js';
import { keyId, newStreamKey, sealStream } from '../../protocol/seal.js';
import { topics } from '../../protocol/topics.js';
import { b64u, fromB64u, hex } from '../../ucs/web/bytes.js';
import { parseStreamBody } from '../../protocol/stream.js';
import { bodyRows } from '../../ucs/web/body.js';
import { checkKdf, deriveSecrets, INFO_AUTH, INFO_WRAP, KDF_COST, newKdfParams, passwordProblem } from '../../ucs/web/kdf.js';
import { generateHouseholdKey, importPrivateKey, keyIdOf, openPrivateKey, packSecrets, pkcs8Pem, RSA_BITS, sealPrivateKey, unpackSecrets, WrongPasswordError } from '../../ucs/web/keys.js';
import { importPesVerifyKey, importStreamKey, OpenError, StreamOpener } from '../../ucs/web/seal.js';
import { activationSecretsSync, meterStreamKey, meterStreamKeySync } from '../../protocol/household-key.js';
import { readStreamKey } from '../../ucs/stream.js';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sealMeterStream } from '../../protocol/meter-seal.js';
import { docBlocks } from '../protocol/doc.js';

const FAST = { N: 1 << 15, r: 8, p: 1 };
const topic = topics.household('hh1');

async function webKeyPair(bits = 2048) {
  const { spki, pkcs8 } = await generateHouseholdKey(bits);
  return { spki, pkcs8, pub: createPublicKey({ key: Buffer.from(spki), format: 'der', type: 'spki' }), key: await importPrivateKey(pkcs8) };
}

/** The PES's Ed25519 key pair, and the browser's import of its public half (as `GET /api/pes-key` serves it). */
const pes = generateKeyPairSync('ed25519');
const pesVerify = () => importPesVerifyKey(pes.publicKey.export({ type: 'spki', format: 'der' }));

const body = (meter = '534d520000000001') => ({ meter, prevWh: 1000, readings: [[1_700_000_000, 60, 1002, 120, 0], [1_700_000_060, 60, 1005, 180, 0]] });

describe('password derivation', () => {
  it('is scrypt then HKDF-SHA-256 with two labels, as an independent implementation computes it', async () => {
    const kdf = newKdfParams(FAST);
    const s = await deriveSecrets('correct horse battery', kdf);
    const master = scryptSync(Buffer.from('correct horse battery'), fromB64u(kdf.salt, 'salt'), 32, { N: kdf.N, r: kdf.r, p: kdf.p, maxmem: 64 << 20 });
    expect(Buffer.from(s.wrapKey)).toEqual(Buffer.from(hkdfSync('sha256', master, Buffer.alloc(0), INFO_WRAP, 32)));
    expect(Buffer.from(s.auth)).toEqual(Buffer.from(hkdfSync('sha256', master, Buffer.alloc(0), INFO_AUTH, 32)));
    expect(hex(s.auth)).not.toBe(hex(s.wrapKey));
  });

  it('depends on the password and on the salt, and normalises Unicode (NFKC)', async () => {
    const kdf = newKdfParams(FAST);
    const a = await deriveSecrets('Ångström-passw0rd', kdf);
    const decomposed = await deriveSecrets('A\u030angstro\u0308m-passw0rd', kdf);
    expect(hex(decomposed.auth)).toBe(hex(a.auth));
    expect(hex((await deriveSecrets('Ångström-passw0rD', kdf)).auth)).not.toBe(hex(a.auth));
    expect(hex((await deriveSecrets('Ångström-passw0rd', newKdfParams(FAST))).auth)).not.toBe(hex(a.auth));
  });

  it('uses N = 2^17 for new accounts and refuses stored parameters weaker than 2^15 (a server cannot downgrade)', () => {
    expect(newKdfParams()).toMatchObject({ alg: 'scrypt', N: 1 << 17, r: 8, p: 1 });
    expect(KDF_COST.N).toBe(131072);
    const ok = newKdfParams(FAST);
    expect(() => checkKdf({ ...ok, N: 1 << 14 })).toThrow(/kdf.N/);
    expect(() => checkKdf({ ...ok, N: 50000 })).toThrow(/power of two/);
    expect(() => checkKdf({ ...ok, alg: 'pbkdf2' })).toThrow(/alg/);
    expect(() => checkKdf({ ...ok, salt: 'AA' })).toThrow(/salt/);
    expect(() => checkKdf({ ...ok, r: 1 })).toThrow(/kdf.r/);
    expect(checkKdf({ ...ok, extra: 1 })).toEqual(ok);
  });

  it('explains weak passwords', () => {
    expect(passwordProblem('short', 'hh1')).toMatch(/at least 10/);
    expect(passwordProblem('hh1hh1hh1hh1', 'hh1')).toMatch(/household id/);
    expect(passwordProblem('a long enough passphrase', 'hh1')).toBeNull();
  });
});

describe('household key pair and its wrapping', () => {
  it('makes an RSA-OAEP key of 3072 bits whose SPKI node:crypto reads and whose kid is protocol/seal keyId', async () => {
    const { spki, pkcs8 } = await generateHouseholdKey();
    const pub = createPublicKey({ key: Buffer.from(spki), format: 'der', type: 'spki' });
    expect(pub.asymmetricKeyDetails?.modulusLength).toBe(RSA_BITS);
    expect(hex(await keyIdOf(spki))).toBe(keyId(pub).toString('hex'));
    const priv = createPrivateKey(pkcs8Pem(pkcs8)); // the PEM that `ucs watch --key` reads
    expect(keyId(priv).toString('hex')).toBe(hex(await keyIdOf(spki)));
  });

  it('wraps the private key under the password-derived key, bound to the household', async () => {
    const { pkcs8 } = await generateHouseholdKey(2048);
    const kdf = newKdfParams(FAST);
    const { wrapKey } = await deriveSecrets('a long enough passphrase', kdf);
    const sealed = await sealPrivateKey(pkcs8, wrapKey, 'hh1');
    expect(sealed.iv).toHaveLength(12);
    expect(sealed.ct).toHaveLength(pkcs8.length + 16);
    expect(Buffer.from(sealed.ct).includes(Buffer.from(pkcs8.subarray(40, 72)))).toBe(false);
    expect(hex(await openPrivateKey(sealed, wrapKey, 'hh1'))).toBe(hex(pkcs8));
    const wrong = await deriveSecrets('a long enough passphrasE', kdf);
    await expect(openPrivateKey(sealed, wrong.wrapKey, 'hh1')).rejects.toBeInstanceOf(WrongPasswordError);
    await expect(openPrivateKey(sealed, wrapKey, 'hh2')).rejects.toThrow('Wrong password.');
  });
});

describe('StreamOpener (the browser side of protocol/seal.ts openStream)', () => {
  it('opens the PES stream seal made by node:crypto, one RSA unwrap per epoch', async () => {
    const k = await webKeyPair();
    const opener = new StreamOpener(k.key, await keyIdOf(k.spki), await pesVerify());
    const sk = newStreamKey(k.pub, 19675, topic, pes.privateKey);
    for (let i = 0; i < 3; i++) expect(await opener.open(topic, sealStream(sk, topic, body()))).toEqual(body());
    expect(opener.unwraps).toBe(1);
    await opener.open(topic, sealStream(newStreamKey(k.pub, 19676, topic, pes.privateKey), topic, body()));
    expect(opener.unwraps).toBe(2);
  });

  it('refuses a stream whose epoch signature is missing, forged, from another key or for another topic, even once a genuine epoch is cached; never unwraps for it', async () => {
    const k = await webKeyPair();
    const opener = new StreamOpener(k.key, await keyIdOf(k.spki), await pesVerify());
    const reason = async (p: Promise<unknown>) => ((await p.then(() => null, (e: unknown) => e)) as OpenError | null)?.reason;
    const sk = newStreamKey(k.pub, 19675, topic, pes.privateKey);
    const good = sealStream(sk, topic, body());
    expect(await opener.open(topic, good)).toEqual(body()); // the genuine epoch is now cached
    expect(opener.unwraps).toBe(1);
    const env = cborDecode(good) as unknown[];
    // missing: the six-element envelope of the unsigned format
    expect(await reason(opener.open(topic, cborEncode(env.filter((_v, i) => i !== 4))))).toBe('malformed');
    // forged: same kid, epoch and wrapped key as the cached epoch, signature altered
    const flipped = Buffer.from(env[4] as Uint8Array);
    flipped[7]! ^= 1;
    expect(await reason(opener.open(topic, cborEncode([...env.slice(0, 4), flipped, ...env.slice(5)])))).toBe('tampered');
    // signed by another Ed25519 key over the genuine bytes
    const forger = generateKeyPairSync('ed25519').privateKey;
    const foreign = sign(null, streamEpochSigned(topic, env[1] as Uint8Array, env[2] as number, env[3] as Uint8Array), forger);
    await expect(opener.open(topic, cborEncode([...env.slice(0, 4), foreign, ...env.slice(5)]))).rejects.toThrow(/not signed by the PES/);
    // a forger's own epoch: a real RSA wrap to this household, signed with their key
    expect(await reason(opener.open(topic, sealStream(newStreamKey(k.pub, 19675, topic, forger), topic, body('534d520000000002'))))).toBe('tampered');
    // the genuine message on another household's topic (the signature covers the topic)
    expect(await reason(opener.open(topics.household('hh2'), good))).toBe('tampered');
    expect(opener.unwraps).toBe(1); // nothing forged got as far as the RSA unwrap
    expect(await opener.open(topic, good)).toEqual(body());
  });

  it('a key that is not the PES key (another Ed25519 key) opens nothing', async () => {
    const k = await webKeyPair();
    const wrongPes = await importPesVerifyKey(generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'der' }));
    const opener = new StreamOpener(k.key, await keyIdOf(k.spki), wrongPes);
    await expect(opener.open(topic, sealStream(newStreamKey(k.pub, 1, topic, pes.privateKey), topic, body()))).rejects.toThrow(/not signed by the PES/);
    expect(opener.unwraps).toBe(0);
  });

  it('opens the stream vector of docs/protocol.md §11.4 with its published test key', async () => {
    const blocks = docBlocks();
    const vec = (name: string) => Buffer.from(blocks.find((b) => b.kind === 'hex' && b.name === name)!.text.replace(/\s+/g, ''), 'hex');
    const pem = blocks.find((b) => b.name === 'seal.test-private-key')!.text;
    const priv = createPrivateKey(pem);
    const pkcs8 = priv.export({ type: 'pkcs8', format: 'der' });
    // the documented verify key (RFC 8032 §7.1 TEST 1's public key) as SubjectPublicKeyInfo DER, as /api/pes-key serves it
    const spki = createPublicKey(blocks.find((b) => b.kind === 'pem' && b.name === 'seal.test-verify-key')!.text).export({ type: 'spki', format: 'der' });
    expect(spki.subarray(-32)).toEqual(vec('seal.test-verify-key'));
    const opener = new StreamOpener(await importPrivateKey(pkcs8), keyId(priv), await importPesVerifyKey(spki));
    const out = await opener.open(topics.household('hh1'), vec('seal.stream.payload'));
    expect(cborEncode(out)).toEqual(vec('seal.stream.body'));
  });

  it('refuses another key, another topic, tampering and garbage, each with its reason', async () => {
    const k = await webKeyPair();
    const opener = new StreamOpener(k.key, await keyIdOf(k.spki), await pesVerify());
    const other = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const reason = async (p: Promise<unknown>) => ((await p.then(() => null, (e: unknown) => e)) as OpenError | null)?.reason;
    expect(await reason(opener.open(topic, sealStream(newStreamKey(other.publicKey, 1, topic, pes.privateKey), topic, body())))).toBe('otherKey');
    const sk = newStreamKey(k.pub, 2, topic, pes.privateKey);
    expect(await reason(opener.open(topics.household('hh2'), sealStream(sk, topic, body())))).toBe('tampered');
    const good = sealStream(sk, topic, body());
    const flipped = Buffer.from(good);
    flipped[flipped.length - 3]! ^= 1;
    expect(await reason(opener.open(topic, flipped))).toBe('tampered');
    expect(await reason(opener.open(topic, Buffer.from('not cbor at all')))).toBe('malformed');
    expect(await reason(opener.open(topic, cborEncode([1, 2, 3])))).toBe('malformed');
    expect(await opener.open(topic, good)).toEqual(body());
  });
});

describe("the end-to-end mode's meter-sealed stream in the browser", () => {
  const code = 'ABCD-EFGH-JKLM';
  const st = Buffer.from('534d520000000001', 'hex');

  it('keeps the stream key derived from the activation code with the private key, under the password', async () => {
    const { pkcs8 } = await generateHouseholdKey(2048);
    const { wrapKey } = await deriveSecrets('a long enough passphrase', newKdfParams(FAST));
    const streamKey = await meterStreamKey(code, 'hh1');
    const opened = unpackSecrets(await openPrivateKey(await sealPrivateKey(packSecrets(pkcs8, streamKey), wrapKey, 'hh1'), wrapKey, 'hh1'));
    expect(hex(opened.pkcs8)).toBe(hex(pkcs8));
    expect(hex(opened.streamKey!)).toBe(hex(streamKey));
    // An account sealed before the stream key existed: the DER alone.
    expect(unpackSecrets(await openPrivateKey(await sealPrivateKey(pkcs8, wrapKey, 'hh1'), wrapKey, 'hh1')).streamKey).toBeNull();
    expect(() => unpackSecrets(new Uint8Array([...pkcs8, 1, 2, 3]))).toThrow(/neither/);
    expect(() => packSecrets(pkcs8, streamKey.subarray(0, 16))).toThrow(/32 bytes/);
  });

  it('opens what a meter sealed (node:crypto) with the key derived from the code, and refuses it moved, relabelled, tampered or without the key', async () => {
    const k = await webKeyPair();
    const streamKey = await importStreamKey(await meterStreamKey(code, 'hh1'));
    const opener = new StreamOpener(k.key, await keyIdOf(k.spki), await pesVerify(), streamKey);
    const sealed = sealMeterStream(meterStreamKeySync(code, 'hh1'), topic, st, 9, body());
    expect(parseStreamBody(await opener.open(topic, sealed))).toEqual(parseStreamBody(body()));
    // The PES's seal still opens with the same opener (a system moving between modes).
    expect(await opener.open(topic, sealStream(newStreamKey(k.pub, 19675, topic, pes.privateKey), topic, body()))).toEqual(body());
    const reason = async (p: Promise<unknown>) => ((await p.then(() => null, (e: unknown) => e)) as OpenError | null)?.reason;
    const relabelled = cborDecode(sealed) as unknown[];
    relabelled[1] = Buffer.from('534d520000000002', 'hex');
    const flipped = Buffer.from(sealed);
    flipped[flipped.length - 1]! ^= 1;
    expect(await reason(opener.open(topics.household('hh2'), sealed))).toBe('tampered');
    expect(await reason(opener.open(topic, cborEncode(relabelled)))).toBe('tampered');
    expect(await reason(opener.open(topic, flipped))).toBe('tampered');
    expect(await reason(opener.open(topic, sealMeterStream(meterStreamKeySync(code, 'hh1'), topic, st, 9, body('534d520000000002'))))).toBe('tampered');
    expect(await reason(opener.open(topic, cborEncode([3, st, 9, Buffer.alloc(11), Buffer.alloc(20)])))).toBe('malformed');
    expect(await reason(new StreamOpener(k.key, await keyIdOf(k.spki), await pesVerify()).open(topic, sealed))).toBe('otherKey');
    expect(await reason(new StreamOpener(k.key, await keyIdOf(k.spki), await pesVerify(), await importStreamKey(meterStreamKeySync(code, 'hh2'))).open(topic, sealed))).toBe('tampered');
  });
});

describe('stream body', () => {
  it('validates like the meter batch and gives each reading its energy', () => {
    const b = parseStreamBody(body());
    expect(bodyRows(b)).toEqual([
      { meter: '534d520000000001', time: 1_700_000_000, period: 60, importWh: 1002, powerW: 120, status: 0, energyWh: 2, exportWh: 0, exportEnergyWh: 0 },
      { meter: '534d520000000001', time: 1_700_000_060, period: 60, importWh: 1005, powerW: 180, status: 0, energyWh: 3, exportWh: 0, exportEnergyWh: 0 },
    ]);
    // The long form (a prosumer): the export register and the energy fed in per reading.
    const long = parseStreamBody({ ...body(), prevExportWh: 500, readings: [[1_700_000_000, 60, 1002, 120, 0, 540], [1_700_000_060, 60, 1005, 180, 0, 541]] });
    expect(bodyRows(long).map((r) => [r.exportWh, r.exportEnergyWh])).toEqual([[540, 40], [541, 1]]);
    expect(() => parseStreamBody({ ...body(), prevExportWh: 500, readings: [[1_700_000_000, 60, 1002, 120, 0, 499]] })).toThrow(/exportWh decreases/);
    expect(() => parseStreamBody({ ...body(), meter: 'x' })).toThrow(/meter/);
    expect(() => parseStreamBody({ ...body(), readings: [[1_700_000_000, 60, 999, 0, 0]] })).toThrow(/decreases/);
    expect(() => parseStreamBody({ ...body(), readings: [] })).toThrow(/readings/);
    expect(() => parseStreamBody([1])).toThrow(/map/);
    // A register reset (status 4) counts the new register value as the energy.
    expect(bodyRows(parseStreamBody({ ...body(), readings: [[1_700_000_000, 60, 7, 420, 4]] }))[0]!.energyWh).toBe(7);
  });

  it('base64url round-trips and rejects other alphabets', () => {
    const bytes = new Uint8Array(Array.from({ length: 300 }, (_, i) => (i * 37) & 255));
    expect(fromB64u(b64u(bytes), 'x')).toEqual(bytes);
    expect(() => fromB64u('a+b/', 'x')).toThrow(/base64url/);
    expect(() => fromB64u(b64u(bytes), 'x', 0, 10)).toThrow(/x must/);
  });
});

describe('ucs watch --activation: the stream key from a file holding the code', () => {
  it("derives it by the key set's derivation, and names the file when it cannot", () => {
    const dir = mkdtempSync(join(tmpdir(), 'sm-activation-'));
    try {
      const file = join(dir, 'hh1.activation');
      writeFileSync(file, 'abcd efgh jklm\n');
      expect(Buffer.from(readStreamKey(file, 'hh1', 2))).toEqual(Buffer.from(activationSecretsSync('ABCD-EFGH-JKLM', 'hh1', 2).stream));
      expect(Buffer.from(readStreamKey(file, 'hh1', 1))).toEqual(Buffer.from(meterStreamKeySync('ABCD-EFGH-JKLM', 'hh1')));
      writeFileSync(file, 'ABCD\n');
      expect(() => readStreamKey(file, 'hh1', 2)).toThrow(/--activation .*hh1\.activation: an activation code has 12 letters/);
      expect(() => readStreamKey(join(dir, 'none'), 'hh1', 2)).toThrow(/cannot read --activation .*none: ENOENT/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
