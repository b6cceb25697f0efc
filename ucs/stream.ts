/**
 * The household's own stream on the household's own machine (Node): subscribe to `topics.household(hh)`
 * with the household's broker credentials, open each message with the household's private key
 * (protocol/seal.ts `openStream`, one RSA unwrap per epoch) or, for the end-to-end mode's meter-sealed messages
 * (docs/protocol.md §11.5), with the household's stream key (protocol/meter-seal.ts `openMeterStream`, the key
 * derived from the activation code), and hand over the rows. Used by `ucs watch` and
 * `ucs ha-bridge`. Messages that do not open are counted and reported without their content, never fatal; a
 * meter-sealed message replayed (its frame counter already accepted, or too old: ucs/web/stream-guard.ts) is
 * dropped and counted too.
 * @module
 */
import { createPrivateKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { MqttClient } from 'mqtt';
import { connectBroker } from '../lib/broker-url.js';
import { parseMeterStream, SEAL_METER_STREAM, streamSealType } from '../protocol/envelope.js';
import { activationSecretsSync, meterStreamKeySync, type ActivationDerivation } from '../protocol/household-key.js';
import { openMeterStream } from '../protocol/meter-seal.js';
import { openStream } from '../protocol/seal.js';
import { topics } from '../protocol/topics.js';
import { parseStreamBody } from '../protocol/stream.js';
import { bodyRows, type Row } from './web/body.js';
import { MeterStreamGuard } from './web/stream-guard.js';

export interface StreamCounters {
  messages: number;
  readings: number;
  /** Messages that did not open or did not validate (replayed ones included). */
  rejected: number;
  /** Meter-sealed messages whose frame counter was already accepted with another message, or too old (dropped). */
  replayed: number;
  /** Meter-sealed messages received twice (an MQTT redelivery; dropped, not rejected). */
  duplicates: number;
}

/**
 * A meter-sealed message that authenticated but that its meter's anti-replay window refuses
 * (ucs/web/stream-guard.ts): `duplicate` (the same message again) or `replayed`.
 * @example
 * ```ts
 * if (e instanceof RepeatedMessageError && e.verdict === 'replayed') counters.replayed++;
 * ```
 */
export class RepeatedMessageError extends Error {
  constructor(
    readonly verdict: 'duplicate' | 'replayed',
    message: string,
  ) {
    super(message);
    this.name = 'RepeatedMessageError';
  }
}

export interface HouseholdStreamOptions {
  household: string;
  /** The household's private key, for the PES's stream seal (§11.2); without it those messages are rejected. */
  privateKey?: KeyObject;
  /** The PES's Ed25519 public key: messages it did not sign are rejected (needed with `privateKey`). */
  pesVerifyKey?: KeyObject;
  /** The household's stream key ({@link readStreamKey}), for the meter-sealed messages of the end-to-end mode. */
  streamKey?: Uint8Array;
  /** Broker URL, or several comma-separated (a cluster's nodes; lib/broker-url.ts). */
  url: string;
  username?: string;
  password?: string;
  /** Default `household-<hh>-<purpose>-<random>`. */
  clientId?: string;
  purpose?: string;
  /** Rows of each message, in order. */
  onRows(rows: Row[]): void | Promise<void>;
  /** A message that did not open (reason only: never its content). */
  onReject?(reason: string): void;
}

export interface HouseholdStream {
  client: MqttClient;
  counters: StreamCounters;
  /** Resolves once subscribed; rejects if the broker refuses the credentials or the subscription. */
  ready: Promise<void>;
  close(): Promise<void>;
}

/**
 * Reads a household private key (PKCS#8 or PKCS#1 PEM, as downloaded from the app or made by provisioning;
 * encrypted PEM needs SM_KEY_PASSPHRASE).
 * @example
 * ```ts
 * const key = readHouseholdKey('hh1.key.pem');
 * ```
 */
export function readHouseholdKey(path: string): KeyObject {
  let pem: Buffer;
  try {
    pem = readFileSync(path);
  } catch (e) {
    throw new Error(`cannot read --key ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  try {
    const key = createPrivateKey({ key: pem, format: 'pem', passphrase: process.env.SM_KEY_PASSPHRASE || undefined });
    if (key.asymmetricKeyType !== 'rsa') throw new Error('not an RSA key');
    return key;
  } catch (e) {
    throw new Error(`--key ${path} is not a household private key: ${(e as Error).message}`);
  }
}

/**
 * The household's stream key (end-to-end mode, docs/protocol.md §11.5) from a file holding its activation code
 * (the letter's code, or `households/<hh>.activation` of a key set), under the key set's `derivation`
 * (protocol/household-key.ts; `ucs/activation.json`'s version tells it).
 * @example
 * ```ts
 * const streamKey = readStreamKey('hh1.activation', 'hh1', 2);
 * ```
 */
export function readStreamKey(path: string, household: string, derivation: ActivationDerivation): Uint8Array {
  let code: string;
  try {
    code = readFileSync(path, 'utf8').trim();
  } catch (e) {
    throw new Error(`cannot read --activation ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  try {
    // Derivation 1 has a scrypt per value: derive the stream key alone, not the two others as well.
    if (derivation === 1) return meterStreamKeySync(code, household);
    const { verifier, binding, stream } = activationSecretsSync(code, household, derivation);
    verifier.fill(0);
    binding.fill(0);
    return stream;
  } catch (e) {
    throw new Error(`--activation ${path}: ${(e as Error).message}`);
  }
}

/**
 * Opens one household stream message of either seal: the PES's (§11.2) with the private key after checking its
 * signature, or the meter's (§11.5) with the stream key and then, with `guard`, its meter's anti-replay window
 * (a message that authenticates but was already accepted, or is too old, throws {@link RepeatedMessageError}).
 * Throws naming why it did not open.
 * @example
 * ```ts
 * const body = parseStreamBody(openHouseholdMessage({ privateKey, pesVerifyKey, streamKey }, topic, payload, cache, guard));
 * ```
 */
export function openHouseholdMessage(keys: Pick<HouseholdStreamOptions, 'privateKey' | 'pesVerifyKey' | 'streamKey'>, topic: string, payload: Uint8Array, cache?: Map<string, Buffer>, guard?: MeterStreamGuard): unknown {
  if (streamSealType(payload) === SEAL_METER_STREAM) {
    if (!keys.streamKey) throw new Error('a meter-sealed message (end-to-end mode): give the activation code (--activation) to open it');
    const body = openMeterStream(keys.streamKey, topic, payload);
    if (guard) {
      const e = parseMeterStream(payload);
      const verdict = guard.check(e);
      const meter = Buffer.from(e.systemTitle).toString('hex');
      if (verdict !== 'fresh') throw new RepeatedMessageError(verdict, verdict === 'duplicate' ? `meter ${meter}'s message of frame ${e.ic} received twice` : `meter ${meter}'s frame ${e.ic} was already received or is too old (highest ${guard.highest(meter)}): a replayed message, dropped`);
      guard.mark(e);
    }
    return body;
  }
  if (!keys.privateKey || !keys.pesVerifyKey) throw new Error("a message sealed by the PES: give the household's key (--key) and the PES's key (--pes-key) to open it");
  return openStream(keys.privateKey, keys.pesVerifyKey, topic, payload, cache);
}

/**
 * Subscribes to the household's stream and opens it.
 * @example
 * ```ts
 * const s = subscribeHouseholdStream({ household: 'hh1', privateKey, url, username, password, onRows: (rows) => print(rows) });
 * await s.ready;
 * ```
 */
export function subscribeHouseholdStream(o: HouseholdStreamOptions): HouseholdStream {
  const topic = topics.household(o.household);
  const counters: StreamCounters = { messages: 0, readings: 0, rejected: 0, replayed: 0, duplicates: 0 };
  const cache = new Map<string, Buffer>();
  // In memory: these viewers keep no state on disk, so after a restart they accept again what is in the window.
  const guard = new MeterStreamGuard();
  const client = connectBroker(o.url, {
    clientId: o.clientId ?? `${o.username ?? `household-${o.household}`}-${o.purpose ?? 'stream'}-${Math.random().toString(16).slice(2, 10)}`,
    clean: true,
    protocolVersion: 4,
    reconnectPeriod: 2000,
    connectTimeout: 10_000,
    ...(o.username !== undefined ? { username: o.username } : {}),
    ...(o.password !== undefined ? { password: o.password } : {}),
  });
  let chain = Promise.resolve();
  client.on('message', (t, payload) => {
    if (t !== topic) return;
    chain = chain.then(async () => {
      let rows: Row[];
      try {
        rows = bodyRows(parseStreamBody(openHouseholdMessage(o, topic, payload, cache, guard)));
      } catch (e) {
        if (e instanceof RepeatedMessageError && e.verdict === 'duplicate') {
          counters.duplicates++;
          return;
        }
        if (e instanceof RepeatedMessageError) counters.replayed++;
        counters.rejected++;
        o.onReject?.((e as Error).message);
        return;
      }
      counters.messages++;
      counters.readings += rows.length;
      await o.onRows(rows);
    });
  });
  const ready = new Promise<void>((resolve, reject) => {
    const onError = (e: Error & { code?: number | string }) => {
      if (e.code === 4 || e.code === 5) {
        client.off('error', onError);
        void client.endAsync(true);
        reject(new Error(`the broker refused the credentials of household ${o.household}: ${e.message}`));
      }
    };
    client.on('error', onError);
    client.on('connect', () => {
      client.subscribe(topic, { qos: 1 }, (err, granted) => {
        if (err || granted?.[0]?.qos !== 1) {
          client.off('error', onError);
          void client.endAsync(true);
          reject(new Error(`the broker refused the subscription to ${topic} (is this household ${o.household}'s broker user?)`));
        } else {
          client.off('error', onError);
          resolve();
        }
      });
    });
  });
  ready.catch(() => undefined);
  return {
    client,
    counters,
    ready,
    async close() {
      await client.endAsync();
      await chain;
    },
  };
}

/**
 * The line `ucs watch` prints for a reading: ISO 8601 UTC period start, period (s), import register (Wh),
 * power (W), meter id, export register (Wh; 0 for a meter that never fed in). The export register comes last
 * so that a script reading the first five fields of version 1's lines reads them unchanged.
 * @example
 * ```ts
 * formatRow(row); // '2024-06-01T00:00:00Z 60 1234567 230 534d520000000001 80210'
 * ```
 */
export function formatRow(r: Row): string {
  return `${new Date(r.time * 1000).toISOString().replace('.000Z', 'Z')} ${r.period} ${r.importWh} ${r.powerW} ${r.meter} ${r.exportWh}`;
}
