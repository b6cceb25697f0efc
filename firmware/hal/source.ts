/**
 * The meter's measurement source: where the power it meters comes from (a dataset or a model).
 * @module
 */

/**
 * One measurement: constant import power `powerMilliW` (and export power `exportMilliW`, for a household
 * with panels) over `[time, time + period)`, or, from a source that reads a real meter (P1), that meter's
 * own import and export registers at the end of the period in `importWh` and `exportWh`.
 */
export interface Sample {
  /** Start of the period, Unix seconds. */
  time: number;
  /** Length of the period, seconds (1..86400). */
  period: number;
  /**
   * Average import power over the period, integer milliwatts. With `importWh` it is only reported (the
   * reading's `powerW`), never integrated.
   */
  powerMilliW: number;
  /**
   * The metered meter's own cumulative import register at the end of the period, integer Wh. When present
   * the meter adopts it exactly instead of integrating `powerMilliW`, so a lost sample only shifts energy
   * (see firmware/register.ts `adopt`). Sources that model power leave it out.
   */
  importWh?: number;
  /**
   * Average export power over the period (energy delivered to the grid), integer milliwatts; absent = 0.
   * Integrated into the export register (1-0:2.8.0) as `powerMilliW` is into the import register; a model
   * that nets load and production per step gives one of the two as 0. Ignored when `importWh` is present.
   */
  exportMilliW?: number;
  /**
   * The metered meter's own cumulative export register at the end of the period, integer Wh; only beside
   * `importWh`. Absent: the export register keeps its value (a meter without export lines).
   */
  exportWh?: number;
}

/**
 * A source of samples in strictly increasing, non-overlapping time order.
 * @example
 * ```ts
 * for await (const s of source.samples(resumeAt)) meter.tick(s);
 * ```
 */
export interface Source {
  /** Short description for logs (a file name or `synthetic:<seed>`); never sample values. */
  readonly name: string;
  /**
   * Whether the next sample may take indefinitely long to come (a live P1 port): the meter then stops without
   * waiting for it. Files and models are not live.
   */
  readonly live?: boolean;
  /**
   * Iterates the samples whose period starts at or after `from` (Unix seconds; all samples if omitted).
   * Breaking out of the loop releases any file handle.
   */
  samples(from?: number): AsyncIterable<Sample>;
}
