/**
 * `pes --e2e` as an MQTT service: the blind PES (pes/e2e.ts) over a durable subscription to the uplinks; each
 * release, and each meter-sealed household stream message (forwarded unopened), is published at QoS 1 as the uplink that caused it is acknowledged (not durable yet: its windows
 * live in memory only in this version, and the publish sits in MQTT.js's in-memory outgoing store; pes/README.md).
 * @module
 */
import type { MqttClient } from 'mqtt';
import { pino, type Logger } from 'pino';
import { startDurableSubscriber, type Verdict } from '../lib/durable-subscriber.js';
import type { BlindSettings } from '../lib/e2e-windows.js';
import { FRAMES_PREFIX, topics } from '../protocol/topics.js';
import { newCounters, type PesCounters } from './core/counters.js';
import { PesE2e } from './e2e.js';

/** Options of {@link startPesE2eService}. */
export interface PesE2eServiceOptions {
  settings: BlindSettings;
  keys: ConstructorParameters<typeof PesE2e>[1];
  mqtt: { url: string; username?: string; password?: string; clientId?: string };
  logger?: Logger;
}

/** The blind PES as the system sees it: counters named as the classic PES's, flush and idle. */
export interface PesE2eHandle {
  readonly counters: PesCounters;
  readonly watermark: number | null;
  flush(): void;
  idle(): Promise<void>;
}

/**
 * @example
 * ```ts
 * const svc = startPesE2eService({ settings, keys, mqtt: { url, username: 'pes', password } });
 * await svc.ready;
 * ```
 */
export function startPesE2eService(o: PesE2eServiceOptions): { pes: PesE2eHandle; core: PesE2e; ready: Promise<void>; close(): Promise<void> } {
  const log = o.logger ?? pino({ name: 'pes' });
  const core = new PesE2e(o.settings, o.keys);
  const counters = newCounters();
  let client: MqttClient | undefined;
  let pending = Promise.resolve();
  const sync = () => {
    const c = core.windows.counters;
    Object.assign(counters, { framesOk: c.frames, readings: c.readings, badTag: c.badTag, unknownMeter: c.unknownMeter, replay: c.replay, malformedFrame: c.malformedFrame, malformedUplink: c.malformedUplink, released: c.released, suppressed: c.suppressed, revisionHeld: c.revisionHeld, membershipHeld: c.membershipHeld, streamMessages: core.streamMessages });
  };
  const publishOutbox = (): Promise<void> => {
    const out = core.takeOutbox();
    const sent = Promise.all(out.map((m) => new Promise<void>((resolve, reject) => client!.publish(m.topic, m.payload, { qos: 1 }, (err) => (err ? reject(err) : resolve())))));
    pending = pending.then(() => sent.then(() => undefined));
    return sent.then(() => undefined);
  };
  const sub = startDurableSubscriber({
    ...o.mqtt,
    clientId: o.mqtt.clientId ?? 'pes',
    filters: [topics.framesAll],
    who: 'the PES (end-to-end mode)',
    logger: log,
    handle(packet): Verdict {
      if (packet.topic.startsWith(FRAMES_PREFIX)) core.ingestUplink(packet.payload as Buffer, packet.topic.slice(FRAMES_PREFIX.length));
      sync();
      // Not awaited here: MQTT.js reads the PUBACK only once this handler returns (awaiting it deadlocks);
      // QoS 1 keeps the publish in the client's outgoing store until the broker has it.
      void publishOutbox().catch((e) => log.error({ err: (e as Error).message }, 'publish failed'));
      return 'ack';
    },
  });
  client = sub.client;
  return {
    core,
    pes: {
      counters,
      get watermark() {
        return core.windows.watermark;
      },
      flush() {
        core.flush();
        sync();
        void publishOutbox().catch((e) => log.error({ err: (e as Error).message }, 'pes e2e: publish failed'));
      },
      idle: () => pending,
    },
    ready: sub.ready,
    close: () => sub.close(() => pending),
  };
}
