/**
 * Runs `node bin/smartermeter.js ...` as a separate process (as a user does), collecting its output, for the
 * end-to-end tests of test/cli.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/** A running CLI process and what it printed so far. */
export interface CliProcess {
  proc: ChildProcess;
  out: () => string;
  err: () => string;
  exited: Promise<number | null>;
  /** Resolves with the first match of `re` on standard output; rejects after `ms` or when the process ends first. */
  waitFor(re: RegExp, ms: number): Promise<RegExpMatchArray>;
}

/**
 * Starts `smartermeter <args>` with extra environment variables.
 * @example
 * ```ts
 * const demo = runCli(['demo', '--dir', dir]); await demo.waitFor(/mdms\s+(http\S+)/, 60_000);
 * ```
 */
export function runCli(args: string[], env: Record<string, string> = {}): CliProcess {
  const proc = spawn(process.execPath, [join(ROOT, 'bin/smartermeter.js'), ...args], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stdout!.on('data', (d) => (out += String(d)));
  proc.stderr!.on('data', (d) => (err += String(d)));
  const exited = new Promise<number | null>((res) => proc.on('exit', (code) => res(code)));
  return {
    proc,
    out: () => out,
    err: () => err,
    exited,
    waitFor: (re, ms) =>
      new Promise((res, rej) => {
        const started = Date.now();
        const poll = setInterval(() => {
          const m = re.exec(out);
          if (m) return settle(() => res(m));
          if (proc.exitCode !== null || proc.signalCode !== null) return settle(() => rej(new Error(`exited before ${re}: ${out.slice(-2000)}\n${err.slice(-2000)}`)));
          if (Date.now() - started > ms) settle(() => rej(new Error(`no ${re} within ${ms} ms: ${out.slice(-2000)}\n${err.slice(-2000)}`)));
        }, 100);
        const settle = (f: () => void) => {
          clearInterval(poll);
          f();
        };
      }),
  };
}
