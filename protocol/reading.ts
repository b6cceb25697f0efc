/**
 * The plaintext reading payload: what a meter measures, before ciphering.
 *
 * A payload is one load-profile batch: `[prevWh, [reading, ...]]` in CBOR, where `prevWh` is the
 * import register (OBIS 1-0:1.8.0) at the start of the first reading and each reading is
 * `[time, period, importWh, powerW, status]`:
 * - `time`: start of the measurement period, Unix seconds (the period is `[time, time + period)`);
 * - `period`: length of the period in seconds (1..86400);
 * - `importWh`: import register 1-0:1.8.0 at the end of the period, integer Wh (register resolution);
 * - `powerW`: average active import power over the period (1-0:1.7.0), integer W;
 * - `status`: bit set of {@link Status}.
 * The energy of a reading is the register difference to the previous reading (or to `prevWh`), so a batch
 * carries its own starting point and a receiver can detect a gap before it.
 * @module
 */
import { asArray, asUint, cborDecode, cborEncode } from './cbor.js';

/** Status flags of a reading (modelled on the DLMS/COSEM profile status word). */
export const Status = {
  /** The meter lost power during the period (the register still covers everything measured). */
  POWER_FAILURE: 0x01,
  /** The meter clock was set during the period. */
  CLOCK_SET: 0x02,
  /** The register was reset to zero at the start of this period; its energy is `importWh` itself. */
  REGISTER_RESET: 0x04,
} as const;
const ALL_STATUS = Status.POWER_FAILURE | Status.CLOCK_SET | Status.REGISTER_RESET;

export interface Reading {
  time: number;
  period: number;
  importWh: number;
  powerW: number;
  status: number;
}

export interface ReadingBatch {
  /** Import register at the start of the first reading, Wh. */
  prevWh: number;
  readings: Reading[];
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
  const top = asArray(cborDecode(bytes), 'reading batch', 2, 2);
  const prevWh = asUint(top[0], 'prevWh', MAX_REGISTER);
  const list = asArray(top[1], 'readings', 1, MAX_READINGS_PER_BATCH);
  const readings = list.map((r, i) => {
    const a = asArray(r, `readings[${i}]`, 5, 5);
    return {
      time: asUint(a[0], `readings[${i}].time`, MAX_U32),
      period: asUint(a[1], `readings[${i}].period`, 86400),
      importWh: asUint(a[2], `readings[${i}].importWh`, MAX_REGISTER),
      powerW: asUint(a[3], `readings[${i}].powerW`, MAX_U32),
      status: asUint(a[4], `readings[${i}].status`, 0xff),
    };
  });
  checkBatch({ prevWh, readings }, "reading batch");
  return { prevWh, readings };
}

function checkBatch(batch: ReadingBatch, name: string): unknown[] {
  let prev = batch.prevWh;
  let prevEnd = -1;
  asUint(prev, `${name}.prevWh`, MAX_REGISTER);
  asArray(batch.readings, `${name}.readings`, 1, MAX_READINGS_PER_BATCH);
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
    prev = r.importWh;
    prevEnd = r.time + r.period;
    return [r.time, r.period, r.importWh, r.powerW, r.status];
  });
  return [batch.prevWh, out];
}

/**
 * Energy of each reading in Wh (register differences), in order.
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
