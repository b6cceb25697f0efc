/**
 * The MDMS's own privacy policy: what it refuses to store whatever the PES sends (defence in depth; the PES
 * is the first line). The body format itself is protocol/aggregate.ts.
 * @module
 */
import { DEFAULT_K } from '../lib/policy.js';
import type { Aggregate } from '../protocol/aggregate.js';

/** What the MDMS itself refuses to store, whatever the PES sends. */
export interface PrivacyPolicy {
  /** Shortest billing period accepted, in seconds (production: 28 days). */
  minBillingPeriodS: number;
  /** Fewest meters a neighbourhood aggregate may cover: the PES's k (lib/policy.ts). */
  k: number;
  /** The fleet's households and neighbourhoods; when given, aggregates for any other key are refused. */
  fleet?: { households: ReadonlySet<string>; neighbourhoods: ReadonlySet<string> };
}

/** Defaults of `smartermeter mdms`: one-day billing periods (demo data is short), the PES's default k. */
export const DEFAULT_POLICY: Readonly<PrivacyPolicy> = { minBillingPeriodS: 86_400, k: DEFAULT_K };

/** The rule an aggregate broke: each is counted on its own. */
export type PolicyRule = 'privacy' | 'unknown' | 'negative';

/**
 * Which rule of `policy` an aggregate breaks and why, or `null` if it may be stored. Checked in order:
 * unknown key, negative energy (imported or exported), then the privacy rules (k, shortest billing period). The reason names the
 * rule and the policy figure, never a reading value.
 * @example
 * ```ts
 * policyViolation(agg, { minBillingPeriodS: 28 * 86400, k: 20 }); // { rule: 'privacy', reason: 'neighbourhood aggregate covers fewer than k = 20 meters' }
 * ```
 */
export function policyViolation(agg: Aggregate, policy: PrivacyPolicy): { rule: PolicyRule; reason: string } | null {
  const known = agg.kind === 'billing' ? policy.fleet?.households : policy.fleet?.neighbourhoods;
  if (known && !known.has(agg.key)) return { rule: 'unknown', reason: `${agg.kind === 'billing' ? 'household' : 'neighbourhood'} ${agg.key} is not in the fleet` };
  // Export is as revealing as import and follows the same rules (k and the billing period cover the whole body).
  const energies = agg.kind === 'billing' ? [...Object.values(agg.bands), ...Object.values(agg.exportBands ?? {})] : [agg.energyWh, agg.exportWh ?? 0];
  if (energies.some((e) => e < 0)) return { rule: 'negative', reason: 'negative energy' };
  const reason = privacyViolation(agg, policy);
  return reason ? { rule: 'privacy', reason } : null;
}

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
