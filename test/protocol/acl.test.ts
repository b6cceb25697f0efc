import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { buildAcl, filterCovers, isValidFilter, isValidTopicName, topicMatches } from '../../protocol/acl.js';
import { topics } from '../../protocol/topics.js';

describe('topic filter syntax (MQTT 3.1.1 §4.7.1, §4.7.3)', () => {
  it.each([
    ['#', true],
    ['a/#', true],
    ['+', true],
    ['+/+/x', true],
    ['a//b', true],
    ['/', true],
    ['', false],
    ['a/#/b', false],
    ['a#', false],
    ['a/b+', false],
    ['a/\u0000', false],
  ])('isValidFilter(%j) = %s', (f, ok) => expect(isValidFilter(f)).toBe(ok));

  it('topic names carry no wildcards', () => {
    expect(isValidTopicName('sm/v1/frames/gw-1')).toBe(true);
    expect(isValidTopicName('sm/+/x')).toBe(false);
    expect(isValidTopicName('sm/#')).toBe(false);
    expect(isValidTopicName('')).toBe(false);
  });
});

describe('topicMatches', () => {
  it.each([
    ['sport/tennis/player1/#', 'sport/tennis/player1', true], // §4.7.1.2: '#' includes the parent level
    ['sport/tennis/player1/#', 'sport/tennis/player1/ranking', true],
    ['sport/tennis/player1/#', 'sport/tennis/player1/score/wimbledon', true],
    ['sport/#', 'sport', true],
    ['sport/tennis/+', 'sport/tennis/player1', true], // §4.7.1.3
    ['sport/tennis/+', 'sport/tennis/player1/ranking', false],
    ['sport/+', 'sport', false],
    ['sport/+', 'sport/', true],
    ['+/+', '/finance', true],
    ['/+', '/finance', true],
    ['+', '/finance', false],
    ['#', '$SYS/uptime', false], // §4.7.2
    ['+/monitor/Clients', '$SYS/monitor/Clients', false],
    ['$SYS/#', '$SYS/monitor/Clients', true],
    ['$SYS/monitor/+', '$SYS/monitor/Clients', true],
    ['a/b', 'a/b', true],
    ['a/b', 'a/c', false],
    ['a/b', 'a/+', false], // not a topic name
  ])('%j matches %j: %s', (f, t, ok) => expect(topicMatches(f, t)).toBe(ok));
});

describe('filterCovers', () => {
  const hh = topics.householdAll('h1');
  it.each([
    [hh, topics.household('h1'), true],
    [hh, hh, true],
    [hh, 'sm/v1/household/h1/+', true],
    [hh, 'sm/v1/household/h1', true], // '#' covers the parent level
    [hh, 'sm/v1/household/+/readings', false], // would reach h2
    [hh, 'sm/v1/household/#', false],
    [hh, '#', false],
    [hh, '+/v1/household/h1/readings', false],
    [topics.framesAll, topics.frames('gw-1'), true],
    [topics.framesAll, topics.framesAll, true],
    [topics.framesAll, 'sm/v1/frames/#', false], // '#' also matches sm/v1/frames and deeper levels
    [topics.framesAll, 'sm/v1/frames', false],
    ['+/#', '#', true], // a topic has at least one level, so both match every non-'$' topic
    ['a/+/c', 'a/b/c', true],
    ['a/+/#', 'a/#', false], // 'a/#' matches 'a'
    ['a/+/#', 'a/+', true],
    ['#', '$SYS/#', false], // §4.7.2
    ['#', '#', true],
    ['+', '+', true],
    ['+', '#', false],
    ['a/b', 'a/b/#', false],
  ])('%j covers %j: %s', (g, r, ok) => expect(filterCovers(g, r)).toBe(ok));

  // Brute force over a small universe: `g` covers `r` exactly when every topic matched by `r` is matched
  // by `g`. Filters draw levels from {a, b, $s, +, #}; the universe of topics adds a fresh literal 'z'
  // and the empty level and is one level deeper than any filter, so a witness of non-coverage always exists in it.
  const levels = ['a', 'b', '', 'z', '$s'];
  const universe: string[] = [];
  const grow = (prefix: string[], depth: number) => {
    if (prefix.length > 0) universe.push(prefix.join('/'));
    if (depth === 0) return;
    for (const l of levels) grow([...prefix, l], depth - 1);
  };
  grow([], 5);
  const filterArb = fc
    .array(fc.constantFrom('a', 'b', '$s', '+', '#'), { minLength: 1, maxLength: 4 })
    .map((ls) => ls.join('/'))
    .filter(isValidFilter);

  it('agrees with brute-force matching over a finite universe of topics', () => {
    fc.assert(
      fc.property(filterArb, filterArb, (g, r) => {
        const expected = universe.every((t) => !topicMatches(r, t) || topicMatches(g, t));
        expect(filterCovers(g, r)).toBe(expected);
      }),
      { numRuns: 400 },
    );
  });

  it('rejects invalid filters on either side', () => {
    expect(filterCovers('#', 'a/#/b')).toBe(false);
    expect(filterCovers('a/#/b', 'a')).toBe(false);
  });
});

describe('buildAcl', () => {
  const acl = buildAcl({ gateways: ['gw-n1', 'gw-n2'], households: ['h1', 'h2'] });

  it('has one entry per component user', () => {
    expect(Object.keys(acl).sort()).toEqual(['gateway-gw-n1', 'gateway-gw-n2', 'household-h1', 'household-h2', 'mdms', 'pes', 'ucs']);
  });

  it('lets each component reach exactly its topics', () => {
    const canPub = (u: string, t: string) => acl[u]!.publish.some((f) => topicMatches(f, t));
    const canSub = (u: string, f: string) => acl[u]!.subscribe.some((g) => filterCovers(g, f));
    expect(canPub('gateway-gw-n1', topics.frames('gw-n1'))).toBe(true);
    expect(canPub('gateway-gw-n1', topics.frames('gw-n2'))).toBe(false);
    expect(canSub('pes', topics.framesAll)).toBe(true);
    expect(canSub('pes', topics.householdKeysAll)).toBe(true);
    expect(canPub('pes', topics.neighbourhood('n1'))).toBe(true);
    expect(canPub('pes', topics.billing('h1'))).toBe(true);
    expect(canPub('pes', topics.household('h2'))).toBe(true);
    expect(canPub('pes', topics.frames('gw-n1'))).toBe(false);
    expect(canSub('mdms', topics.aggregatesAll)).toBe(true);
    expect(canSub('mdms', topics.framesAll)).toBe(false);
    expect(canSub('mdms', 'sm/v1/household/+/readings')).toBe(false);
    expect(canSub('household-h1', topics.household('h1'))).toBe(true);
    expect(canSub('household-h1', topics.household('h2'))).toBe(false);
    expect(canPub('ucs', topics.householdKey('h1'))).toBe(true);
    expect(canSub('ucs', topics.householdKeysAll)).toBe(false);
    expect(canSub('ucs', 'sm/v1/household/+/readings')).toBe(true);
    expect(canSub('ucs', topics.household('h1'))).toBe(true);
    expect(canSub('ucs', topics.aggregatesAll)).toBe(false);
    expect(canSub('ucs', topics.framesAll)).toBe(false);
  });

  it('adds the guardian only in the end-to-end mode: it reads uplinks and publishes partials, nothing else; only the MDMS reads those', () => {
    const e2e = buildAcl({ gateways: ['gw-n1'], households: ['h1'] }, { e2e: true });
    const canPub = (u: string, t: string) => e2e[u]!.publish.some((f) => topicMatches(f, t));
    const canSub = (u: string, f: string) => e2e[u]!.subscribe.some((g) => filterCovers(g, f));
    expect(acl.guardian).toBeUndefined();
    expect(acl.mdms!.subscribe).not.toContain(topics.partialsAll);
    expect(canSub('guardian', topics.framesAll)).toBe(true);
    expect(canPub('guardian', topics.partial('neighbourhood', 'n1'))).toBe(true);
    expect(canPub('guardian', topics.partial('billing', 'h1'))).toBe(true);
    for (const t of [topics.frames('gw-n1'), topics.neighbourhood('n1'), topics.billing('h1'), topics.household('h1'), topics.householdKey('h1')]) expect(canPub('guardian', t), t).toBe(false);
    for (const f of [topics.aggregatesAll, topics.householdStreamsAll, topics.householdKeysAll, topics.partialsAll]) expect(canSub('guardian', f), f).toBe(false);
    expect(canSub('mdms', topics.partialsAll)).toBe(true);
    for (const u of ['pes', 'ucs', 'household-h1', 'gateway-gw-n1']) expect(canSub(u, topics.partial('neighbourhood', 'n1')), u).toBe(false);
    for (const u of ['pes', 'mdms', 'ucs']) expect(canPub(u, topics.partial('billing', 'h1')), u).toBe(false);
  });
});
