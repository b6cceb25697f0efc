/**
 * Processes of a crash run: each component is `node bin/smartermeter.js <command> ...` in its own OS
 * process, with its output appended to a log file, so that it can be killed with SIGKILL and started again
 * with the same arguments (and so the same state files). Serial lines between meter and gateway processes
 * are socat pty pairs with stable link names, which survive the restart of either end.
 * @module
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '../../..');
const CLI = join(ROOT, 'bin/smartermeter.js');

/** How a process ended. */
export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/**
 * One component process that can be killed and started again with the same command line.
 * @example
 * ```ts
 * const pes = new Proc('pes', ['pes', '--keys', keys, '--state', state], logDir);
 * pes.start();
 * pes.kill9(); await pes.exited; pes.start();
 * ```
 */
export class Proc {
  /** Times started. */
  starts = 0;
  /** Times killed with SIGKILL by the harness. */
  kills = 0;
  private child: ChildProcess | undefined;
  private exit: Promise<Exit> = Promise.resolve({ code: null, signal: null });
  /** Size of the log file when the current process started: its own output begins there. */
  private logOffset = 0;
  readonly log: string;

  /**
   * @param args the `smartermeter` command line, or, with `command`, that program's arguments
   * @param command another program to run instead of `node bin/smartermeter.js` (e.g. Mosquitto)
   */
  constructor(
    readonly name: string,
    readonly args: string[],
    logDir: string,
    readonly command?: string,
  ) {
    this.log = join(logDir, `${name}.log`);
  }

  /** Whether the process is running. */
  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Resolves when the current process exits. */
  get exited(): Promise<Exit> {
    return this.exit;
  }

  /** Starts the process (output appended to its log file). */
  start(): void {
    if (this.running) throw new Error(`${this.name} is already running`);
    this.logOffset = existsSync(this.log) ? statSync(this.log).size : 0;
    const fd = openSync(this.log, 'a');
    try {
      const [bin, argv] = this.command ? [this.command, this.args] : [process.execPath, [CLI, ...this.args]];
      const child = spawn(bin, argv, { cwd: ROOT, stdio: ['ignore', fd, fd], env: { ...process.env, SM_DEBUG: '1' } });
      this.child = child;
      this.exit = new Promise((r) => child.once('exit', (code, signal) => r({ code, signal })));
    } finally {
      closeSync(fd);
    }
    this.starts++;
  }

  /** The log output of the current (or last) process. */
  output(): string {
    return existsSync(this.log) ? readFileSync(this.log).subarray(this.logOffset).toString('utf8') : '';
  }

  /** Resolves once the current process has logged a pino line whose `msg` matches; throws if it exits first. */
  async ready(msg: RegExp, timeoutMs = 60_000): Promise<void> {
    await poll(
      () => {
        if (this.output().split('\n').some((l) => l.startsWith('{') && msg.test(String((safeJson(l) as { msg?: unknown } | undefined)?.msg ?? '')))) return true;
        if (!this.running) throw new Error(`${this.name} exited before logging ${msg}; see ${this.log}:\n${this.output().slice(-2000)}`);
        return undefined;
      },
      () => `${this.name} to log ${msg} (see ${this.log})`,
      timeoutMs,
      100,
    );
  }

  /** `kill -9`: no handler runs, nothing is flushed. Resolves once the process is gone. */
  async kill9(): Promise<void> {
    if (!this.running) throw new Error(`${this.name} is not running: cannot kill it`);
    this.kills++;
    this.child!.kill('SIGKILL');
    await this.exit;
  }

  /** Sends a signal (e.g. SIGUSR2 to the PES). */
  signal(sig: NodeJS.Signals): void {
    if (!this.running) throw new Error(`${this.name} is not running`);
    this.child!.kill(sig);
  }

  /** SIGTERM, then SIGKILL after `timeoutMs`; resolves with how it ended. */
  async stop(timeoutMs = 15_000): Promise<Exit> {
    if (!this.running) return this.exit;
    this.child!.kill('SIGTERM');
    const t = setTimeout(() => this.child?.kill('SIGKILL'), timeoutMs);
    try {
      return await this.exit;
    } finally {
      clearTimeout(t);
    }
  }
}

/**
 * `socat -d -d pty,raw,echo=0,link=<a> pty,raw,echo=0,link=<b>`: a null-modem cable between two processes.
 * Resolves once both links exist.
 * @example
 * ```ts
 * const cable = await socatPair('/tmp/run/m1.meter', '/tmp/run/m1.gw', logDir);
 * ```
 */
export async function socatPair(a: string, b: string, logFile: string): Promise<{ a: string; b: string; close(): Promise<void> }> {
  const fd = openSync(logFile, 'a');
  let child: ChildProcess;
  try {
    child = spawn('socat', ['-d', '-d', `pty,raw,echo=0,link=${a}`, `pty,raw,echo=0,link=${b}`], { stdio: ['ignore', 'ignore', fd] });
  } finally {
    closeSync(fd);
  }
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const t0 = Date.now();
  while (!(existsSync(a) && existsSync(b))) {
    if (child.exitCode !== null) throw new Error(`socat exited with ${child.exitCode}; see ${logFile}`);
    if (Date.now() - t0 > 10_000) throw new Error(`socat made no pty pair in 10 s; see ${logFile}`);
    await sleep(20);
  }
  return {
    a,
    b,
    async close() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

function safeJson(l: string): unknown {
  try {
    return JSON.parse(l);
  } catch {
    return undefined;
  }
}

/**
 * Resolves after `ms`.
 * @example
 * ```ts
 * await sleep(1000);
 * ```
 */
export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Polls `check` every `everyMs` until it returns a value other than `undefined`; throws after `timeoutMs`
 * with `what()` in the message.
 * @example
 * ```ts
 * await poll(() => (pes.readings >= n ? true : undefined), () => `PES readings ${pes.readings}/${n}`, 60_000);
 * ```
 */
export async function poll<T>(check: () => T | undefined, what: () => string, timeoutMs: number, everyMs = 200): Promise<T> {
  const t0 = Date.now();
  for (;;) {
    const v = check();
    if (v !== undefined) return v;
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what()}`);
    await sleep(everyMs);
  }
}
