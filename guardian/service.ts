/**
 * The guardian as an MQTT service: its own broker user reads every uplink and the PES's requests
 * (`sm/v1/request/#`), {@link GuardianCore} checks each request against its own snapshots and rules, and each
 * partial decryption it agrees to is sealed to the MDMS, signed with the guardian's Ed25519 key and published at
 * QoS 1 on `sm/v1/partial/<kind>/<key>`. Kill -9 safe (lib/blind-service.ts): per uplink
 * the changed windows and meters and the sealed partials are committed to its own state file
 * (lib/e2e-state.ts) before the uplink is acknowledged; a partial leaves the outbox once the broker has it.
 * @module
 */
import type { KeyObject } from 'node:crypto';
import { pino, type Logger } from 'pino';
import { startBlindService } from '../lib/blind-service.js';
import type { BlindMeter, BlindSettings } from '../lib/e2e-windows.js';
import { blindStateConfig, E2eStateStore } from '../lib/e2e-state.js';
import { partialBody } from '../protocol/e2e.js';
import type { DecryptionShare } from '../protocol/paillier/threshold.js';
import { sealAggregate } from '../protocol/seal.js';
import { parseTopic, topics } from '../protocol/topics.js';
import { GuardianCore } from './core.js';

/** Options of {@link startGuardianService}. */
export interface GuardianServiceOptions {
  settings: BlindSettings;
  keys: { share: DecryptionShare; meters: Map<string, BlindMeter>; signer: KeyObject; mdmsPublic: KeyObject };
  mqtt: { url: string; username?: string; password?: string; clientId?: string };
  /** SQLite state file (0600), or `':memory:'` (default: nothing survives the process). */
  stateFile?: string;
  /** `NORMAL` for bulk replays (survives a process crash, not a power loss); default `FULL`. */
  synchronous?: 'FULL' | 'NORMAL';
  /** Gateways whose uplinks it takes; default every gateway. */
  gateways?: string[];
  /** Most epsilon per neighbourhood per UTC day it helps open (`--dp-budget`; GuardianCore). */
  dpBudget?: number;
  logger?: Logger;
}

/**
 * @example
 * ```ts
 * const g = startGuardianService({ settings, keys, stateFile: 'guardian-state.sqlite', mqtt: { url, ...loadCredentials('keys/guardian', 'guardian') } });
 * await g.ready;
 * ```
 */
export function startGuardianService(o: GuardianServiceOptions) {
  const log = o.logger ?? pino({ name: 'guardian' });
  const core = new GuardianCore(o.settings, { share: o.keys.share, meters: o.keys.meters }, log, o.dpBudget);
  const pub = o.keys.share.publicKey;
  const store = E2eStateStore.open(o.stateFile ?? ':memory:', { role: 'guardian', paillierKeyId: pub.keyId, config: blindStateConfig(o.settings), ...(o.synchronous ? { synchronous: o.synchronous } : {}) });
  let svc;
  try {
    svc = startBlindService({
      who: 'the guardian',
      tag: 'guardian',
      windows: core.windows,
      store,
      seal: () =>
        core.takePartials().map((p) => {
          const topic = topics.partial(p.kind, p.key);
          return { topic, payload: sealAggregate(o.keys.mdmsPublic, topic, partialBody(pub, p), o.keys.signer) };
        }),
      onRequest: (topic, payload) => core.ingestRequest(payload, parseTopic.request(topic)),
      extra: core.ledgerState,
      mqtt: { ...o.mqtt, clientId: o.mqtt.clientId ?? 'guardian' },
      ...(o.gateways ? { gateways: o.gateways } : {}),
      logger: log,
    });
  } catch (e) {
    store.close();
    throw e;
  }
  const s = svc;
  const report = setInterval(() => log.info({ counters: core.windows.counters, refusals: core.refusals, pending: core.windows.pendingRequests }, 'guardian: counters'), 60_000);
  report.unref();
  return {
    core,
    client: s.client,
    flush: () => s.flush(),
    idle: () => s.idle(),
    ready: s.ready,
    failed: s.failed,
    close: async () => {
      clearInterval(report);
      await s.close();
    },
    kill: async () => {
      clearInterval(report);
      await s.kill();
    },
  };
}
