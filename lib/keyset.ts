/**
 * The key set of a fleet: its layout (what `provision` writes, provision/keys.ts) and the loaders each
 * component uses to read its part of it. A contract like protocol/: every actor reads its keys through here.
 *
 * Layout of a key directory (every secret file mode 0600, directories 0700):
 * ```
 * fleet.json                      public: meters (system titles), households, neighbourhoods, gateways, sources
 * meters/<meter>.key              the meter's AES-256 key (hex), generation 0 — the meter's own secret
 * meters/<meter>.kek              the meter's key-encryption key (hex): unwraps key transfers (docs/protocol.md §7.1)
 * meters/<meter>.transfer         the latest key transfer for the meter (CBOR message type 3, the key wrapped under its KEK)
 * pes-sign.pub.pem                public: the PES's Ed25519 key that signs every seal (MDMS, household app, `ucs watch`)
 * pes/pes.key.pem                 PES RSA private key (PKCS#8; encrypted when SM_KEY_PASSPHRASE is set)
 * pes/pes-sign.key.pem            PES Ed25519 signing key (PKCS#8; encrypted when SM_KEY_PASSPHRASE is set)
 * pes/meter-keys.cbor             every meter key (`keys`), KEK (`keks`) and rotated key (`rotations`, generation
 *                                 1, 2, ... per meter) wrapped to the PES key with RSA-OAEP-SHA-256
 * pes/paillier.key                PES Paillier private key (engine serialisation; encrypted with the passphrase when set);
 *                                 classic mode only
 * pes/mdms.pub.pem                the MDMS public key the PES seals aggregates to
 * pes/binding-keys.cbor           per household, the key derived from its activation code (docs/protocol.md §10.1)
 * pes/households/<hh>.pub.pem     household public keys known at provisioning (optional)
 * mdms/mdms.key.pem               MDMS RSA private key
 * households/<hh>.key.pem         household private key (only with --household-keys: for `ucs watch` and tests)
 * households/<hh>.activation      the household's one-time activation code
 * ucs/activation.json             hashes of the activation codes' verifiers, its version the derivation (what the UCS server checks)
 * broker/users.json               broker users: scrypt password hashes and topic ACLs
 * broker/mosquitto/passwd         the same users for Mosquitto 2.x (PBKDF2-SHA512 `$7$` lines)
 * broker/mosquitto/acl            the same topic ACL in Mosquitto's format
 * broker/mosquitto/mosquitto.conf `mosquitto -c` this file to run Mosquitto as the system's broker
 * broker/mosquitto/data/          Mosquitto's persistence (unless provisioned elsewhere)
 * credentials/<user>.json         each component's broker username/password
 * ```
 * End-to-end mode (`provision --e2e`, docs/paillier.md "Two-party threshold decryption"): no file holds the
 * whole Paillier secret; `pes/paillier.key` is not written, and instead:
 * ```
 * pes/paillier.share              the PES's share of the decryption exponent (sealed like the private keys)
 * pes/paillier.pub                the Paillier public key
 * meters/paillier.pub             the Paillier public key the meters encrypt under
 * guardian-sign.pub.pem           public: the guardian's Ed25519 key (whoever combines its partials verifies with it)
 * guardian/                       the guardian's own key directory (`smartermeter guardian --keys <dir>/guardian`):
 *   fleet.json                    a copy of the fleet (who is in which neighbourhood and household)
 *   paillier.share                the guardian's share (sealed like the private keys)
 *   paillier.pub                  the Paillier public key
 *   guardian.key.pem              its RSA private key (unwraps its meter keys); guardian.pub.pem its public half
 *   meter-keys.cbor               every meter key and rotated key, wrapped to guardian.pub.pem (it checks uplinks)
 *   guardian-sign.key.pem         its Ed25519 signing key (signs its partial decryptions)
 *   mdms.pub.pem                  the MDMS public key
 *   credentials/guardian.json     its broker username/password (user `guardian`)
 * ```
 * @module
 */
import { createPrivateKey, createPublicKey, randomBytes, scryptSync, type KeyObject } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { cborDecode } from '../protocol/cbor.js';
import { gcmDecrypt, gcmEncrypt } from '../protocol/aead.js';
import { topicId } from '../protocol/topics.js';
import { unwrapKey } from '../protocol/seal.js';
import { decodePrivateKey, decodePublicKey, decodeShare, type DecryptionShare, type PaillierPrivate, type Party, type PublicKey } from '../protocol/paillier/engine.js';

export interface FleetMeter {
  /** Hex system title: the meter id everywhere. */
  meter: string;
  /** The name the fleet file gave the meter. */
  label: string;
  household: string;
  neighbourhood: string;
  gateway: string;
  /** Absolute path of a UMass-format CSV, or `synthetic:<seed>`. */
  source: string;
}

export interface Fleet {
  version: 1;
  meters: FleetMeter[];
  gateways: string[];
  households: string[];
  neighbourhoods: string[];
}

export interface PesKeys {
  rsa: KeyObject;
  /** Per household, the binding key derived from its activation code (protocol/household-key.ts). */
  bindingKeys: Map<string, Uint8Array>;
  /** Ed25519: signs every aggregate seal and stream epoch (docs/protocol.md §11). */
  signer: KeyObject;
  meterKeys: Map<string, Buffer>;
  /** Per meter, the keys `provision rotate` made, generation 1, 2, ... in order. */
  meterRotations: Map<string, Buffer[]>;
  paillier: PaillierPrivate;
  mdmsPublic: KeyObject;
  householdPublic: Map<string, KeyObject>;
}

/** What the PES loads in the end-to-end mode: everything of {@link PesKeys} but its share instead of the Paillier key. */
export interface PesE2eKeys extends Omit<PesKeys, 'paillier'> {
  /** The PES's share of the Paillier decryption exponent (protocol/paillier/threshold.ts); its public key inside. */
  paillierShare: DecryptionShare;
}

/** What the guardian loads from its own key directory (`<keys>/guardian`). */
export interface GuardianKeys {
  /** The guardian's share of the Paillier decryption exponent. */
  paillierShare: DecryptionShare;
  /** Every meter's key, to check (GCM) the uplinks it recomputes aggregates from. */
  meterKeys: Map<string, Buffer>;
  /** Per meter, the keys `provision rotate` made, generation 1, 2, ... in order. */
  meterRotations: Map<string, Buffer[]>;
  /** Ed25519: signs the guardian's partial decryptions. */
  signer: KeyObject;
  mdmsPublic: KeyObject;
}

/** The passphrase that encrypts private keys at rest, if the operator set one. */
function passphrase(): string | undefined {
  const p = process.env.SM_KEY_PASSPHRASE;
  return p && p.length > 0 ? p : undefined;
}

export function writeSecret(path: string, data: string | Uint8Array): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  writeFileSync(path, data, { mode: 0o600 });
  chmodSync(path, 0o600);
}

/**
 * Replaces a secret file atomically (write a 0600 temporary file, rename it over the old one): a reader sees
 * the old content or the new, never a torn file.
 * @example
 * ```ts
 * replaceSecret(join(dir, PES_METER_KEYS), cborEncode(file));
 * ```
 */
export function replaceSecret(path: string, data: string | Uint8Array): void {
  writeSecret(`${path}.tmp`, data);
  renameSync(`${path}.tmp`, path);
}

export function writePublic(path: string, data: string | Uint8Array): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  writeFileSync(path, data, { mode: 0o644 });
}

export function readFile(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new Error(`cannot read ${what} at ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

export function privatePem(key: KeyObject): string {
  const pass = passphrase();
  return key.export(pass ? { type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase: pass } : { type: 'pkcs8', format: 'pem' }) as string;
}

function loadPrivatePem(path: string, what: string): KeyObject {
  const pem = readFile(path, what);
  try {
    return createPrivateKey({ key: pem, format: 'pem', passphrase: passphrase() });
  } catch (e) {
    throw new Error(`cannot load ${what} from ${path}: ${(e as Error).message}${pem.includes('ENCRYPTED') && !passphrase() ? ' (set SM_KEY_PASSPHRASE)' : ''}`);
  }
}

/** Secret blobs: `SMK1 | salt(16) | iv(12) | AES-256-GCM(scrypt(passphrase, salt))` when a passphrase is set. */
export function sealBlob(data: Uint8Array): Uint8Array {
  const pass = passphrase();
  if (!pass) return data;
  const salt = randomBytes(16);
  const iv = randomBytes(12);
  const key = scryptSync(pass, salt, 32, { N: 1 << 15, r: 8, p: 1, maxmem: 64 << 20 });
  try {
    return Buffer.concat([Buffer.from('SMK1'), salt, iv, gcmEncrypt(key, iv, data, Buffer.from('SMK1'), 16)]);
  } finally {
    key.fill(0);
  }
}

function openBlob(data: Buffer, path: string): Buffer {
  if (data.subarray(0, 4).toString() !== 'SMK1') return data;
  const pass = passphrase();
  if (!pass) throw new Error(`${path} is encrypted: set SM_KEY_PASSPHRASE`);
  const key = scryptSync(pass, data.subarray(4, 20), 32, { N: 1 << 15, r: 8, p: 1, maxmem: 64 << 20 });
  try {
    return Buffer.from(gcmDecrypt(key, data.subarray(20, 32), data.subarray(32), Buffer.from('SMK1'), 16));
  } catch {
    throw new Error(`${path}: wrong SM_KEY_PASSPHRASE`);
  } finally {
    key.fill(0);
  }
}

/**
 * Reads and validates `fleet.json`.
 * @example
 * ```ts
 * for (const m of loadFleet(dir).meters) console.log(m.meter, m.neighbourhood);
 * ```
 */
export function loadFleet(dir: string): Fleet {
  const path = join(dir, 'fleet.json');
  let f: Fleet;
  try {
    f = JSON.parse(readFile(path, 'fleet').toString('utf8')) as Fleet;
  } catch (e) {
    throw new Error(`${path}: ${(e as Error).message}`);
  }
  if (f?.version !== 1 || !Array.isArray(f.meters) || f.meters.length === 0) throw new Error(`${path}: not a version-1 fleet with meters`);
  for (const m of f.meters) {
    if (!/^[0-9a-f]{16}$/.test(m.meter)) throw new Error(`${path}: bad meter id ${String(m.meter)}`);
    topicId(m.household, 'household');
    topicId(m.neighbourhood, 'neighbourhood');
    topicId(m.gateway, 'gateway');
  }
  return f;
}

/**
 * `ucs/activation.json`'s versions and the activation derivation (protocol/household-key.ts) each records: version
 * 3 holds verifiers of derivation 2 (what provisioning writes), version 2 of derivation 1 (earlier key sets).
 * @example
 * ```ts
 * const derivation = ACTIVATION_FILE_DERIVATION[3]; // 2
 * ```
 */
export const ACTIVATION_FILE_DERIVATION = { 2: 1, 3: 2 } as const;
/**
 * The inverse of {@link ACTIVATION_FILE_DERIVATION}: the file version that records verifiers of a derivation.
 * @example
 * ```ts
 * writeSecret(join(out, 'ucs/activation.json'), JSON.stringify({ version: ACTIVATION_FILE_VERSION[2], codes }));
 * ```
 */
export const ACTIVATION_FILE_VERSION = { 1: 2, 2: 3 } as const;

/** Where the wrapped meter keys, KEKs and rotated keys of the PES live in a key set. */
export const PES_METER_KEYS = 'pes/meter-keys.cbor';

/** The PES's wrapped meter-key file (RSA-OAEP to the PES key): provisioned keys, KEKs, rotated keys. */
export interface WrappedMeterKeys {
  version: 1;
  keys: Record<string, Uint8Array>;
  keks?: Record<string, Uint8Array>;
  rotations?: Record<string, Uint8Array[]>;
}

/**
 * Reads and checks the PES's wrapped meter-key file (nothing is unwrapped); `file` names another holder's
 * (the guardian's: `guardian/meter-keys.cbor`).
 * @example
 * ```ts
 * const generations = (readWrappedMeterKeys(dir).rotations?.[meter] ?? []).length;
 * ```
 */
export function readWrappedMeterKeys(dir: string, file = PES_METER_KEYS): WrappedMeterKeys {
  const path = join(dir, file);
  const blob = cborDecode(readFile(path, 'wrapped meter keys')) as WrappedMeterKeys;
  const isMap = (v: unknown) => typeof v === 'object' && v !== null && !Array.isArray(v);
  if (blob?.version !== 1 || !isMap(blob.keys) || (blob.keks !== undefined && !isMap(blob.keks)) || (blob.rotations !== undefined && !isMap(blob.rotations))) {
    throw new Error(`${path}: not a version-1 key file`);
  }
  for (const [id, list] of Object.entries(blob.rotations ?? {})) {
    if (!Array.isArray(list) || !list.every((w) => w instanceof Uint8Array)) throw new Error(`${path}: rotations of ${id} must be a list of wrapped keys`);
  }
  return blob;
}

function meterPath(dir: string, meter: string, ext: string): string {
  if (!/^[0-9a-f]{16}$/.test(meter)) throw new TypeError(`bad meter id ${meter}`);
  return join(dir, 'meters', `${meter}.${ext}`);
}

function loadHexKey(path: string, what: string): Buffer {
  const hex = readFile(path, what).toString('utf8').trim();
  if (!/^[0-9a-f]{64}$/.test(hex)) throw new Error(`${path}: not a 32-byte hex key`);
  return Buffer.from(hex, 'hex');
}

/**
 * The meter's key-encryption key (unwraps the key transfers of `provision rotate`).
 * @example
 * ```ts
 * const kek = loadMeterKek(dir, '534d520000000001');
 * ```
 */
export function loadMeterKek(dir: string, meter: string): Buffer {
  return loadHexKey(meterPath(dir, meter, 'kek'), `KEK of meter ${meter}`);
}

/**
 * Path of the latest key transfer `provision rotate` made for a meter (the CBOR message for its line).
 * @example
 * ```ts
 * meter.acceptKeyTransfer(readFileSync(meterTransferPath(dir, id)));
 * ```
 */
export function meterTransferPath(dir: string, meter: string): string {
  return meterPath(dir, meter, 'transfer');
}

/**
 * The meter's own AES-256 key.
 * @example
 * ```ts
 * const key = loadMeterKey(dir, '534d520000000001');
 * ```
 */
export function loadMeterKey(dir: string, meter: string): Buffer {
  return loadHexKey(meterPath(dir, meter, 'key'), `key of meter ${meter}`);
}

/**
 * The household stream key a meter of an end-to-end key set seals its household's stream with
 * (`meters/<id>.stream`, written by `provision --e2e` into the meter's own material only; docs/protocol.md §11.5).
 * @example
 * ```ts
 * const streamKey = loadMeterStreamKey(dir, '534d520000000001');
 * ```
 */
export function loadMeterStreamKey(dir: string, meter: string): Buffer {
  return loadHexKey(meterPath(dir, meter, 'stream'), `household stream key of meter ${meter}`);
}

/**
 * Everything the PES needs: its RSA key, the unwrapped meter keys, its Paillier key, the MDMS public key and
 * the household public keys known at provisioning. With `{ e2e: true }`, the PES's share of the Paillier
 * secret instead of the key (an end-to-end key set has no Paillier private key); each mode refuses the other's
 * key set with a message that names it.
 * @example
 * ```ts
 * const keys = loadPesKeys(dir);
 * const e2e = loadPesKeys(dir, { e2e: true }); // e2e.paillierShare
 * ```
 */
export function loadPesKeys(dir: string, options?: { e2e?: false }): PesKeys;
export function loadPesKeys(dir: string, options: { e2e: true }): PesE2eKeys;
export function loadPesKeys(dir: string, options: { e2e?: boolean } = {}): PesKeys | PesE2eKeys {
  const mode = keySetMode(dir);
  if (mode === 'e2e' && !options.e2e) throw new Error(`${dir} is an end-to-end key set (provision --e2e): the PES holds a share of the Paillier secret, not the key; run it in the end-to-end mode`);
  if (mode === 'classic' && options.e2e) throw new Error(`${dir} is a classic key set (pes/paillier.key): provision with --e2e for the end-to-end mode`);
  const rsa = loadPrivatePem(join(dir, 'pes/pes.key.pem'), 'PES private key');
  const { meterKeys, meterRotations } = unwrapMeterKeys(readWrappedMeterKeys(dir), rsa);
  // The KEKs stay wrapped: the PES holds them as this system's head-end, but deciphers frames with the keys only.
  const paillierPath = join(dir, PES_PAILLIER_KEY);
  const paillier = mode === 'classic' ? decodePrivateKey(openBlob(readFile(paillierPath, 'Paillier key'), paillierPath)) : undefined;
  const paillierShare = mode === 'e2e' ? loadShare(dir, PES_PAILLIER_PUBLIC, PES_PAILLIER_SHARE, 'pes') : undefined;
  const mdmsPublic = createPublicKey(readFile(join(dir, 'pes/mdms.pub.pem'), 'MDMS public key'));
  const householdPublic = new Map<string, KeyObject>();
  const hhDir = join(dir, 'pes/households');
  if (existsSync(hhDir)) {
    for (const hh of loadFleet(dir).households) {
      const p = join(hhDir, `${hh}.pub.pem`);
      if (existsSync(p)) householdPublic.set(hh, createPublicKey(readFileSync(p)));
    }
  }
  const bindingPath = join(dir, PES_BINDING_KEYS);
  const bindingKeys = new Map<string, Uint8Array>();
  if (existsSync(bindingPath)) {
    const b = cborDecode(openBlob(readFile(bindingPath, 'binding keys'), bindingPath)) as { version?: number; keys?: Record<string, Uint8Array> };
    if (b?.version !== 1 || typeof b.keys !== 'object' || b.keys === null) throw new Error(`${bindingPath}: not a version-1 key file`);
    for (const [hh, k] of Object.entries(b.keys)) if (k instanceof Uint8Array && k.length === 32) bindingKeys.set(hh, k);
  }
  const signer = loadPrivatePem(join(dir, PES_SIGNING_KEY), 'PES signing key');
  const common = { rsa, signer, bindingKeys, meterKeys, meterRotations, mdmsPublic, householdPublic };
  return paillierShare ? { ...common, paillierShare } : { ...common, paillier: paillier! };
}

function unwrapMeterKeys(blob: WrappedMeterKeys, rsa: KeyObject): { meterKeys: Map<string, Buffer>; meterRotations: Map<string, Buffer[]> } {
  const meterKeys = new Map<string, Buffer>();
  for (const [id, w] of Object.entries(blob.keys)) meterKeys.set(id, unwrapKey(rsa, w));
  const meterRotations = new Map<string, Buffer[]>();
  for (const [id, list] of Object.entries(blob.rotations ?? {})) meterRotations.set(id, list.map((w) => unwrapKey(rsa, w)));
  return { meterKeys, meterRotations };
}

/** A Paillier share file (sealed when a passphrase is set) under the public key file beside it, for `party` only. */
function loadShare(dir: string, pubFile: string, shareFile: string, party: Party): DecryptionShare {
  const pub = loadPaillierPublic(join(dir, pubFile));
  const path = join(dir, shareFile);
  const bytes = openBlob(readFile(path, `Paillier share of the ${party}`), path);
  try {
    return decodeShare(pub, bytes, party);
  } catch (e) {
    throw new Error(`${path}: ${(e as Error).message}`);
  } finally {
    bytes.fill(0);
  }
}

function loadPaillierPublic(path: string): PublicKey {
  try {
    return decodePublicKey(readFile(path, 'Paillier public key'));
  } catch (e) {
    throw new Error(`${path}: ${(e as Error).message}`);
  }
}

/** Where the Paillier key material lives in a key set (classic: the key; end-to-end: shares and public keys). */
export const PES_PAILLIER_KEY = 'pes/paillier.key';
export const PES_PAILLIER_SHARE = 'pes/paillier.share';
export const PES_PAILLIER_PUBLIC = 'pes/paillier.pub';
export const METER_PAILLIER_PUBLIC = 'meters/paillier.pub';
/** The guardian's key directory inside a key set, and its files (relative to that directory). */
export const GUARDIAN_DIR = 'guardian';
export const GUARDIAN_FILES = {
  share: 'paillier.share',
  paillierPublic: 'paillier.pub',
  rsa: 'guardian.key.pem',
  rsaPublic: 'guardian.pub.pem',
  meterKeys: 'meter-keys.cbor',
  signer: 'guardian-sign.key.pem',
  mdmsPublic: 'mdms.pub.pem',
} as const;
/** The guardian's Ed25519 public key, at the top of the key set (beside pes-sign.pub.pem). */
export const GUARDIAN_VERIFY_KEY = 'guardian-sign.pub.pem';

/**
 * Which mode a key set was provisioned for: `classic` (the PES holds the Paillier key) or `e2e` (the PES and
 * the guardian each hold a share). Throws when the key set has neither.
 * @example
 * ```ts
 * if (keySetMode(dir) === 'e2e') startGuardian(join(dir, GUARDIAN_DIR));
 * ```
 */
export function keySetMode(dir: string): 'classic' | 'e2e' {
  if (existsSync(join(dir, PES_PAILLIER_KEY))) return 'classic';
  if (existsSync(join(dir, PES_PAILLIER_SHARE))) return 'e2e';
  if (!existsSync(dir)) throw new Error(`${dir}: no such key set (make one with: smartermeter provision --fleet <file> --out ${dir})`);
  throw new Error(`${dir}: no Paillier key material (neither ${PES_PAILLIER_KEY} nor ${PES_PAILLIER_SHARE}): not a key set`);
}

/**
 * Everything the guardian needs, from its own key directory (`<keys>/guardian`, which it may hold alone): its
 * Paillier share, the meter keys it checks uplinks with, its signing key and the MDMS public key. Its fleet is
 * `loadFleet(dir)`, its broker credentials `loadCredentials(dir, 'guardian')`.
 * @example
 * ```ts
 * const keys = loadGuardianKeys('keys/guardian');
 * const partial = partialDecrypt(keys.paillierShare, aggregate);
 * ```
 */
export function loadGuardianKeys(dir: string): GuardianKeys {
  const rsa = loadPrivatePem(join(dir, GUARDIAN_FILES.rsa), 'guardian private key');
  const { meterKeys, meterRotations } = unwrapMeterKeys(readWrappedMeterKeys(dir, GUARDIAN_FILES.meterKeys), rsa);
  const paillierShare = loadShare(dir, GUARDIAN_FILES.paillierPublic, GUARDIAN_FILES.share, 'guardian');
  const signer = loadPrivatePem(join(dir, GUARDIAN_FILES.signer), 'guardian signing key');
  const mdmsPublic = createPublicKey(readFile(join(dir, GUARDIAN_FILES.mdmsPublic), 'MDMS public key'));
  return { paillierShare, meterKeys, meterRotations, signer, mdmsPublic };
}

/**
 * The public key the guardian's meter keys are wrapped to (what `provision rotate` wraps a new meter key to
 * in an end-to-end key set), or undefined when the key set has no guardian.
 * @example
 * ```ts
 * const g = loadGuardianPublicKey(dir); // KeyObject | undefined
 * ```
 */
export function loadGuardianPublicKey(dir: string): KeyObject | undefined {
  const path = join(dir, GUARDIAN_DIR, GUARDIAN_FILES.rsaPublic);
  return existsSync(path) ? createPublicKey(readFile(path, 'guardian public key')) : undefined;
}

/**
 * The Paillier public key a meter encrypts its interval energy under in the end-to-end mode.
 * @example
 * ```ts
 * const pub = loadMeterPaillierKey(dir);
 * const c = pub.encrypt(layout.pack([wh, whBand1, whBand2]));
 * ```
 */
export function loadMeterPaillierKey(dir: string): PublicKey {
  return loadPaillierPublic(join(dir, METER_PAILLIER_PUBLIC));
}

/**
 * The guardian's Ed25519 public key (public, at the top of the key set): verifies its partial decryptions.
 * @example
 * ```ts
 * const guardianKey = loadGuardianVerifyKey(dir);
 * ```
 */
export function loadGuardianVerifyKey(dir: string): KeyObject {
  const path = join(dir, GUARDIAN_VERIFY_KEY);
  const key = createPublicKey(readFile(path, 'guardian signature key'));
  if (key.asymmetricKeyType !== 'ed25519') throw new Error(`${path}: not an Ed25519 public key`);
  return key;
}

/** Where the PES's signing key and its public half live in a key set. */
export const PES_SIGNING_KEY = 'pes/pes-sign.key.pem';
export const PES_VERIFY_KEY = 'pes-sign.pub.pem';

/**
 * The PES's Ed25519 public key, which every receiver of a seal verifies with (public, at the top of the key
 * set like fleet.json).
 * @example
 * ```ts
 * openAggregate(loadMdmsKey(dir), topic, payload, loadPesVerifyKey(dir));
 * ```
 */
export function loadPesVerifyKey(dir: string): KeyObject {
  const path = join(dir, PES_VERIFY_KEY);
  let key: KeyObject;
  try {
    key = createPublicKey(readFile(path, 'PES signature key'));
  } catch (e) {
    throw new Error(`cannot load the PES signature key from ${path}: ${(e as Error).message}`);
  }
  if (key.asymmetricKeyType !== 'ed25519') throw new Error(`${path}: not an Ed25519 public key`);
  return key;
}

/**
 * The PES's public RSA key, derived from its private key (what `provision rotate` wraps a new meter key to).
 * @example
 * ```ts
 * wrapKey(loadPesPublicKey(dir), newKey);
 * ```
 */
export function loadPesPublicKey(dir: string): KeyObject {
  return createPublicKey(loadPrivatePem(join(dir, 'pes/pes.key.pem'), 'PES private key'));
}

/** Where the PES's household binding keys live in a key set. */
export const PES_BINDING_KEYS = 'pes/binding-keys.cbor';

/** The MDMS RSA private key. */
export function loadMdmsKey(dir: string): KeyObject {
  return loadPrivatePem(join(dir, 'mdms/mdms.key.pem'), 'MDMS private key');
}

/** A household's private key (present only when provisioned with household keys). */
export function loadHouseholdKey(dir: string, household: string): KeyObject {
  topicId(household, 'household');
  return loadPrivatePem(join(dir, 'households', `${household}.key.pem`), `key of household ${household}`);
}

/**
 * A component's broker credentials.
 * @example
 * ```ts
 * const { username, password } = loadCredentials(dir, 'pes');
 * ```
 */
export function loadCredentials(dir: string, username: string): { username: string; password: string } {
  const path = join(dir, 'credentials', `${username}.json`);
  const c = JSON.parse(readFile(path, `credentials of ${username}`).toString('utf8')) as { username?: unknown; password?: unknown };
  if (c.username !== username || typeof c.password !== 'string') throw new Error(`${path}: malformed credentials`);
  return { username, password: c.password };
}

/** Mosquitto's files in a key set (provision/mosquitto.ts), relative to the key directory. */
export const MOSQUITTO_PASSWD = 'broker/mosquitto/passwd';
export const MOSQUITTO_ACL = 'broker/mosquitto/acl';
export const MOSQUITTO_CONF = 'broker/mosquitto/mosquitto.conf';
export const MOSQUITTO_DATA = 'broker/mosquitto/data';

/**
 * The NATS cluster's users and permissions in a key set (provision/nats.ts), relative to the key directory;
 * every node's configuration includes it (`smartermeter cluster up --keys`).
 */
export const NATS_ACCOUNTS = 'nats/accounts.conf';
/** Written instead of {@link NATS_ACCOUNTS} when the fleet cannot run on NATS 2.9's MQTT: says why. */
export const NATS_ACCOUNTS_SKIPPED = 'nats/accounts.conf.skipped';

/** Path of the broker's users file. */
export function brokerUsersPath(dir: string): string {
  return join(dir, 'broker/users.json');
}
