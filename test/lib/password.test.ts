import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { decoyHash, hashPassword, hashRandomSecret, parseStoredHash, SECRET_HASH_PREFIX, verifyPassword } from '../../lib/password.js';

const secret = () => randomBytes(18).toString('base64url'); // what provision gives a broker user: 144 bits

describe('password verifiers', () => {
  it('a random secret gets the versioned HMAC-SHA-256 kind, which verifies it and nothing else', async () => {
    const pw = secret();
    const stored = hashRandomSecret(pw);
    expect(stored).toMatch(/^hmac-sha256\$1\$[0-9a-f]{32}\$[0-9a-f]{64}$/);
    expect(await verifyPassword(pw, stored)).toBe(true);
    expect(await verifyPassword(Buffer.from(pw), stored)).toBe(true);
    expect(await verifyPassword(pw.slice(0, -1) + (pw.endsWith('A') ? 'B' : 'A'), stored)).toBe(false);
    expect(await verifyPassword('', stored)).toBe(false);
    expect(hashRandomSecret(pw)).not.toBe(stored); // salted
  });

  it('refuses to give the fast kind to a secret too short to hold 128 bits', () => {
    expect(() => hashRandomSecret('correct horse')).toThrow(/at least 22 characters/);
  });

  it('still verifies scrypt entries of existing files (N:r:p:salt:hash)', async () => {
    const stored = hashPassword('correct horse');
    expect(parseStoredHash(stored).kind).toBe('scrypt');
    expect(await verifyPassword('correct horse', stored)).toBe(true);
    expect(await verifyPassword('correct horsf', stored)).toBe(false);
    // A low-cost legacy entry (another N) verifies with its own parameters.
    const { scryptSync } = await import('node:crypto');
    const salt = randomBytes(16);
    const legacy = `1024:8:1:${salt.toString('hex')}:${scryptSync('pw', salt, 32, { N: 1024, r: 8, p: 1 }).toString('hex')}`;
    expect(await verifyPassword('pw', legacy)).toBe(true);
  });

  it.each([
    'hmac-sha256$1$00$' + '00'.repeat(32), // short salt
    'hmac-sha256$1$' + '00'.repeat(16) + '$' + '00'.repeat(31), // short MAC
    'hmac-sha256$1$' + '00'.repeat(16) + '$' + '00'.repeat(32) + '$x', // extra field
    'hmac-sha256$2$' + '00'.repeat(16) + '$' + '00'.repeat(32), // unknown version
    'x',
  ])('refuses a malformed verifier %s with a TypeError naming the format', async (bad) => {
    expect(() => parseStoredHash(bad)).toThrow(TypeError);
    expect(() => parseStoredHash(bad)).toThrow(SECRET_HASH_PREFIX);
    await expect(verifyPassword('x', bad)).rejects.toThrow(TypeError);
  });

  it('a decoy has the kind and cost of the stored verifiers it stands in for', () => {
    expect(parseStoredHash(decoyHash(hashRandomSecret(secret()))).kind).toBe('hmac-sha256');
    expect(parseStoredHash(decoyHash(undefined)).kind).toBe('hmac-sha256');
    const d = parseStoredHash(decoyHash(hashPassword('p')));
    expect(d.kind === 'scrypt' && d.N).toBe(1 << 14);
  });
});
