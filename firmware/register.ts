/**
 * The meter's cumulative energy registers, kept exactly: import (OBIS 1-0:1.8.0) and export (1-0:2.8.0,
 * energy delivered to the grid) are two instances of the same {@link EnergyRegister}.
 *
 * Energy is integrated as an integer number of milliwatt-seconds (a sample of `p` mW over `s` seconds adds
 * exactly `p * s` mW·s), in a `bigint` so it can neither round nor overflow. The register value shown in
 * readings is `floor(total / 3_600_000)` Wh, so the energy of any run of periods, taken as a register
 * difference, is exact by construction: differences telescope, nothing is ever rounded twice.
 * A meter reading a real meter (P1) does not integrate: it adopts that meter's own register (`adopt`), so a
 * lost or corrupted telegram only shifts energy to the next reading.
 * @module
 */

/** Milliwatt-seconds in one watt-hour. */
export const MILLIWS_PER_WH = 3_600_000n;

/** The outcome of adopting a meter's own register value. */
export interface Adoption {
  /** Register now, integer Wh. */
  wh: number;
  /** Whether the value went backwards (meter replaced, or a corrupt line). */
  reset: boolean;
}

/** The outcome of integrating one sample into an import register. */
export interface Integration {
  /** Register at the end of the period, integer Wh. */
  importWh: number;
  /** Average power over the period, W, rounded half up. */
  powerW: number;
}

/**
 * A cumulative energy register (import or export). Construct it from a persisted total to continue after a
 * restart.
 * @example
 * ```ts
 * const exported = new EnergyRegister();
 * exported.add(2_400_000, 60); // 2.4 kW delivered for a minute -> 40 (Wh)
 * exported.milliWs; // 144_000_000n
 * ```
 */
export class EnergyRegister {
  private total: bigint;

  constructor(totalMilliWs: bigint = 0n) {
    if (typeof totalMilliWs !== 'bigint' || totalMilliWs < 0n) throw new RangeError('register total must be a non-negative bigint');
    this.total = totalMilliWs;
  }

  /** Total integrated energy, mW·s. */
  get milliWs(): bigint {
    return this.total;
  }

  /** Register value, integer Wh (floor of the exact total). */
  get wh(): number {
    return Number(this.total / MILLIWS_PER_WH);
  }

  /**
   * Adds `powerMilliW` mW sustained for `periodS` seconds; returns the register, Wh.
   * @example
   * ```ts
   * reg.add(250_000, 900); // 250 W for 15 minutes
   * ```
   */
  add(powerMilliW: number, periodS: number): number {
    if (!Number.isSafeInteger(powerMilliW) || powerMilliW < 0) throw new RangeError('power must be a non-negative integer in mW');
    if (!Number.isSafeInteger(periodS) || periodS <= 0) throw new RangeError('period must be a positive integer in seconds');
    this.total += BigInt(powerMilliW) * BigInt(periodS);
    return this.wh;
  }

  /**
   * Sets the register to `wh`, a real meter's own register reading (P1): exact, nothing integrated. A value
   * below the current register cannot be energy (the meter was replaced, or the line is corrupt): it is
   * adopted all the same and reported as a reset; the meter decides what the reading says (firmware/meter.ts).
   * @example
   * ```ts
   * reg.adopt(1_234_567); // { wh: 1234567, reset: false }
   * reg.adopt(12); // { wh: 12, reset: true }
   * ```
   */
  adopt(wh: number): Adoption {
    if (!Number.isSafeInteger(wh) || wh < 0) throw new RangeError('register must be a non-negative integer in Wh');
    const reset = wh < this.wh;
    this.total = BigInt(wh) * MILLIWS_PER_WH;
    return { wh, reset };
  }
}

/**
 * The import register, with `integrate` giving what an import reading shows (register and average power).
 * @example
 * ```ts
 * const reg = new ImportRegister();
 * reg.integrate(1_500_000, 60); // 1.5 kW for a minute -> { importWh: 25, powerW: 1500 }
 * reg.milliWs; // 90_000_000n
 * ```
 */
export class ImportRegister extends EnergyRegister {
  /**
   * Adds `powerMilliW` mW sustained for `periodS` seconds.
   * @example
   * ```ts
   * reg.integrate(250_000, 900); // 250 W for 15 minutes
   * ```
   */
  integrate(powerMilliW: number, periodS: number): Integration {
    return { importWh: this.add(powerMilliW, periodS), powerW: averagePowerW(powerMilliW) };
  }
}

/**
 * Average power in W of a sample, rounded half up: `round(energy / period)` with energy in W·s, which for a
 * constant-power sample is `round(mW / 1000)`.
 * @example
 * ```ts
 * averagePowerW(1_499); // 1
 * averagePowerW(1_500); // 2
 * ```
 */
export function averagePowerW(powerMilliW: number): number {
  return Math.floor((powerMilliW + 500) / 1000);
}
