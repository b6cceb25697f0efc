// `provision --e2e`: the Paillier secret split between the PES and the guardian, with the real key folders.
// No file of the key set holds the whole secret (a walk over every file: nothing decodes as a Paillier private
// key, no integer shares a factor with n, and no integer or sum of two integers within one folder is a
// multiple of lambda, i.e. a decryption exponent), each folder's share alone fails to decrypt what a meter
// encrypts, and the two folders together succeed.
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import * as paillier from 'paillier-bigint';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cborDecode } from '../../protocol/cbor.js';
import { fromBytes, gcd, modInv } from '../../protocol/paillier/arith.js';
import { combinePartials, decodePrivateKey, partialDecrypt, type PublicKey } from '../../protocol/paillier/engine.js';
import { Modulus } from '../../protocol/paillier/modexp.js';
import { topics } from '../../protocol/topics.js';
import { activationSecretsSync, meterStreamKeySync } from '../../protocol/household-key.js';
import { verifyPassword } from '../../lib/password.js';
import {
  brokerUsersPath,
  GUARDIAN_DIR,
  keySetMode,
  loadCredentials,
  loadFleet,
  loadGuardianKeys,
  loadGuardianVerifyKey,
  loadMeterKey,
  loadMeterPaillierKey,
  loadMeterStreamKey,
  loadPesKeys,
  MOSQUITTO_ACL,
} from '../../lib/keyset.js';
import { provision } from '../../provision/keys.js';
import { rotateMeterKey } from '../../provision/rotate.js';

function walk(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(dir, e.name)) : [join(dir, e.name)]));
}

/** Every integer a file carries: CBOR byte strings (at any depth), PEM key numbers (JWK), hex text. */
function integersIn(path: string): bigint[] {
  const bytes = readFileSync(path);
  const out: bigint[] = [];
  const collect = (v: unknown): void => {
    if (v instanceof Uint8Array) out.push(fromBytes(v));
    else if (Array.isArray(v)) v.forEach(collect);
    else if (v && typeof v === 'object') Object.values(v).forEach(collect);
  };
  try {
    collect(cborDecode(bytes));
  } catch {
    /* not CBOR */
  }
  const text = bytes.toString('utf8');
  if (/^-----BEGIN (PRIVATE|PUBLIC) KEY-----/.test(text)) {
    const key = text.includes('PRIVATE') ? createPrivateKey(text) : createPublicKey(text);
    for (const v of Object.values(key.export({ format: 'jwk' }))) if (typeof v === 'string' && /^[A-Za-z0-9_-]+$/.test(v)) out.push(fromBytes(Buffer.from(v, 'base64url')));
  }
  if (/^[0-9a-f]+\s*$/.test(text)) out.push(BigInt('0x' + text.trim()));
  return out.filter((x) => x > 1n);
}

describe('provision --e2e', () => {
  let dir: string;
  let keys: string;
  let gdir: string;
  let pub: PublicKey;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sm-prov-e2e-'));
    writeFileSync(join(dir, 'fleet.csv'), 'meter,household,neighbourhood,source\nm1,h1,nb1,synthetic:1\nm2,h2,nb1,synthetic:2\nm3,h3,nb2,synthetic:3\n');
    keys = join(dir, 'keys');
    gdir = join(keys, GUARDIAN_DIR);
    await provision({ fleetCsv: join(dir, 'fleet.csv'), out: keys, rsaBits: 2048, paillierBits: 1024, e2e: true });
    pub = loadMeterPaillierKey(keys);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('writes no Paillier private key, a share for the PES and one for the guardian under the public key the meters get', () => {
    expect(keySetMode(keys)).toBe('e2e');
    expect(walk(keys).filter((f) => /paillier\.key$/.test(f))).toEqual([]);
    const pes = loadPesKeys(keys, { e2e: true });
    const guardian = loadGuardianKeys(gdir);
    expect(pes.paillierShare.party).toBe('pes');
    expect(guardian.paillierShare.party).toBe('guardian');
    expect(pes.paillierShare.publicKey.keyId).toBe(pub.keyId);
    expect(guardian.paillierShare.publicKey.keyId).toBe(pub.keyId);
    expect(pub.bits).toBe(1024);
    expect('paillier' in pes).toBe(false);
  });

  it('decrypts what a meter encrypts only with both folders', () => {
    const pesShare = loadPesKeys(keys, { e2e: true }).paillierShare;
    const guardianShare = loadGuardianKeys(gdir).paillierShare;
    const c = pub.add(pub.encrypt(1234n), pub.encrypt(766n)); // two meters' readings, aggregated
    const a = partialDecrypt(pesShare, c);
    const b = partialDecrypt(guardianShare, c);
    expect(combinePartials(pub, a, b, c)).toBe(2000n);
    // each alone: its partial is not of the form 1 + m n, and the share used as lambda decrypts nothing
    const mu = (d: bigint) => modInv(d % pub.n, pub.n);
    const theirs = new paillier.PublicKey(pub.n, pub.n + 1n);
    for (const [s, p] of [[pesShare, a], [guardianShare, b]] as const) {
      expect((p.value - 1n) % pub.n).not.toBe(0n);
      expect(new paillier.PrivateKey(s.exponent, mu(s.exponent), theirs).decrypt(c)).not.toBe(2000n);
    }
    const joint = pesShare.exponent + guardianShare.exponent; // control: the same attack with both shares works
    expect(new paillier.PrivateKey(joint, mu(joint), theirs).decrypt(c)).toBe(2000n);
    expect(() => combinePartials(pub, a, a)).toThrow(/both partial decryptions/);
  });

  it('holds the whole secret in no file and in no folder (a walk over every file)', () => {
    const files = walk(keys);
    const two = new Modulus(pub.n);
    const isExponent = (x: bigint) => two.pow(2n, x) === 1n && two.pow(3n, x) === 1n; // x = 0 mod lambda (w.h.p.)
    const byFolder = new Map<string, bigint[]>();
    for (const f of files) {
      const rel = relative(keys, f);
      expect(() => decodePrivateKey(readFileSync(f)), rel).toThrow();
      const ints = integersIn(f);
      for (const x of ints) {
        expect(gcd(x, pub.n) === 1n || x % pub.n === 0n, `${rel} holds a factor of n`).toBe(true);
        expect(isExponent(x), `${rel} holds a decryption exponent`).toBe(false);
      }
      const folder = rel.includes('/') ? rel.split('/')[0]! : '.';
      byFolder.set(folder, [...(byFolder.get(folder) ?? []), ...ints]);
    }
    expect([...byFolder.keys()].sort()).toEqual(['.', 'broker', 'credentials', 'guardian', 'households', 'mdms', 'meters', 'nats', 'pes', 'ucs']);
    for (const [folder, ints] of byFolder) {
      for (let i = 0; i < ints.length; i++) for (let j = i + 1; j < ints.length; j++) expect(isExponent(ints[i]! + ints[j]!), `${folder}: two integers sum to a decryption exponent`).toBe(false);
    }
    // The detector is sound: the PES's share plus the guardian's, across folders, is caught.
    const d = integersIn(join(keys, 'pes/paillier.share')).at(-1)! + integersIn(join(gdir, 'paillier.share')).at(-1)!;
    expect(isExponent(d)).toBe(true);
  });

  it('gives the guardian its own key directory: fleet, meter keys, signing key, broker user reading uplinks and publishing partials', async () => {
    expect(loadFleet(gdir)).toEqual(loadFleet(keys));
    const guardian = loadGuardianKeys(gdir);
    for (const m of loadFleet(keys).meters) expect(guardian.meterKeys.get(m.meter)).toEqual(loadMeterKey(keys, m.meter));
    expect(createPublicKey(guardian.signer).export({ format: 'jwk' })).toEqual(loadGuardianVerifyKey(keys).export({ format: 'jwk' }));
    expect(guardian.mdmsPublic.export({ format: 'jwk' })).toEqual(loadPesKeys(keys, { e2e: true }).mdmsPublic.export({ format: 'jwk' }));
    const users = JSON.parse(readFileSync(brokerUsersPath(keys), 'utf8')).users;
    expect(users.guardian).toMatchObject({ publish: [topics.partialsAll], subscribe: [topics.framesAll, topics.requestsAll] });
    expect(users.pes.publish).toContain(topics.requestsAll);
    expect(users.mdms.subscribe).toContain(topics.partialsAll);
    const { password } = loadCredentials(gdir, 'guardian');
    expect(await verifyPassword(password, users.guardian.scrypt)).toBe(true);
    expect(() => loadCredentials(keys, 'guardian')).toThrow(); // only in the guardian's folder
    expect(readFileSync(join(keys, MOSQUITTO_ACL), 'utf8')).toMatch(/\nuser guardian\ntopic write sm\/v1\/partial\/#\ntopic read sm\/v1\/frames\/\+\n/);
  });

  it("gives each meter its household's stream key, derived from the activation code, and no other party's folder holds it", () => {
    const fleet = loadFleet(keys);
    const seen = new Map<string, string>();
    for (const m of fleet.meters) {
      const key = loadMeterStreamKey(keys, m.meter);
      const code = readFileSync(join(keys, 'households', `${m.household}.activation`), 'utf8').trim();
      const derived = activationSecretsSync(code, m.household, 2); // derivation 2: what provisioning writes
      expect(key).toEqual(Buffer.from(derived.stream));
      expect(key).not.toEqual(Buffer.from(derived.binding)); // the PES's binding key is another HKDF output
      expect(key).not.toEqual(Buffer.from(meterStreamKeySync(code, m.household))); // not derivation 1's
      seen.set(m.household, key.toString('hex'));
    }
    expect(new Set(seen.values()).size).toBe(fleet.households.length);
    // In any encoding a file could hold 32 bytes: raw, hex, base64, base64url.
    const forms = [...seen.values()].flatMap((h) => {
      const b = Buffer.from(h, 'hex');
      return [b, Buffer.from(h), Buffer.from(h.toUpperCase()), Buffer.from(b.toString('base64')), Buffer.from(b.toString('base64url'))];
    });
    const others = ['pes', 'guardian', 'mdms', 'ucs'].flatMap((d) => walk(join(keys, d)));
    expect(others.length).toBeGreaterThan(5);
    for (const f of others) {
      const bytes = readFileSync(f);
      for (const form of forms) expect(bytes.includes(form), relative(keys, f)).toBe(false);
    }
    // Only the meter folder and nowhere else at the top: the stream key files are the meters' own.
    expect(walk(keys).filter((f) => f.endsWith('.stream')).map((f) => relative(keys, f).split('/')[0])).toEqual(fleet.meters.map(() => 'meters'));
  });

  it('keeps every secret at mode 0600, and the classic loader refuses the key set (keys.test.ts: the converse)', () => {
    const pub = /(\.pub\.pem|\.pub|fleet\.json)$/;
    for (const f of walk(keys).filter((x) => !pub.test(x))) expect(statSync(f).mode & 0o777, f).toBe(0o600);
    expect(() => loadPesKeys(keys)).toThrow(/end-to-end key set/);
  });

  it('refuses a share moved into the other holder\'s folder', () => {
    const moved = join(dir, 'moved');
    const swap = join(moved, GUARDIAN_DIR);
    cpSync(gdir, swap, { recursive: true });
    expect(loadGuardianKeys(swap).paillierShare.party).toBe('guardian');
    writeFileSync(join(swap, 'paillier.share'), readFileSync(join(keys, 'pes/paillier.share')));
    expect(() => loadGuardianKeys(swap)).toThrow(/is the pes's, expected the guardian's/);
  });

  it('seals both shares with SM_KEY_PASSPHRASE', async () => {
    const out = join(dir, 'enc');
    process.env.SM_KEY_PASSPHRASE = 'correct horse';
    try {
      await provision({ fleetCsv: join(dir, 'fleet.csv'), out, rsaBits: 2048, paillierBits: 1024, e2e: true });
      for (const f of ['pes/paillier.share', 'guardian/paillier.share']) expect(readFileSync(join(out, f)).subarray(0, 4).toString(), f).toBe('SMK1');
      expect(readFileSync(join(out, 'guardian/guardian.key.pem'), 'utf8')).toMatch(/ENCRYPTED PRIVATE KEY/);
      expect(readFileSync(join(out, 'guardian/guardian-sign.key.pem'), 'utf8')).toMatch(/ENCRYPTED PRIVATE KEY/);
      const g = loadGuardianKeys(join(out, GUARDIAN_DIR));
      const p = loadPesKeys(out, { e2e: true });
      const c = g.paillierShare.publicKey.encrypt(77n);
      expect(combinePartials(g.paillierShare.publicKey, partialDecrypt(p.paillierShare, c), partialDecrypt(g.paillierShare, c))).toBe(77n);
    } finally {
      delete process.env.SM_KEY_PASSPHRASE;
    }
    expect(() => loadGuardianKeys(join(out, GUARDIAN_DIR))).toThrow(/SM_KEY_PASSPHRASE/);
  });

  it('rotates a meter key for the guardian too', () => {
    const meter = loadFleet(keys).meters[1]!.meter;
    const { generation } = rotateMeterKey({ keys, meter });
    expect(generation).toBe(1);
    const pesNew = loadPesKeys(keys, { e2e: true }).meterRotations.get(meter);
    expect(pesNew).toHaveLength(1);
    expect(loadGuardianKeys(gdir).meterRotations.get(meter)).toEqual(pesNew);
  });
});
