/**
 * Validators for command-line values, shared by every command. Each returns a commander argument parser
 * that throws `InvalidArgumentError` with a message naming the flag.
 * @module
 */
import { readFileSync } from 'node:fs';
import { InvalidArgumentError, type Help, type Option } from 'commander';
import { IANAZone } from 'luxon';

/**
 * An integer flag within [min, max].
 * @example
 * ```ts
 * program.option('--k <n>', 'minimum meters', intOption('--k', 1, 100000), 20);
 * ```
 */
export function intOption(flag: string, min: number, max: number): (v: string) => number {
  return (v) => {
    if (!/^\d+$/.test(v)) throw new InvalidArgumentError(`${flag} must be an integer, got "${v}"`);
    const n = Number(v);
    if (n < min || n > max) throw new InvalidArgumentError(`${flag} must be between ${min} and ${max}, got ${n}`);
    return n;
  };
}

const UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 };

/**
 * Parses a duration like `90s`, `15m`, `1h`, `1d`, `2w` into seconds.
 * @example
 * ```ts
 * parseDuration('15m'); // 900
 * ```
 */
export function parseDuration(v: string, flag = 'duration'): number {
  const m = /^(\d+)(s|m|h|d|w)$/.exec(v);
  if (!m) throw new InvalidArgumentError(`${flag} must look like 90s, 15m, 1h, 1d or 2w, got "${v}"`);
  const s = Number(m[1]) * UNITS[m[2]!]!;
  if (s <= 0) throw new InvalidArgumentError(`${flag} must be positive`);
  return s;
}

/**
 * Seconds as the shortest duration flag that says them exactly: `900` → `15m`, `86400` → `1d`, `0` → `0s`.
 * @example
 * ```ts
 * formatDuration(1800); // '30m'
 * ```
 */
export function formatDuration(s: number): string {
  if (!Number.isSafeInteger(s) || s < 0) return String(s);
  const unit = (['w', 'd', 'h', 'm'] as const).find((u) => s > 0 && s % UNITS[u]! === 0);
  return unit ? `${s / UNITS[unit]!}${unit}` : `${s}s`;
}

/**
 * The help text of an option the way the README writes it: a duration flag's numeric default (the flag's
 * argument is `<d>`, `<duration>` or `<interval>`) shows as `15m`, not `900`, and a required option says so.
 * For commander's `configureHelp({ optionDescription })`.
 * @example
 * ```ts
 * program.configureHelp({ optionDescription: (o) => optionHelp(o, new Help()) });
 * ```
 */
export function optionHelp(opt: Option, plain: Help): string {
  const durationArg = /<(d|duration|interval)>/.test(opt.flags);
  if (durationArg && typeof opt.defaultValue === 'number' && opt.defaultValueDescription === undefined) {
    opt.defaultValueDescription = formatDuration(opt.defaultValue);
  }
  const text = plain.optionDescription(opt);
  return opt.mandatory ? `${text} (required)` : text;
}

/** A commander parser for {@link parseDuration}. */
export function durationOption(flag: string): (v: string) => number {
  return (v) => parseDuration(v, flag);
}

/**
 * A `--tz` value: an IANA time zone.
 * @example
 * ```ts
 * program.option('--tz <zone>', 'time zone', zoneOption, 'UTC');
 * ```
 */
export function zoneOption(v: string): string {
  if (!IANAZone.isValidZone(v)) throw new InvalidArgumentError(`--tz must be an IANA time zone such as UTC or America/New_York, got "${v}"`);
  return v;
}

/**
 * The certificate and key of `--tls-cert/--tls-key`, read from their files; neither flag gives undefined.
 * Throws a usage error when only one is given or a file cannot be read.
 * @example
 * ```ts
 * readTlsFlags({ tlsCert: 'cert.pem', tlsKey: 'key.pem' }); // { cert: <Buffer>, key: <Buffer> }
 * ```
 */
export function readTlsFlags(o: { tlsCert?: string; tlsKey?: string }): { cert: Buffer; key: Buffer } | undefined {
  if ((o.tlsCert === undefined) !== (o.tlsKey === undefined)) throw new InvalidArgumentError('--tls-cert and --tls-key go together');
  if (o.tlsCert === undefined) return undefined;
  const read = (path: string, flag: string) => {
    try {
      return readFileSync(path);
    } catch (e) {
      throw new InvalidArgumentError(`cannot read ${flag} ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
  };
  return { cert: read(o.tlsCert, '--tls-cert'), key: read(o.tlsKey!, '--tls-key') };
}

/**
 * Parser for `--meter <id>`: a meter id (16 lower-case hex digits, the system title).
 * @example
 * ```ts
 * cmd.requiredOption('--meter <id>', 'meter id', meterIdOption);
 * ```
 */
export function meterIdOption(v: string): string {
  if (!/^[0-9a-f]{16}$/.test(v)) throw new InvalidArgumentError(`--meter must be a meter id (16 lower-case hex digits, the system title), got "${v}"`);
  return v;
}

/**
 * Parses `--dp-epsilon`: a positive decimal.
 * @example
 * ```ts
 * epsilonOption('0.5'); // 0.5
 * ```
 */
export function epsilonOption(v: string): number {
  const e = Number(v);
  if (!/^\d+(\.\d+)?$/.test(v) || !(e > 0) || e > 1000) throw new InvalidArgumentError(`--dp-epsilon must be a positive number up to 1000, got "${v}"`);
  return e;
}

/**
 * Parses `--dp-budget`: a positive decimal (epsilon per neighbourhood per day).
 * @example
 * ```ts
 * budgetOption('10'); // 10
 * ```
 */
export function budgetOption(v: string): number {
  const b = Number(v);
  if (!/^\d+(\.\d+)?$/.test(v) || !(b > 0) || b > 1_000_000) throw new InvalidArgumentError(`--dp-budget must be a positive number up to 1000000, got "${v}"`);
  return b;
}
