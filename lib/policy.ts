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

/**
 * The differencing rule's test (docs/privacy.md), shared by the classic PES and the blind aggregators: would
 * releasing a window of `meters` let the MDMS subtract it from a release of one of `refs` (the memberships already
 * released for its neighbourhood, or its provisioned meters before the first)? True when it differs from one of
 * them by 1 to revision-k - 1 meters; a difference of 0 or of at least revision-k is allowed.
 * @example
 * ```ts
 * differsByFew(new Set(['m1', 'm2']), [new Set(['m1', 'm2', 'm3'])], 3); // true: one meter apart
 * ```
 */
export function differsByFew(meters: ReadonlySet<string>, refs: readonly ReadonlySet<string>[], revisionK: number): boolean {
  return refs.some((ref) => {
    let d = 0;
    for (const m of meters) if (!ref.has(m)) d++;
    for (const m of ref) if (!meters.has(m)) d++;
    return d > 0 && d < revisionK;
  });
}
