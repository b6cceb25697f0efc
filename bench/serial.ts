/**
 * The serial section of `npm run bench` (issue 15): how much of a noisy serial line carries new frames, with
 * the adaptive retransmission timer (RFC 6298, timed from when a frame has left the line) and, as the
 * baseline in the same run, the old fixed 1 s timer running from when a frame was queued.
 *
 * For each of 9600, 38400 and 115200 baud 8N1 (960, 3840, 11520 bytes/s per direction): one meter (synthetic
 * source, speed max, 15 readings per frame, window 32) and the real gateway (embedded broker, QoS 1, acks
 * after PUBACK) on an in-process paced cable with a 4 kB transmit buffer per end and the same line noise in
 * both directions (bench/harness/paced-line.ts), for {@link SECONDS} s per timer. `useful_fraction_<baud>` =
 * link-framed bytes of the frames the gateway received intact for the first time / the line's capacity over
 * the run (bytes/s x seconds); `_baseline` is the fixed timer. Per run, `detail_<baud>` gives the meter's
 * retransmissions and timer expiries, the bytes it put on the line per byte of capacity, and the final
 * timeout. Standalone: `npm run bench -- serial`.
 * @module
 */
import { pino } from 'pino';
import { startBroker } from '../broker/broker.js';
import { streamLine } from '../firmware/hal/line.js';
import { MemoryNvStore } from '../firmware/hal/nv.js';
import { Meter } from '../firmware/meter.js';
import { SyntheticSource } from '../firmware/sources/synthetic.js';
import { startGateway } from '../gateway/gateway.js';
import { decodeFrame, systemTitle } from '../protocol/frame.js';
import { encodeLinkFrame, LinkParser } from '../protocol/link.js';
import { PacedLine, type PacedNoise } from './harness/paced-line.js';
import { progress, round } from './index.js';

/** Seconds per run (6 runs). */
const SECONDS = 20;
const BAUDS = [9600, 38400, 115200] as const;
/** Per byte: 1e-4 bit flips, 5e-5 lost, 5e-5 inserted; a burst of 8..64 garbage bytes every 5 s on average. */
const NOISE: PacedNoise = { flip: 1e-4, drop: 5e-5, insert: 5e-5, burstEveryMs: 5000 };

interface RunResult {
  useful: number;
  retransmits: number;
  timeouts: number;
  /** Bytes the meter put on the line / the line's capacity over the run. */
  lineLoad: number;
  /** Distinct frames the gateway received intact. */
  frames: number;
  timeoutMs: number;
}

async function runOnce(baud: number, retransmission: 'adaptive' | 'fixed', brokerUrl: string, n: number): Promise<RunResult> {
  const quiet = pino({ level: 'silent' });
  const bytesPerSecond = baud / 10;
  const cable = new PacedLine({ bytesPerSecond, noise: NOISE, seed: n + 1 });
  // What reached the gateway end intact, first copies only (a tap beside the gateway's own parser).
  const tap = new LinkParser();
  const seen = new Set<number>();
  let usefulBytes = 0;
  tap.on('data', (payload: Buffer) => {
    let ic: number;
    try {
      ic = decodeFrame(payload).ic;
    } catch {
      return; // an ack echo or damage that passed the FCS: not a frame
    }
    if (seen.has(ic)) return;
    seen.add(ic);
    usefulBytes += encodeLinkFrame(payload).length;
  });
  cable.gatewayEnd.on('data', (b: Buffer) => tap.write(b));
  const gw = await startGateway({ id: `gw-serial-${n}`, lines: [cable.gatewayEnd], mqtt: { url: brokerUrl }, queuePath: ':memory:', logger: quiet, backoff: { minMs: 100, maxMs: 1000 } });
  await waitFor(() => gw.connected, 10_000);
  const t0 = performance.now();
  const meter = await Meter.start({
    systemTitle: systemTitle('SMR', 9000 + n),
    key: Buffer.alloc(32, n + 1),
    line: streamLine(cable.meterEnd),
    source: new SyntheticSource({ seed: n, start: 1_704_067_200, tz: 'UTC' }),
    nv: new MemoryNvStore(),
    retransmission,
    ackTimeoutMs: 1000,
  });
  await new Promise((r) => setTimeout(r, SECONDS * 1000));
  const seconds = (performance.now() - t0) / 1000;
  const capacity = bytesPerSecond * seconds;
  const r: RunResult = {
    useful: round(usefulBytes / capacity),
    retransmits: meter.counters.retransmits,
    timeouts: meter.counters.timeouts,
    lineLoad: round(cable.counters.up.sent / capacity),
    frames: seen.size,
    timeoutMs: round(meter.ackTimeout),
  };
  await meter.stop();
  await gw.close();
  cable.close();
  return r;
}

async function waitFor(check: () => boolean, ms: number): Promise<void> {
  const until = Date.now() + ms;
  while (!check()) {
    if (Date.now() > until) throw new Error('gateway did not connect to the embedded broker');
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * Runs the section; returns its JSON.
 * @example
 * ```ts
 * const s = await run(); // s.useful_fraction_9600 vs s.useful_fraction_9600_baseline
 * ```
 */
export async function run(): Promise<Record<string, unknown>> {
  const broker = await startBroker({ port: 0, logger: pino({ level: 'silent' }) });
  const out: Record<string, unknown> = { seconds_per_run: SECONDS, noise: `flip ${NOISE.flip}, drop ${NOISE.drop}, insert ${NOISE.insert} per byte; burst every ${NOISE.burstEveryMs} ms` };
  const details: Record<string, unknown> = {};
  try {
    let n = 0;
    for (const baud of BAUDS) {
      progress(`serial: ${baud} baud, adaptive timer then fixed 1 s timer, ${SECONDS} s each`);
      const ours = await runOnce(baud, 'adaptive', broker.url, n++);
      const base = await runOnce(baud, 'fixed', broker.url, n++);
      out[`useful_fraction_${baud}`] = ours.useful;
      out[`useful_fraction_${baud}_baseline`] = base.useful;
      details[`detail_${baud}`] = Object.fromEntries(
        (Object.keys(ours) as (keyof RunResult)[]).filter((k) => k !== 'useful').flatMap((k) => [
          [k, ours[k]],
          [`${k}_baseline`, base[k]],
        ]),
      );
    }
  } finally {
    await broker.close();
  }
  return { ...out, ...details };
}
