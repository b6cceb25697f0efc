/**
 * The guardian as an MQTT service: its own broker user reads every uplink, {@link GuardianCore} recomputes the
 * windows, and each partial decryption it agrees to is sealed to the MDMS, signed with the guardian's Ed25519
 * key and published at QoS 1 on `sm/v1/partial/<kind>/<key>` as the uplink is acknowledged (not durable yet:
 * its windows live in memory only in this version; guardian/README.md).
 * @module
 */
import type { KeyObject } from 'node:crypto';
import type { MqttClient } from 'mqtt';
import { pino, type Logger } from 'pino';
import { startDurableSubscriber, type Verdict } from '../lib/durable-subscriber.js';
import type { BlindMeter, BlindSettings } from '../lib/e2e-windows.js';
import { partialBody } from '../protocol/e2e.js';
import type { DecryptionShare } from '../protocol/paillier/threshold.js';
import { sealAggregate } from '../protocol/seal.js';
import { FRAMES_PREFIX, topics } from '../protocol/topics.js';
import { GuardianCore } from './core.js';

/** Options of {@link startGuardianService}. */
export interface GuardianServiceOptions {
  settings: BlindSettings;
  keys: { share: DecryptionShare; meters: Map<string, BlindMeter>; signer: KeyObject; mdmsPublic: KeyObject };
  mqtt: { url: string; username?: string; password?: string; clientId?: string };
  logger?: Logger;
}

/**
 * @example
 * ```ts
 * const g = startGuardianService({ settings, keys, mqtt: { url, ...loadCredentials('keys/guardian', 'guardian') } });
 * await g.ready;
 * ```
 */
export function startGuardianService(o: GuardianServiceOptions): { core: GuardianCore; flush(): void; idle(): Promise<void>; ready: Promise<void>; close(): Promise<void> } {
  const log = o.logger ?? pino({ name: 'guardian' });
  const core = new GuardianCore(o.settings, { share: o.keys.share, meters: o.keys.meters }, log);
  const pub = o.keys.share.publicKey;
  let client: MqttClient | undefined;
  let pending = Promise.resolve();
  const publishPartials = (): Promise<void> => {
    const sent = Promise.all(
      core.takePartials().map((p) => {
        const topic = topics.partial(p.kind, p.key);
        const payload = sealAggregate(o.keys.mdmsPublic, topic, partialBody(pub, p), o.keys.signer);
        return new Promise<void>((resolve, reject) => client!.publish(topic, payload, { qos: 1 }, (err) => (err ? reject(err) : resolve())));
      }),
    ).then(() => undefined);
    pending = pending.then(() => sent);
    return sent;
  };
  const sub = startDurableSubscriber({
    ...o.mqtt,
    clientId: o.mqtt.clientId ?? 'guardian',
    filters: [topics.framesAll],
    who: 'the guardian',
    logger: log,
    handle(packet): Verdict {
      if (packet.topic.startsWith(FRAMES_PREFIX)) core.ingestUplink(packet.payload as Buffer, packet.topic.slice(FRAMES_PREFIX.length));
      // Not awaited here: MQTT.js reads the PUBACK only once this handler returns (awaiting it deadlocks);
      // QoS 1 keeps the publish in the client's outgoing store until the broker has it.
      void publishPartials().catch((e) => log.error({ err: (e as Error).message }, 'publish failed'));
      return 'ack';
    },
  });
  client = sub.client;
  const report = setInterval(() => log.info({ counters: core.windows.counters, refusals: core.refusals }, 'guardian: counters'), 60_000);
  report.unref();
  return {
    core,
    flush() {
      core.flush();
      void publishPartials().catch((e) => log.error({ err: (e as Error).message }, 'guardian: publish failed'));
    },
    idle: () => pending,
    ready: sub.ready,
    close: async () => {
      clearInterval(report);
      await sub.close(() => pending);
    },
  };
}
