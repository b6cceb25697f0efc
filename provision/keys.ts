/**
 * Provisioning: creates the key set of a fleet (its layout and loaders are lib/keyset.ts).
 * @module
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import { userInfo } from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { buildAcl } from '../protocol/acl.js';
import { cborEncode } from '../protocol/cbor.js';
import { ACTIVATION_DERIVATION, activationKdfInputs, activationMasterInputs, BINDING_SCRYPT, expandActivationMaster, type ActivationDerivation } from '../protocol/household-key.js';
import { meterId, systemTitle } from '../protocol/frame.js';
import { encodePrivateKey, encodePublicKey, encodeShare, generatePaillier, splitKey, type PrivateKey } from '../protocol/paillier/engine.js';
import { wrapKey } from '../protocol/seal.js';
import { topicId } from '../protocol/topics.js';
import { derive, hashRandomSecret } from '../lib/password.js';
import { MAX_PACKET_BYTES } from '../protocol/acl.js';
import { mosquittoAcl, mosquittoConf, mosquittoPasswd } from './mosquitto.js';
import {
  GUARDIAN_DIR,
  GUARDIAN_FILES,
  GUARDIAN_VERIFY_KEY,
  METER_PAILLIER_PUBLIC,
  MOSQUITTO_ACL,
  ACTIVATION_FILE_VERSION,
  MOSQUITTO_CONF,
  MOSQUITTO_DATA,
  MOSQUITTO_PASSWD,
  NATS_ACCOUNTS,
  NATS_ACCOUNTS_SKIPPED,
  PES_BINDING_KEYS,
  PES_METER_KEYS,
  PES_PAILLIER_KEY,
  PES_PAILLIER_PUBLIC,
  PES_PAILLIER_SHARE,
  PES_SIGNING_KEY,
  PES_VERIFY_KEY,
  privatePem,
  readFile,
  sealBlob,
  writePublic,
  writeSecret,
  type Fleet,
  type FleetMeter,
} from '../lib/keyset.js';
import { natsAccounts } from './nats.js';

const MANUFACTURER = 'SMR';

/**
 * Parses a fleet CSV (`meter,household,neighbourhood,source`; `source` relative to the file,
 * `synthetic:<seed>[:pv=<kWp>]`, or `p1:<capture file or serial device>`). Errors name the file and line.
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
    if (/^synthetic:\d{1,10}(:pv=\d{1,3}(\.\d{1,2})?)?$/.test(src)) source = src; // firmware/sources/synthetic.ts parseSyntheticSource
    else if (src.startsWith('synthetic:')) throw new Error(`${where}: synthetic source must be synthetic:<integer seed> or synthetic:<seed>:pv=<kWp>`);
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

/** The account running provision, for Mosquitto's `user` line; undefined when it has no name (a bare uid in a container). */
function currentUser(): string | undefined {
  try {
    const name = userInfo().username;
    return /^[A-Za-z0-9_.][A-Za-z0-9_.-]*$/.test(name) ? name : undefined;
  } catch {
    return undefined;
  }
}

export interface ProvisionOptions {
  fleetCsv: string;
  out: string;
  paillierBits?: number;
  rsaBits?: number;
  /** Also generate household key pairs (for `ucs watch`, the HA bridge and tests). */
  householdKeys?: boolean;
  /**
   * End-to-end mode (docs/paillier.md "Two-party threshold decryption"): split the Paillier secret between
   * the PES (`pes/paillier.share`) and the guardian (`guardian/`, its own key directory), write no Paillier
   * private key anywhere, give the meters the public key, and add the `guardian` broker user.
   */
  e2e?: boolean;
  /** The Mosquitto listener written into `broker/mosquitto/mosquitto.conf` (provision/mosquitto.ts). */
  mosquitto?: { port?: number; wsPort?: number; host?: string; persistenceDir?: string; tls?: { cert: string; key: string } };
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
  // Mosquitto's configuration first: a bad listener option fails before any key is made.
  const abs = resolve(out);
  const m = opts.mosquitto ?? {};
  const persistenceDir = resolve(m.persistenceDir ?? join(abs, MOSQUITTO_DATA));
  const mosquittoConfText = mosquittoConf({
    passwordFile: join(abs, MOSQUITTO_PASSWD),
    aclFile: join(abs, MOSQUITTO_ACL),
    persistenceDir,
    meters: rows.length,
    port: m.port,
    wsPort: m.wsPort,
    host: m.host,
    tls: m.tls && { cert: resolve(m.tls.cert), key: resolve(m.tls.key) },
    maxPacketBytes: MAX_PACKET_BYTES,
    // Started by root, Mosquitto would switch to the `mosquitto` account, which cannot read these 0600 files.
    user: currentUser(),
  });
  mkdirSync(out, { recursive: true, mode: 0o700 });

  const rsa = () => generateKeyPairSync('rsa', { modulusLength: rsaBits });
  const pes = rsa();
  const mdms = rsa();
  writeSecret(join(out, 'pes/pes.key.pem'), privatePem(pes.privateKey));
  writeSecret(join(out, 'mdms/mdms.key.pem'), privatePem(mdms.privateKey));
  const mdmsPub = mdms.publicKey.export({ type: 'spki', format: 'pem' }) as string;
  writePublic(join(out, 'mdms/mdms.pub.pem'), mdmsPub);
  writePublic(join(out, 'pes/mdms.pub.pem'), mdmsPub);
  const signing = generateKeyPairSync('ed25519');
  writeSecret(join(out, PES_SIGNING_KEY), privatePem(signing.privateKey));
  writePublic(join(out, PES_VERIFY_KEY), signing.publicKey.export({ type: 'spki', format: 'pem' }) as string);
  const paillier = await generatePaillier(paillierBits);
  const guardianRsa = opts.e2e ? rsa() : undefined;
  if (opts.e2e) await writeShares(out, paillier, mdmsPub);
  else writeSecret(join(out, PES_PAILLIER_KEY), sealBlob(encodePrivateKey(paillier)));

  const meters: FleetMeter[] = [];
  const wrapped: Record<string, Uint8Array> = {};
  const keks: Record<string, Uint8Array> = {};
  const guardianWrapped: Record<string, Uint8Array> = {};
  rows.forEach((r, i) => {
    const id = meterId(systemTitle(MANUFACTURER, i + 1));
    for (const [ext, into] of [['key', wrapped], ['kek', keks]] as const) {
      const key = randomBytes(32);
      writeSecret(join(out, 'meters', `${id}.${ext}`), key.toString('hex'));
      into[id] = wrapKey(pes.publicKey, key);
      // The guardian checks uplinks (GCM) with the meter keys; it never needs a KEK.
      if (guardianRsa && ext === 'key') guardianWrapped[id] = wrapKey(guardianRsa.publicKey, key);
      key.fill(0);
    }
    meters.push({ meter: id, label: r.label, household: r.household, neighbourhood: r.neighbourhood, gateway: `gw-${r.neighbourhood}`, source: r.source });
  });
  writeSecret(join(out, PES_METER_KEYS), cborEncode({ version: 1, keys: wrapped, keks, rotations: {} }));
  if (guardianRsa) {
    const g = join(out, GUARDIAN_DIR);
    writeSecret(join(g, GUARDIAN_FILES.rsa), privatePem(guardianRsa.privateKey));
    writePublic(join(g, GUARDIAN_FILES.rsaPublic), guardianRsa.publicKey.export({ type: 'spki', format: 'pem' }) as string);
    writeSecret(join(g, GUARDIAN_FILES.meterKeys), cborEncode({ version: 1, keys: guardianWrapped, rotations: {} }));
  }

  const uniq = (xs: string[]) => [...new Set(xs)].sort();
  const fleet: Fleet = {
    version: 1,
    meters,
    gateways: uniq(meters.map((m) => m.gateway)),
    households: uniq(meters.map((m) => m.household)),
    neighbourhoods: uniq(meters.map((m) => m.neighbourhood)),
  };

  const codes: Record<string, string> = {};
  const bindingKeys: Record<string, Uint8Array> = {};
  const streamKeys: Record<string, Uint8Array> = {};
  const pretty = new Map(fleet.households.map((hh) => [hh, activationCode()]));
  const derived = await inParallel(fleet.households, (hh) => codeSecrets(pretty.get(hh)!, hh, opts.e2e === true));
  for (const [i, hh] of fleet.households.entries()) {
    writeSecret(join(out, 'households', `${hh}.activation`), pretty.get(hh)! + '\n');
    const d = derived[i]!;
    // The household app's server sees only the browser's verifier of the code, never the code (ucs/README.md). The
    // verifier is a 256-bit output of scrypt (and HKDF): its stored MAC needs no second slow KDF (lib/password.ts).
    codes[hh] = hashRandomSecret(Buffer.from(d.verifier).toString('base64url'));
    d.verifier.fill(0);
    bindingKeys[hh] = d.binding;
    if (d.stream) streamKeys[hh] = d.stream;
    if (opts.householdKeys) {
      const kp = generateKeyPairSync('rsa', { modulusLength: 2048 });
      writeSecret(join(out, 'households', `${hh}.key.pem`), privatePem(kp.privateKey));
      writePublic(join(out, 'pes/households', `${hh}.pub.pem`), kp.publicKey.export({ type: 'spki', format: 'pem' }) as string);
    }
  }
  // Version 3: verifiers of derivation 2 (ucs/activation.ts).
  writeSecret(join(out, 'ucs/activation.json'), JSON.stringify({ version: ACTIVATION_FILE_VERSION[ACTIVATION_DERIVATION], codes }, null, 2));
  if (opts.e2e) {
    // Each meter seals its household's stream under a key derived from the household's activation code
    // (docs/protocol.md §11.5): it goes into the meter's own material only, never to the PES, guardian, MDMS or UCS.
    for (const m of meters) writeSecret(join(out, 'meters', `${m.meter}.stream`), Buffer.from(streamKeys[m.household]!).toString('hex'));
    for (const key of Object.values(streamKeys)) key.fill(0);
  }
  // The PES checks a household's first key binding with these; the household app's server never sees them.
  writeSecret(join(out, PES_BINDING_KEYS), sealBlob(cborEncode({ version: 1, keys: bindingKeys })));

  const acl = buildAcl(fleet, { e2e: opts.e2e });
  const users: Record<string, { scrypt: string; publish: string[]; subscribe: string[] }> = {};
  const passwords: Record<string, string> = {};
  for (const [name, rule] of Object.entries(acl)) {
    // 144 random bits: a MAC verifier, not a slow KDF (lib/password.ts says why).
    const password = randomBytes(18).toString('base64url');
    users[name] = { scrypt: hashRandomSecret(password), ...rule };
    passwords[name] = password;
    // The guardian's credentials live in its own key directory, with the rest of what it holds.
    writeSecret(join(out, name === 'guardian' ? GUARDIAN_DIR : '', 'credentials', `${name}.json`), JSON.stringify({ username: name, password }) + '\n');
  }
  writeSecret(join(out, 'broker/users.json'), JSON.stringify({ version: 1, users }, null, 2));
  // The same users and rules for Mosquitto 2.x (`mosquitto -c <out>/broker/mosquitto/mosquitto.conf`).
  mkdirSync(persistenceDir, { recursive: true, mode: 0o700 });
  writeSecret(join(out, MOSQUITTO_PASSWD), mosquittoPasswd(passwords));
  writeSecret(join(out, MOSQUITTO_ACL), mosquittoAcl(acl));
  writeSecret(join(out, MOSQUITTO_CONF), mosquittoConfText);
  if (opts.e2e) writePublic(join(out, GUARDIAN_DIR, 'fleet.json'), JSON.stringify(fleet, null, 2) + '\n');
  // And for a NATS cluster (`smartermeter cluster up --keys <out>`), unless an id cannot be a NATS subject token.
  let nats: string | undefined;
  try {
    nats = natsAccounts(acl, passwords);
  } catch (e) {
    writePublic(join(out, NATS_ACCOUNTS_SKIPPED), `${NATS_ACCOUNTS} was not written: ${(e as Error).message}\n`);
  }
  if (nats !== undefined) writeSecret(join(out, NATS_ACCOUNTS), nats);
  writePublic(join(out, 'fleet.json'), JSON.stringify(fleet, null, 2) + '\n');
  return fleet;
}

/** A new activation code, `XXXX-XXXX-XXXX` from A-Z0-9 (protocol/household-key.ts `normaliseCode`). */
function activationCode(): string {
  const code = randomBytes(10).toString('base64url').toUpperCase().replace(/[^A-Z0-9]/g, 'X').slice(0, 12);
  return code.match(/.{4}/g)!.join('-');
}

/**
 * `fn` over `items`, as many at once as libuv's threadpool has threads (UV_THREADPOOL_SIZE, default 4) twice
 * over: the scrypts run there, one per core, and a bounded queue keeps 100,000 households from holding 100,000
 * pending derivations in memory at once (a gigabyte when they were all queued). Results in `items`' order.
 */
async function inParallel<T, R>(items: readonly T[], fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const lanes = 2 * (Number(process.env.UV_THREADPOOL_SIZE) || 4);
  const lane = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(lanes, items.length) }, lane));
  return out;
}

/**
 * The values derived from a household's activation code under `derivation` (protocol/household-key.ts: verifier,
 * binding key, and with `e2e` the meter stream key), the same bytes as that module's `activationSecrets` but
 * with Node's native scrypt on the threadpool: the pure-JavaScript scrypt the browser needs took ~90 ms on the
 * main thread, the native one ~40 ms and several at once. Derivation 2 (what {@link provision} writes) runs one
 * scrypt and the module's HKDF step; derivation 1 (key sets provisioned before) ran one scrypt per value, and
 * is kept for measuring against (bench/activation.ts).
 * @example
 * ```ts
 * const { verifier, binding, stream } = await codeSecrets('ABCD-EFGH-JKLM', 'hh1', true);
 * ```
 */
export async function codeSecrets(code: string, household: string, e2e: boolean, derivation: ActivationDerivation = ACTIVATION_DERIVATION): Promise<{ verifier: Uint8Array; binding: Uint8Array; stream?: Uint8Array }> {
  const { N, r, p, dkLen } = BINDING_SCRYPT;
  if (derivation === 2) {
    const { code: bytes, salt } = activationMasterInputs(code, household);
    const { verifier, binding, stream } = expandActivationMaster(await derive(bytes, { N, r, p, salt }, dkLen));
    if (e2e) return { verifier, binding, stream };
    stream.fill(0);
    return { verifier, binding };
  }
  const { code: bytes, salts } = activationKdfInputs(code, household);
  const kdf = (salt: Uint8Array) => derive(bytes, { N, r, p, salt }, dkLen);
  const [verifier, binding, stream] = await Promise.all([kdf(salts.verifier), kdf(salts.binding), e2e ? kdf(salts.stream) : undefined]);
  return { verifier, binding, ...(stream ? { stream } : {}) };
}

/**
 * The dealer's step of the end-to-end mode: splits `key` into the PES's and the guardian's shares, writes each
 * into its holder's folder with the public key (and the public key for the meters), and destroys the key, so
 * that no file and, as far as JavaScript allows, no memory of provisioning holds the whole secret.
 */
async function writeShares(out: string, key: PrivateKey, mdmsPub: string): Promise<void> {
  try {
    const shares = splitKey(key);
    const pub = encodePublicKey(key);
    const files = {
      pes: [PES_PAILLIER_SHARE, PES_PAILLIER_PUBLIC],
      guardian: [join(GUARDIAN_DIR, GUARDIAN_FILES.share), join(GUARDIAN_DIR, GUARDIAN_FILES.paillierPublic)],
    } as const;
    for (const party of ['pes', 'guardian'] as const) {
      const bytes = encodeShare(shares[party]);
      writeSecret(join(out, files[party][0]), sealBlob(bytes));
      bytes.fill(0);
      writePublic(join(out, files[party][1]), pub);
    }
    writePublic(join(out, METER_PAILLIER_PUBLIC), pub);
    writePublic(join(out, GUARDIAN_DIR, GUARDIAN_FILES.mdmsPublic), mdmsPub);
    const signing = generateKeyPairSync('ed25519');
    writeSecret(join(out, GUARDIAN_DIR, GUARDIAN_FILES.signer), privatePem(signing.privateKey));
    writePublic(join(out, GUARDIAN_VERIFY_KEY), signing.publicKey.export({ type: 'spki', format: 'pem' }) as string);
  } finally {
    await key.destroy();
  }
}

