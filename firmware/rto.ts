/**
 * The meter's retransmission timeout (RTO), estimated from round-trip times as TCP does (RFC 6298).
 *
 * A round trip is measured from the moment a frame has left the transmitter (the serial write drained) to
 * its acknowledgement. The first sample R sets SRTT = R and RTTVAR = R/2; later samples R' update
 * RTTVAR = 3/4 RTTVAR + 1/4 |SRTT - R'| (with the old SRTT), then SRTT = 7/8 SRTT + 1/8 R'. The timeout is
 * RTO = SRTT + max(G, 4 RTTVAR), clamped to [min, max] (G: the timer's granularity). Karn's algorithm: an
 * acknowledged frame that was sent more than once gives no sample (the acknowledgement may be for either
 * copy), and a backed-off RTO stays until a frame sent once is acknowledged. A timeout doubles the RTO
 * (exponential backoff), at most once per flight: only a frame sent after the last backoff backs off again,
 * so a whole window timing out (a cut line) doubles the RTO once, not once per frame.
 *
 * Pure functions over an immutable state; the meter holds the current state.
 * @module
 */

/** Bounds and starting point of an estimator. */
export interface RtoOptions {
  /** RTO before the first sample, ms (RFC 6298 (2.1): 1 s). */
  initialMs: number;
  /** Lower clamp, ms (RFC 6298 (2.4) says 1 s for the Internet; a serial line to a local gateway can go lower). */
  minMs: number;
  /** Upper clamp, ms (RFC 6298 (2.5): at least 60 s). */
  maxMs: number;
  /** Timer granularity G, ms: how late an expiry can be noticed. */
  granularityMs: number;
}

/** Estimator state. `srtt` and `rttvar` are undefined until the first sample. */
export interface Rto {
  readonly options: Readonly<RtoOptions>;
  readonly srtt: number | undefined;
  readonly rttvar: number | undefined;
  /** The current retransmission timeout, ms. */
  readonly rto: number;
  /** Wall ms of the last backoff (-Infinity: none since the last sample). */
  readonly backedOffAt: number;
}

/** RFC 6298 gains: alpha = 1/8, beta = 1/4, K = 4. */
const ALPHA = 1 / 8;
const BETA = 1 / 4;
const K = 4;

const clamp = (o: RtoOptions, ms: number): number => Math.min(o.maxMs, Math.max(o.minMs, ms));

/**
 * A fresh estimator: no sample yet, RTO = the initial value (clamped).
 * @example
 * ```ts
 * let est = newRto({ initialMs: 1000, minMs: 200, maxMs: 60_000, granularityMs: 50 }); // est.rto === 1000
 * ```
 */
export function newRto(options: RtoOptions): Rto {
  const o = { ...options };
  const ok = (v: number) => Number.isFinite(v) && v >= 0;
  if (!ok(o.initialMs) || !ok(o.minMs) || !ok(o.maxMs) || !ok(o.granularityMs) || o.minMs <= 0 || o.maxMs < o.minMs) {
    throw new RangeError('RTO options must be finite, non-negative, with 0 < minMs <= maxMs');
  }
  return { options: o, srtt: undefined, rttvar: undefined, rto: clamp(o, o.initialMs), backedOffAt: -Infinity };
}

/**
 * Folds in the acknowledgement of a frame. `retransmitted`: the frame was sent more than once, so by Karn's
 * algorithm the estimator (and any backoff) is left as it is.
 * @example
 * ```ts
 * est = rtoOnAck(est, { rttMs: 120, retransmitted: false }); // first sample: srtt 120, rttvar 60, rto 360
 * ```
 */
export function rtoOnAck(est: Rto, sample: { rttMs: number; retransmitted: boolean }): Rto {
  if (sample.retransmitted) return est;
  const r = sample.rttMs;
  if (!Number.isFinite(r) || r < 0) throw new RangeError(`round-trip time must be a non-negative number, got ${r}`);
  const o = est.options;
  let srtt: number;
  let rttvar: number;
  if (est.srtt === undefined || est.rttvar === undefined) {
    srtt = r;
    rttvar = r / 2;
  } else {
    rttvar = (1 - BETA) * est.rttvar + BETA * Math.abs(est.srtt - r);
    srtt = (1 - ALPHA) * est.srtt + ALPHA * r;
  }
  return { options: o, srtt, rttvar, rto: clamp(o, srtt + Math.max(o.granularityMs, K * rttvar)), backedOffAt: -Infinity };
}

/**
 * The timer of a frame sent at `sentAtMs` expired at `nowMs`: doubles the RTO (clamped to the maximum),
 * unless the frame was sent before the last backoff (that flight has already backed off once).
 * @example
 * ```ts
 * est = rtoOnTimeout(est, sentAt, now); // est.rto doubled
 * ```
 */
export function rtoOnTimeout(est: Rto, sentAtMs: number, nowMs: number): Rto {
  if (sentAtMs < est.backedOffAt) return est;
  return { ...est, rto: Math.min(est.options.maxMs, est.rto * 2), backedOffAt: nowMs };
}
