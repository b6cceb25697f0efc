/**
 * The meter's measurement source: where the power it meters comes from (a dataset or a model).
 * @module
 */

/**
 * One measurement: constant power `powerMilliW` over `[time, time + period)`, or, from a source that reads a
 * real meter (P1), that meter's own import register at the end of the period in `importWh`.
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
