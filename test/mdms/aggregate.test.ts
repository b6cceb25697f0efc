import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { cborDecode, cborEncode } from '../../protocol/cbor.js';
import { parseTopic, topics } from '../../protocol/topics.js';
import { privacyViolation } from '../../mdms/aggregate.js';
import {
  MalformedAggregateError,
  MAX_TIME_S,
  aggregateTopic,
  parseAggregate,
  parsePolicyStatement,
  type BillingAggregate,
  type NeighbourhoodAggregate,
} from '../../protocol/aggregate.js';
import { billingAgg, nbAgg } from './helpers.js';

/** What the body looks like after a CBOR round trip (as the ingest sees it). */
const wire = (v: unknown): unknown => cborDecode(cborEncode(v));

const id = fc.stringMatching(/^[A-Za-z0-9_.-]{1,64}$/).filter((n) => n !== '__proto__'); // refused by topicId (§1)
// `__proto__` is refused by the CBOR profile itself (docs/protocol.md §1), so it is no well-formed band name.
const band = fc.stringMatching(/^[A-Za-z0-9_.-]{1,32}$/).filter((n) => n !== '__proto__');
const time = fc.integer({ min: 0, max: MAX_TIME_S - 1 });
const wh = fc.oneof(fc.integer({ min: -(2 ** 40), max: 2 ** 40 }), fc.constantFrom(0, Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER));

const eps = fc.double({ min: 1e-6, max: 1e3, noNaN: true });
const ledgerArb = fc.tuple(eps, eps).map(([epsilon, more]) => ({ epsilon, spent: epsilon + more }));

const nbArb: fc.Arbitrary<NeighbourhoodAggregate> = fc
  .record(
    { key: id, start: time, len: fc.integer({ min: 1, max: 86_400 }), revision: fc.nat(1000), meters: fc.nat(100_000), energyWh: wh, exportWh: wh, dp: ledgerArb },
    { requiredKeys: ['key', 'start', 'len', 'revision', 'meters', 'energyWh'] },
  )
  .map(({ len, ...r }) => ({ kind: 'neighbourhood', ...r, end: Math.min(r.start + len, MAX_TIME_S) }));

const billingArb: fc.Arbitrary<BillingAggregate> = fc
  .record(
    {
      key: id,
      start: time,
      len: fc.integer({ min: 1, max: 90 * 86_400 }),
      revision: fc.nat(1000),
      bands: fc.dictionary(band, wh, { minKeys: 1, maxKeys: 8 }),
      exportBands: fc.dictionary(band, wh, { minKeys: 0, maxKeys: 8 }),
    },
    { requiredKeys: ['key', 'start', 'len', 'revision', 'bands'] },
  )
  .map(({ len, ...r }) => ({ kind: 'billing', ...r, end: Math.min(r.start + len, MAX_TIME_S) }));

describe('parseAggregate', () => {
  it('accepts every well-formed aggregate on its own topic, unchanged', () => {
    fc.assert(fc.property(nbArb, (a) => {
      expect(parseAggregate(topics.neighbourhood(a.key), wire(a))).toEqual(a);
    }));
    fc.assert(fc.property(billingArb, (a) => {
      expect(parseAggregate(topics.billing(a.key), wire(a))).toEqual(a);
    }));
  });

  it('rejects a body whose key is not the topic level, or whose kind is not the topic kind', () => {
    expect(() => parseAggregate(topics.neighbourhood('nb2'), wire(nbAgg()))).toThrow(/topic's last level/);
    expect(() => parseAggregate(topics.billing('nb1'), wire(nbAgg()))).toThrow(/kind must be 'billing'/);
    expect(() => parseAggregate(topics.neighbourhood('hh1'), wire(billingAgg()))).toThrow(/kind/);
  });

  it('rejects every missing field, extra field and wrongly typed field, naming the field', () => {
    const nb = nbAgg() as unknown as Record<string, unknown>;
    const topic = topics.neighbourhood('nb1');
    for (const f of ['start', 'end', 'revision', 'meters', 'energyWh']) {
      const { [f]: _gone, ...rest } = nb;
      expect(() => parseAggregate(topic, wire(rest)), f).toThrow(MalformedAggregateError);
      for (const bad of ['1', 1.5, -1, null, 2 ** 53, true]) {
        if (f === 'energyWh' && bad === -1) continue; // energy is signed
        expect(() => parseAggregate(topic, wire({ ...nb, [f]: bad })), `${f}=${String(bad)}`).toThrow(new RegExp(f === 'energyWh' ? 'energyWh' : f));
      }
    }
    expect(() => parseAggregate(topic, wire({ ...nb, household: 'hh1' }))).toThrow(/unexpected field/);
    const b = billingAgg() as unknown as Record<string, unknown>;
    const bt = topics.billing('hh1');
    expect(() => parseAggregate(bt, wire({ ...b, energyWh: 5 }))).toThrow(/unexpected field/);
    expect(() => parseAggregate(bt, wire({ ...b, bands: {} }))).toThrow(/bands/);
    expect(() => parseAggregate(bt, wire({ ...b, bands: [1, 2] }))).toThrow(/bands/);
    expect(() => parseAggregate(bt, wire({ ...b, bands: { 'peak,1': 5 } }))).toThrow(/band names/);
    expect(() => parseAggregate(bt, wire({ ...b, bands: { peak: '5' } }))).toThrow(/band energy/);
    expect(() => parseAggregate(bt, wire({ ...b, bands: Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`b${i}`, 1])) }))).toThrow(/bands/);
  });

  it('export and the DP ledger are optional, and when present are checked like the rest', () => {
    const topic = topics.neighbourhood('nb1');
    const nb = nbAgg();
    expect(parseAggregate(topic, wire(nb))).not.toHaveProperty('exportWh');
    expect(parseAggregate(topic, wire({ ...nb, exportWh: 812, dp: { epsilon: 0.5, spent: 3.5 } }))).toEqual({ ...nb, exportWh: 812, dp: { epsilon: 0.5, spent: 3.5 } });
    for (const bad of ['1', 1.5, null, 2 ** 53]) expect(() => parseAggregate(topic, wire({ ...nb, exportWh: bad }))).toThrow(/exportWh/);
    for (const dp of [1, [0.5, 1], { epsilon: 0.5 }, { epsilon: 0.5, spent: 1, extra: 1 }, { epsilon: 0, spent: 1 }, { epsilon: -1, spent: 1 },
      { epsilon: 2, spent: 1 }, { epsilon: 0.5, spent: Infinity }, { epsilon: 'x', spent: 1 }, { epsilon: 1e7, spent: 1e7 }, { epsilon: 1, spent: 1e16 }]) {
      expect(() => parseAggregate(topic, wire({ ...nb, dp })), JSON.stringify(dp)).toThrow(/dp/);
    }
    const bt = topics.billing('hh1');
    const b = billingAgg();
    expect(parseAggregate(bt, wire({ ...b, exportBands: {} }))).toEqual({ ...b, exportBands: {} });
    expect((parseAggregate(bt, wire({ ...b, exportBands: { peak: 120 } })) as BillingAggregate).exportBands).toEqual({ peak: 120 });
    expect(() => parseAggregate(bt, wire({ ...b, exportBands: { 'peak,1': 5 } }))).toThrow(/band names/);
    expect(() => parseAggregate(bt, wire({ ...b, exportBands: { peak: 1.5 } }))).toThrow(/band energy/);
    expect(() => parseAggregate(bt, wire({ ...b, exportBands: [1] }))).toThrow(/exportBands/);
    expect(() => parseAggregate(bt, wire({ ...b, exportWh: 5 }))).toThrow(/unexpected field/);
    expect(() => parseAggregate(topic, wire({ ...nb, exportBands: {} }))).toThrow(/unexpected field/);
  });

  it('rejects empty or reversed periods and times beyond year 9999', () => {
    const topic = topics.neighbourhood('nb1');
    expect(() => parseAggregate(topic, wire(nbAgg({ end: nbAgg().start })))).toThrow(/end must be after start/);
    expect(() => parseAggregate(topic, wire(nbAgg({ end: nbAgg().start - 1 })))).toThrow(/end must be after start/);
    expect(() => parseAggregate(topic, wire(nbAgg({ start: 0, end: MAX_TIME_S + 1 })))).toThrow(/end/);
  });

  it('rejects bodies that are not maps', () => {
    for (const body of [null, 1, 'x', [1], new Uint8Array(3), undefined]) {
      expect(() => parseAggregate(topics.neighbourhood('nb1'), body)).toThrow(/must be a map/);
    }
  });
});

describe('aggregateTopic', () => {
  it('splits the two aggregate topics and nothing else', () => {
    expect(aggregateTopic('sm/v1/agg/neighbourhood/nb-1')).toEqual({ kind: 'neighbourhood', key: 'nb-1' });
    expect(aggregateTopic('sm/v1/agg/billing/hh_7')).toEqual({ kind: 'billing', key: 'hh_7' });
    for (const t of ['sm/v1/agg/other/x', 'sm/v1/agg/billing/', 'sm/v1/agg/billing/a/b', 'sm/v2/agg/billing/x', `sm/v1/agg/billing/${'x'.repeat(65)}`]) {
      expect(() => aggregateTopic(t), t).toThrow(MalformedAggregateError);
    }
  });
});

describe('privacyViolation', () => {
  const policy = { minBillingPeriodS: 86_400, k: 3 };
  it('refuses billing periods shorter than the minimum, at the exact boundary', () => {
    expect(privacyViolation(billingAgg({ end: billingAgg().start + 86_399 }), policy)).toMatch(/86399 s is shorter than the minimum 86400 s/);
    expect(privacyViolation(billingAgg({ end: billingAgg().start + 900 }), policy)).toMatch(/shorter/);
    expect(privacyViolation(billingAgg({ end: billingAgg().start + 86_400 }), policy)).toBeNull();
  });
  it('refuses neighbourhood aggregates of fewer than k meters, without quoting values', () => {
    expect(privacyViolation(nbAgg({ meters: 2, energyWh: 987_654 }), policy)).toMatch(/fewer than k = 3/);
    expect(privacyViolation(nbAgg({ meters: 2, energyWh: 987_654 }), policy)).not.toMatch(/987654/);
    expect(privacyViolation(nbAgg({ meters: 3 }), policy)).toBeNull();
    // A short neighbourhood interval is fine: that is what grid planning needs.
    expect(privacyViolation(nbAgg({ end: nbAgg().start + 60 }), policy)).toBeNull();
  });
});

describe('parsePolicyStatement', () => {
  const topic = topics.policy('pes');
  const ok = { kind: 'policy', key: 'pes', at: 1_700_000_000, k: 5, revisionK: 5, membershipGuard: true, counters: { revisionHeld: 3, membershipHeld: 0 } };

  it('accepts a statement on its own topic, with or without the DP epsilon', () => {
    expect(parsePolicyStatement(topic, wire(ok))).toEqual(ok);
    expect(parsePolicyStatement(topic, wire({ ...ok, dpEpsilon: 0.5 })).dpEpsilon).toBe(0.5);
    expect(parseTopic.policy(topic)).toBe('pes');
    expect(() => aggregateTopic(topic)).toThrow(MalformedAggregateError); // never taken for an aggregate
  });

  it('refuses other topics, other keys, missing or extra fields, and bad counters', () => {
    expect(() => parsePolicyStatement(topics.neighbourhood('pes'), wire(ok))).toThrow(/not a policy topic/);
    expect(() => parsePolicyStatement(topics.policy('other'), wire(ok))).toThrow(/topic's last level/);
    expect(() => parsePolicyStatement(topic, wire({ ...ok, kind: 'billing' }))).toThrow(/kind/);
    for (const f of ['at', 'k', 'revisionK', 'membershipGuard', 'counters']) {
      const { [f as keyof typeof ok]: _gone, ...rest } = ok;
      expect(() => parsePolicyStatement(topic, wire(rest)), f).toThrow(new RegExp(`lacks field ${f}`));
    }
    expect(() => parsePolicyStatement(topic, wire({ ...ok, extra: 1 }))).toThrow(/unexpected field/);
    expect(() => parsePolicyStatement(topic, wire({ ...ok, membershipGuard: 1 }))).toThrow(/membershipGuard/);
    expect(() => parsePolicyStatement(topic, wire({ ...ok, k: -1 }))).toThrow(/k must/);
    expect(() => parsePolicyStatement(topic, wire({ ...ok, dpEpsilon: 0 }))).toThrow(/dpEpsilon/);
    expect(() => parsePolicyStatement(topic, wire({ ...ok, counters: { 'Bad-Name': 1 } }))).toThrow(/counter names/);
    expect(() => parsePolicyStatement(topic, wire({ ...ok, counters: { held: 1.5 } }))).toThrow(/counter value/);
    expect(() => parsePolicyStatement(topic, wire({ ...ok, counters: Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`c${i}`, 1])) }))).toThrow(/at most 64/);
  });
});
