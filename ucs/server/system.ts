/**
 * The app itself (`/`, `/app.js`, `/app.css`, bundled at start) and `/healthz` (broker link, archive and
 * request counters; nothing about any household).
 * @module
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { AppBundle, Asset } from '../bundle.js';
import { healthReply, replies } from './schemas.js';

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

  app.get('/healthz', { schema: { response: replies(healthReply) } }, async () => ({
    ok: true,
    broker: link.client.connected,
    archiving: link.archiving,
    counters: link.counters,
    requests: counters,
  }));
}
