/**
 * The release policy's defaults, one setting for every actor that enforces it: the PES releases a
 * neighbourhood aggregate only over at least k meters, and the MDMS refuses to store one over fewer
 * (defence in depth). The demo, `replay` and the separate commands all start from these.
 * @module
 */

/**
 * Fewest distinct meters in a released neighbourhood aggregate. 20 follows Buescher et al. (PoPETs 2017):
 * aggregates of 20 households at 15-minute resolution still leak appliance events, so it is a floor, not a
 * comfortable margin.
 * @example
 * ```ts
 * program.option('--k <n>', 'fewest meters per aggregate', intOption('--k', 1, 1_000_000), DEFAULT_K);
 * ```
 */
export const DEFAULT_K = 20;
