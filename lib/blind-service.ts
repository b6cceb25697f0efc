/**
 * The MQTT loop the two blind aggregators of the end-to-end mode share (the PES's pes/e2e-mqtt.ts and the
 * guardian's guardian/service.ts; actors never import each other): a durable subscription to the uplinks, and
 * per uplink: fold it into the {@link BlindWindows}, seal what the rules released (the caller's `seal`), commit
 * the changed windows and meters with those messages to the state file (lib/e2e-state.ts) in one transaction,
 * and only then acknowledge the uplink and publish the messages at QoS 1. A message leaves the outbox once
 * the broker acknowledged it; after a kill -9 the uplinks not acknowledged come again (nothing of them was
 * committed) and the outbox is published again (the MDMS stores by window and revision).
 * @module
 */
import type { MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import { startDurableSubscriber } from './durable-subscriber.js';
import type { BlindWindows } from './e2e-windows.js';
import type { E2eStateStore } from './e2e-state.js';
import { FRAMES_PREFIX, REQUEST_PREFIX, topics } from '../protocol/topics.js';

/** Options of {@link startBlindService}. */
export interface BlindServiceOptions {
  /** "the PES", "the guardian": for log lines. */
  who: string;
  /** Prefix of log messages ("pes", "guardian"). */
  tag: string;
  windows: BlindWindows;
  /** The opened state; the service restores `windows` from it and owns it from then on (closes it). */
  store: E2eStateStore;
  /** Seals what the rules released since the last call (takes them from `windows`). */
  seal(): { topic: string; payload: Buffer }[];
  /**
   * The caller's own small state beside the windows (JSON; e.g. a ledger): `save` is called at every commit
   * (return undefined when unchanged), `restore` once at start with what was saved last (undefined if never).
   */
  extra?: { save(): unknown; restore(v: unknown): void };
  mqtt: { url: string; username?: string; password?: string; clientId: string };
  /** Gateways whose uplinks to take; default every gateway. */
  gateways?: string[];
  /**
   * The guardian: also subscribes to the PES's requests (`sm/v1/request/#`) and hands each one here; what it
   * answers is taken by `seal` and committed with it, as for an uplink.
   */
  onRequest?: (topic: string, payload: Buffer) => void;
  logger: Logger;
}

/** A running blind aggregator. */
export interface BlindService {
  readonly client: MqttClient;
  readonly ready: Promise<void>;
  /** Resolves with the error that stopped it (a failing commit): the process should exit and be restarted. */
  readonly failed: Promise<Error>;
  /** Messages on a topic it did not subscribe to (ACL misconfiguration). */
  readonly unexpected: number;
  /** Closes every window (end of a replay), commits and publishes what that released. */
  flush(): void;
  /** Resolves once every publish so far was acknowledged (or failed). */
  idle(): Promise<void>;
  /** Stops taking messages, waits (bounded) for outstanding publishes, closes the state, disconnects. */
  close(): Promise<void>;
  /** Disconnects at once without a last commit (what a crash does; for tests). */
  kill(): Promise<void>;
}

/**
 * @example
 * ```ts
 * const store = E2eStateStore.open(file, { role: 'guardian', paillierKeyId: pub.keyId, config });
 * const svc = startBlindService({ who: 'the guardian', tag: 'guardian', windows, store, seal, mqtt, logger });
 * await svc.ready;
 * ```
 */
export function startBlindService(o: BlindServiceOptions): BlindService {
  const log = o.logger;
  const snapshot = o.store.load();
  o.windows.restore(snapshot);
  o.extra?.restore(snapshot.extra);
  if (snapshot.windows.length || snapshot.meters.size) log.info({ windows: snapshot.windows.length, meters: snapshot.meters.size, watermark: snapshot.watermark }, `${o.tag}: state restored`);
  let client: MqttClient | undefined;
  const confirmed: number[] = [];
  const inflight = new Set<Promise<void>>();
  let unexpected = 0;
  let closed = false;

  const send = (m: { id: number; topic: string; payload: Buffer }) => {
    const p = new Promise<void>((resolve) =>
      client!.publish(m.topic, m.payload, { qos: 1 }, (err) => {
        if (err) log.warn({ topic: m.topic, err: err.message }, `${o.tag}: publish failed; kept in the outbox for the next start`);
        else confirmed.push(m.id);
        resolve();
      }),
    ).finally(() => inflight.delete(p));
    inflight.add(p);
  };
  const commit = () => {
    if (closed) throw new Error(`${o.who} is closed`);
    const out = o.seal();
    o.store.commit(o.windows.checkpoint(), out, confirmed.splice(0), o.extra?.save()).forEach(send);
  };

  const filters = [...(o.gateways?.length ? o.gateways.map((g) => topics.frames(g)) : [topics.framesAll]), ...(o.onRequest ? [topics.requestsAll] : [])];
  const sub = startDurableSubscriber({
    ...o.mqtt,
    filters,
    who: o.who,
    logger: log,
    // Throwing (a failing disk) leaves the uplink unacknowledged and resolves `failed`.
    handle(packet) {
      if (packet.topic.startsWith(FRAMES_PREFIX)) o.windows.ingestUplink(packet.payload as Buffer, packet.topic.slice(FRAMES_PREFIX.length));
      else if (o.onRequest && packet.topic.startsWith(REQUEST_PREFIX)) o.onRequest(packet.topic, packet.payload as Buffer);
      else {
        unexpected++;
        log.warn({ topic: packet.topic }, `${o.tag}: message on an unexpected topic ignored`);
      }
      commit();
      return 'ack';
    },
  });
  client = sub.client;
  if (snapshot.outbox.length) log.info({ messages: snapshot.outbox.length }, `${o.tag}: re-publishing messages not acknowledged before the last stop`);
  snapshot.outbox.forEach(send);
  const idle = async () => {
    while (inflight.size) await Promise.allSettled([...inflight]);
  };

  return {
    client: sub.client,
    ready: sub.ready,
    failed: sub.failed,
    get unexpected() {
      return unexpected;
    },
    flush() {
      o.windows.flush();
      commit();
    },
    idle,
    async close() {
      await sub.close(async () => {
        // Bounded: with the broker gone a publish never completes; what is unacknowledged stays in the outbox.
        await Promise.race([idle(), new Promise((r) => setTimeout(r, 5000).unref())]);
        if (!closed) {
          closed = true;
          o.store.confirm(confirmed.splice(0));
          o.store.close();
        }
        if (Object.keys(sub.client.outgoing).length > 0) await sub.client.endAsync(true);
      });
    },
    async kill() {
      closed = true;
      o.store.close();
      await sub.kill();
    },
  };
}

/**
 * Runs a blind aggregator as a command until SIGINT/SIGTERM: SIGUSR2 closes every window (`flush`, committed when
 * it returns), `<tag>: subscribed` is logged once ready (with `subscribed`'s fields; the crash harness waits for
 * that line), a refused connection or a failing commit rejects (after a kill: the supervisor restarts the
 * process), and a stop closes the service cleanly and logs `<tag>: stopped` with `stopped()`'s fields.
 * @example
 * ```ts
 * await runBlindCommand(svc, { tag: 'guardian', log, subscribed: { k }, stopped: () => ({ counters }) });
 * ```
 */
export async function runBlindCommand(
  svc: Pick<BlindService, 'ready' | 'failed' | 'flush' | 'close' | 'kill'>,
  o: { tag: string; log: Logger; subscribed: Record<string, unknown>; stopped: () => Record<string, unknown> },
): Promise<void> {
  // A flush whose commit failed has taken its releases out of the windows: memory is ahead of the state file,
  // so the process stops (as a failing commit of an uplink does) and its restart resumes from the file.
  let flushFailed!: (e: Error) => void;
  const flushError = new Promise<Error>((resolve) => (flushFailed = resolve));
  const onFlush = () => {
    try {
      svc.flush();
      o.log.info(o.stopped(), `${o.tag}: flushed on SIGUSR2: every window closed`);
    } catch (e) {
      o.log.error({ err: (e as Error).message }, `${o.tag}: flush failed; stopping`);
      flushFailed(e as Error);
    }
  };
  process.on('SIGUSR2', onFlush);
  let stop!: () => void;
  const stopped = new Promise<null>((resolve) => (stop = () => resolve(null)));
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  const refused = svc.ready.then(
    () => {
      o.log.info(o.subscribed, `${o.tag}: subscribed`);
      return new Promise<never>(() => undefined);
    },
    (e: Error) => e,
  );
  const outcome = await Promise.race([stopped, refused, svc.failed, flushError]);
  process.off('SIGUSR2', onFlush);
  process.off('SIGINT', stop);
  process.off('SIGTERM', stop);
  if (outcome instanceof Error) {
    await svc.kill();
    throw outcome;
  }
  await svc.close();
  o.log.info(o.stopped(), `${o.tag}: stopped`);
}
