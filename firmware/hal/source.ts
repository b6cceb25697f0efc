/**
 * The meter's measurement source: where the power it meters comes from (a dataset or a model).
 * @module
 */

/** One measurement: constant power `powerMilliW` over `[time, time + period)`. */
export interface Sample {
  /** Start of the period, Unix seconds. */
  time: number;
  /** Length of the period, seconds (1..86400). */
  period: number;
  /** Average import power over the period, integer milliwatts. */
  powerMilliW: number;
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
   * Iterates the samples whose period starts at or after `from` (Unix seconds; all samples if omitted).
   * Breaking out of the loop releases any file handle.
   */
  samples(from?: number): AsyncIterable<Sample>;
}
