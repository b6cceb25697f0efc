/**
 * Registration bound to the meter: the browser asks which derivation the key set's activation codes use
 * (`/api/activation`, from the activation file's version), derives the code's values once (protocol/household-key.ts
 * `activationSecrets`), and the code's verifier buys a single-use ticket (`/api/register/begin`: this server never
 * sees the code, so it can derive neither the binding key nor the end-to-end mode's stream key); with it the
 * browser uploads its public key, its wrapped private key and its login authenticator (`/api/register/finish`),
 * and the server publishes the key to the PES.
 * @module
 */
import { createPublicKey } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { verifyPassword } from '../../lib/password.js';
import { decodeHouseholdKey } from '../../protocol/household-key.js';
import { keyId } from '../../protocol/seal.js';
import { topics } from '../../protocol/topics.js';
import { loadActivation } from '../activation.js';
import { b64u, fromB64u } from '../web/bytes.js';
import { checkKdf } from '../web/kdf.js';
import { ApiError, checkSecret, hashAuth, plural, startSession, type SecretCheck } from './context.js';
import { activationReply, beginBody, finishBody, registeredReply, replies, ticketReply } from './schemas.js';
import { ACTIVATION_THROTTLE } from './throttle.js';

const TICKET_TTL_MS = 15 * 60_000;

/** The wrapped key and KDF parameters of a request (already shaped by the schema). */
export interface SealedKeyBody {
  kdf: unknown;
  key: { iv: string; ct: string };
}

/**
 * Decodes base64url that the schema let through, as a 400 naming `what` if its byte length is off.
 * @example
 * ```ts
 * const auth = bytesOf(body.auth, 'auth', 32, 32);
 * ```
 */
export function bytesOf(v: string, what: string, min: number, max: number): Uint8Array<ArrayBuffer> {
  try {
    return fromB64u(v, what, min, max);
  } catch (e) {
    throw new ApiError(400, 'bad-request', (e as Error).message);
  }
}

/**
 * Checks the browser's KDF parameters and decodes its wrapped key (a 400 naming the field otherwise).
 * @example
 * ```ts
 * const { kdf, keyIv, keyCt } = sealedKeyOf(req.body);
 * ```
 */
export function sealedKeyOf(b: SealedKeyBody): { kdf: string; keyIv: Buffer; keyCt: Buffer } {
  let kdf;
  try {
    kdf = checkKdf(b.kdf);
  } catch (e) {
    throw new ApiError(400, 'bad-request', (e as Error).message);
  }
  return { kdf: JSON.stringify(kdf), keyIv: Buffer.from(bytesOf(b.key.iv, 'key.iv', 12, 12)), keyCt: Buffer.from(bytesOf(b.key.ct, 'key.ct', 600, 8192)) };
}

/** Checks an uploaded public key: RSA, 2048..4096 bits, e = 65537 (the PES needs RSA >= 2048). */
function publicKeyOf(v: string): { spki: Buffer; kid: Buffer } {
  const spki = Buffer.from(bytesOf(v, 'spki', 200, 1024));
  let key;
  try {
    key = createPublicKey({ key: spki, format: 'der', type: 'spki' });
  } catch {
    throw new ApiError(400, 'bad-key', 'The public key is not a DER SubjectPublicKeyInfo.');
  }
  const d = key.asymmetricKeyDetails;
  if (key.asymmetricKeyType !== 'rsa' || !d?.modulusLength || d.modulusLength < 2048 || d.modulusLength > 4096 || d.publicExponent !== 65537n) {
    throw new ApiError(400, 'bad-key', 'The household key must be RSA with 2048 to 4096 bits and exponent 65537.');
  }
  return { spki, kid: keyId(key) };
}

/**
 * Checks the browser's key-binding message (docs/protocol.md §10.1) for shape only: this household, this key,
 * bound by its activation code. Its MAC and signature are the PES's to verify: this server cannot make or
 * check them (it never sees the code's binding key), which is the point.
 */
function bindingOf(v: string | undefined, hh: string, spki: Buffer): Buffer {
  if (v === undefined) throw new ApiError(400, 'bad-binding', 'The registration lacks the key binding made with the activation code; reload the page and register again.');
  const bytes = Buffer.from(bytesOf(v, 'binding', 300, 4096));
  let m;
  try {
    m = decodeHouseholdKey(topics.householdKey(hh), bytes);
  } catch (e) {
    throw new ApiError(400, 'bad-binding', `The key binding is malformed: ${(e as Error).message}.`);
  }
  if (m.spki === null || !spki.equals(Buffer.from(m.spki)) || m.auth.type !== 'activation') {
    throw new ApiError(400, 'bad-binding', 'The key binding must bind this public key with the activation code.');
  }
  return bytes;
}

const ACTIVATION: SecretCheck = {
  kind: 'activation',
  policy: ACTIVATION_THROTTLE,
  what: 'wrong activation codes',
  wrong: (hh, n, pauseMin) =>
    new ApiError(
      403,
      'wrong-code',
      `That activation code is not right for household ${hh}. ${n > 0 ? `${plural(n, 'attempt')} left before a ${pauseMin}-minute pause.` : `Try again in ${pauseMin} minutes.`} Check both the household id and the code on your letter.`,
    ),
};

const codeUsed = (hh: string) =>
  new ApiError(409, 'code-used', `This activation code has already been used: each code registers household ${hh} once. Log in with your password, or ask your energy supplier for a new code if you have lost it.`);

/**
 * Registers `/api/activation`, `/api/register/begin` and `/api/register/finish` (all limited per address).
 * @example
 * ```ts
 * await app.register(registrationRoutes);
 * ```
 */
export async function registrationRoutes(app: FastifyInstance): Promise<void> {
  const ctx = app.ucs;
  const { db, logger } = ctx;
  const limited = { rateLimit: { max: ctx.attemptsPerMinute, timeWindow: 60_000 } };

  // Public and the same for every household (the file's version): the browser must know it before it derives.
  app.get('/api/activation', { config: limited, schema: { response: replies(activationReply) } }, async () => ({ derivation: loadActivation(ctx.keysDir).derivation }));

  app.post('/api/register/begin', { config: limited, schema: { body: beginBody, response: replies(ticketReply) } }, async (req) => {
    const b = req.body as { household: string; verifier: string };
    const hh = b.household;
    const verifier = b64u(bytesOf(b.verifier, 'verifier', 32, 32)); // canonical form: the schema's alphabet, 32 bytes
    const hashes = loadActivation(ctx.keysDir).codes;
    const known = ctx.households.has(hh) ? hashes[hh] : undefined;
    // A household not in the fleet is answered as a wrong code, after the same work (no oracle of the fleet).
    await checkSecret(ctx, req, ACTIVATION, hh, async () => (await verifyPassword(verifier, known ?? ctx.decoyCodeHash)) && known !== undefined);
    const hash = known!;
    if (db.codeUsed(hh, hash)) throw codeUsed(hh);
    logger.info({ household: hh }, 'ucs: activation code accepted');
    return { ticket: db.newTicket(hh, hash, TICKET_TTL_MS) };
  });

  app.post('/api/register/finish', { config: limited, schema: { body: finishBody, response: replies(registeredReply) } }, async (req, reply) => {
    const b = req.body as { household: string; ticket: string; spki: string; binding?: string; auth: string } & SealedKeyBody;
    const hh = b.household;
    // The ticket first: a request without a live one costs a database look-up, not a scrypt hash.
    const ticket = db.ticket(b.ticket, hh);
    if (!ticket) throw new ApiError(400, 'ticket-expired', 'This registration took too long or was already completed. Please enter your activation code again.');
    if (db.codeUsed(hh, ticket.codeHash)) throw codeUsed(hh);
    const { spki, kid } = publicKeyOf(b.spki);
    const binding = bindingOf(b.binding, hh, spki);
    const sealed = sealedKeyOf(b);
    const authHash = await hashAuth(bytesOf(b.auth, 'auth', 32, 32));
    const r = db.register(b.ticket, { household: hh, spki, kid, ...sealed, authHash, binding });
    if (!r.ok) {
      if (r.why === 'used') throw codeUsed(hh);
      throw new ApiError(400, 'ticket-expired', 'This registration took too long or was already completed. Please enter your activation code again.');
    }
    logger.info({ household: hh, kid: kid.toString('hex') }, 'ucs: household registered');
    startSession(ctx, reply, hh);
    const keyPublished = await ctx.publishKey({ household: hh, spki, binding });
    return { household: hh, keyPublished };
  });
}
