/**
 * One DSMR P1 telegram, parsed: the dialects, their units and how a telegram's text becomes numbers.
 *
 * A telegram is `/<header>\r\n\r\n`, then one OBIS line per value, `a-b:c.d.e(value*unit)(...)`, then
 * `!<CRC>\r\n` (no CRC before DSMR 4). This module parses a whole telegram that {@link P1TelegramParser}
 * has already delimited and checked; it reads:
 * - import registers 1-0:1.8.0 (total, Luxembourg) and 1-0:1.8.1..1.8.9 (tariffs), export 2.8.x likewise;
 * - power 1-0:1.7.0 (import) and 1-0:2.7.0 (export);
 * - the clock 0-0:1.0.0 `YYMMDDhhmmssX` (X = S summer, W winter), read in the meter's time zone;
 * - the equipment id 0-0:96.1.1, the tariff indicator 0-0:96.14.0 and the version lines 1-3:0.2.8
 *   (DSMR) and 0-0:96.1.4 (Belgian e-MUCS).
 * An OBIS code may carry the `*255` suffix some meters append. Units come from the telegram (kWh, Wh, kW, W), never from the dialect. Energy becomes integer Wh (the
 * register resolution; finer digits are cut, as a register display does) and power integer mW, by exact
 * decimal arithmetic. Any other well-formed OBIS line is ignored and counted; lines that are not OBIS at all
 * (text some gateways append) are ignored and counted apart. A value we read that is malformed rejects the
 * whole telegram: in the dialects without CRC that is the only guard against line noise.
 * @module
 */
import { IANAZone } from 'luxon';

/** The P1 dialects this source reads. */
export type Dialect = 'dsmr2.2' | 'dsmr3' | 'dsmr4' | 'dsmr5' | 'emucs' | 'smarty';

/** Serial settings of a P1 port. */
export interface SerialSettings {
  baudRate: number;
  dataBits: 7 | 8;
  parity: 'none' | 'even';
  stopBits: 1;
}

/** What distinguishes a dialect on the wire. */
export interface DialectInfo {
  /** Human name. */
  title: string;
  serial: SerialSettings;
  /** Whether telegrams carry a CRC-16/ARC after the `!`. */
  crc: boolean;
  /** Seconds between telegrams. */
  intervalS: number;
}

const S7E1: SerialSettings = { baudRate: 9600, dataBits: 7, parity: 'even', stopBits: 1 };
const S8N1: SerialSettings = { baudRate: 115200, dataBits: 8, parity: 'none', stopBits: 1 };

/**
 * The dialect table (docs/p1.md has it with the OBIS codes).
 * @example
 * ```ts
 * DIALECTS.dsmr5.serial; // { baudRate: 115200, dataBits: 8, parity: 'none', stopBits: 1 }
 * ```
 */
export const DIALECTS: Readonly<Record<Dialect, DialectInfo>> = {
  'dsmr2.2': { title: 'DSMR 2.2', serial: S7E1, crc: false, intervalS: 10 },
  dsmr3: { title: 'DSMR 3.0', serial: S7E1, crc: false, intervalS: 10 },
  dsmr4: { title: 'DSMR 4.x', serial: S8N1, crc: true, intervalS: 10 },
  dsmr5: { title: 'DSMR 5.0', serial: S8N1, crc: true, intervalS: 1 },
  emucs: { title: 'Belgian e-MUCS (Fluvius)', serial: S8N1, crc: true, intervalS: 1 },
  smarty: { title: 'Luxembourg Smarty (Sagemcom T210-D)', serial: S8N1, crc: true, intervalS: 10 },
};

/**
 * Whether `v` names a dialect.
 * @example
 * ```ts
 * isDialect('dsmr5'); // true
 * ```
 */
export function isDialect(v: string): v is Dialect {
  return Object.hasOwn(DIALECTS, v);
}

/** A parsed telegram. Registers in integer Wh, power in integer mW, time in Unix seconds. */
export interface P1Telegram {
  /** The identification line after `/` (manufacturer and model). */
  header: string;
  dialect: Dialect;
  /** Version line value (1-3:0.2.8 or 0-0:96.1.4), if any. */
  version?: string;
  /** Equipment id 0-0:96.1.1, decoded from hex ASCII when it is that. */
  equipmentId?: string;
  /** Meter clock 0-0:1.0.0 (absent before DSMR 4). */
  time?: number;
  /** The import register the meter is metered by: 1.8.0 if present, else the sum of the tariff registers. */
  importWh: number;
  /** 1-0:1.8.0, if present. */
  importTotalWh?: number;
  /** 1-0:1.8.1, 1.8.2, ... at index 0, 1, ... */
  importTariffWh: number[];
  /** Export register: 2.8.0 if present, else the sum of the tariff registers (absent if none). */
  exportWh?: number;
  exportTotalWh?: number;
  exportTariffWh: number[];
  /** 1-0:1.7.0 instantaneous import power. */
  powerImportMilliW?: number;
  /** 1-0:2.7.0 instantaneous export power. */
  powerExportMilliW?: number;
  /** 0-0:96.14.0 tariff indicator. */
  tariff?: number;
  /** Whether the telegram carried a CRC. */
  hasCrc: boolean;
  /** Well-formed OBIS lines this parser does not read. */
  ignoredLines: number;
  /** Lines that are not OBIS lines at all (gateway additions, noise in a CRC-less telegram). */
  foreignLines: number;
}

/** A telegram that cannot be read; the message says which line and why (never a register value). */
export class P1ParseError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'P1ParseError';
  }
}

const MAX_REGISTER_WH = 2 ** 48;
const OBIS_LINE = /^(\d{1,3}-\d{1,3}:\d{1,3}\.\d{1,3}\.\d{1,3})(?:\*255)?((?:\([^()]*\))+)$/;
const ENERGY = /^(\d{1,15})(?:\.(\d{1,9}))?\*(kWh|Wh)$/;
const POWER = /^(\d{1,12})(?:\.(\d{1,9}))?\*(kW|W)$/;
const TIMESTAMP = /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})([SW])$/;

/**
 * An energy value `digits[.digits]*kWh|Wh` as integer Wh (digits below a Wh are cut), or undefined.
 * @example
 * ```ts
 * energyWh('001581.123*kWh'); // 1581123
 * energyWh('006545766*Wh'); // 6545766
 * ```
 */
export function energyWh(value: string): number | undefined {
  const m = ENERGY.exec(value);
  if (!m) return undefined;
  const [, int, frac = '', unit] = m;
  const wh = unit === 'kWh' ? BigInt(int!) * 1000n + BigInt((frac + '000').slice(0, 3)) : BigInt(int!);
  return wh <= BigInt(MAX_REGISTER_WH) ? Number(wh) : undefined;
}

/**
 * A power value `digits[.digits]*kW|W` as integer mW (digits below a mW are cut), or undefined.
 * @example
 * ```ts
 * powerMilliW('00.244*kW'); // 244000
 * powerMilliW('000000286*W'); // 286000
 * ```
 */
export function powerMilliW(value: string): number | undefined {
  const m = POWER.exec(value);
  if (!m) return undefined;
  const [, int, frac = '', unit] = m;
  const places = unit === 'kW' ? 6 : 3;
  const mw = BigInt(int!) * 10n ** BigInt(places) + BigInt((frac + '000000').slice(0, places));
  return mw <= 4_000_000_000_000n ? Number(mw) : undefined;
}

/**
 * A P1 timestamp `YYMMDDhhmmssX` read in `tz` as Unix seconds. X (S = summer, W = winter time) picks the
 * instant of a wall time that occurs twice (the repeated hour when the clocks go back); elsewhere the wall
 * time has one instant and X is not needed. Throws {@link P1ParseError} on a malformed or non-existent time.
 * @example
 * ```ts
 * p1Time('231029023000S', 'Europe/Amsterdam'); // 1698539400 (00:30 UTC)
 * p1Time('231029023000W', 'Europe/Amsterdam'); // 1698543000 (01:30 UTC)
 * ```
 */
export function p1Time(text: string, tz: string | IANAZone): number {
  const m = TIMESTAMP.exec(text);
  if (!m) throw new P1ParseError(`timestamp "${text}" is not YYMMDDhhmmssS|W`);
  const [y, mo, d, h, mi, s] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  const ms = Date.UTC(2000 + y, mo - 1, d, h, mi, s);
  const t = new Date(ms);
  if (t.getUTCMonth() !== mo - 1 || t.getUTCDate() !== d || h > 23 || mi > 59 || s > 59) throw new P1ParseError(`timestamp "${text}" is not a date`);
  const zone = typeof tz === 'string' ? IANAZone.create(tz) : tz;
  if (!zone.isValid) throw new P1ParseError(`unknown time zone "${String(tz)}"`);
  const wall = ms / 1000;
  const offsetAt = (unix: number) => zone.offset(unix * 1000); // minutes
  const candidates = [...new Set([offsetAt(wall - 86400), offsetAt(wall + 86400), offsetAt(wall)])];
  const valid = candidates.filter((o) => offsetAt(wall - o * 60) === o).sort((a, b) => a - b);
  if (valid.length === 0) throw new P1ParseError(`timestamp "${text}" does not exist in ${zone.name} (clocks went forward)`);
  const offset = valid.length === 1 ? valid[0]! : m[7] === 'S' ? valid[valid.length - 1]! : valid[0]!;
  return wall - offset * 60;
}

function hexAscii(v: string): string {
  if (v.length > 0 && v.length % 2 === 0 && /^[0-9A-Fa-f]+$/.test(v)) {
    const s = Buffer.from(v, 'hex').toString('latin1');
    if (/^[\x20-\x7e]+$/.test(s)) return s;
  }
  return v;
}

function sum(values: number[]): number | undefined {
  return values.length === 0 ? undefined : values.reduce((a, b) => a + b, 0);
}

/**
 * Parses one whole telegram (from `/` to the line after `!`, as {@link P1TelegramParser} emits it) in time
 * zone `tz`. Throws {@link P1ParseError} if it has no import register or a value it reads is malformed.
 * @example
 * ```ts
 * const t = parseTelegram(bytes, 'Europe/Amsterdam');
 * t.importWh; // 1.8.1 + 1.8.2 in Wh
 * ```
 */
export function parseTelegram(telegram: Uint8Array | string, tz: string | IANAZone): P1Telegram {
  const text = typeof telegram === 'string' ? telegram : Buffer.from(telegram.buffer, telegram.byteOffset, telegram.byteLength).toString('latin1');
  if (text[0] !== '/') throw new P1ParseError('telegram does not start with "/"');
  const bang = text.lastIndexOf('!');
  if (bang < 0) throw new P1ParseError('telegram has no "!" end line');
  const rawLines = text.slice(1, bang).split(/\r?\n/);
  const header = rawLines.shift()!.trim();
  const hasCrc = /^[0-9A-F]{1,4}\s*$/.test(text.slice(bang + 1));
  // Logical lines: a line starting with "(" continues the previous one (DSMR 2.2/3 gas readings).
  const lines: string[] = [];
  for (const raw of rawLines) {
    const l = raw.trim();
    if (l.length === 0) continue;
    if (l[0] === '(' && lines.length > 0) lines[lines.length - 1] += l;
    else lines.push(l);
  }
  const values = new Map<string, string[]>();
  let foreignLines = 0;
  for (const l of lines) {
    const m = OBIS_LINE.exec(l);
    if (!m) {
      foreignLines++;
      continue;
    }
    if (values.has(m[1]!)) throw new P1ParseError(`OBIS ${m[1]} appears twice`);
    values.set(m[1]!, m[2]!.slice(1, -1).split(')('));
  }
  const read = new Set<string>();
  const one = (code: string): string | undefined => {
    const v = values.get(code);
    if (v === undefined) return undefined;
    read.add(code);
    return v[v.length - 1];
  };
  const energy = (code: string): number | undefined => {
    const v = one(code);
    if (v === undefined) return undefined;
    const wh = energyWh(v);
    if (wh === undefined) throw new P1ParseError(`OBIS ${code}: not an energy in kWh or Wh`);
    return wh;
  };
  const power = (code: string): number | undefined => {
    const v = one(code);
    if (v === undefined) return undefined;
    const mw = powerMilliW(v);
    if (mw === undefined) throw new P1ParseError(`OBIS ${code}: not a power in kW or W`);
    return mw;
  };
  const tariffs = (c: 1 | 2): number[] => {
    const out: number[] = [];
    for (let i = 1; i <= 9; i++) {
      const wh = energy(`1-0:${c}.8.${i}`);
      if (wh === undefined) break;
      out.push(wh);
    }
    return out;
  };
  const importTotalWh = energy('1-0:1.8.0');
  const importTariffWh = tariffs(1);
  const importWh = importTotalWh ?? sum(importTariffWh);
  if (importWh === undefined) throw new P1ParseError('telegram has no import register (1-0:1.8.0 or 1-0:1.8.1)');
  const exportTotalWh = energy('1-0:2.8.0');
  const exportTariffWh = tariffs(2);
  const exportWh = exportTotalWh ?? sum(exportTariffWh);
  const clock = one('0-0:1.0.0');
  const time = clock === undefined ? undefined : p1Time(clock, tz);
  const id = one('0-0:96.1.1');
  const tariffText = one('0-0:96.14.0');
  if (tariffText !== undefined && !/^\d{1,4}$/.test(tariffText)) throw new P1ParseError('OBIS 0-0:96.14.0: not a tariff number');
  const dsmrVersion = one('1-3:0.2.8');
  const beVersion = one('0-0:96.1.4');
  const equipmentId = id === undefined ? undefined : hexAscii(id);
  let dialect: Dialect;
  if (beVersion !== undefined || /^FLU/i.test(header)) dialect = 'emucs';
  else if (importTotalWh !== undefined && /\*Wh$/.test(values.get('1-0:1.8.0')!.at(-1)!)) dialect = 'smarty';
  else if (dsmrVersion?.startsWith('5')) dialect = 'dsmr5';
  else if (dsmrVersion !== undefined || hasCrc) dialect = 'dsmr4';
  else dialect = id !== undefined && equipmentId !== id ? 'dsmr3' : 'dsmr2.2';
  return {
    header,
    dialect,
    version: beVersion ?? dsmrVersion,
    equipmentId,
    time,
    importWh,
    importTotalWh,
    importTariffWh,
    exportWh,
    exportTotalWh,
    exportTariffWh,
    powerImportMilliW: power('1-0:1.7.0'),
    powerExportMilliW: power('1-0:2.7.0'),
    tariff: tariffText === undefined ? undefined : Number(tariffText),
    hasCrc,
    ignoredLines: [...values.keys()].filter((k) => !read.has(k)).length,
    foreignLines,
  };
}
