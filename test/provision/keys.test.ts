import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { brokerUsersPath, keySetMode, loadCredentials, loadFleet, loadHouseholdKey, loadMdmsKey, loadMeterKey, loadPesKeys, loadPesVerifyKey } from '../../lib/keyset.js';
import { codeSecrets, parseFleetCsv, provision } from '../../provision/keys.js';
import { keyId, openAggregate, sealAggregate, SignatureError } from '../../protocol/seal.js';
import { parseStoredHash, verifyPassword } from '../../lib/password.js';
import { activationSecrets, activationSecretsSync } from '../../protocol/household-key.js';
import { loadActivation } from '../../ucs/activation.js';

const b64u = (b: Uint8Array) => Buffer.from(b).toString('base64url');

function walk(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(dir, e.name)) : [join(dir, e.name)]));
}

describe('provision', () => {
  let dir: string;
  let keys: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sm-prov-'));
    writeFileSync(join(dir, 'a.csv'), '2024-01-01 00:00:00,0.5\n');
    writeFileSync(
      join(dir, 'fleet.csv'),
      'meter,household,neighbourhood,source\nm1,h1,nb1,a.csv\nm2,h2,nb1,synthetic:7\nm3,h3,nb2,synthetic:8\n',
    );
    keys = join(dir, 'keys');
    await provision({ fleetCsv: join(dir, 'fleet.csv'), out: keys, rsaBits: 2048, paillierBits: 1024, householdKeys: true });
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('writes a fleet with system titles, gateways per neighbourhood and absolute sources', () => {
    const fleet = loadFleet(keys);
    expect(fleet.meters.map((m) => m.meter)).toEqual(['534d520000000001', '534d520000000002', '534d520000000003']);
    expect(fleet.gateways).toEqual(['gw-nb1', 'gw-nb2']);
    expect(fleet.households).toEqual(['h1', 'h2', 'h3']);
    expect(fleet.meters[0]!.source).toBe(join(dir, 'a.csv'));
    expect(fleet.meters[1]!.source).toBe('synthetic:7');
  });

  it('gives the PES exactly the meter keys the meters hold, unwrapped from RSA-OAEP', () => {
    const pes = loadPesKeys(keys);
    for (const m of loadFleet(keys).meters) expect(pes.meterKeys.get(m.meter)).toEqual(loadMeterKey(keys, m.meter));
    expect(pes.householdPublic.size).toBe(3);
    const c = pes.paillier.addPlain(pes.paillier.encrypt(40n), 2n);
    expect(pes.paillier.decrypt(c)).toBe(42n);
  });

  it('is a classic key set: the PES holds the Paillier key, there is no guardian, and the end-to-end loader refuses it', () => {
    expect(keySetMode(keys)).toBe('classic');
    expect(() => loadPesKeys(keys, { e2e: true })).toThrow(/classic key set/);
    expect(walk(keys).some((f) => f.includes('/guardian') || f.endsWith('paillier.share') || f.endsWith('paillier.pub'))).toBe(false);
    expect(JSON.parse(readFileSync(brokerUsersPath(keys), 'utf8')).users.guardian).toBeUndefined();
  });

  it('lets the PES seal to the MDMS key', () => {
    const pes = loadPesKeys(keys);
    const mdms = loadMdmsKey(keys);
    expect(keyId(pes.mdmsPublic)).toEqual(keyId(createPublicKey(mdms)));
    expect(openAggregate(mdms, 't', sealAggregate(pes.mdmsPublic, 't', { x: 1 }, pes.signer), loadPesVerifyKey(keys))).toEqual({ x: 1 });
    expect(loadHouseholdKey(keys, 'h2').asymmetricKeyType).toBe('rsa');
  });

  it('gives the PES an Ed25519 signing key (secret, under pes/) whose public half (pes-sign.pub.pem) every receiver verifies with', () => {
    const { signer, mdmsPublic } = loadPesKeys(keys);
    const verifyKey = loadPesVerifyKey(keys);
    expect(signer.asymmetricKeyType).toBe('ed25519');
    expect(signer.type).toBe('private');
    expect(verifyKey.type).toBe('public');
    expect(createPublicKey(signer).export({ type: 'spki', format: 'der' })).toEqual(verifyKey.export({ type: 'spki', format: 'der' }));
    expect(statSync(join(keys, 'pes/pes-sign.key.pem')).mode & 0o777).toBe(0o600);
    expect(readFileSync(join(keys, 'pes-sign.pub.pem'), 'utf8')).toMatch(/^-----BEGIN PUBLIC KEY-----/);
    // a seal signed by anything but the provisioned PES key does not open
    const stranger = generateKeyPairSync('ed25519').privateKey;
    expect(() => openAggregate(loadMdmsKey(keys), 't', sealAggregate(mdmsPublic, 't', { x: 1 }, stranger), verifyKey)).toThrow(SignatureError);
  });

  it('writes broker users whose passwords match the component credentials', async () => {
    const users = JSON.parse(readFileSync(brokerUsersPath(keys), 'utf8')).users;
    expect(Object.keys(users).sort()).toEqual(
      ['gateway-gw-nb1', 'gateway-gw-nb2', 'household-h1', 'household-h2', 'household-h3', 'mdms', 'pes', 'ucs'].sort(),
    );
    const { password } = loadCredentials(keys, 'pes');
    expect(await verifyPassword(password, users.pes.scrypt)).toBe(true);
    expect(await verifyPassword(password, users.mdms.scrypt)).toBe(false);
    // 144-bit random passwords: the fast, versioned verifier (lib/password.ts), not scrypt.
    for (const u of Object.values(users) as { scrypt: string }[]) expect(parseStoredHash(u.scrypt).kind).toBe('hmac-sha256');
  });

  it("derives what the household's browser derives from its activation code: derivation 2, one native scrypt and protocol/household-key.ts's HKDF step", async () => {
    const pes = loadPesKeys(keys);
    const activation = loadActivation(keys);
    expect(JSON.parse(readFileSync(join(keys, 'ucs/activation.json'), 'utf8')).version).toBe(3); // verifiers of derivation 2
    expect(activation.derivation).toBe(2);
    for (const hh of ['h1', 'h2', 'h3']) {
      const code = readFileSync(join(keys, 'households', `${hh}.activation`), 'utf8').trim();
      expect(code).toMatch(/^[A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4}$/);
      const pure = await activationSecrets(code, hh, 2);
      expect(Buffer.from(pes.bindingKeys.get(hh)!)).toEqual(Buffer.from(pure.binding));
      const stored = activation.codes[hh]!;
      expect(parseStoredHash(stored).kind).toBe('hmac-sha256');
      expect(await verifyPassword(b64u(pure.verifier), stored)).toBe(true);
      // Derivation 1's verifier of the same code, or derivation 2's under another household, is not it.
      expect(await verifyPassword(b64u(activationSecretsSync(code, hh, 1).verifier), stored)).toBe(false);
      expect(await verifyPassword(b64u((await activationSecrets(code, 'h9', 2)).verifier), stored)).toBe(false);
    }
  });

  it('codeSecrets, the native-scrypt derivation provisioning runs, equals the pure module in both derivations (stream key only with e2e)', async () => {
    const code = 'ABCD-EFGH-JKLM';
    for (const derivation of [1, 2] as const) {
      const pure = activationSecretsSync(code, 'hh1', derivation);
      const native = await codeSecrets(code, 'hh1', true, derivation);
      expect([native.verifier, native.binding, native.stream].map((b) => Buffer.from(b!).toString('hex'))).toEqual([pure.verifier, pure.binding, pure.stream].map((b) => Buffer.from(b).toString('hex')));
      const classic = await codeSecrets(code, 'hh1', false, derivation);
      expect(classic.stream).toBeUndefined();
      expect(Buffer.from(classic.binding)).toEqual(Buffer.from(pure.binding));
    }
    expect(Buffer.from((await codeSecrets(code, 'hh1', false)).verifier)).toEqual(Buffer.from(activationSecretsSync(code, 'hh1', 2).verifier)); // 2 by default
    await expect(codeSecrets('ABCD', 'hh1', false)).rejects.toThrow(/12 letters/);
  });

  it('keeps every secret file at mode 0600 and never overwrites a key set', async () => {
    const secret = walk(keys).filter((f) => !f.endsWith('.pub.pem') && !f.endsWith('fleet.json'));
    expect(secret.length).toBeGreaterThan(10);
    for (const f of secret) expect(statSync(f).mode & 0o777, f).toBe(0o600);
    await expect(provision({ fleetCsv: join(dir, 'fleet.csv'), out: keys })).rejects.toThrow(/refusing to overwrite/);
  });

  it('encrypts private keys when SM_KEY_PASSPHRASE is set', async () => {
    const out = join(dir, 'enc');
    process.env.SM_KEY_PASSPHRASE = 'correct horse';
    try {
      await provision({ fleetCsv: join(dir, 'fleet.csv'), out, rsaBits: 2048, paillierBits: 1024 });
      expect(readFileSync(join(out, 'pes/pes.key.pem'), 'utf8')).toMatch(/ENCRYPTED PRIVATE KEY/);
      expect(readFileSync(join(out, 'pes/pes-sign.key.pem'), 'utf8')).toMatch(/ENCRYPTED PRIVATE KEY/);
      expect(loadPesKeys(out).signer.asymmetricKeyType).toBe('ed25519');
      expect(readFileSync(join(out, 'pes/paillier.key')).subarray(0, 4).toString()).toBe('SMK1');
      expect(loadPesKeys(out).meterKeys.size).toBe(3);
      process.env.SM_KEY_PASSPHRASE = 'wrong';
      expect(() => loadPesKeys(out)).toThrow(/PES private key/);
    } finally {
      delete process.env.SM_KEY_PASSPHRASE;
    }
    expect(() => loadMdmsKey(out)).toThrow(/SM_KEY_PASSPHRASE/);
  });

  it('rejects malformed fleet files naming file and line', () => {
    const f = join(dir, 'bad.csv');
    writeFileSync(f, 'meter,household\nm1,h1\n');
    expect(() => parseFleetCsv(f)).toThrow(/bad.csv:1: header/);
    writeFileSync(f, 'meter,household,neighbourhood,source\nm1,h1,nb1,missing.csv\n');
    expect(() => parseFleetCsv(f)).toThrow(/bad.csv:2: source file not found/);
    writeFileSync(f, 'meter,household,neighbourhood,source\nm1,h 1,nb1,synthetic:1\n');
    expect(() => parseFleetCsv(f)).toThrow(/bad.csv:2: household must match/);
    writeFileSync(f, 'meter,household,neighbourhood,source\nm1,h1,nb1,synthetic:1\nm1,h2,nb1,synthetic:2\n');
    expect(() => parseFleetCsv(f)).toThrow(/bad.csv:3: duplicate meter m1/);
    writeFileSync(f, 'meter,household,neighbourhood,source\nm1,h1,nb1,synthetic:1:pv=four\n');
    expect(() => parseFleetCsv(f)).toThrow(/bad.csv:2: synthetic source must be synthetic:<integer seed> or synthetic:<seed>:pv=<kWp>/);
    writeFileSync(f, 'meter,household,neighbourhood,source\nm1,h1,nb1,synthetic:1:pv=4.5\nm2,h2,nb1,synthetic:2:pv=0\n');
    expect(parseFleetCsv(f).map((m) => m.source)).toEqual(['synthetic:1:pv=4.5', 'synthetic:2:pv=0']); // panels per household
    expect(() => parseFleetCsv(join(dir, 'nope.csv'))).toThrow(/cannot read fleet file/);
  });
});
