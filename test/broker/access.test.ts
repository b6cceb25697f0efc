import { describe, expect, it } from 'vitest';
import { clientIdOwner } from '../../broker/access.js';
import { mayRetain } from '../../broker/acl.js';
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
