/**
 * What the household app needs to band, price and place its own readings: `/api/tariff` (the tariff file the
 * server was given with `--tariff`, the same for every household it serves) and `/api/household` (its meters
 * and their neighbourhoods with their provisioned sizes, from the fleet). Neither says anything about a reading,
 * and neither tells the utility anything: the browser computes the rest from its own stream.
 * @module
 */
import type { FastifyInstance } from 'fastify';
import { sessionOf } from './context.js';
import { householdReply, replies, tariffReply } from './schemas.js';

/**
 * Registers `/api/tariff` and `/api/household` (both need a live session).
 * @example
 * ```ts
 * await app.register(householdRoutes);
 * ```
 */
export async function householdRoutes(app: FastifyInstance): Promise<void> {
  const ctx = app.ucs;
  const sizes = new Map<string, number>();
  for (const m of ctx.fleet.meters) sizes.set(m.neighbourhood, (sizes.get(m.neighbourhood) ?? 0) + 1);

  app.get('/api/tariff', { schema: { response: replies(tariffReply) } }, async (req) => {
    sessionOf(ctx, req, false);
    return ctx.tariff ? { configured: true, tariff: ctx.tariff.json } : { configured: false };
  });

  app.get('/api/household', { schema: { response: replies(householdReply) } }, async (req) => {
    const { household } = sessionOf(ctx, req, false);
    const meters = ctx.fleet.meters.filter((m) => m.household === household).map((m) => ({ meter: m.meter, label: m.label, neighbourhood: m.neighbourhood }));
    const neighbourhoods = [...new Set(meters.map((m) => m.neighbourhood))].sort().map((nb) => ({ neighbourhood: nb, provisionedMeters: sizes.get(nb) ?? 0 }));
    return { household, meters, neighbourhoods };
  });
}
