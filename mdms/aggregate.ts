/**
 * The MDMS's own privacy policy: what it refuses to store whatever the PES sends (defence in depth; the PES
 * is the first line). The body format itself is protocol/aggregate.ts.
 * @module
 */
import type { Aggregate } from '../protocol/aggregate.js';

/** What the MDMS itself refuses to store, whatever the PES sends. */
export interface PrivacyPolicy {
  /** Shortest billing period accepted, in seconds (production: 28 days). */
  minBillingPeriodS: number;
  /** Fewest meters a neighbourhood aggregate may cover. */
  k: number;
}

/** Defaults of `smartermeter mdms`: one-day billing periods (demo data is short), k = 1 (the PES enforces the real k). */
export const DEFAULT_POLICY: Readonly<PrivacyPolicy> = { minBillingPeriodS: 86_400, k: 1 };

/**
 * Returns why an aggregate must not be stored under `policy`, or `null` if it may be. The reason names the
 * rule and the policy figure, never a reading value.
 * @example
 * ```ts
 * privacyViolation(agg, { minBillingPeriodS: 28 * 86400, k: 20 }); // 'billing period 900 s is shorter than ...'
 * ```
 */
export function privacyViolation(agg: Aggregate, policy: PrivacyPolicy): string | null {
  if (agg.kind === 'billing') {
    const span = agg.end - agg.start;
    return span < policy.minBillingPeriodS ? `billing period ${span} s is shorter than the minimum ${policy.minBillingPeriodS} s` : null;
  }
  return agg.meters < policy.k ? `neighbourhood aggregate covers fewer than k = ${policy.k} meters` : null;
}
