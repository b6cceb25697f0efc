/**
 * The logged-in household's routes: its wrapped key, its broker credentials, its ciphertext archive, a
 * password change and the deletion of its account. Every one needs a live session.
 * @module
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { topics } from '../../protocol/topics.js';
import { loadCredentials } from '../../lib/keyset.js';
import { METER_SEALED_KID } from '../link.js';
import { b64u } from '../web/bytes.js';
import { ApiError, checkAuth, COOKIE, hashAuth, sessionOf } from './context.js';
import { accountJson } from './login.js';
import { bytesOf, sealedKeyOf, type SealedKeyBody } from './registration.js';
import { accountReply, archiveQuery, archiveReply, brokerReply, deleteBody, deletedReply, okReply, passwordBody, replies } from './schemas.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** The live session of a request to an account route. */
    ucsSession: { household: string; expiresAt: number; token: string } | null;
  }
}

/**
 * Registers `/api/key`, `/api/broker`, `/api/archive`, `/api/password` and `/api/account/delete`.
 * @example
 * ```ts
 * await app.register(accountRoutes);
 * ```
 */
export async function accountRoutes(app: FastifyInstance): Promise<void> {
  const ctx = app.ucs;
  const { db, link, logger } = ctx;
  // The session before anything else (a 401 rather than a 400 for a stale page), touched: this is activity.
  app.decorateRequest('ucsSession', null);
  app.addHook('preValidation', async (req) => {
    req.ucsSession = sessionOf(ctx, req, true);
  });
  const session = (req: FastifyRequest) => req.ucsSession!;

  app.get('/api/key', { schema: { response: replies(accountReply) } }, async (req) => accountJson(db.account(session(req).household)!));

  app.get('/api/broker', { schema: { response: replies(brokerReply) } }, async (req) => {
    const { household } = session(req);
    let creds;
    try {
      creds = loadCredentials(ctx.keysDir, `household-${household}`);
    } catch {
      throw new ApiError(503, 'no-broker-credentials', 'This server has no broker credentials for your household; live readings are unavailable. Please tell your energy supplier.');
    }
    return { wsUrl: ctx.brokerWsUrl, mqttUrl: ctx.householdMqttUrl, username: creds.username, password: creds.password, topic: topics.household(household), archive: link.archiving };
  });

  app.get('/api/archive', { schema: { querystring: archiveQuery, response: replies(archiveReply) } }, async (req) => {
    const { household } = session(req);
    const q = req.query as { after?: number; limit?: number };
    const limit = Math.max(1, q.limit ?? 500);
    const rows = db.archived(household, db.account(household)!.kid, q.after ?? 0, limit + 1, METER_SEALED_KID);
    const items = rows.slice(0, limit).map((r) => [r.seq, b64u(r.payload)] as const);
    return { items, more: rows.length > limit, archiving: link.archiving };
  });

  app.post('/api/password', { schema: { body: passwordBody, response: replies(okReply) } }, async (req) => {
    const s = session(req);
    const b = req.body as { auth: string; newAuth: string } & SealedKeyBody;
    const sealed = sealedKeyOf(b); // all of the input checked before the password is
    const newAuth = bytesOf(b.newAuth, 'newAuth', 32, 32);
    await checkAuth(ctx, req, s.household, bytesOf(b.auth, 'auth', 32, 32));
    db.changePassword(s.household, sealed.kdf, sealed.keyIv, sealed.keyCt, await hashAuth(newAuth), s.token);
    logger.info({ household: s.household }, 'ucs: password changed');
    return { ok: true };
  });

  app.post('/api/account/delete', { schema: { body: deleteBody, response: replies(deletedReply) } }, async (req, reply) => {
    const s = session(req);
    await checkAuth(ctx, req, s.household, bytesOf((req.body as { auth: string }).auth, 'auth', 32, 32));
    const withdrawn = await link.withdrawKey(s.household);
    db.deleteAccount(s.household);
    void reply.clearCookie(COOKIE, { path: '/' });
    logger.info({ household: s.household, withdrawn }, 'ucs: account deleted');
    return { ok: true, keyWithdrawn: withdrawn };
  });
}
