/**
 * The NATS cluster's users from provisioning (provision/nats.ts) and the nodes' configuration
 * (broker/nats-conf.ts): topic filters as subjects, deny-all for empty grants, bcrypt'ed passwords that
 * verify, MQTT-only users, `provision` writing nats/accounts.conf 0600 (or saying why not), and the node
 * file's validation. The users in a running cluster are tested by test/security/acl-matrix.test.ts.
 */
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import bcrypt from 'bcryptjs';
import { afterAll, describe, expect, it } from 'vitest';
import { mqttStreamReplicas, natsMqttUrls, natsNodeConf, type NatsClusterLayout } from '../../broker/nats-conf.js';
import { loadCredentials, NATS_ACCOUNTS, NATS_ACCOUNTS_SKIPPED } from '../../lib/keyset.js';
import { buildAcl } from '../../protocol/acl.js';
import { provision } from '../../provision/keys.js';
import { mqttFilterToSubjects, natsAccounts, natsUserEntry, NATS_BCRYPT_COST } from '../../provision/nats.js';

const dir = mkdtempSync(join(tmpdir(), 'sm-prov-nats-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('mqttFilterToSubjects', () => {
  it.each([
    ['sm/v1/frames/gw-a', ['sm.v1.frames.gw-a']],
    ['sm/v1/frames/+', ['sm.v1.frames.*']],
    ['sm/v1/household/+/readings', ['sm.v1.household.*.readings']],
    ['sm/v1/agg/#', ['sm.v1.agg.>', 'sm.v1.agg']], // MQTT '#' also matches the parent level (§4.7.1.2)
    ['#', ['>']],
  ])('%s -> %j', (filter, subjects) => {
    expect(mqttFilterToSubjects(filter)).toEqual(subjects);
  });

  it.each(['sm/v1/household/h.1/#', 'a//b', 'a/b c', 'a/*', 'a/>', 'a/#/b', ''])('refuses %j (NATS 2.9 cannot carry it, or not a filter)', (filter) => {
    expect(() => mqttFilterToSubjects(filter)).toThrow(TypeError);
  });
});

describe('natsUserEntry / natsAccounts', () => {
  const perms = (entry: string) => /permissions: \{ publish: (\{.*?\}), subscribe: (\{.*?\}) \} \}$/.exec(entry)!.slice(1);

  it('a subscriber gets its subjects plus the QoS 1 deliveries; nothing to publish is deny-all, never an empty allow', () => {
    const entry = natsUserEntry('household-h1', 'pw-h1', { publish: [], subscribe: ['sm/v1/household/h1/#'] });
    expect(perms(entry)).toEqual(['{ deny: [">"] }', '{ allow: ["sm.v1.household.h1.>", "sm.v1.household.h1", "$MQTT.sub.>"] }']);
    expect(entry).toContain('allowed_connection_types: ["MQTT"]');
    const gw = natsUserEntry('gateway-gw-a', 'pw-gw', { publish: ['sm/v1/frames/gw-a'], subscribe: [] });
    expect(perms(gw)).toEqual(['{ allow: ["sm.v1.frames.gw-a"] }', '{ deny: [">"] }']);
  });

  it('the password is a bcrypt hash of the password (cost 4), never the password', () => {
    const entry = natsUserEntry('pes', 'the-pes-password', { publish: [], subscribe: [] });
    const hash = /password: "([^"]+)"/.exec(entry)![1]!;
    expect(hash).toMatch(/^\$2b\$04\$/);
    expect(NATS_BCRYPT_COST).toBe(4);
    expect(bcrypt.compareSync('the-pes-password', hash)).toBe(true);
    expect(bcrypt.compareSync('another', hash)).toBe(false);
    expect(entry).not.toContain('the-pes-password');
  });

  it('refuses bad user names, empty or over-long passwords, and a user without a password', () => {
    expect(() => natsUserEntry('a b', 'x', { publish: [], subscribe: [] })).toThrow(/user name/);
    expect(() => natsUserEntry('a', '', { publish: [], subscribe: [] })).toThrow(/72 bytes/);
    expect(() => natsUserEntry('a', 'x'.repeat(73), { publish: [], subscribe: [] })).toThrow(/72 bytes/);
    expect(() => natsAccounts({ a: { publish: [], subscribe: [] } }, {})).toThrow(/no password for broker user a/);
  });

  it('one entry per ACL user, sorted, inside authorization { users = [...] }', () => {
    const acl = buildAcl({ gateways: ['gw-a'], households: ['h1'] });
    const text = natsAccounts(acl, Object.fromEntries(Object.keys(acl).map((u) => [u, `pw-${u}`])));
    expect([...text.matchAll(/\{ user: "([^"]+)"/g)].map((m) => m[1])).toEqual(Object.keys(acl).sort());
    expect(text).toMatch(/^authorization \{\n {2}users = \[\n[\s\S]*\n {2}\]\n\}\n$/m);
  });
});

describe('provision writes nats/accounts.conf', () => {
  it('0600, with every credential verifying against its hash', async () => {
    const csv = join(dir, 'fleet.csv');
    writeFileSync(csv, 'meter,household,neighbourhood,source\nm1,hh1,nb1,synthetic:1\n');
    const out = join(dir, 'keys');
    await provision({ fleetCsv: csv, out, rsaBits: 2048, paillierBits: 1024 });
    const file = join(out, NATS_ACCOUNTS);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(/\{ user: "([^"]+)", password: "([^"]+)"/g)) expect(bcrypt.compareSync(loadCredentials(out, m[1]!).password, m[2]!), m[1]).toBe(true);
    expect(existsSync(join(out, NATS_ACCOUNTS_SKIPPED))).toBe(false);
  }, 60_000);

  it('a fleet whose ids NATS 2.9 cannot carry gets a note instead, and still its other files', async () => {
    const csv = join(dir, 'dotted.csv');
    writeFileSync(csv, 'meter,household,neighbourhood,source\nm1,hh.1,nb1,synthetic:1\n');
    const out = join(dir, 'keys-dotted');
    await provision({ fleetCsv: csv, out, rsaBits: 2048, paillierBits: 1024 });
    expect(existsSync(join(out, NATS_ACCOUNTS))).toBe(false);
    expect(readFileSync(join(out, NATS_ACCOUNTS_SKIPPED), 'utf8')).toMatch(/was not written: .*hh\.1/);
    expect(existsSync(join(out, 'broker/users.json'))).toBe(true);
  }, 60_000);
});

describe('natsNodeConf', () => {
  const layout = (n: number): NatsClusterLayout => ({
    name: 'sm',
    host: '127.0.0.1',
    nodes: Array.from({ length: n }, (_, i) => ({ client: 5000 + 10 * i, cluster: 5001 + 10 * i, http: 5002 + 10 * i, mqtt: 5003 + 10 * i })),
    route: { user: 'route', password: 'r'.repeat(24) },
    ackWaitS: 30,
    maxPayload: 4 * 1024 * 1024,
  });

  it('three nodes: routes to all, MQTT streams on three replicas, the users included', () => {
    const conf = natsNodeConf(layout(3), 1, '/d/sm-n2', '../keys/nats/accounts.conf');
    expect(conf).toContain('server_name: "sm-n2"');
    expect(conf).toContain(`routes: ["nats-route://route:${'r'.repeat(24)}@127.0.0.1:5001", "nats-route://route:${'r'.repeat(24)}@127.0.0.1:5011", "nats-route://route:${'r'.repeat(24)}@127.0.0.1:5021"]`);
    expect(conf).toMatch(/mqtt \{\n {2}listen: "127\.0\.0\.1:5013"\n {2}stream_replicas: 3\n {2}ack_wait: "30s"\n\}/);
    expect(conf).toContain('include "../keys/nats/accounts.conf"');
    expect(natsMqttUrls(layout(3))).toBe('mqtt://127.0.0.1:5003,mqtt://127.0.0.1:5013,mqtt://127.0.0.1:5023');
  });

  it('one node: no cluster block, one replica; no key set: no include', () => {
    const conf = natsNodeConf(layout(1), 0, '/d/sm-n1');
    expect(conf).not.toContain('cluster {');
    expect(conf).not.toContain('include');
    expect(conf).toContain('stream_replicas: 1');
    expect([1, 2, 3, 5, 7].map(mqttStreamReplicas)).toEqual([1, 2, 3, 3, 3]);
  });

  it('refuses clashing ports, a short route password, odd paths', () => {
    const l = layout(2);
    l.nodes[1]!.mqtt = l.nodes[0]!.mqtt;
    expect(() => natsNodeConf(l, 0, '/d')).toThrow(/every port/);
    expect(() => natsNodeConf({ ...layout(2), route: { user: 'route', password: 'short' } }, 0, '/d')).toThrow(/route credentials/);
    expect(() => natsNodeConf(layout(2), 0, '/d/"x')).toThrow(/quotes/);
    expect(() => natsNodeConf(layout(2), 5, '/d')).toThrow(/no node 5/);
  });
});
