/**
 * The PES as an MQTT service: subscribes to every gateway's uplinks (`sm/v1/frames/+`) and to household
 * public keys (`sm/v1/pes/household-key/+`, retained) at QoS 1 with a persistent session (clientId `pes`,
 * clean: false), and publishes sealed aggregates and household streams at QoS 1.
 *
 * Acknowledge after commit: MQTT.js calls `client.handleMessage(packet, done)` for each incoming PUBLISH and
 * sends the PUBACK only when `done()` is called (mqtt@5 build/lib/handlers/publish.js, QoS 1 branch); it
 * handles one packet at a time. So for each message: process it, commit the changed state (SQLite
 * transaction), and only then call `done()`. A crash anywhere before the commit leaves the message
 * unacknowledged in the broker's session; it is redelivered on reconnect and, since nothing of it was
 * committed, counted once. Outgoing messages are published only after the commit that produced them, and
 * leave the state file's outbox when their PUBACK arrives.
 * @module
 */
import mqtt, { type IPublishPacket, type MqttClient } from 'mqtt';
import { pino } from 'pino';
import { topics } from '../protocol/topics.js';
import { createPes, type CreatePesOptions, type PesHandle } from './pes.js';

const FRAMES_PREFIX = 'sm/v1/frames/';
const HOUSEHOLD_KEY_PREFIX = 'sm/v1/pes/household-key/';

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
  let stopping = false;
  let unexpected = 0;
  let fail!: (e: Error) => void;
  const failed = new Promise<Error>((resolve) => (fail = resolve));
  // A packet handled on a connection that is gone must not be acknowledged on the next one (the packet id
  // would belong to the new session); the broker redelivers it instead.
  let generation = 0;

  const frameFilters = opts.gateways?.length ? opts.gateways.map((g) => topics.frames(g)) : [topics.framesAll];
  const c = mqtt.connect(opts.mqtt.url, {
    clientId: opts.mqtt.clientId ?? 'pes',
    clean: false,
    protocolVersion: 4,
    keepalive: opts.mqtt.keepalive ?? 30,
    reconnectPeriod: opts.mqtt.reconnectPeriod ?? 1000,
    ...(opts.mqtt.username !== undefined ? { username: opts.mqtt.username } : {}),
    ...(opts.mqtt.password !== undefined ? { password: opts.mqtt.password } : {}),
  });
  client = c;

  c.handleMessage = (packet, done) => {
    const gen = generation;
    if (stopping) return; // never acknowledged: redelivered to the next PES
    try {
      const topic = packet.topic;
      const payload = packet.payload as Buffer;
      if (topic.startsWith(FRAMES_PREFIX)) pes.ingestUplink(payload, topic.slice(FRAMES_PREFIX.length));
      else if (topic.startsWith(HOUSEHOLD_KEY_PREFIX)) pes.householdKey(topic, payload);
      else {
        unexpected++;
        log.warn({ topic }, 'pes: message on an unexpected topic ignored');
      }
      opts.hooks?.beforeCommit?.(packet);
      pes.commit();
    } catch (e) {
      // Not committed, so not acknowledged (done is never called: the broker keeps the message in the
      // session). Processing errors are bugs or a failing disk: stop taking messages and report; the
      // caller (the CLI) exits and the supervisor restarts the PES, which gets the message again.
      log.error({ topic: packet.topic, err: (e as Error).message }, 'pes: message not committed; stopping');
      stopping = true;
      fail(e as Error);
      return;
    }
    if (gen === generation) done();
  };
  c.on('close', () => {
    generation++;
  });
  // Counters (never values) once a minute, for operators.
  const report = setInterval(() => log.info({ counters: pes.counters, windows: pes.windowCount }, 'pes: counters'), 60_000);
  report.unref();
  c.on('error', (e) => log.error({ err: e.message }, 'pes: MQTT error'));

  const ready = new Promise<void>((resolve, reject) => {
    const onError = (e: Error & { code?: number | string }) => {
      if (e.code === 4 || e.code === 5 || e.code === 134 || e.code === 135) {
        c.off('error', onError);
        reject(new Error(`the broker refused the PES's credentials: ${e.message}`));
      }
    };
    c.on('error', onError);
    // Subscribe once: when a reconnection finds the session gone (sessionPresent false, e.g. a restarted
    // in-memory broker), MQTT.js subscribes again by itself (option `resubscribe`, default true; tested).
    c.once('connect', () => {
      c.subscribe(
        Object.fromEntries([...frameFilters, topics.householdKeysAll].map((t) => [t, { qos: 1 as const }])),
        (err, granted) => {
          c.off('error', onError);
          if (err) return reject(new Error(`the broker refused the PES subscriptions: ${err.message}`));
          const bad = (granted ?? []).filter((g) => g.qos !== 1);
          if (!granted || granted.length !== frameFilters.length + 1 || bad.length) return reject(new Error(`the broker refused the PES subscriptions at QoS 1: ${JSON.stringify(granted)}`));
          log.info({ url: opts.mqtt.url, k: pes.settings.k, intervalS: pes.settings.intervalS }, 'pes: subscribed');
          resolve();
        },
      );
    });
  });
  ready.catch(() => undefined);

  return {
    pes,
    client: c,
    ready,
    failed,
    get unexpected() {
      return unexpected;
    },
    async close() {
      stopping = true;
      clearInterval(report);
      await pes.close();
      await c.endAsync();
    },
    async kill() {
      stopping = true;
      clearInterval(report);
      pes.abandon();
      await c.endAsync(true);
    },
  };
}
