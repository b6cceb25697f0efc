/**
 * Provisioning: the key set of a fleet, and the loaders each component uses to read its part of it.
 *
 * Layout of a key directory (every secret file mode 0600, directories 0700):
 * ```
 * fleet.json                      public: meters (system titles), households, neighbourhoods, gateways, sources
 * meters/<meter>.key              the meter's AES-256 key (hex) — the meter's own secret
 * pes/pes.key.pem                 PES RSA private key (PKCS#8; encrypted when SM_KEY_PASSPHRASE is set)
 * pes/meter-keys.cbor             every meter key wrapped to the PES key with RSA-OAEP-SHA-256
 * pes/paillier.key                PES Paillier private key (engine serialisation; encrypted with the passphrase when set)
 * pes/mdms.pub.pem                the MDMS public key the PES seals aggregates to
 * pes/households/<hh>.pub.pem     household public keys known at provisioning (optional)
 * mdms/mdms.key.pem               MDMS RSA private key
 * households/<hh>.key.pem         household private key (only with --household-keys: for `ucs watch` and tests)
 * households/<hh>.activation      the household's one-time activation code
 * ucs/activation.json             scrypt hashes of the activation codes (what the UCS server checks)
 * broker/users.json               broker users: scrypt password hashes and topic ACLs
 * credentials/<user>.json         each component's broker username/password
 * ```
 * @module
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, scryptSync, type KeyObject } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { cborDecode, cborEncode } from '../protocol/cbor.js';
import { gcmDecrypt, gcmEncrypt } from '../protocol/aead.js';
import { meterId, systemTitle } from '../protocol/frame.js';
import { topicId } from '../protocol/topics.js';
import { unwrapKey, wrapKey } from '../protocol/seal.js';
import { decodePrivateKey, encodePrivateKey, generatePaillier, type PaillierPrivate } from '../protocol/paillier/engine.js';
import { buildAcl, hashPassword } from '../broker/users.js';

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
  meterKeys: Map<string, Buffer>;
  paillier: PaillierPrivate;
  mdmsPublic: KeyObject;
  householdPublic: Map<string, KeyObject>;
}

const MANUFACTURER = 'SMR';

/** The passphrase that encrypts private keys at rest, if the operator set one. */
function passphrase(): string | undefined {
  const p = process.env.SM_KEY_PASSPHRASE;
  return p && p.length > 0 ? p : undefined;
}

function writeSecret(path: string, data: string | Uint8Array): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  writeFileSync(path, data, { mode: 0o600 });
  chmodSync(path, 0o600);
}

function writePublic(path: string, data: string | Uint8Array): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  writeFileSync(path, data, { mode: 0o644 });
}

function readFile(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new Error(`cannot read ${what} at ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

function privatePem(key: KeyObject): string {
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
function sealBlob(data: Uint8Array): Uint8Array {
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
 * Parses a fleet CSV (`meter,household,neighbourhood,source`; `source` relative to the file,
 * `synthetic:<seed>`, or `p1:<capture file or serial device>`). Errors name the file and line.
 * @example
 * ```ts
 * parseFleetCsv('data/sample/fleet.csv');
 * ```
 */
export function parseFleetCsv(path: string): Omit<FleetMeter, 'meter' | 'gateway'>[] {
  const text = readFile(path, 'fleet file').toString('utf8');
  const lines = text.split(/\r?\n/);
  const header = lines[0]?.trim();
  if (header !== 'meter,household,neighbourhood,source') {
    throw new Error(`${path}:1: header must be exactly "meter,household,neighbourhood,source"`);
  }
  const out: Omit<FleetMeter, 'meter' | 'gateway'>[] = [];
  const seen = new Set<string>();
  lines.slice(1).forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const where = `${path}:${i + 2}`;
    const cols = line.split(',');
    if (cols.length !== 4) throw new Error(`${where}: expected 4 columns, got ${cols.length}`);
    const [label, household, neighbourhood, src] = cols.map((c) => c.trim()) as [string, string, string, string];
    try {
      topicId(label, 'meter');
      topicId(household, 'household');
      topicId(neighbourhood, 'neighbourhood');
    } catch (e) {
      throw new Error(`${where}: ${(e as Error).message}`);
    }
    if (seen.has(label)) throw new Error(`${where}: duplicate meter ${label}`);
    seen.add(label);
    let source: string;
    if (/^synthetic:\d{1,10}$/.test(src)) source = src;
    else if (src.startsWith('synthetic:')) throw new Error(`${where}: synthetic source must be synthetic:<integer seed>`);
    else {
      const p1 = src.startsWith('p1:'); // p1:<capture file or serial device>, the path as for a CSV
      const file = p1 ? src.slice(3) : src;
      if (file === '') throw new Error(`${where}: p1 source must be p1:<capture file or serial device>`);
      const full = isAbsolute(file) ? file : resolve(dirname(path), file);
      if (!existsSync(full)) throw new Error(`${where}: source file not found: ${full}`);
      source = p1 ? `p1:${full}` : full;
    }
    out.push({ label, household, neighbourhood, source });
  });
  if (out.length === 0) throw new Error(`${path}: no meters`);
  return out;
}

export interface ProvisionOptions {
  fleetCsv: string;
  out: string;
  paillierBits?: number;
  rsaBits?: number;
  /** Also generate household key pairs (for `ucs watch`, the HA bridge and tests). */
  householdKeys?: boolean;
}

/**
 * Creates a complete key set for a fleet under `out`. Nothing secret is printed or logged.
 * @example
 * ```ts
 * const fleet = await provision({ fleetCsv: 'data/sample/fleet.csv', out: '/var/lib/smartermeter/keys' });
 * ```
 */
export async function provision(opts: ProvisionOptions): Promise<Fleet> {
  const { out, rsaBits = 3072, paillierBits = 2048 } = opts;
  if (![2048, 3072, 4096].includes(rsaBits)) throw new RangeError('rsaBits must be 2048, 3072 or 4096');
  if (existsSync(join(out, 'fleet.json'))) throw new Error(`${out} already holds a key set (fleet.json); refusing to overwrite`);
  const rows = parseFleetCsv(opts.fleetCsv);
  mkdirSync(out, { recursive: true, mode: 0o700 });

  const rsa = () => generateKeyPairSync('rsa', { modulusLength: rsaBits });
  const pes = rsa();
  const mdms = rsa();
  writeSecret(join(out, 'pes/pes.key.pem'), privatePem(pes.privateKey));
  writeSecret(join(out, 'mdms/mdms.key.pem'), privatePem(mdms.privateKey));
  const mdmsPub = mdms.publicKey.export({ type: 'spki', format: 'pem' }) as string;
  writePublic(join(out, 'mdms/mdms.pub.pem'), mdmsPub);
  writePublic(join(out, 'pes/mdms.pub.pem'), mdmsPub);
  const paillier = await generatePaillier(paillierBits);
  writeSecret(join(out, 'pes/paillier.key'), sealBlob(encodePrivateKey(paillier)));

  const meters: FleetMeter[] = [];
  const wrapped: Record<string, Uint8Array> = {};
  rows.forEach((r, i) => {
    const id = meterId(systemTitle(MANUFACTURER, i + 1));
    const key = randomBytes(32);
    writeSecret(join(out, 'meters', `${id}.key`), key.toString('hex'));
    wrapped[id] = wrapKey(pes.publicKey, key);
    key.fill(0);
    meters.push({ meter: id, label: r.label, household: r.household, neighbourhood: r.neighbourhood, gateway: `gw-${r.neighbourhood}`, source: r.source });
  });
  writeSecret(join(out, 'pes/meter-keys.cbor'), cborEncode({ version: 1, keys: wrapped }));

  const uniq = (xs: string[]) => [...new Set(xs)].sort();
  const fleet: Fleet = {
    version: 1,
    meters,
    gateways: uniq(meters.map((m) => m.gateway)),
    households: uniq(meters.map((m) => m.household)),
    neighbourhoods: uniq(meters.map((m) => m.neighbourhood)),
  };

  const codes: Record<string, string> = {};
  for (const hh of fleet.households) {
    const code = randomBytes(10).toString('base64url').toUpperCase().replace(/[^A-Z0-9]/g, 'X').slice(0, 12);
    const pretty = code.match(/.{4}/g)!.join('-');
    writeSecret(join(out, 'households', `${hh}.activation`), pretty + '\n');
    codes[hh] = hashPassword(pretty);
    if (opts.householdKeys) {
      const kp = generateKeyPairSync('rsa', { modulusLength: 2048 });
      writeSecret(join(out, 'households', `${hh}.key.pem`), privatePem(kp.privateKey));
      writePublic(join(out, 'pes/households', `${hh}.pub.pem`), kp.publicKey.export({ type: 'spki', format: 'pem' }) as string);
    }
  }
  writeSecret(join(out, 'ucs/activation.json'), JSON.stringify({ version: 1, codes }, null, 2));

  const acl = buildAcl(fleet);
  const users: Record<string, { scrypt: string; publish: string[]; subscribe: string[] }> = {};
  for (const [name, rule] of Object.entries(acl)) {
    const password = randomBytes(18).toString('base64url');
    users[name] = { scrypt: hashPassword(password), ...rule };
    writeSecret(join(out, 'credentials', `${name}.json`), JSON.stringify({ username: name, password }) + '\n');
  }
  writeSecret(join(out, 'broker/users.json'), JSON.stringify({ version: 1, users }, null, 2));
  writePublic(join(out, 'fleet.json'), JSON.stringify(fleet, null, 2) + '\n');
  return fleet;
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
 * The meter's own AES-256 key.
 * @example
 * ```ts
 * const key = loadMeterKey(dir, '534d520000000001');
 * ```
 */
export function loadMeterKey(dir: string, meter: string): Buffer {
  if (!/^[0-9a-f]{16}$/.test(meter)) throw new TypeError(`bad meter id ${meter}`);
  const path = join(dir, 'meters', `${meter}.key`);
  const hex = readFile(path, `key of meter ${meter}`).toString('utf8').trim();
  if (!/^[0-9a-f]{64}$/.test(hex)) throw new Error(`${path}: not a 32-byte hex key`);
  return Buffer.from(hex, 'hex');
}

/**
 * Everything the PES needs: its RSA key, the unwrapped meter keys, its Paillier key, the MDMS public key and
 * the household public keys known at provisioning.
 * @example
 * ```ts
 * const keys = loadPesKeys(dir);
 * ```
 */
export function loadPesKeys(dir: string): PesKeys {
  const rsa = loadPrivatePem(join(dir, 'pes/pes.key.pem'), 'PES private key');
  const blob = cborDecode(readFile(join(dir, 'pes/meter-keys.cbor'), 'wrapped meter keys')) as { version: number; keys: Record<string, Uint8Array> };
  if (blob?.version !== 1 || typeof blob.keys !== 'object') throw new Error(`${join(dir, 'pes/meter-keys.cbor')}: not a version-1 key file`);
  const meterKeys = new Map<string, Buffer>();
  for (const [id, w] of Object.entries(blob.keys)) meterKeys.set(id, unwrapKey(rsa, w));
  const paillierPath = join(dir, 'pes/paillier.key');
  const paillier = decodePrivateKey(openBlob(readFile(paillierPath, 'Paillier key'), paillierPath));
  const mdmsPublic = createPublicKey(readFile(join(dir, 'pes/mdms.pub.pem'), 'MDMS public key'));
  const householdPublic = new Map<string, KeyObject>();
  const hhDir = join(dir, 'pes/households');
  if (existsSync(hhDir)) {
    for (const hh of loadFleet(dir).households) {
      const p = join(hhDir, `${hh}.pub.pem`);
      if (existsSync(p)) householdPublic.set(hh, createPublicKey(readFileSync(p)));
    }
  }
  return { rsa, meterKeys, paillier, mdmsPublic, householdPublic };
}

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

/** Path of the broker's users file. */
export function brokerUsersPath(dir: string): string {
  return join(dir, 'broker/users.json');
}
