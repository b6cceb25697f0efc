import type { Client } from 'aedes';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { clientIdOwner, createAccessControl, type AccessControl } from '../../broker/access.js';
import { buildUsers } from '../../lib/broker-users.js';
import { mayRetain } from '../../protocol/acl.js';
import { topics } from '../../protocol/topics.js';

describe('clientIdOwner (docs/protocol.md §10: a user may use its name or <name>-...)', () => {
  const users = { pes: 1, 'household-h1': 1, 'household-h1-x': 1, 'gateway-gw-n1': 1 };
  it.each([
    ['pes', 'pes'],
    ['pes-2', 'pes'],
    ['pes-probe-x-y', 'pes'],
    ['household-h1', 'household-h1'],
    ['household-h1-web-0a1b', 'household-h1'],
    // the longest name wins: household-h1 does not own household-h1-x's sessions
    ['household-h1-x', 'household-h1-x'],
    ['household-h1-x-web-0a1b', 'household-h1-x'],
    ['gateway-gw-n1', 'gateway-gw-n1'],
    ['gateway-gw-n2', undefined],
    ['gateway', undefined],
    ['household-h1x', undefined],
    ['pesx', undefined],
    ['-pes', undefined],
    ['', undefined],
    ['mqttjs_0a1b2c', undefined],
    ['constructor', undefined],
    ['__proto__-1', undefined],
  ])('%j belongs to %j', (id, owner) => expect(clientIdOwner(id, users)).toBe(owner));
});

describe('mayRetain (docs/protocol.md §10: retained only for household keys)', () => {
  it.each([
    [topics.householdKey('hh1'), true],
    [topics.frames('gw-1'), false],
    [topics.neighbourhood('nb1'), false],
    [topics.billing('hh1'), false],
    [topics.household('hh1'), false],
    ['sm/v1/pes/household-key', false],
    ['sm/v1/pes/household-key/hh1/x', false],
    ['other', false],
  ])('%s: %s', (topic, ok) => expect(mayRetain(topic)).toBe(ok));
});

describe('createAccessControl: authenticate under a flood (fake clients, injected clock)', () => {
  const users = buildUsers({ gateways: [], households: [] }, { pes: 'right-pw-1', mdms: 'right-pw-2', ucs: 'right-pw-3' });
  const fakeClient = (id: string, remoteAddress: string) => ({ id, closed: false, conn: { remoteAddress, destroyed: false } }) as unknown as Client;
  const attempt = (auth: AccessControl['authenticate'], client: Client, user: string, pw: string) =>
    new Promise<{ code: number; calls: number }>((resolve) => {
      let calls = 0;
      auth(client, user, Buffer.from(pw), (err) => {
        calls++;
        setTimeout(() => resolve({ code: err ? (err as { returnCode: number }).returnCode : 0, calls }), 20);
      });
    });

  it('answers every CONNECT exactly once, even when a backoff ends while a check waits', async () => {
    let t = 0;
    const access = createAccessControl(users, pino({ level: 'silent' }), {
      throttle: { freeFailures: 2, baseDelayMs: 50, maxDelayMs: 50 },
      verify: { concurrency: 1 },
      now: () => (t += 7), // the clock moves on every look: backoffs start and end between the checks
    });
    const results = await Promise.all(Array.from({ length: 40 }, (_, i) => attempt(access.authenticate, fakeClient(`pes-${i}`, '10.0.0.1'), 'pes', 'wrong')));
    expect(results.every((r) => r.calls === 1)).toBe(true);
    expect(new Set(results.map((r) => r.code))).toEqual(new Set([3, 4])); // throttled or wrong password, nothing else
    expect(access.counters.authFailures).toBe(40);
    expect(await attempt(access.authenticate, fakeClient('mdms-ok', '10.0.0.9'), 'mdms', 'right-pw-2')).toEqual({ code: 0, calls: 1 });
  });

  it('does not tell unknown names from users by the backoff', async () => {
    // A clock that stands still: on a loaded machine the real one let a backoff end before the last look.
    const access = createAccessControl(users, pino({ level: 'silent' }), { throttle: { freeFailures: 2 }, now: () => 1_700_000_000_000 });
    for (const user of ['pes', 'nobody']) {
      for (let i = 0; i < 3; i++) await attempt(access.authenticate, fakeClient(`${user}-${i}`, `192.0.2.${i}`), user, 'wrong');
    }
    // From a fresh address, both names are now in a user backoff: the same answer, without a password check.
    for (const user of ['pes', 'nobody']) expect((await attempt(access.authenticate, fakeClient(`${user}-x`, '198.51.100.1'), user, 'wrong')).code).toBe(3);
    expect(access.counters.authThrottled).toBe(2);
  });
});
