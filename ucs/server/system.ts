/**
 * The app itself (`/`, `/app.js`, `/app.css`, bundled at start), `/api/pes-key` (the PES's public signature
 * key, which the browser verifies every stream epoch with) and `/healthz` (broker link, archive and request
 * counters; nothing about any household).
 * @module
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { AppBundle, Asset } from '../bundle.js';
import { loadPesVerifyKey } from '../../lib/keyset.js';
import { b64u } from '../web/bytes.js';
import { healthReply, pesKeyReply, replies } from './schemas.js';

/**
 * Registers the asset and health routes.
 * @example
 * ```ts
 * await app.register(systemRoutes, { bundle: await appBundle() });
 * ```
 */
export async function systemRoutes(app: FastifyInstance, opts: { bundle: AppBundle }): Promise<void> {
  const { link, counters } = app.ucs;
  const serve = (a: Asset) => async (req: FastifyRequest, reply: FastifyReply) => {
    if (req.headers['if-none-match'] === a.etag) return reply.code(304).send();
    return reply.header('etag', a.etag).header('cache-control', 'no-cache').type(a.type).send(a.body);
  };
  const file = { response: { 200: { type: 'string' }, 304: { type: 'null' } } };
  for (const [path, a] of Object.entries(opts.bundle)) app.get(path, { schema: file }, serve(a));

  // The PES's Ed25519 public key (public, like fleet.json): the browser checks every stream epoch with it.
  const pesKey = { spki: b64u(loadPesVerifyKey(app.ucs.keysDir).export({ type: 'spki', format: 'der' })) };
  app.get('/api/pes-key', { schema: { response: replies(pesKeyReply) } }, async () => pesKey);

  app.get('/healthz', { schema: { response: replies(healthReply) } }, async () => ({
    ok: true,
    broker: link.client.connected,
    archiving: link.archiving,
    counters: link.counters,
    requests: counters,
  }));
}
