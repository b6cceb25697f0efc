/**
 * Bench section `broker`: what durable sessions cost. QoS 1 messages (1 kB, 16 in flight, like a gateway)
 * through the embedded broker to one persistent subscriber, with the SQLite state file (journal fsynced
 * before every PUBACK, group-committed) against aedes' in-memory sessions (the baseline).
 * `npm run bench -- broker`.
 * @module
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { pino } from 'pino';
import { startBroker } from '../broker/broker.js';
import { progress, round } from './index.js';

const N = 3000;
const INFLIGHT = 16;

/** Messages per second from publish to delivery, with or without a state file. */
async function throughput(stateFile: string | undefined): Promise<number> {
  const broker = await startBroker({ port: 0, stateFile, logger: pino({ level: 'silent' }) });
  const sub = await mqtt.connectAsync(broker.url, { clientId: 'bench-sub', clean: false, protocolVersion: 4, reconnectPeriod: 0 });
  const pub = await mqtt.connectAsync(broker.url, { clientId: 'bench-pub', clean: true, protocolVersion: 4, reconnectPeriod: 0 });
  try {
    let got = 0;
    sub.on('message', () => got++);
    await sub.subscribeAsync('bench/#', { qos: 1 });
    const payload = Buffer.alloc(1000, 7);
    const t0 = performance.now();
    let next = 0;
    const worker = async () => {
      while (next < N) {
        next++;
        await pub.publishAsync('bench/x', payload, { qos: 1 });
      }
    };
    await Promise.all(Array.from({ length: INFLIGHT }, worker));
    while (got < N) await new Promise((r) => setTimeout(r, 2));
    return N / ((performance.now() - t0) / 1000);
  } finally {
    await pub.endAsync(true);
    await sub.endAsync(true);
    await broker.close();
  }
}

/**
 * Runs the section.
 * @example
 * ```ts
 * const { qos1_us_per_msg } = await run();
 * ```
 */
export async function run(): Promise<Record<string, unknown>> {
  const dir = mkdtempSync(join(tmpdir(), 'sm-bench-broker-'));
  try {
    progress(`broker: ${N} QoS 1 messages in memory`);
    const memory = await throughput(undefined);
    progress(`broker: ${N} QoS 1 messages with the state file`);
    const durable = await throughput(join(dir, 'broker.sqlite'));
    // Time per message, so that the ratio column reads as elsewhere (baseline / ours; below 1 = slower).
    return {
      messages: N,
      inflight: INFLIGHT,
      payload_bytes: 1000,
      qos1_msgs_per_s_state_file: round(durable),
      qos1_msgs_per_s_in_memory: round(memory),
      qos1_us_per_msg: round(1e6 / durable),
      qos1_us_per_msg_baseline: round(1e6 / memory),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
