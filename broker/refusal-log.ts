/**
 * Refused connections, logged without flooding the log: the first refusal after a quiet interval is logged
 * at once with its details, the rest as one summary line per interval (counts by reason and by address).
 * @module
 */
import type { Logger } from 'pino';

/** One refused connection. Never a password. */
export interface Refusal {
  reason: string;
  address: string;
  username?: string;
  clientId?: string;
  /** `tcp` or `ws` when the listener refused it (packet size), not authentication. */
  listener?: string;
}

/** See {@link createRefusalLog}. */
export interface RefusalLog {
  note(r: Refusal): void;
  /** Logs the pending summary now and stops the timer (on broker close). */
  close(): void;
}

/** Addresses named in a summary line; the others are counted together. */
const TOP_ADDRESSES = 5;
/** Distinct addresses tracked per interval (memory bound under a distributed flood). */
const MAX_ADDRESSES = 10_000;

/**
 * Builds the log. With a flood of 300 refusals, two lines: the first refusal, then
 * `broker: connection refused 299 more times in the last 10 s` with `{ byReason, byAddress }`, and
 * `totals` (e.g. the broker's counters) if given.
 * @example
 * ```ts
 * const refusals = createRefusalLog(logger, 10_000);
 * refusals.note({ reason: 'wrong password', address: '10.0.0.7', username: 'pes' });
 * ```
 */
export function createRefusalLog(logger: Logger, intervalMs = 10_000, totals?: () => object): RefusalLog {
  let timer: NodeJS.Timeout | undefined;
  let count = 0;
  let byReason = new Map<string, number>();
  let byAddress = new Map<string, number>();

  const flush = () => {
    if (count === 0) {
      timer = undefined; // quiet for a whole interval: the next refusal is logged at once
      return;
    }
    const top = [...byAddress].sort((a, b) => b[1] - a[1]).slice(0, TOP_ADDRESSES);
    const others = count - top.reduce((n, [, c]) => n + c, 0);
    logger.warn(
      {
        refused: count,
        byReason: Object.fromEntries(byReason),
        byAddress: Object.fromEntries(others > 0 ? [...top, ['others', others]] : top),
        ...(totals ? { totals: totals() } : {}),
      },
      `broker: connection refused ${count} more times in the last ${Math.round(intervalMs / 1000)} s`,
    );
    count = 0;
    byReason = new Map();
    byAddress = new Map();
    timer = setTimeout(flush, intervalMs).unref();
  };

  return {
    note(r) {
      if (timer === undefined) {
        logger.warn(r, 'broker: connection refused');
        timer = setTimeout(flush, intervalMs).unref();
        return;
      }
      count++;
      byReason.set(r.reason, (byReason.get(r.reason) ?? 0) + 1);
      if (byAddress.has(r.address) || byAddress.size < MAX_ADDRESSES) byAddress.set(r.address, (byAddress.get(r.address) ?? 0) + 1);
    },
    close() {
      clearTimeout(timer);
      flush();
      clearTimeout(timer);
      timer = undefined;
    },
  };
}
