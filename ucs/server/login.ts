/**
 * Login: the KDF parameters of a household's account (`/api/kdf`), then its login authenticator
 * (`/api/login`), answered with the wrapped private key that only the browser can open. A household without
 * an account gets decoy KDF parameters and "wrong password": neither route tells who has an account.
 * @module
 */
import { decodeHouseholdKey } from '../../protocol/household-key.js';
import { topics } from '../../protocol/topics.js';
import type { FastifyInstance } from 'fastify';
import { b64u } from '../web/bytes.js';
import type { Account } from '../db.js';
import { checkAuth, decoyKdf, startSession } from './context.js';
import { bytesOf } from './registration.js';
import { accountReply, kdfQuery, kdfReply, loginBody, replies } from './schemas.js';

/**
 * What the browser gets of its account (the response schema drops anything else, the login hash first).
 * @example
 * ```ts
 * return accountJson(db.account('hh1')!);
 * ```
 */
export const accountJson = (a: Account) => ({
  household: a.household,
  kdf: JSON.parse(a.kdf) as unknown,
  key: { iv: b64u(a.keyIv), ct: b64u(a.keyCt) },
  spki: b64u(a.spki),
  boundAt: boundAtOf(a),
});

/** When the account's key was bound (the `boundAt` of its binding message), or null. */
function boundAtOf(a: Account): number | null {
  if (!a.binding) return null;
  try {
    const m = decodeHouseholdKey(topics.householdKey(a.household), a.binding);
    return m.spki ? m.boundAt : null;
  } catch {
    return null;
  }
}

/**
 * Registers `/api/kdf` and `/api/login` (limited per address).
 * @example
 * ```ts
 * await app.register(loginRoutes);
 * ```
 */
export async function loginRoutes(app: FastifyInstance): Promise<void> {
  const ctx = app.ucs;
  const limited = { rateLimit: { max: ctx.attemptsPerMinute, timeWindow: 60_000 } };

  app.get('/api/kdf', { config: limited, schema: { querystring: kdfQuery, response: replies(kdfReply) } }, async (req) => {
    const hh = (req.query as { household: string }).household;
    const a = ctx.db.account(hh);
    // No account: parameters that look like an account's and stay the same (no oracle of who registered).
    return { kdf: a ? (JSON.parse(a.kdf) as unknown) : decoyKdf(ctx.decoyKey, hh) };
  });

  app.post('/api/login', { config: limited, schema: { body: loginBody, response: replies(accountReply) } }, async (req, reply) => {
    const b = req.body as { household: string; auth: string };
    const a = await checkAuth(ctx, req, b.household, bytesOf(b.auth, 'auth', 32, 32));
    startSession(ctx, reply, a.household);
    ctx.logger.info({ household: a.household }, 'ucs: logged in');
    return accountJson(a);
  });
}
