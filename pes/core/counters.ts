/**
 * The PES's counters. Every rejected input increments exactly one of them; none carries a reading value.
 * @module
 */

export const COUNTER_NAMES = [
  /** Frames verified, deciphered and folded. */
  'framesOk',
  /** Readings folded (energy of accepted frames). */
  'readings',
  /** GCM tag did not verify (tampered frame, wrong key, re-labelled system title), whatever its counter. */
  'badTag',
  /** System title of no provisioned meter. */
  'unknownMeter',
  /** Frame authenticated under a meter key retired by a rotation (the meter was seen using a newer key). */
  'retiredKey',
  /** Meters seen switching to a rotated key (their first frame authenticated under it). */
  'keySwitches',
  /** Authenticated frame whose invocation counter was already accepted or is below the anti-replay window. */
  'replay',
  /** Bursts of replays from one meter (e.g. firmware restarted with a wiped counter store). */
  'replayAlarm',
  /** Authenticated frame identical to the one already accepted with its counter (a gateway re-published it). */
  'duplicateFrame',
  /** Frame or reading batch that does not decode. */
  'malformedFrame',
  /** Uplink payload that does not decode, or names another gateway than its topic. */
  'malformedUplink',
  /** Batches whose readings go back in time, or that overlap processed time without filling a gap. */
  'timeBackwards',
  /** Batches whose register decreases without the REGISTER_RESET flag. */
  'registerDecrease',
  /** Batches with a reading time absurdly far (more than max skew) from the watermark. */
  'absurdTime',
  /** Batches for windows already past the retention horizon. */
  'tooOld',
  /** Gaps before a batch (energy shifted to the batch's first window). */
  'gapsOpened',
  /** Late batches that filled (part of) a remembered gap. */
  'gapsFilled',
  /** Gaps forgotten because a meter had more than MAX_GAPS open. */
  'gapsForgotten',
  /** Aggregates released (sealed and queued for the MDMS), all revisions. */
  'released',
  /** Of `released`, revisions (revision >= 1) caused by late readings. */
  'lateRevisions',
  /** Neighbourhood windows closed with fewer than k meters (counted once per window). */
  'suppressed',
  /** Evaluations where a neighbourhood revision was held back because fewer than revision-k meters changed it. */
  'revisionHeld',
  /** Evaluations where a neighbourhood release was held because its membership differs from a released one by 1 to revision-k - 1 meters (the differencing guard). */
  'membershipHeld',
  /** Neighbourhood releases noised for differential privacy (each spends dpEpsilon of its neighbourhood's budget). */
  'dpReleases',
  /** Evaluations where a neighbourhood release was held because it would exceed the neighbourhood's DP budget (--dp-budget per day, or the ledger's 10^6 ceiling). */
  'dpBudgetHeld',
  /** Release attempts whose total decrypted to a negative number (not published). */
  'negativeTotal',
  /** Policy statements queued for the MDMS (on start, on guard-counter change, on stop). */
  'policyStatements',
  /** Household stream messages queued. */
  'streamMessages',
  /** Accepted batches of a household whose public key is unknown (not streamed). */
  'noHouseholdKey',
  /** Household public keys accepted at runtime. */
  'householdKeys',
  /** Household key messages rejected. */
  'badHouseholdKey',
] as const;

export type CounterName = (typeof COUNTER_NAMES)[number];

/**
 * The counters the policy statement reports (docs/protocol.md §11.3): how often each release guard acted, and
 * how much was released, so the utility sees the guards at work. A change in one of them is what makes the
 * PES publish a new statement.
 * @example
 * ```ts
 * Object.fromEntries(GUARD_COUNTERS.map((n) => [n, counters[n]])); // the statement's `counters`
 * ```
 */
export const GUARD_COUNTERS = ['suppressed', 'revisionHeld', 'membershipHeld', 'dpReleases', 'dpBudgetHeld', 'negativeTotal', 'released', 'lateRevisions'] as const satisfies readonly CounterName[];
export type PesCounters = Record<CounterName, number>;

/**
 * A fresh set of counters, all zero.
 * @example
 * ```ts
 * const c = newCounters(); c.replay++;
 * ```
 */
export function newCounters(): PesCounters {
  return Object.fromEntries(COUNTER_NAMES.map((n) => [n, 0])) as PesCounters;
}
