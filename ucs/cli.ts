/**
 * `smartermeter ucs …`: the household app server, and the household's own tools.
 * - `ucs [serve] --http <port> --keys <dir> --db <file> --mqtt <url> --ws <url>`: the UCS server (ucs/server.ts);
 * - `ucs watch --household <hh> --key <pem> --mqtt <url> [--username u --password-file f | --keys <dir>]`:
 *   prints the household's decrypted stream, one line per reading (on the household's own terminal); in the
 *   end-to-end mode `--activation <file>` (the activation code; `--derivation` the key set's, docs/protocol.md
 *   §10.1) opens the stream the meters seal;
 * - `ucs ha-bridge --household <hh> --key <pem> --mqtt <url> --ha-mqtt <url> [--discovery-prefix p] [--remove]`:
 *   the Home Assistant companion (ucs/ha-bridge.ts).
 * @module
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { InvalidArgumentError, type Command } from 'commander';
import { createLogger } from '../lib/log.js';
import { durationOption, intOption, readTlsFlags } from '../lib/flags.js';
import { brokerUrlsOption } from '../lib/broker-url.js';
import { ACTIVATION_DERIVATION, type ActivationDerivation } from '../protocol/household-key.js';
import { topicId } from '../protocol/topics.js';
import { loadCredentials, loadHouseholdKey, loadPesVerifyKey } from '../lib/keyset.js';
import { loadActivation } from './activation.js';
import { removeFromHomeAssistant, startHaBridge } from './ha-bridge.js';
import { startUcs } from './server.js';
import { formatRow, readHouseholdKey, readStreamKey, subscribeHouseholdStream } from './stream.js';
import { loadHouseholdTariff } from './tariff.js';

const url = (flag: string, schemes: string[]) => (v: string) => {
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    throw new InvalidArgumentError(`${flag} must be a URL such as ${schemes[0]}://127.0.0.1:${schemes[0]!.startsWith('ws') ? 8083 : 1883}, got "${v}"`);
  }
  if (!schemes.includes(u.protocol.slice(0, -1))) throw new InvalidArgumentError(`${flag} must use ${schemes.map((s) => `${s}://`).join(' or ')}, got "${v}"`);
  return v;
};
const household = (v: string) => {
  try {
    return topicId(v, 'household');
  } catch (e) {
    throw new InvalidArgumentError(`--household: ${(e as Error).message}`);
  }
};
const BROKER = ['mqtt', 'mqtts', 'ws', 'wss'];

function readSecret(path: string, flag: string): string {
  try {
    const s = readFileSync(path, 'utf8').trim();
    if (!s) throw new Error('empty');
    return s;
  } catch (e) {
    throw new Error(`cannot read ${flag} ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

interface HouseholdFlags {
  household: string;
  key?: string;
  mqtt: string;
  username?: string;
  passwordFile?: string;
  keys?: string;
  pesKey?: string;
  activation?: string;
  derivation?: ActivationDerivation;
}

/** The PES's Ed25519 public key from a PEM file. */
function readPesKey(path: string): KeyObject {
  try {
    const key = createPublicKey(readFileSync(path));
    if (key.asymmetricKeyType !== 'ed25519') throw new Error('not an Ed25519 public key');
    return key;
  } catch (e) {
    throw new Error(`cannot read --pes-key ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

/** The household's key and broker credentials from the flags (explicit ones first, then the key set). */
function householdAccess(o: HouseholdFlags) {
  if ((o.username === undefined) !== (o.passwordFile === undefined)) throw new InvalidArgumentError('--username and --password-file go together');
  if (!o.key && !o.keys && !o.activation) throw new InvalidArgumentError('give --key <pem> (downloaded from the app), --activation <file> (your activation code, end-to-end mode) or --keys <dir> (a provisioned key set)');
  if (!o.username && !o.keys) throw new InvalidArgumentError('give --username and --password-file (your broker credentials) or --keys <dir>');
  if (o.key && !o.pesKey && !o.keys) throw new InvalidArgumentError("give --pes-key <pem> (the utility's signature key, shown in the app) or --keys <dir>");
  // The end-to-end mode's stream key: from --activation, or from the key set's copy of the household's letter.
  const letter = o.keys ? join(o.keys, 'households', `${o.household}.activation`) : undefined;
  const activation = o.activation ?? (letter && existsSync(letter) ? letter : undefined);
  const activationFile = o.keys ? join(o.keys, 'ucs', 'activation.json') : undefined;
  const derivation = o.derivation ?? (activationFile && existsSync(activationFile) ? loadActivation(o.keys!).derivation : ACTIVATION_DERIVATION);
  const streamKey = activation ? readStreamKey(activation, o.household, derivation) : undefined;
  const keyFile = o.keys ? join(o.keys, 'households', `${o.household}.key.pem`) : undefined;
  const privateKey = o.key ? readHouseholdKey(o.key) : keyFile && (existsSync(keyFile) || !streamKey) ? loadHouseholdKey(o.keys!, o.household) : undefined;
  const pesVerifyKey = privateKey ? (o.pesKey ? readPesKey(o.pesKey) : loadPesVerifyKey(o.keys!)) : undefined;
  const creds = o.username ? { username: o.username, password: readSecret(o.passwordFile!, '--password-file') } : loadCredentials(o.keys!, `household-${o.household}`);
  return { ...(privateKey ? { privateKey } : {}), ...(pesVerifyKey ? { pesVerifyKey } : {}), ...(streamKey ? { streamKey } : {}), ...creds };
}

const untilSignal = () =>
  new Promise<void>((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });

function householdOptions(cmd: Command): Command {
  return cmd
    .requiredOption('--household <hh>', 'household id', household)
    .option('--key <pem>', "the household's private key (PEM, as downloaded from the app)")
    .option('--pes-key <pem>', "the utility's (PES's) public signature key (PEM, as shown in the app); default from --keys")
    .requiredOption('--mqtt <urls>', 'utility broker URL (mqtt://, mqtts://, ws:// or wss://), or several comma-separated (a cluster)', brokerUrlsOption('--mqtt'))
    .option('--username <name>', 'broker username (household-<hh>)')
    .option('--password-file <file>', 'file holding the broker password')
    .option('--activation <file>', "file holding the household's activation code: opens the stream its meters seal in the end-to-end mode (default from --keys: households/<hh>.activation)")
    .option('--derivation <n>', 'how the key set derives the stream key from --activation: 2 (one scrypt and HKDF, what provisioning writes) or 1 (key sets provisioned before); default from --keys (ucs/activation.json), else 2', intOption('--derivation', 1, 2))
    .option('--keys <dir>', 'a provisioned key set (credentials and, without --key, households/<hh>.key.pem)');
}

/**
 * Adds `ucs`, `ucs watch` and `ucs ha-bridge` to the program.
 * @example
 * ```ts
 * registerUcsCommand(program);
 * ```
 */
export function registerUcsCommand(program: Command): void {
  const ucs = program.command('ucs').description("the household app: its server (default), and the household's own `watch` and `ha-bridge`");
  // The server is the default subcommand, so that `ucs --http …` and `ucs watch --mqtt …` each own their flags.
  ucs
    .command('serve', { isDefault: true })
    .description('the household app server (registration, login, ciphertext archive; readings are decrypted only in the browser)')
    .option('--http <port>', 'HTTP port (0 = any free port)', intOption('--http', 0, 65535))
    .option('--host <addr>', 'interface to listen on', '127.0.0.1')
    .option('--keys <dir>', 'key set made by `smartermeter provision`')
    .option('--db <file>', 'SQLite database of the server', 'ucs.sqlite')
    .option('--mqtt <urls>', 'broker URL for the server, or several comma-separated (a cluster)', brokerUrlsOption('--mqtt'), 'mqtt://127.0.0.1:1883')
    .option('--ws <url>', "broker MQTT-over-WebSocket URL as households' browsers reach it", url('--ws', ['ws', 'wss']), 'ws://127.0.0.1:8083')
    .option('--tls-key <pem>', 'TLS private key (serve HTTPS; needed beyond localhost, browsers offer WebCrypto only on secure pages)')
    .option('--tls-cert <pem>', 'TLS certificate chain')
    .option('--session-idle <duration>', 'log out after this long without activity', durationOption('--session-idle'), 1800)
    .option('--session-max <duration>', 'log out this long after login', durationOption('--session-max'), 43_200)
    .option('--no-archive', 'keep no ciphertext archive of household streams')
    .option('--archive-days <n>', 'drop archived messages after this many days', intOption('--archive-days', 1, 36_600), 400)
    .option('--client-id <id>', 'MQTT client id of the persistent session (unique per UCS on a shared broker)', 'ucs')
    .option('--tariff <file>', "the households' tariff (band schedule as the PES's --tariff, billing period, prices as the MDMS's; format in ucs/README.md): the app shows costs and a bill preview")
    .option('--household-mqtt <url>', "broker URL households' own tools reach (shown in Settings for `ucs watch` and the HA bridge); default the --ws URL", url('--household-mqtt', BROKER))
    .option('--trust-proxy <addresses>', 'take client addresses from X-Forwarded-For set by these proxies (comma-separated addresses or CIDRs), for the per-address throttling behind a TLS proxy')
    .action(async (o: { tariff?: string; householdMqtt?: string; trustProxy?: string; clientId: string; http?: number; host: string; keys?: string; db: string; mqtt: string; ws: string; tlsKey?: string; tlsCert?: string; sessionIdle: number; sessionMax: number; archive: boolean; archiveDays: number }) => {
      if (o.http === undefined) throw new InvalidArgumentError('give --http <port> to run the server (or use `ucs watch` or `ucs ha-bridge`)');
      if (!o.keys) throw new InvalidArgumentError('--keys <dir> is required');
      const https = readTlsFlags(o);
      const logger = createLogger('ucs');
      const server = await startUcs({
        keysDir: o.keys,
        dbPath: o.db,
        brokerUrl: o.mqtt,
        brokerWsUrl: o.ws,
        port: o.http,
        host: o.host,
        logger,
        sessionIdleS: o.sessionIdle,
        sessionMaxS: o.sessionMax,
        archive: o.archive,
        archiveDays: o.archiveDays,
        clientId: o.clientId,
        ...(o.tariff ? { tariff: loadHouseholdTariff(o.tariff) } : {}),
        ...(o.householdMqtt ? { householdMqttUrl: o.householdMqtt } : {}),
        ...(o.trustProxy ? { trustProxy: o.trustProxy.split(',').map((a) => a.trim()) } : {}),
        ...(https ? { https } : {}),
      });
      console.log(`household app at ${server.url}`);
      await untilSignal();
      await server.close();
    });

  householdOptions(ucs.command('watch'))
    .description("print the household's decrypted stream, one line per reading: ISO time, period (s), import register (Wh), power (W), meter, export register (Wh)")
    .option('--limit <n>', 'exit after this many readings', intOption('--limit', 1, Number.MAX_SAFE_INTEGER))
    .action(async (o: HouseholdFlags & { limit?: number }) => {
      const access = householdAccess(o);
      let printed = 0;
      let done!: () => void;
      const finished = new Promise<void>((resolve) => (done = resolve));
      const s = subscribeHouseholdStream({
        household: o.household,
        url: o.mqtt,
        purpose: 'watch',
        ...access,
        onRows: (rows) => {
          for (const r of rows) {
            if (o.limit !== undefined && printed >= o.limit) return done();
            process.stdout.write(formatRow(r) + '\n');
            printed++;
          }
          if (o.limit !== undefined && printed >= o.limit) done();
        },
        onReject: (reason) => process.stderr.write(`ucs watch: message not opened: ${reason}\n`),
      });
      await s.ready;
      process.stderr.write(`ucs watch: subscribed to household ${o.household}'s stream\n`);
      await Promise.race([finished, untilSignal()]);
      await s.close();
      if (s.counters.rejected) process.stderr.write(`ucs watch: ${s.counters.rejected} messages could not be opened (${s.counters.replayed} of them replayed)\n`);
    });

  householdOptions(ucs.command('ha-bridge'))
    .description("publish the household's energy and power to Home Assistant (MQTT discovery) on the household's own broker")
    .requiredOption('--ha-mqtt <url>', "the household's Home Assistant broker", url('--ha-mqtt', BROKER))
    .option('--ha-username <name>', 'Home Assistant broker username')
    .option('--ha-password-file <file>', 'file holding the Home Assistant broker password')
    .option('--discovery-prefix <prefix>', 'Home Assistant discovery prefix', 'homeassistant')
    .option('--remove', 'remove what the bridge published (discovery configs, states) from the Home Assistant broker and exit')
    .action(async (o: HouseholdFlags & { haMqtt: string; haUsername?: string; haPasswordFile?: string; discoveryPrefix: string; remove?: boolean }) => {
      if ((o.haUsername === undefined) !== (o.haPasswordFile === undefined)) throw new InvalidArgumentError('--ha-username and --ha-password-file go together');
      const ha = { url: o.haMqtt, ...(o.haUsername ? { username: o.haUsername, password: readSecret(o.haPasswordFile!, '--ha-password-file') } : {}) };
      if (o.remove) {
        const cleared = await removeFromHomeAssistant({ household: o.household, ha, discoveryPrefix: o.discoveryPrefix });
        console.log(`removed ${cleared.length} retained topics of household ${o.household} from ${o.haMqtt}`);
        return;
      }
      const access = householdAccess(o);
      const logger = createLogger('ha-bridge');
      const bridge = startHaBridge({
        household: o.household,
        ...(access.privateKey ? { privateKey: access.privateKey } : {}),
        ...(access.pesVerifyKey ? { pesVerifyKey: access.pesVerifyKey } : {}),
        ...(access.streamKey ? { streamKey: access.streamKey } : {}),
        utility: { url: o.mqtt, username: access.username, password: access.password },
        ha,
        discoveryPrefix: o.discoveryPrefix,
        logger,
      });
      await bridge.ready;
      logger.info({ household: o.household, node: bridge.topics.node }, 'ha-bridge: running');
      await untilSignal();
      await bridge.close();
      logger.info(bridge.stream.counters, 'ha-bridge: stopped');
    });
}
