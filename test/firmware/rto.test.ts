/**
 * The retransmission-timeout estimator against RFC 6298's rules: first sample, updates (RTTVAR before
 * SRTT, alpha 1/8, beta 1/4, K 4, granularity G), clamps, Karn's algorithm and exponential backoff.
 */
import { describe, expect, it } from 'vitest';
import { newRto, rtoOnAck, rtoOnTimeout, type RtoOptions } from '../../firmware/rto.js';

const O: RtoOptions = { initialMs: 1000, minMs: 200, maxMs: 60_000, granularityMs: 10 };
const ack = (rttMs: number, retransmitted = false) => ({ rttMs, retransmitted });

describe('RTO estimator (RFC 6298)', () => {
  it('starts at the initial RTO with no SRTT/RTTVAR (2.1), clamped', () => {
    expect(newRto(O)).toMatchObject({ srtt: undefined, rttvar: undefined, rto: 1000 });
    expect(newRto({ ...O, initialMs: 50 }).rto).toBe(200);
    expect(newRto({ ...O, initialMs: 90_000 }).rto).toBe(60_000);
    expect(() => newRto({ ...O, minMs: 0 })).toThrow(RangeError);
    expect(() => newRto({ ...O, maxMs: 100 })).toThrow(RangeError);
  });

  it('first sample R: SRTT = R, RTTVAR = R/2, RTO = SRTT + max(G, 4 RTTVAR) (2.2)', () => {
    const e = rtoOnAck(newRto(O), ack(400));
    expect(e).toMatchObject({ srtt: 400, rttvar: 200, rto: 400 + 4 * 200 });
  });

  it("later samples: RTTVAR = 3/4 RTTVAR + 1/4 |SRTT - R'| with the old SRTT, then SRTT = 7/8 SRTT + 1/8 R' (2.3)", () => {
    let e = rtoOnAck(newRto(O), ack(400)); // srtt 400, rttvar 200
    e = rtoOnAck(e, ack(800));
    expect(e.rttvar).toBe(0.75 * 200 + 0.25 * 400); // 250, from |400 - 800|
    expect(e.srtt).toBe(0.875 * 400 + 0.125 * 800); // 450
    expect(e.rto).toBe(450 + 4 * 250);
    // Steady samples shrink RTTVAR towards 0, and G takes over from 4 RTTVAR.
    for (let i = 0; i < 200; i++) e = rtoOnAck(e, ack(5000));
    expect(e.srtt).toBeCloseTo(5000, 6);
    expect(e.rto).toBeCloseTo(5000 + O.granularityMs, 6);
  });

  it('clamps the computed RTO to [min, max] (2.4, 2.5)', () => {
    expect(rtoOnAck(newRto(O), ack(10)).rto).toBe(200); // 10 + 4*5 = 30 -> 200
    expect(rtoOnAck(newRto(O), ack(30_000)).rto).toBe(60_000); // 30000 + 60000 -> 60000
  });

  it("Karn: an acknowledged frame that was retransmitted gives no sample and keeps the backoff (3, 5.7)", () => {
    const e = rtoOnAck(newRto(O), ack(400)); // rto 1200
    const backedOff = rtoOnTimeout(e, 0, 10);
    expect(backedOff.rto).toBe(2400);
    expect(rtoOnAck(backedOff, ack(50, true))).toBe(backedOff);
    expect(rtoOnAck(newRto(O), ack(50, true))).toMatchObject({ srtt: undefined, rto: 1000 });
    // A frame sent once collapses the backoff: RTO computed again from SRTT and RTTVAR.
    const fresh = rtoOnAck(backedOff, ack(400));
    expect(fresh.rto).toBe(fresh.srtt! + 4 * fresh.rttvar!);
    expect(fresh.rto).toBeLessThan(2400);
  });

  it('a timeout doubles the RTO up to the maximum (5.5), once per flight', () => {
    let e = newRto(O); // 1000
    e = rtoOnTimeout(e, 100, 1100);
    expect(e.rto).toBe(2000);
    // Another frame of the same flight (sent before that backoff) times out: no second doubling.
    expect(rtoOnTimeout(e, 500, 2600)).toBe(e);
    // The retransmission (sent after the backoff) times out: doubles again.
    e = rtoOnTimeout(e, 1100, 3100);
    expect(e.rto).toBe(4000);
    for (let i = 0; i < 10; i++) e = rtoOnTimeout(e, 10_000 * (i + 1), 10_000 * (i + 1) + e.rto);
    expect(e.rto).toBe(60_000);
  });

  it('rejects a negative or non-finite round trip', () => {
    expect(() => rtoOnAck(newRto(O), ack(-1))).toThrow(RangeError);
    expect(() => rtoOnAck(newRto(O), ack(Number.NaN))).toThrow(RangeError);
  });
});
