/**
 * The plaintext reading payload: what a meter measures, before ciphering (docs/protocol.md §5).
 *
 * A payload is one load-profile batch in CBOR, in one of two forms:
 * - import only: `[prevWh, [[time, period, importWh, powerW, status], ...]]`;
 * - with the export register: `[prevWh, [[time, period, importWh, powerW, status, exportWh], ...], prevExportWh]`.
 *
 * - `prevWh`: the import register (OBIS 1-0:1.8.0) at the start of the first reading;
 * - `time`: start of the measurement period, Unix seconds (the period is `[time, time + period)`);
 * - `period`: length of the period in seconds (1..86400);
 * - `importWh`: import register 1-0:1.8.0 at the end of the period, integer Wh (register resolution);
 * - `powerW`: average active import power over the period (1-0:1.7.0), integer W;
 * - `status`: bit set of {@link Status};
 * - `exportWh`: export register 1-0:2.8.0 (energy delivered to the grid) at the end of the period, integer Wh;
 * - `prevExportWh`: the export register at the start of the first reading.
 * The short form means "the export register is 0 throughout": a meter that never exported (no panels) sends
 * what costs least, and once its export register moves it sends the long form. Every reading of a batch has
 * the same form. The energy of a reading is the register difference to the previous reading (or to the batch's
 * starting register), so a batch carries its own starting point and a receiver can detect a gap before it.
 * @module
 */
import { asArray, asUint, cborDecode, cborEncode } from './cbor.js';

/** Status flags of a reading (modelled on the DLMS/COSEM profile status word). */
export const Status = {
  /** The meter lost power during the period (the register still covers everything measured). */
  POWER_FAILURE: 0x01,
  /** The meter clock was set during the period. */
  CLOCK_SET: 0x02,
  /**
   * Both registers were reset to zero at the start of this period (a meter exchange); its energies are
   * `importWh` and `exportWh` themselves.
   */
  REGISTER_RESET: 0x04,
} as const;
const ALL_STATUS = Status.POWER_FAILURE | Status.CLOCK_SET | Status.REGISTER_RESET;

export interface Reading {
  time: number;
  period: number;
  importWh: number;
  powerW: number;
  status: number;
  /** Export register 1-0:2.8.0 at the end of the period, Wh; absent means 0 (a meter that never exported). */
  exportWh?: number;
}

export interface ReadingBatch {
  /** Import register at the start of the first reading, Wh. */
  prevWh: number;
  readings: Reading[];
  /** Export register at the start of the first reading, Wh; absent means 0 (the short form). */
  prevExportWh?: number;
}

/** Largest number of readings in one batch (keeps one frame well under the link MTU). */
export const MAX_READINGS_PER_BATCH = 60;
const MAX_U32 = 0xffffffff;
const MAX_REGISTER = 2 ** 48; // 281 TWh: far beyond any meter, still exact in a double

/**
 * Encodes a batch of readings as CBOR.
 * @example
 * ```ts
 * encodeReadingBatch({ prevWh: 1000, readings: [{ time: 1700000000, period: 60, importWh: 1002, powerW: 120, status: 0 }] });
 * ```
 */
export function encodeReadingBatch(batch: ReadingBatch): Buffer {
  return cborEncode(checkBatch(batch, 'batch'));
}

/**
 * Decodes and validates a CBOR reading batch; throws `TypeError` on anything malformed, including a
 * register that decreases without the REGISTER_RESET flag.
 * @example
 * ```ts
 * const { prevWh, readings } = decodeReadingBatch(plaintext);
 * ```
 */
export function decodeReadingBatch(bytes: Uint8Array): ReadingBatch {
  return parseBatchArray(cborDecode(bytes), 'reading batch');
}

/**
 * Validates a decoded batch array (either form of §5), as {@link decodeReadingBatch} does after CBOR decoding;
 * throws `TypeError` naming the bad field.
 * @example
 * ```ts
 * parseBatchArray([1000, [[1700000000, 60, 1002, 120, 0]]], 'stream body'); // { prevWh: 1000, readings: [...] }
 * ```
 */
export function parseBatchArray(v: unknown, name: string): ReadingBatch {
  const top = asArray(v, name, 2, 3);
  const long = top.length === 3;
  const prevWh = asUint(top[0], 'prevWh', MAX_REGISTER);
  const list = asArray(top[1], 'readings', 1, MAX_READINGS_PER_BATCH);
  const readings = list.map((r, i): Reading => {
    const a = asArray(r, `readings[${i}]`, long ? 6 : 5, long ? 6 : 5);
    const reading: Reading = {
      time: asUint(a[0], `readings[${i}].time`, MAX_U32),
      period: asUint(a[1], `readings[${i}].period`, 86400),
      importWh: asUint(a[2], `readings[${i}].importWh`, MAX_REGISTER),
      powerW: asUint(a[3], `readings[${i}].powerW`, MAX_U32),
      status: asUint(a[4], `readings[${i}].status`, 0xff),
    };
    if (long) reading.exportWh = asUint(a[5], `readings[${i}].exportWh`, MAX_REGISTER);
    return reading;
  });
  const batch: ReadingBatch = { prevWh, readings };
  if (long) batch.prevExportWh = asUint(top[2], 'prevExportWh', MAX_REGISTER);
  checkBatch(batch, name);
  return batch;
}

/**
 * True when the batch needs the long form: an export register that is not 0 somewhere in it.
 * @example
 * ```ts
 * hasExport({ prevWh: 5, readings: [{ ..., exportWh: 0 }] }); // false: sent in the short form
 * ```
 */
export function hasExport(batch: ReadingBatch): boolean {
  return (batch.prevExportWh ?? 0) !== 0 || batch.readings.some((r) => (r.exportWh ?? 0) !== 0);
}

function checkBatch(batch: ReadingBatch, name: string): unknown[] {
  let prev = batch.prevWh;
  let prevExport = batch.prevExportWh ?? 0;
  let prevEnd = -1;
  asUint(prev, `${name}.prevWh`, MAX_REGISTER);
  asUint(prevExport, `${name}.prevExportWh`, MAX_REGISTER);
  asArray(batch.readings, `${name}.readings`, 1, MAX_READINGS_PER_BATCH);
  const long = hasExport(batch);
  const out = batch.readings.map((r, i) => {
    const at = `${name}.readings[${i}]`;
    asUint(r.time, `${at}.time`, MAX_U32);
    if (asUint(r.period, `${at}.period`, 86400) === 0) throw new TypeError(`${at}.period must be > 0`);
    asUint(r.importWh, `${at}.importWh`, MAX_REGISTER);
    asUint(r.powerW, `${at}.powerW`, MAX_U32);
    asUint(r.status, `${at}.status`, 0xff);
    if (r.status & ~ALL_STATUS) throw new TypeError(`${at}.status has unknown flags`);
    if (r.time < prevEnd) throw new TypeError(`${at}.time goes backwards`);
    const start = r.status & Status.REGISTER_RESET ? 0 : prev;
    if (r.importWh < start) throw new TypeError(`${at}.importWh decreases without the register-reset flag`);
    const exportWh = asUint(r.exportWh ?? 0, `${at}.exportWh`, MAX_REGISTER);
    if (exportWh < (r.status & Status.REGISTER_RESET ? 0 : prevExport)) throw new TypeError(`${at}.exportWh decreases without the register-reset flag`);
    prev = r.importWh;
    prevExport = exportWh;
    prevEnd = r.time + r.period;
    return long ? [r.time, r.period, r.importWh, r.powerW, r.status, exportWh] : [r.time, r.period, r.importWh, r.powerW, r.status];
  });
  return long ? [batch.prevWh, out, batch.prevExportWh ?? 0] : [batch.prevWh, out];
}

/**
 * Imported energy of each reading in Wh (import register differences), in order.
 * @example
 * ```ts
 * readingEnergies({ prevWh: 10, readings: [{ importWh: 12, ... }, { importWh: 15, ... }] }); // [2, 3]
 * ```
 */
export function readingEnergies(batch: ReadingBatch): number[] {
  let prev = batch.prevWh;
  return batch.readings.map((r) => {
    const e = r.importWh - (r.status & Status.REGISTER_RESET ? 0 : prev);
    prev = r.importWh;
    return e;
  });
}

/**
 * Exported energy of each reading in Wh (export register differences), in order; all 0 for the short form.
 * @example
 * ```ts
 * readingExports({ prevWh: 10, prevExportWh: 3, readings: [{ importWh: 12, exportWh: 7, ... }] }); // [4]
 * ```
 */
export function readingExports(batch: ReadingBatch): number[] {
  let prev = batch.prevExportWh ?? 0;
  return batch.readings.map((r) => {
    const reg = r.exportWh ?? 0;
    const e = reg - (r.status & Status.REGISTER_RESET ? 0 : prev);
    prev = reg;
    return e;
  });
}
