/**
 * The PES as an MQTT service: subscribes to every gateway's uplinks (`sm/v1/frames/+`) and to household
 * public keys (`sm/v1/pes/household-key/+`, retained) at QoS 1 with a persistent session (clientId `pes`,
 * clean: false), and publishes sealed aggregates and household streams at QoS 1.
 *
 * Acknowledge after commit (lib/durable-subscriber.ts): for each message, process it, commit the changed
 * state (SQLite transaction), and only then acknowledge. A crash anywhere before the commit leaves the
 * message unacknowledged in the broker's session; it is redelivered on reconnect and, since nothing of it
 * was committed, counted once. Outgoing messages are published only after the commit that produced them, and
 * leave the state file's outbox when their PUBACK arrives.
 *
 * The PES's policy statement (`sm/v1/agg/policy/<pesId>`, docs/protocol.md §11.3) goes out once subscribed,
 * whenever a guard counter changed (checked once a minute), and on a clean stop.
 * @module
 */
import type { IPublishPacket, MqttClient } from 'mqtt';
import { pino } from 'pino';
import { startDurableSubscriber } from '../lib/durable-subscriber.js';
import { FRAMES_PREFIX, HOUSEHOLD_KEY_PREFIX, topics } from '../protocol/topics.js';
import { createPes, type CreatePesOptions, type PesHandle } from './pes.js';

export interface PesServiceOptions extends Omit<CreatePesOptions, 'publish' | 'autoCommit'> {
  mqtt: {
    url: string;
    username?: string;
    password?: string;
    /** Default `pes`. */
    clientId?: string;
    keepalive?: number;
    reconnectPeriod?: number;
  };
  /**
   * Gateways whose uplinks this PES takes (`sm/v1/frames/<id>` each); default every gateway
   * (`sm/v1/frames/+`). PES instances partition the gateways of a large fleet (ARCHITECTURE.md, Scale), and
   * on a shared broker a PES must not take the frames of another fleet.
   */
  gateways?: string[];
  /**
   * Hooks (aedes style; defaults do nothing). `beforeCommit` runs after a message was processed and before
   * its state is committed and acknowledged; throwing from it leaves the message unacknowledged and
   * resolves `failed` (a crash before commit, for tests).
   */
  hooks?: { beforeCommit?: (packet: IPublishPacket) => void };
  /**
   * How often to check whether a guard counter changed since the last policy statement, and publish a new one
   * if so (docs/protocol.md §11.3: at most once a minute). Default 60 000 ms. A statement is also published
   * once subscribed and on a clean stop.
   */
  policyIntervalMs?: number;
}

export interface PesService {
  pes: PesHandle;
  client: MqttClient;
  /** Resolves once subscribed; rejects if the broker refuses the credentials or a subscription. */
  ready: Promise<void>;
  /** Resolves with the error if a message could not be processed and committed; the service then takes no more messages and should be killed. */
  failed: Promise<Error>;
  /** Messages received that were not uplinks or household keys (ACL misconfiguration). */
  readonly unexpected: number;
  /** Commits, waits for outstanding publishes, disconnects. Unprocessed messages stay in the broker session. */
  close(): Promise<void>;
  /** Disconnects at once without committing anything (what a crash does; for tests). */
  kill(): Promise<void>;
}

/**
 * Starts the PES service.
 * @example
 * ```ts
 * const svc = startPesService({ keys, stateFile: 'pes.db', k: 20, mqtt: { url: 'mqtt://127.0.0.1:1883' } });
 * await svc.ready;
 * ```
 */
export function startPesService(opts: PesServiceOptions): PesService {
  const log = opts.logger ?? pino({ name: 'pes' });
  let client: MqttClient | undefined;
  const publish = (m: { topic: string; payload: Buffer }) =>
    new Promise<void>((resolve, reject) => client!.publish(m.topic, m.payload, { qos: 1 }, (err) => (err ? reject(err) : resolve())));
  const pes = createPes({ ...opts, logger: log, publish, autoCommit: false });
  let unexpected = 0;

  const frameFilters = opts.gateways?.length ? opts.gateways.map((g) => topics.frames(g)) : [topics.framesAll];
  const sub = startDurableSubscriber({
    ...opts.mqtt,
    clientId: opts.mqtt.clientId ?? 'pes',
    filters: [...frameFilters, topics.householdKeysAll],
    who: 'the PES',
    logger: log,
    // Processing errors are bugs or a failing disk: the subscriber stops taking messages and reports
    // `failed`; the caller (the CLI) exits and the supervisor restarts the PES, which gets the message again.
    handle(packet) {
      const payload = packet.payload as Buffer;
      const topic = packet.topic;
      if (topic.startsWith(FRAMES_PREFIX)) pes.ingestUplink(payload, topic.slice(FRAMES_PREFIX.length));
      else if (topic.startsWith(HOUSEHOLD_KEY_PREFIX)) pes.householdKey(topic, payload);
      else {
        unexpected++;
        log.warn({ topic: packet.topic }, 'pes: message on an unexpected topic ignored');
      }
      opts.hooks?.beforeCommit?.(packet);
      pes.commit();
      return 'ack';
    },
  });
  client = sub.client;
  // The policy statement (its guards and their counters) for the MDMS: on start, when a guard counter changed
  // (checked every policyIntervalMs), and on a clean stop. Through the outbox like any aggregate.
  let stated: string | null = null;
  const state = (why: string) => {
    try {
      const body = pes.publishPolicy();
      stated = JSON.stringify(body.counters);
      log.debug({ why, counters: body.counters }, 'pes: policy statement published');
    } catch (e) {
      log.error({ why, err: (e as Error).message }, 'pes: could not publish the policy statement');
    }
  };
  const policy = setInterval(() => {
    if (stated !== null && JSON.stringify(pes.guardCounters()) !== stated) state('counters changed');
  }, opts.policyIntervalMs ?? 60_000);
  policy.unref();
  sub.ready.then(
    () => {
      log.info({ url: opts.mqtt.url, k: pes.settings.k, intervalS: pes.settings.intervalS }, 'pes: subscribed');
      state('start');
    },
    () => undefined,
  );
  // Counters (never values) once a minute, for operators.
  const report = setInterval(() => log.info({ counters: pes.counters, windows: pes.windowCount }, 'pes: counters'), 60_000);
  report.unref();

  return {
    pes,
    client: sub.client,
    ready: sub.ready,
    failed: sub.failed,
    get unexpected() {
      return unexpected;
    },
    async close() {
      clearInterval(report);
      clearInterval(policy);
      await sub.close(async () => {
        // Only to a broker that is there (a socket it just closed is noticed after one turn of the loop).
        await new Promise((r) => setImmediate(r));
        if (stated !== null && sub.client.connected) state('stop');
        await pes.close();
        // Whatever is still unacknowledged after close()'s wait is in the state file's outbox (published again
        // at the next start); MQTT.js's end() would otherwise wait for it for ever with the broker gone.
        if (Object.keys(sub.client.outgoing).length > 0) await sub.client.endAsync(true);
      });
    },
    async kill() {
      clearInterval(report);
      clearInterval(policy);
      pes.abandon();
      await sub.kill();
    },
  };
}
