/**
 * `npm run soak:serial [-- --minutes 10] [--flip 2e-4] [--drop 1e-4] [--insert 1e-4] [--burst-ms 1500]`: the
 * firmware meter and the gateway on real serial devices (two socat pty pairs, paced at 115200 baud 8N1) with
 * line noise in both directions for a long run (bench/harness/noisy-line.ts), then checks at the MQTT side that
 * every reading arrived exactly once and that the register chain equals the source's integral. Prints the
 * line error counters of both ends and what the noise relay did; the LAST line of stdout is one JSON object.
 * Exits 1 on any problem, 2 if socat is missing.
 * @module
 */
import { DEFAULT_NOISE, haveSocat, runNoisyLine } from './harness/noisy-line.js';

function num(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return dflt;
  const v = Number(process.argv[i + 1]);
  if (!Number.isFinite(v) || v < 0) {
    console.error(`soak:serial: --${name} must be a non-negative number`);
    process.exit(2);
  }
  return v;
}

if (!haveSocat()) {
  console.error('soak:serial: socat is not installed (apt-get install socat)');
  process.exit(2);
}
const minutes = num('minutes', 10);
const noise = { ...DEFAULT_NOISE, flip: num('flip', DEFAULT_NOISE.flip), drop: num('drop', DEFAULT_NOISE.drop), insert: num('insert', DEFAULT_NOISE.insert), burstEveryMs: num('burst-ms', DEFAULT_NOISE.burstEveryMs) };
console.error(`soak:serial: ${minutes} min at 115200 baud, noise ${JSON.stringify(noise)}`);
const r = await runNoisyLine({ seconds: minutes * 60, noise, drainMs: 600_000, progress: (l) => console.error(`  ${l}`) });

const rows: [string, object][] = [
  ['meter', { readings: r.readings, frames: r.frames, retransmits: r.meter.retransmits, acked: r.meter.acked, badDownlink: r.meter.badDownlink, duplicateAcks: r.meter.duplicateAcks, droppedFromRing: r.meter.droppedFromRing }],
  ['meter line (downlink)', r.meter.link],
  ['gateway line (uplink)', { framesOk: r.gateway.framesOk, badCrc: r.gateway.badCrc, malformed: r.gateway.malformed, oversize: r.gateway.oversize, resyncs: r.gateway.resyncs, notAFrame: r.gateway.notAFrame, duplicates: r.gateway.duplicates, acksSent: r.gateway.acksSent, forwarded: r.gateway.forwarded }],
  ['noise up (meter -> gateway)', r.relay.up],
  ['noise down (gateway -> meter)', r.relay.down],
  ['MQTT subscriber', r.received],
];
for (const [name, figures] of rows) console.log(`${name.padEnd(30)} ${Object.entries(figures).map(([k, v]) => `${k} ${String(v)}`).join(', ')}`);
console.log(`${r.seconds} s; register ${r.lastRegisterWh} Wh received, source integral ${r.sourceWh} Wh; ${r.problems.length ? `PROBLEMS: ${r.problems.join('; ')}` : 'every reading exactly once'}`);
console.log(JSON.stringify({ minutes, noise, ...r }));
if (r.problems.length) process.exitCode = 1;
