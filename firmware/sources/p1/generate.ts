/**
 * A small telegram generator, written from the P1 specifications: test fixtures, captures for `meter` and
 * `replay`, and the benchmark use it. It formats values as each dialect's meters do (field widths,
 * decimals, units), writes the clock in the meter's zone with S/W, and appends the CRC where the dialect has
 * one. It does not model a household: callers give the register values.
 * @module
 */
import { DateTime } from 'luxon';
import { crc16arc, crcText } from './crc.js';
import { DIALECTS, type Dialect } from './telegram.js';

export interface TelegramSpec {
  dialect: Dialect;
  /** Identification line after `/` (default: a typical one for the dialect). */
  header?: string;
  /** Meter clock, Unix seconds (written as 0-0:1.0.0 for DSMR 4 and later; DSMR 2.2/3 have no clock). */
  time?: number;
  /** Zone of the meter clock (default Europe/Amsterdam). */
  tz?: string;
  /** Import registers per tariff (1.8.1, 1.8.2, ...), Wh. Smarty also gets their sum as 1.8.0. */
  importWh: number[];
  /** Export registers per tariff, Wh (default zeros). */
  exportWh?: number[];
  /** Import power 1-0:1.7.0, W (default 0). */
  powerW?: number;
  /** Export power 1-0:2.7.0, W (default 0). */
  exportPowerW?: number;
  /** Equipment id (written as hex ASCII from DSMR 3 on). */
  equipmentId?: string;
  /** Tariff indicator 0-0:96.14.0 (default 1). */
  tariff?: number;
  /** Lines inserted before the `!` as they are (unknown OBIS codes, gateway additions). */
  extraLines?: string[];
}

const HEADERS: Record<Dialect, string> = {
  'dsmr2.2': 'ISk5\\2MT382-1004',
  dsmr3: 'ISk5\\2MT382-1000',
  dsmr4: 'KFM5KAIFA-METER',
  dsmr5: 'ISk5\\2M550T-1012',
  emucs: 'FLU5\\253769484_A',
  smarty: 'Sag5\\T210-D ESMR5.0',
};

function kwh(wh: number, intDigits: number): string {
  return `${String(Math.floor(wh / 1000)).padStart(intDigits, '0')}.${String(wh % 1000).padStart(3, '0')}*kWh`;
}

function kw(w: number, intDigits: number, decimals: 2 | 3): string {
  const scaled = decimals === 3 ? w : Math.round(w / 10);
  const div = decimals === 3 ? 1000 : 100;
  return `${String(Math.floor(scaled / div)).padStart(intDigits, '0')}.${String(scaled % div).padStart(decimals, '0')}*kW`;
}

/**
 * A P1 timestamp `YYMMDDhhmmssX` of `time` in `tz`.
 * @example
 * ```ts
 * p1Timestamp(1698539400, 'Europe/Amsterdam'); // '231029023000S'
 * ```
 */
export function p1Timestamp(time: number, tz: string): string {
  const dt = DateTime.fromSeconds(time, { zone: tz });
  return dt.toFormat('yyMMddHHmmss') + (dt.isInDST ? 'S' : 'W');
}

/**
 * Builds one telegram as the meter sends it (latin1 bytes, CRLF line ends, CRC where the dialect has one).
 * @example
 * ```ts
 * const t = buildTelegram({ dialect: 'dsmr5', time: 1700000000, importWh: [1234567, 89012], powerW: 480 });
 * ```
 */
export function buildTelegram(spec: TelegramSpec): Buffer {
  const { dialect, tz = 'Europe/Amsterdam', importWh, exportWh = importWh.map(() => 0), powerW = 0, exportPowerW = 0, tariff = 1 } = spec;
  const info = DIALECTS[dialect];
  if (!info) throw new TypeError(`unknown dialect "${String(dialect)}"`);
  const old = dialect === 'dsmr2.2' || dialect === 'dsmr3';
  const lines: string[] = [];
  if (dialect === 'emucs') lines.push('0-0:96.1.4(50217)');
  else if (dialect === 'dsmr4') lines.push('1-3:0.2.8(42)');
  else if (dialect === 'dsmr5' || dialect === 'smarty') lines.push('1-3:0.2.8(50)');
  if (!old && spec.time !== undefined) lines.push(`0-0:1.0.0(${p1Timestamp(spec.time, tz)})`);
  const id = spec.equipmentId ?? 'E0000000000000001';
  lines.push(`0-0:96.1.1(${dialect === 'dsmr2.2' ? id : Buffer.from(id, 'latin1').toString('hex').toUpperCase()})`);
  if (dialect === 'smarty') {
    const wh = (v: number) => `${String(v).padStart(9, '0')}*Wh`;
    const sum = (a: number[]) => a.reduce((x, y) => x + y, 0);
    lines.push(`1-0:1.8.0(${wh(sum(importWh))})`);
    importWh.forEach((v, i) => lines.push(`1-0:1.8.${i + 1}(${wh(v)})`));
    lines.push(`1-0:1.7.0(${String(powerW).padStart(9, '0')}*W)`);
    lines.push(`1-0:2.8.0(${wh(sum(exportWh))})`);
    exportWh.forEach((v, i) => lines.push(`1-0:2.8.${i + 1}(${wh(v)})`));
    lines.push(`1-0:2.7.0(${String(exportPowerW).padStart(9, '0')}*W)`);
  } else {
    const width = old ? 5 : 6;
    importWh.forEach((v, i) => lines.push(`1-0:1.8.${i + 1}(${kwh(v, width)})`));
    exportWh.forEach((v, i) => lines.push(`1-0:2.8.${i + 1}(${kwh(v, width)})`));
    lines.push(`0-0:96.14.0(${String(tariff).padStart(4, '0')})`);
    lines.push(`1-0:1.7.0(${old ? kw(powerW, 4, 2) : kw(powerW, 2, 3)})`);
    lines.push(`1-0:2.7.0(${old ? kw(exportPowerW, 4, 2) : kw(exportPowerW, 2, 3)})`);
    if (old) lines.push('0-1:24.3.0(161107190000)(00)(60)(1)(0-1:24.2.1)(m3)', '(00001.001)');
    else lines.push('1-0:32.7.0(230.0*V)', `0-1:24.2.${dialect === 'emucs' ? 3 : 1}(${spec.time !== undefined ? p1Timestamp(spec.time - (spec.time % 300), tz) : '000101000000W'})(00123.456*m3)`);
  }
  lines.push(...(spec.extraLines ?? []));
  const body = Buffer.from(`/${spec.header ?? HEADERS[dialect]}\r\n\r\n${lines.map((l) => `${l}\r\n`).join('')}!`, 'latin1');
  const crc = info.crc ? crcText(crc16arc(body)) : '';
  return Buffer.concat([body, Buffer.from(`${crc}\r\n`, 'latin1')]);
}
