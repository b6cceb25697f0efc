/**
 * The one logger factory of the commands: pino, writing one JSON object per line when the output is a pipe
 * or a file (for machines: log collectors, the crash harness, tests), and short human-readable lines on a
 * terminal (`12:04:31 WARN  meter: cannot open serial port  port=/dev/ttyUSB0 err="No such file..."`).
 * `--log-format json|pretty` (the root flag of `smartermeter`, or `SM_LOG_FORMAT`) chooses explicitly;
 * `SM_LOG` sets the level (default info).
 * @module
 */
import { pino, type Logger } from 'pino';

/** `auto`: pretty on a terminal, JSON otherwise. */
export type LogFormat = 'json' | 'pretty' | 'auto';

/** Every accepted `--log-format`. */
export const LOG_FORMATS: readonly LogFormat[] = ['auto', 'json', 'pretty'];

let chosen: LogFormat | undefined;

/**
 * Sets the format of every logger made afterwards (the root `--log-format` flag does this).
 * @example
 * ```ts
 * setLogFormat('json');
 * ```
 */
export function setLogFormat(format: LogFormat): void {
  chosen = format;
}

/** A sink pino can write to: anything with `write(line)`, plus `isTTY` for `auto`. */
export interface LogSink {
  write(line: string): unknown;
  isTTY?: boolean;
}

/** Options of {@link createLogger}. */
export interface LoggerOptions {
  /** Default: `setLogFormat`'s, else `SM_LOG_FORMAT`, else `auto`. */
  format?: LogFormat;
  /** Default: `SM_LOG`, else `info`. */
  level?: string;
  /** Default: standard output. */
  sink?: LogSink;
  /** Colours on a pretty sink: default when it is a terminal and `NO_COLOR` is unset. */
  colour?: boolean;
}

const LEVELS: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };
const COLOURS: Record<number, string> = { 10: '90', 20: '90', 30: '32', 40: '33', 50: '31', 60: '35' };
const HIDDEN = new Set(['level', 'time', 'pid', 'hostname', 'name', 'msg', 'v']);

function value(v: unknown): string {
  if (typeof v === 'string') return /^[^\s"=]+$/.test(v) ? v : JSON.stringify(v);
  if (v !== null && typeof v === 'object' && typeof (v as { message?: unknown }).message === 'string') return JSON.stringify((v as { message: string }).message);
  return JSON.stringify(v) ?? String(v);
}

/**
 * One pino JSON line as a person reads it: local time, level, component, message, then the other fields as
 * `key=value`. A line that is not pino's JSON passes through unchanged.
 * @example
 * ```ts
 * prettyLine('{"level":40,"time":0,"name":"meter","msg":"cannot open serial port","port":"/dev/ttyUSB0"}', false);
 * // '01:00:00 WARN  meter: cannot open serial port  port=/dev/ttyUSB0' (in UTC+1)
 * ```
 */
export function prettyLine(line: string, colour: boolean): string {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line.endsWith('\n') ? line.slice(0, -1) : line;
  }
  if (o === null || typeof o !== 'object' || typeof o.level !== 'number') return line.trimEnd();
  const t = typeof o.time === 'number' ? new Date(o.time) : new Date();
  const hms = [t.getHours(), t.getMinutes(), t.getSeconds()].map((n) => String(n).padStart(2, '0')).join(':');
  const lvl = (LEVELS[o.level] ?? String(o.level)).padEnd(5);
  const name = typeof o.name === 'string' ? `${o.name}: ` : '';
  const fields = Object.entries(o)
    .filter(([k]) => !HIDDEN.has(k))
    .map(([k, v]) => `${k}=${value(v)}`)
    .join(' ');
  const paint = (code: string | undefined, s: string) => (colour && code ? `\u001b[${code}m${s}\u001b[0m` : s);
  return `${paint('2', hms)} ${paint(COLOURS[o.level], lvl)} ${name}${String(o.msg ?? '')}${fields ? `  ${paint('2', fields)}` : ''}`;
}

/**
 * A logger for a command: JSON lines or pretty lines as {@link LoggerOptions} and the terminal decide.
 * @example
 * ```ts
 * const log = createLogger('meter'); log.warn({ port }, 'cannot open serial port');
 * ```
 */
export function createLogger(name: string | undefined, o: LoggerOptions = {}): Logger {
  const env = process.env.SM_LOG_FORMAT;
  const format = o.format ?? chosen ?? (env && (LOG_FORMATS as readonly string[]).includes(env) ? (env as LogFormat) : 'auto');
  const sink: LogSink = o.sink ?? process.stdout;
  const pretty = format === 'pretty' || (format === 'auto' && sink.isTTY === true);
  const level = o.level ?? process.env.SM_LOG ?? 'info';
  const base = name === undefined ? {} : { name };
  if (!pretty) return o.sink ? pino({ ...base, level }, { write: (l: string) => void sink.write(l) }) : pino({ ...base, level });
  const colour = o.colour ?? (sink.isTTY === true && !process.env.NO_COLOR);
  return pino({ ...base, level }, { write: (l: string) => void sink.write(`${prettyLine(l, colour)}\n`) });
}
