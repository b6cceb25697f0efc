import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { buildUsers, loadUsers, parseUsers } from '../../lib/broker-users.js';
import { hashPassword, verifyPassword } from '../../lib/password.js';

describe('scrypt password hashes', () => {
  const stored = hashPassword('correct horse');

  it('has the documented layout N:r:p:salt:hash', () => {
    expect(stored).toMatch(/^16384:8:1:[0-9a-f]{32}:[0-9a-f]{64}$/);
  });

  it('verifies the right password and rejects others', async () => {
    expect(await verifyPassword('correct horse', stored)).toBe(true);
    expect(await verifyPassword(Buffer.from('correct horse'), stored)).toBe(true);
    expect(await verifyPassword('correct horsf', stored)).toBe(false);
    expect(await verifyPassword('', stored)).toBe(false);
  });

  it('salts every hash', () => {
    expect(hashPassword('x')).not.toBe(hashPassword('x'));
  });

  it.each(['', 'plain', '16384:8:1:00:00', '3:8:1:' + '00'.repeat(16) + ':' + '00'.repeat(32), '1048576:64:1:' + '00'.repeat(16) + ':' + '00'.repeat(32)])(
    'rejects a malformed or too costly stored hash %j',
    async (bad) => {
      await expect(verifyPassword('x', bad)).rejects.toThrow(TypeError);
    },
  );
});

describe('users file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sm-users-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const fleet = { gateways: ['gw-n1'], households: ['h1'] };
  const names = ['gateway-gw-n1', 'household-h1', 'mdms', 'pes', 'ucs'];

  it('buildUsers hashes each ACL user and round-trips through loadUsers', async () => {
    const passwords = Object.fromEntries(names.map((n) => [n, `pw-${n}`]));
    const file = buildUsers(fleet, passwords);
    expect(Object.keys(file.users).sort()).toEqual(names);
    const path = join(dir, 'users.json');
    writeFileSync(path, JSON.stringify(file));
    const back = loadUsers(path);
    expect(back).toEqual(file);
    expect(await verifyPassword('pw-pes', back.users.pes!.scrypt)).toBe(true);
    expect(await verifyPassword('pw-mdms', back.users.pes!.scrypt)).toBe(false);
    expect(JSON.stringify(file)).not.toContain('pw-');
  });

  it('buildUsers refuses a user without a password', () => {
    expect(() => buildUsers(fleet, new Map([['pes', 'x']]))).toThrow(/no password for broker user/);
  });

  it.each([
    [{}, /version/],
    [{ version: 1, users: [] }, /"users" must be an object/],
    [{ version: 1, users: { 'bad name': {} } }, /bad user name/],
    [{ version: 1, users: { a: { scrypt: 'x', publish: [], subscribe: [] } } }, /users\.a\.scrypt hash/],
    [{ version: 1, users: { a: { scrypt: hashPassword('p'), publish: ['a/#/b'], subscribe: [] } } }, /users\.a\.publish/],
    [{ version: 1, users: { a: { scrypt: hashPassword('p'), publish: [], subscribe: 'x' } } }, /users\.a\.subscribe/],
  ])('parseUsers rejects %j', (json, msg) => {
    expect(() => parseUsers(json)).toThrow(msg);
  });

  it('loadUsers names the file it cannot read', () => {
    const path = join(dir, 'broken.json');
    writeFileSync(path, '{');
    expect(() => loadUsers(path)).toThrow(/broken\.json/);
    expect(() => loadUsers(join(dir, 'missing.json'))).toThrow(/missing\.json/);
  });
});
