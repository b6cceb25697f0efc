/** Test fixtures for the household app: a provisioned key set, a broker, the UCS server, a known source series, a PES-like publisher. */
import { createPublicKey, type KeyObject } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import mqtt from 'mqtt';
import type { Page } from 'playwright-core';
import { pino, type Logger } from 'pino';
import { startBroker, type BrokerHandle } from '../../broker/broker.js';
import { loadUsers } from '../../lib/broker-users.js';
import { ImportRegister } from '../../firmware/register.js';
import { SyntheticModel } from '../../firmware/sources/synthetic.js';
import { cborDecode, cborEncode } from '../../protocol/cbor.js';
import type { ReadingBatch } from '../../protocol/reading.js';
import { newStreamKey, sealStream, type StreamKey } from '../../protocol/seal.js';
import { streamBody } from '../../protocol/stream.js';
import { topics } from '../../protocol/topics.js';
import { brokerUsersPath, loadCredentials, loadFleet, loadPesKeys, loadPesVerifyKey, PES_BINDING_KEYS, replaceSecret, sealBlob, type Fleet } from '../../lib/keyset.js';
import { hashRandomSecret } from '../../lib/password.js';
import { provision } from '../../provision/keys.js';
import { createPes } from '../../pes/pes.js';
import { startUcs, type UcsHandle, type UcsOptions } from '../../ucs/server.js';
import { b64u, fromB64u } from '../../ucs/web/bytes.js';
import { deriveSecrets, newKdfParams, type KdfParams } from '../../ucs/web/kdf.js';
import { activationBinding, generateHouseholdKey, openPrivateKey, packSecrets, sealPrivateKey, unpackSecrets } from '../../ucs/web/keys.js';
import { ACTIVATION_DERIVATION, activationDerivation, activationSecrets, activationSecretsSync, type ActivationDerivation } from '../../protocol/household-key.js';
import { importPesVerifyKey } from '../../ucs/web/seal.js';

/** A provisioned key set in a temp dir: households hh1 and hh2, one synthetic meter each. */
export interface KeySet {
  dir: string;
  keys: string;
  fleet: Fleet;
  code(hh: string): string;
  cleanup(): void;
}

export async function makeKeySet(opts: { householdKeys?: boolean } = {}): Promise<KeySet> {
  const dir = mkdtempSync(join(tmpdir(), 'sm-ucs-'));
  writeFileSync(join(dir, 'fleet.csv'), 'meter,household,neighbourhood,source\nm1,hh1,nb1,synthetic:11\nm2,hh2,nb1,synthetic:12\n');
  const keys = join(dir, 'keys');
  await provision({ fleetCsv: join(dir, 'fleet.csv'), out: keys, rsaBits: 2048, paillierBits: 1024, householdKeys: opts.householdKeys ?? false });
  return {
    dir,
    keys,
    fleet: loadFleet(keys),
    code: (hh) => readFileSync(join(keys, 'households', `${hh}.activation`), 'utf8').trim(),
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/**
 * Turns a freshly provisioned key set into one of derivation 1, as provisioning made them before derivation 2
 * (protocol/household-key.ts): the household app's server's file at version 2 holding MACs of the codes'
 * derivation-1 verifiers, and the PES's binding keys of derivation 1 (the codes stay). Returns `set`.
 * @example
 * ```ts
 * const old = asDerivation1(await makeKeySet());
 * ```
 */
export function asDerivation1(set: KeySet): KeySet {
  const codes: Record<string, string> = {};
  const bindingKeys: Record<string, Uint8Array> = {};
  for (const hh of set.fleet.households) {
    const { verifier, binding } = activationSecretsSync(set.code(hh), hh, 1);
    codes[hh] = hashRandomSecret(b64u(verifier));
    bindingKeys[hh] = binding;
  }
  replaceSecret(join(set.keys, 'ucs/activation.json'), JSON.stringify({ version: 2, codes }, null, 2));
  replaceSecret(join(set.keys, PES_BINDING_KEYS), sealBlob(cborEncode({ version: 1, keys: bindingKeys })));
  return set;
}

/**
 * Whether the real PES core, loaded from the key set's files as `smartermeter pes` loads them, accepts `binding`
 * (the household-key message the household app's server holds) for `household`: the activation MAC verifies only
 * under the binding key provisioning gave the PES, so this tells which derivation the browser used.
 * @example
 * ```ts
 * expect(await pesAcceptsBinding(stack.set, 'hh1', stack.ucs.db.account('hh1')!.binding!)).toBe(true);
 * ```
 */
export async function pesAcceptsBinding(set: KeySet, household: string, binding: Uint8Array): Promise<boolean> {
  const keys = loadPesKeys(set.keys);
  const meters = new Map(set.fleet.meters.map((m) => [m.meter, { key: keys.meterKeys.get(m.meter)!, household: m.household, neighbourhood: m.neighbourhood }]));
  const pes = createPes({ keys: { rsa: keys.rsa, signer: keys.signer, paillier: keys.paillier, mdmsPublic: keys.mdmsPublic, bindingKeys: keys.bindingKeys, meters }, k: 1, logger: pino({ level: 'silent' }) });
  try {
    return pes.householdKey(topics.householdKey(household), binding);
  } finally {
    await pes.close();
  }
}

/**
 * The broker users of a key set, with (default) or without `ucs` being allowed to subscribe to household
 * streams for its archive (broker/acl.ts grants it; `archiveAcl: false` plays a broker that does not).
 */
export function usersOf(keys: string, archiveAcl = true) {
  const users = loadUsers(brokerUsersPath(keys));
  const ucs = users.users.ucs!;
  ucs.subscribe = ucs.subscribe.filter((f) => f !== topics.householdStreamsAll);
  if (archiveAcl) ucs.subscribe.push(topics.householdStreamsAll);
  return users;
}

/** A pino logger whose lines are kept in memory (to search them). */
export function memoryLogger(level = 'debug'): { logger: Logger; text: () => string } {
  let text = '';
  const sink = new Writable({
    write(chunk, _enc, cb) {
      text += String(chunk);
      cb();
    },
  });
  return { logger: pino({ level }, sink), text: () => text };
}

export interface Stack {
  set: KeySet;
  broker: BrokerHandle;
  ucs: UcsHandle;
  dbPath: string;
  log: () => string;
  close(): Promise<void>;
}

/** Key set + broker (TCP and WebSocket) + UCS server. */
export async function startStack(opts: { archiveAcl?: boolean; ucs?: Partial<UcsOptions>; set?: KeySet } = {}): Promise<Stack> {
  const set = opts.set ?? (await makeKeySet());
  const broker = await startBroker({ users: usersOf(set.keys, opts.archiveAcl ?? true), port: 0, wsPort: 0, logger: pino({ level: 'silent' }) });
  const dbPath = join(set.dir, 'ucs.sqlite');
  const mem = memoryLogger();
  const ucs = await startUcs({ keysDir: set.keys, dbPath, brokerUrl: broker.url, brokerWsUrl: broker.wsUrl!, port: 0, logger: mem.logger, ...opts.ucs });
  await waitFor(() => ucs.link.client.connected && (opts.archiveAcl === false || ucs.link.archiving), 'UCS connected to the broker');
  return {
    set,
    broker,
    ucs,
    dbPath,
    log: mem.text,
    async close() {
      await ucs.close();
      await broker.close();
      if (!opts.set) set.cleanup();
    },
  };
}

export async function waitFor(cond: () => boolean | Promise<boolean>, what: string, timeoutMs = 15_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/**
 * The meter's readings from its synthetic source, exactly as firmware/ makes them: one reading per minute,
 * register integrated in mW·s (firmware/register.ts), in batches of `batch` readings.
 */
export function sourceBatches(seed: number, start: number, minutes: number, batch = 15, startWh = 1_234_567): ReadingBatch[] {
  const model = new SyntheticModel(seed);
  const reg = new ImportRegister(BigInt(startWh) * 3_600_000n);
  const out: ReadingBatch[] = [];
  for (let i = 0; i < minutes; i += batch) {
    const prevWh = reg.wh;
    const readings = [];
    for (let j = i; j < Math.min(minutes, i + batch); j++) {
      const time = start + j * 60;
      const { importWh, powerW } = reg.integrate(model.powerMilliW(time), 60);
      readings.push({ time, period: 60, importWh, powerW, status: 0 });
    }
    out.push({ prevWh, readings });
  }
  return out;
}

const midday = (t: number) => t % 86_400 >= 9 * 3600 && t % 86_400 < 15 * 3600;

/**
 * A prosumer's readings: {@link sourceBatches} with an export register that moves while `sunny` (default:
 * between 09:00 and 15:00 UTC): each such reading feeds in `(minute of the day % 7) + 1` Wh, so some windows
 * both import and export, and the batches go in the long form.
 */
export function prosumerBatches(seed: number, start: number, minutes: number, batch = 15, startWh = 1_234_567, startExportWh = 80_210, sunny: (t: number) => boolean = midday): ReadingBatch[] {
  let exportWh = startExportWh;
  return sourceBatches(seed, start, minutes, batch, startWh).map((b) => {
    const prevExportWh = exportWh;
    const readings = b.readings.map((r) => {
      const minute = Math.floor((r.time % 86_400) / 60);
      if (sunny(r.time)) exportWh += (minute % 7) + 1;
      return { ...r, exportWh };
    });
    return { prevWh: b.prevWh, prevExportWh, readings };
  });
}

/**
 * The key set's PES verify key (`pes-sign.pub.pem`) imported for the browser's {@link StreamOpener}, as the
 * app imports what `GET /api/pes-key` serves.
 */
export function webPesKey(keys: string): Promise<CryptoKey> {
  return importPesVerifyKey(loadPesVerifyKey(keys).export({ type: 'spki', format: 'der' }));
}

/**
 * Publishes stream messages as the PES does (pes/core/pes.ts `stream`): sealed per UTC-day epoch key, the epoch
 * signed with the key set's PES signing key, QoS 1.
 */
export class FakePes {
  private readonly keys = new Map<string, StreamKey>();
  private constructor(
    private readonly client: mqtt.MqttClient,
    private readonly signer: KeyObject,
  ) {}

  static async connect(brokerUrl: string, keys: string): Promise<FakePes> {
    const c = await mqtt.connectAsync(brokerUrl, { ...loadCredentials(keys, 'pes'), clientId: `pes-fake-${Math.random().toString(36).slice(2)}`, reconnectPeriod: 0 });
    return new FakePes(c, loadPesKeys(keys).signer);
  }

  /** The body of `batch` of `meter`, sealed to `pub` on the household's topic. */
  seal(hh: string, pub: KeyObject, meter: string, batch: ReadingBatch): Buffer {
    const epoch = Math.floor(batch.readings[0]!.time / 86400);
    const id = `${hh}:${epoch}:${pub.export({ type: 'spki', format: 'der' }).toString('hex').slice(-32)}`;
    const topic = topics.household(hh);
    let sk = this.keys.get(id);
    if (!sk) this.keys.set(id, (sk = newStreamKey(pub, epoch, topic, this.signer)));
    return sealStream(sk, topic, streamBody(meter, batch)); // the short form when nothing was exported, as the PES sends it
  }

  async publish(hh: string, pub: KeyObject, meter: string, batch: ReadingBatch): Promise<Buffer> {
    const payload = this.seal(hh, pub, meter, batch);
    await this.client.publishAsync(topics.household(hh), payload, { qos: 1 });
    return payload;
  }

  /** Publishes bytes as they are on a household's topic (a redelivery, or garbage). */
  async publishRaw(hh: string, payload: Uint8Array): Promise<void> {
    await this.client.publishAsync(topics.household(hh), Buffer.from(payload), { qos: 1 });
  }

  close(): Promise<void> {
    return this.client.endAsync();
  }
}

/** The household key the UCS published for `hh` (read back from the retained topic, as the PES does). */
export async function retainedHouseholdKey(brokerUrl: string, keys: string, hh: string): Promise<KeyObject> {
  const c = await mqtt.connectAsync(brokerUrl, { ...loadCredentials(keys, 'pes'), clientId: `pes-probe-${Math.random().toString(36).slice(2)}`, reconnectPeriod: 0 });
  try {
    const got = new Promise<Buffer>((resolve) => c.on('message', (t, p) => t === topics.householdKey(hh) && resolve(p)));
    await c.subscribeAsync(topics.householdKey(hh), { qos: 1 });
    const a = cborDecode(await got) as [number, string, Uint8Array];
    return createPublicKey({ key: Buffer.from(a[2]), format: 'der', type: 'spki' });
  } finally {
    await c.endAsync();
  }
}

/**
 * The body the browser posts to `/api/register/begin` for a typed code: the code's verifier under `derivation`
 * (the key set's; provisioning writes {@link ACTIVATION_DERIVATION}), never the code.
 * @example
 * ```ts
 * await x.call('POST', '/api/register/begin', await beginBody('hh2', 'AAAA-BBBB-CCCC'));
 * ```
 */
export async function beginBody(household: string, code: string, derivation: ActivationDerivation = ACTIVATION_DERIVATION): Promise<{ household: string; verifier: string }> {
  return { household, verifier: b64u((await activationSecrets(code, household, derivation)).verifier) };
}

/**
 * What the browser does, done in Node with the same modules (WebCrypto + @noble/hashes): a cookie jar and
 * the registration and login flows. `kdfCost` lowers scrypt for speed in server tests only.
 */
export class NodeHousehold {
  cookie = '';
  constructor(
    readonly base: string,
    readonly household: string,
    readonly kdfCost = { N: 1 << 15, r: 8, p: 1 },
  ) {}

  async call(method: 'GET' | 'POST', path: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; json: Record<string, unknown> }> {
    const res = await fetch(this.base + path, {
      method,
      headers: { ...(this.cookie ? { cookie: this.cookie } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const set = res.headers.get('set-cookie');
    if (set) {
      const m = /ucs_session=([^;]*)/.exec(set);
      if (m) this.cookie = m[1] ? `ucs_session=${m[1]}` : '';
    }
    return { status: res.status, json: (await res.json()) as Record<string, unknown> };
  }

  /** Registers with `code` and `password`; returns the server's reply, the key pair made and the stream key derived. */
  async register(code: string, password: string): Promise<{ status: number; json: Record<string, unknown>; spki?: Uint8Array; pkcs8?: Uint8Array; streamKey?: Uint8Array }> {
    // As the browser: the key set's derivation first, then one derivation gives all the code's values.
    const a = await this.call('GET', '/api/activation');
    if (a.status !== 200) return a;
    const secrets = await activationSecrets(code, this.household, activationDerivation(a.json.derivation));
    const begin = await this.call('POST', '/api/register/begin', { household: this.household, verifier: b64u(secrets.verifier) });
    if (begin.status !== 200) return begin;
    const { spki, pkcs8 } = await generateHouseholdKey(2048);
    const kdf = newKdfParams(this.kdfCost);
    const { wrapKey, auth } = await deriveSecrets(password, kdf);
    const streamKey = secrets.stream;
    const sealed = await sealPrivateKey(packSecrets(pkcs8, streamKey), wrapKey, this.household);
    const binding = await activationBinding(this.household, secrets.binding, spki, pkcs8);
    const r = await this.call('POST', '/api/register/finish', {
      household: this.household,
      ticket: begin.json.ticket,
      spki: b64u(spki),
      binding: b64u(binding),
      kdf,
      key: { iv: b64u(sealed.iv), ct: b64u(sealed.ct) },
      auth: b64u(auth),
    });
    return { ...r, spki, pkcs8, streamKey };
  }

  /** Logs in; on success also unwraps the private key and the stream key as the browser would. */
  async login(password: string): Promise<{ status: number; json: Record<string, unknown>; pkcs8?: Uint8Array; streamKey?: Uint8Array | null }> {
    const k = await this.call('GET', `/api/kdf?household=${this.household}`);
    if (k.status !== 200) return k;
    const s = await deriveSecrets(password, k.json.kdf as KdfParams);
    const r = await this.call('POST', '/api/login', { household: this.household, auth: b64u(s.auth) });
    if (r.status !== 200) return r;
    const key = r.json.key as { iv: string; ct: string };
    const { pkcs8, streamKey } = unpackSecrets(await openPrivateKey({ iv: fromB64u(key.iv, 'iv'), ct: fromB64u(key.ct, 'ct') }, s.wrapKey, this.household));
    return { ...r, pkcs8, streamKey };
  }
}

/**
 * Fills the household app's registration form (household id, activation code, password twice) and submits it;
 * the caller waits for what it expects (the app, or a notice).
 */
export async function submitRegistration(page: Page, household: string, code: string, password: string): Promise<void> {
  await page.fill('#reg-household', household);
  await page.fill('#reg-code', code);
  await page.fill('#reg-password', password);
  await page.fill('#reg-password2', password);
  await page.click('#reg-submit');
}
