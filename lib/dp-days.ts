/**
 * The day lines of a DP budget (docs/privacy.md): epsilon spent per neighbourhood and UTC day of the windows'
 * start, what `--dp-budget` bounds. The blind PES (pes/e2e.ts) and the guardian (guardian/core.ts) each keep
 * one; neither imports the other, so the ledger lives here. Pure; saved as JSON in the state file's `extra`.
 * @module
 */

/**
 * Sums epsilons without drifting into 0.30000000000000004 (a ledger is read by people).
 * @example
 * ```ts
 * addEpsilon(0.1, 0.2); // 0.3
 * ```
 */
export const addEpsilon = (a: number, b: number): number => Math.round((a + b) * 1e9) / 1e9;

const DAY_S = 86_400;
const KEY = /\|\d+$/;

/**
 * @example
 * ```ts
 * const days = new DpDays();
 * if (days.after('nb1', start, 0.5) <= budget) days.charge('nb1', start, 0.5);
 * days.forget(watermark, retentionS);
 * ```
 */
export class DpDays {
  private readonly days = new Map<string, number>();

  /** What neighbourhood `key`'s day of `start` would have spent after one more `epsilon`. */
  after(key: string, start: number, epsilon: number): number {
    return addEpsilon(this.days.get(dayKey(key, start)) ?? 0, epsilon);
  }

  /** Charges `epsilon` to neighbourhood `key`'s day of `start`. */
  charge(key: string, start: number, epsilon: number): void {
    this.days.set(dayKey(key, start), this.after(key, start, epsilon));
  }

  /**
   * Drops the days whose windows all lie past the retention horizon (none can be released again); whether any
   * went.
   */
  forget(watermark: number | null, retentionS: number): boolean {
    if (watermark === null) return false;
    let dropped = false;
    for (const id of this.days.keys()) {
      if ((Number(id.slice(id.lastIndexOf('|') + 1)) + 1) * DAY_S < watermark - retentionS) {
        this.days.delete(id);
        dropped = true;
      }
    }
    return dropped;
  }

  /** The lines as the state file keeps them. */
  toJSON(): Record<string, number> {
    return Object.fromEntries(this.days);
  }

  /** Loads saved lines; throws `TypeError` (naming `what`) on a malformed one. */
  load(v: unknown, what: string): void {
    if (typeof v !== 'object' || v === null) throw new TypeError(`malformed DP ledger in ${what}`);
    for (const [k, e] of Object.entries(v)) {
      if (typeof e !== 'number' || !(e >= 0) || !KEY.test(k)) throw new TypeError(`malformed DP ledger in ${what}`);
      this.days.set(k, e);
    }
  }
}

const dayKey = (key: string, start: number): string => `${key}|${Math.floor(start / DAY_S)}`;
