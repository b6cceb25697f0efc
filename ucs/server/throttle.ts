/**
 * Throttling of guesses (activation codes, login authenticators) that cannot lock a household out: the
 * pauses fall on the **source** of the failures, never on the household. Pure: counts in, verdict out
 * (ucs/db.ts keeps the failure times; the routes ask {@link verdict} before any scrypt work).
 * - per source and household: `free` failures, then the source must wait `pauseMs` after its latest failure,
 *   doubled for each further failure (exponential backoff, up to `maxPauseMs`);
 * - per source over all households: the same with `sourceFree` (a source spraying one guess over many
 *   households);
 * - per household over all sources: never a refusal, only a delay before the check, growing from
 *   `accountDelayMs` per failure beyond `accountFree` up to `maxAccountDelayMs` (many sources guessing).
 * See ucs/README.md, "Throttling".
 * @module
 */
import type { FailureCounts } from '../db.js';

/** The knobs of one kind of attempt. */
export interface ThrottlePolicy {
  /** Failures of one source on one household before it must wait. */
  free: number;
  /** Failures of one source over all households before it must wait. */
  sourceFree: number;
  /** The first wait; every further failure doubles it. */
  pauseMs: number;
  maxPauseMs: number;
  /** How long a failure counts for the source (so the backoff can grow). */
  memoryMs: number;
  /** Failures on a household, from all sources, within `accountWindowMs` before attempts on it are delayed. */
  accountFree: number;
  accountWindowMs: number;
  accountDelayMs: number;
  maxAccountDelayMs: number;
}

const common = { pauseMs: 15 * 60_000, maxPauseMs: 24 * 3600_000, memoryMs: 24 * 3600_000, accountWindowMs: 15 * 60_000, accountDelayMs: 100, maxAccountDelayMs: 2_000 };

/** Activation codes: 5 wrong ones per source and household before a 15-minute pause (then 30, 60, …). */
export const ACTIVATION_THROTTLE: ThrottlePolicy = { ...common, free: 5, sourceFree: 15, accountFree: 5 };
/** Passwords: 10 wrong ones per source and household before a 15-minute pause (then 30, 60, …). */
export const LOGIN_THROTTLE: ThrottlePolicy = { ...common, free: 10, sourceFree: 30, accountFree: 10 };

/** What to do with an attempt. */
export type Verdict =
  /** Refuse without checking: the source must wait `waitMs` more. */
  | { refuse: true; waitMs: number }
  /**
   * Check the secret after `delayMs`; `left` failures of this source on this household before a pause, and
   * the pause that a wrong secret now starts (0 while `left` > 1).
   */
  | { refuse: false; delayMs: number; left: number; pauseIfWrongMs: number };

const pause = (failures: number, free: number, p: ThrottlePolicy) => (failures < free ? 0 : Math.min(p.maxPauseMs, p.pauseMs * 2 ** Math.min(failures - free, 30)));

/**
 * The verdict on an attempt, given the failures counted as {@link ThrottlePolicy} says (source counts over
 * `memoryMs`, the household's over `accountWindowMs`).
 * @example
 * ```ts
 * verdict(LOGIN_THROTTLE, { pair: { count: 10, last: t }, source: { count: 10, last: t }, account: { count: 10, last: t } }, t + 1000);
 * // { refuse: true, waitMs: 899000 }
 * ```
 */
export function verdict(p: ThrottlePolicy, f: FailureCounts, now: number): Verdict {
  const until = Math.max(f.pair.last + pause(f.pair.count, p.free, p), f.source.last + pause(f.source.count, p.sourceFree, p));
  if (now < until) return { refuse: true, waitMs: until - now };
  const over = f.account.count - p.accountFree;
  const delayMs = over < 0 ? 0 : Math.min(p.maxAccountDelayMs, p.accountDelayMs * 2 ** Math.min(over, 30));
  return { refuse: false, delayMs, left: Math.max(0, p.free - f.pair.count), pauseIfWrongMs: pause(f.pair.count + 1, p.free, p) };
}

/**
 * The throttling key of a client address: IPv4 as it is, IPv6 by its /64 (one subscriber's network), an
 * IPv4-mapped IPv6 address as its IPv4.
 * @example
 * ```ts
 * sourceOf('2001:db8:1:2:aaaa::1'); // '2001:db8:1:2::/64'
 * sourceOf('::ffff:192.0.2.7');     // '192.0.2.7'
 * ```
 */
export function sourceOf(ip: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (mapped) return mapped[1]!;
  if (!ip.includes(':')) return ip;
  const [head = '', tail] = ip.toLowerCase().split('%')[0]!.split('::');
  const h = head ? head.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(Math.max(0, 8 - h.length - (tail ? tail.split(':').length : 0))).fill('0'), ...(tail ? tail.split(':') : [])];
  return `${groups.slice(0, 4).map((g) => g.replace(/^0+(?=.)/, '')).join(':')}::/64`;
}
