import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { buildAcl } from '../../protocol/acl.js';
import { parseTopic, topicId, topics } from '../../protocol/topics.js';
import { PROTOCOL_MD } from './doc.js';

/** MQTT 3.1.1 §4.7.1 matching, minimal: '+' one level, '#' the rest. */
function matches(filter: string, topic: string): boolean {
  const f = filter.split('/');
  const t = topic.split('/');
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return true;
    if (i >= t.length || (f[i] !== '+' && f[i] !== t[i])) return false;
  }
  return f.length === t.length;
}

const md = readFileSync(PROTOCOL_MD, 'utf8');
const section = md.slice(md.indexOf('## 10. MQTT topics'), md.indexOf('## 11.'));
const ticks = (cell: string) => [...cell.matchAll(/`([^`]+)`/g)].map((m) => m[1]!);
const rows = (first: RegExp) =>
  section
    .split('\n')
    .filter((l) => first.test(l))
    .map((l) => l.split('|').slice(1, -1).map((c) => c.trim()));
const ids = { gw: 'gw-nb1', nb: 'nb1', hh: 'hh1', pes: 'pes' };
const e2eOnly = { users: ['guardian'], filters: [topics.partialsAll, topics.requestsAll] as string[] }; // the end-to-end mode's additions
const fill = (s: string) => s.replace(/<(gw|nb|hh|pes)>/g, (_m, k: keyof typeof ids) => ids[k]);

describe('MQTT topic table in docs/protocol.md', () => {
  const topicRows = rows(/^\| `sm\/v1\//);
  const userRows = rows(/^\| `(gateway-<gw>|pes|mdms|household-<hh>|ucs|guardian)` /);
  const users = new Map(userRows.map(([user, pub, sub]) => [fill(ticks(user!)[0]!), { publish: ticks(pub!).map(fill), subscribe: ticks(sub!).map(fill) }]));

  it('lists every topic of protocol/topics.ts, built by the function it names', () => {
    // Every topic builder of protocol/topics.ts has its row (the partial topic has one per kind).
    const builders = Object.entries(topics).filter(([k, v]) => typeof v === 'function' && !k.endsWith('All')).map(([k]) => `topics.${k}`);
    expect(builders.length).toBeGreaterThanOrEqual(7);
    const fns = topicRows.map((r) => ticks(r[1]!)[0]!.replace(/\(.*\)/, ''));
    expect([...new Set(fns)].sort()).toEqual(builders.sort());
    expect(fns.filter((f) => f === 'topics.partial')).toHaveLength(2);
    expect(fns.filter((f) => f === 'topics.request')).toHaveLength(2);
    for (const [topic, fn] of topicRows) {
      const [name, kind, arg] = ticks(fn!)[0]!.match(/^topics\.(\w+)\((?:'(\w+)', )?(\w+)\)$/)!.slice(1) as [keyof typeof topics, string | undefined, keyof typeof ids];
      const built = kind === undefined ? (topics[name] as (id: string) => string)(ids[arg]) : (topics[name] as (k: string, id: string) => string)(kind, ids[arg]);
      expect(built, name).toBe(fill(ticks(topic!)[0]!));
    }
  });

  it('names the right wildcard constants, and each subscriber filter matches its topic', () => {
    const constants: Record<string, string> = {
      'topics.framesAll': topics.framesAll,
      'topics.aggregatesAll': topics.aggregatesAll,
      'topics.householdKeysAll': topics.householdKeysAll,
      'topics.householdAll(hh)': topics.householdAll(ids.hh),
      'topics.householdStreamsAll': topics.householdStreamsAll,
      'topics.partialsAll': topics.partialsAll,
      'topics.requestsAll': topics.requestsAll,
    };
    for (const [topic, , , , sub] of topicRows) {
      const t = ticks(sub!);
      expect(t.length % 3, `subscriber cell ${sub}`).toBe(0);
      for (let i = 0; i < t.length; i += 3) {
        const [, filter, constant] = t.slice(i, i + 3);
        expect(constants[constant!], constant).toBe(fill(filter!));
        expect(matches(fill(filter!), fill(ticks(topic!)[0]!))).toBe(true);
      }
    }
    expect(matches(topics.householdAll('hh1'), topics.household('hh2'))).toBe(false);
  });

  it('agrees with the user table: publishers may publish, subscribers may subscribe', () => {
    expect([...users.keys()].sort()).toEqual(['gateway-gw-nb1', 'guardian', 'household-hh1', 'mdms', 'pes', 'ucs']);
    for (const [topic, , , pub, sub] of topicRows) {
      const t = fill(ticks(topic!)[0]!);
      const publisher = fill(ticks(pub!)[0]!);
      expect(users.get(publisher)!.publish.some((f) => matches(f, t)), `${publisher} publishes ${t}`).toBe(true);
      const subs = ticks(sub!).map(fill);
      for (let i = 0; i < subs.length; i += 3) {
        const [subscriber, filter] = subs.slice(i, i + 2);
        expect(users.get(subscriber!)!.subscribe, `${subscriber} subscribes`).toContain(filter);
      }
      // nobody else may publish there
      for (const [u, acl] of users) if (u !== publisher) expect(acl.publish.some((f) => matches(f, t)), `${u} must not publish ${t}`).toBe(false);
    }
  });

  it('is the ACL that protocol/acl.ts builds: the whole table in the end-to-end mode, without its additions in the classic mode', () => {
    const sorted = (a: { publish: string[]; subscribe: string[] }) => ({ publish: [...a.publish].sort(), subscribe: [...a.subscribe].sort() });
    const e2e = buildAcl({ gateways: [ids.gw], households: [ids.hh] }, { e2e: true });
    expect(Object.keys(e2e).sort()).toEqual([...users.keys()].sort());
    for (const [u, a] of users) expect(sorted(e2e[u]!), u).toEqual(sorted(a));
    const classic = buildAcl({ gateways: [ids.gw], households: [ids.hh] });
    expect(Object.keys(classic).sort()).toEqual([...users.keys()].filter((u) => !e2eOnly.users.includes(u)).sort());
    const drop = (list: string[]) => list.filter((f) => !e2eOnly.filters.includes(f));
    for (const [u, a] of Object.entries(classic)) expect(sorted(a), u).toEqual(sorted({ publish: drop(users.get(u)!.publish), subscribe: drop(users.get(u)!.subscribe) }));
  });

  it('retains only household keys', () => {
    const retained = topicRows.filter((r) => r[5] === 'yes').map((r) => ticks(r[0]!)[0]);
    expect(retained).toEqual(['sm/v1/pes/household-key/<hh>']);
    expect(section).toMatch(/QoS 1 everywhere/);
  });
});

describe('topicId', () => {
  it('accepts plain ids and rejects separators, wildcards and oversize', () => {
    expect(topicId('gw-nb1.a_2')).toBe('gw-nb1.a_2');
    for (const bad of ['', 'a/b', '+', '#', 'a+b', 'x'.repeat(65), '$SYS', 'é', 'a b', '__proto__']) expect(() => topics.frames(bad)).toThrow(TypeError);
  });
});

describe('parseTopic', () => {
  it('inverts every topic builder', () => {
    expect(parseTopic.frames(topics.frames('gw-nb1'))).toBe('gw-nb1');
    expect(parseTopic.aggregate(topics.neighbourhood('nb1'))).toEqual({ kind: 'neighbourhood', key: 'nb1' });
    expect(parseTopic.aggregate(topics.billing('hh.7'))).toEqual({ kind: 'billing', key: 'hh.7' });
    expect(parseTopic.household(topics.household('hh1'))).toBe('hh1');
    expect(parseTopic.householdKey(topics.householdKey('hh1'))).toBe('hh1');
    expect(parseTopic.partial(topics.partial('neighbourhood', 'nb1'))).toEqual({ kind: 'neighbourhood', key: 'nb1' });
    expect(parseTopic.partial(topics.partial('billing', 'hh.7'))).toEqual({ kind: 'billing', key: 'hh.7' });
  });

  it('refuses other kinds, wildcards, extra levels and bad ids', () => {
    for (const t of [topics.framesAll, topics.householdStreamsAll, topics.householdKeysAll, 'sm/v1/frames/a/b', 'sm/v1/frames/', `sm/v1/frames/${'x'.repeat(65)}`, 'sm/v2/frames/gw']) {
      expect(parseTopic.frames(t), t).toBeNull();
      expect(parseTopic.household(t), t).toBeNull();
      expect(parseTopic.householdKey(t), t).toBeNull();
    }
    expect(parseTopic.aggregate('sm/v1/agg/other/nb1')).toBeNull();
    expect(parseTopic.partial('sm/v1/partial/other/nb1')).toBeNull();
    expect(parseTopic.partial(topics.neighbourhood('nb1'))).toBeNull();
    expect(parseTopic.partial(topics.partialsAll)).toBeNull();
    expect(() => topics.partial('household' as 'billing', 'hh1')).toThrow(TypeError);
    expect(() => topics.partial('billing', 'a/b')).toThrow(TypeError);
    expect(parseTopic.aggregate(topics.household('hh1'))).toBeNull();
    expect(parseTopic.frames(topics.household('hh1'))).toBeNull();
    expect(parseTopic.household(undefined as unknown as string)).toBeNull();
  });
});
