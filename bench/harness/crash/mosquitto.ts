/**
 * A Mosquitto 2.x process started from a provisioned configuration (`<keys>/broker/mosquitto/mosquitto.conf`,
 * provision/mosquitto.ts), for the tests and harnesses that run the system against it.
 * @module
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { sleep } from './procs.js';

/** Where Debian's `mosquitto` package puts the broker. */
export const MOSQUITTO_BIN = '/usr/sbin/mosquitto';

/** A running Mosquitto. */
export interface MosquittoProcess {
  pid: number;
  /** `kill -9` (no persistence save) or SIGTERM (saves); resolves when it has exited. */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/**
 * Whether something accepts TCP connections on `host:port` right now.
 * @example
 * ```ts
 * await accepts('127.0.0.1', 1883); // true when a broker listens
 * ```
 */
export function accepts(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host, port }, () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
}

/**
 * Spawns `mosquitto -c <conf>` with its output appended to `logFile`, and resolves once its listener on
 * `host:port` accepts connections; throws with the log's tail if it exits or does not listen within 10 s.
 * @example
 * ```ts
 * const mq = await startMosquitto(join(keys, MOSQUITTO_CONF), 18830, join(dir, 'mosquitto.log'));
 * await mq.stop();
 * ```
 */
export async function startMosquitto(conf: string, port: number, logFile: string, host = '127.0.0.1'): Promise<MosquittoProcess> {
  if (!existsSync(MOSQUITTO_BIN)) throw new Error(`${MOSQUITTO_BIN} not found (apt-get install mosquitto)`);
  const fd = openSync(logFile, 'a');
  let child: ChildProcess;
  try {
    child = spawn(MOSQUITTO_BIN, ['-c', conf], { stdio: ['ignore', fd, fd] });
  } finally {
    closeSync(fd);
  }
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const t0 = Date.now();
  while (!(await accepts(host, port))) {
    if (child.exitCode !== null) throw new Error(`mosquitto exited with ${child.exitCode}:\n${readFileSync(logFile, 'utf8').slice(-2000)}`);
    if (Date.now() - t0 > 10_000) {
      child.kill('SIGKILL');
      throw new Error(`mosquitto did not listen on ${host}:${port} in 10 s:\n${readFileSync(logFile, 'utf8').slice(-2000)}`);
    }
    await sleep(50);
  }
  return {
    pid: child.pid!,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
    },
  };
}
