/**
 * JSON Schemas of the UCS routes: fastify validates every body and query with them (a bad field is a 400
 * naming it) and serialises every answer with them (fast-json-stringify drops what is not declared, so a
 * handler cannot leak a login hash or a code hash by accident).
 * @module
 */

const str = { type: 'string' } as const;
const int = { type: 'integer' } as const;
const bool = { type: 'boolean' } as const;
/** base64url (no padding) of `min`..`max` bytes (the exact byte count is checked when decoding). */
const b64u = (min: number, max: number) => ({ type: 'string', pattern: '^[A-Za-z0-9_-]*$', minLength: Math.ceil((min * 4) / 3), maxLength: Math.ceil((max * 4) / 3) }) as const;
const object = <P extends Record<string, unknown>>(properties: P, required: (keyof P & string)[] = Object.keys(properties)) =>
  ({ type: 'object', properties, required, additionalProperties: false }) as const;

/** A household id as printed on the activation letter (protocol/topics.ts `topicId`). */
export const household = { type: 'string', pattern: '^[A-Za-z0-9_.-]{1,64}$' } as const;
/** The 32-byte login authenticator. */
export const auth = b64u(32, 32);

/** Every refusal: a machine code and a message for the household. */
export const errorReply = object({ error: str, message: str });
const errors = { '4xx': errorReply, '5xx': errorReply } as const;

/**
 * Answers of a route: `ok` for 200, the error shape for the rest.
 * @example
 * ```ts
 * app.get('/api/session', { schema: { response: replies(sessionReply) } }, handler);
 * ```
 */
export const replies = (ok: Record<string, unknown>) => ({ 200: ok, ...errors });

/** scrypt parameters of the browser's key derivation (values checked by ucs/web/kdf.ts `checkKdf`). */
export const kdf = object({ alg: { type: 'string', enum: ['scrypt'] }, N: int, r: int, p: int, salt: b64u(16, 64) });
/** The private key as the browser wrapped it (AES-256-GCM). */
export const wrappedKey = object({ iv: b64u(12, 12), ct: b64u(600, 8192) });

// The activation code's verifier (protocol/household-key.ts activationSecrets), never the code itself.
export const beginBody = object({ household, verifier: b64u(32, 32) });
// `binding` is checked by the handler after the ticket (a request without a live ticket costs no more than a look-up).
export const finishBody = object({ household, ticket: { type: 'string', maxLength: 64 }, spki: b64u(200, 1024), binding: b64u(300, 4096), kdf, key: wrappedKey, auth }, ['household', 'ticket', 'spki', 'kdf', 'key', 'auth']);
export const loginBody = object({ household, auth });
export const passwordBody = object({ auth, newAuth: auth, kdf, key: wrappedKey });
export const deleteBody = object({ auth });
// Query strings tolerate parameters they do not know (ignored); bodies do not.
export const kdfQuery = { ...object({ household }), additionalProperties: true } as const;
export const archiveQuery = {
  ...object({ after: { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER }, limit: { type: 'integer', minimum: 0, maximum: 2000 } }, []),
  additionalProperties: true,
} as const;

export const ticketReply = object({ ticket: str });
/** `/api/activation`: which derivation (protocol/household-key.ts) the key set's activation codes use. */
export const activationReply = object({ derivation: { type: 'integer', enum: [1, 2] } });
export const registeredReply = object({ household: str, keyPublished: bool });
export const kdfReply = object({ kdf });
/** What login gives the browser: its wrapped key and public key, never the server's login hash. */
/** `/api/pes-key`: the PES's Ed25519 public key, SPKI DER in base64url. */
export const pesKeyReply = object({ spki: str });
export const accountReply = object({ household: str, kdf, key: wrappedKey, spki: str, boundAt: { type: ['integer', 'null'] } });
export const sessionReply = object({ household: str, expiresAt: int, idleS: int });
export const okReply = object({ ok: bool });
export const deletedReply = object({ ok: bool, keyWithdrawn: bool });
/** The household's own broker access: `wsUrl` for this browser, `mqttUrl` for its own tools (`ucs watch`, the HA bridge). */
export const brokerReply = object({ wsUrl: str, mqttUrl: str, username: str, password: str, topic: str, archive: bool });
const list = (items: Record<string, unknown>) => ({ type: 'array', items }) as const;
/** `/api/household`: the household's meters and their neighbourhoods (from the provisioned fleet). */
export const householdReply = object({
  household: str,
  meters: list(object({ meter: str, label: str, neighbourhood: str })),
  neighbourhoods: list(object({ neighbourhood: str, provisionedMeters: int })),
});
/** A tariff file as `--tariff` gave it (ucs/web/bill.ts has the format; the browser validates it again). */
const tariffFile = object(
  {
    name: str,
    description: str,
    tz: str,
    bands: list(object({ name: str, default: bool, rules: list(object({ days: list(int), from: str, to: str })) }, ['name'])),
    billing: object({ period: str, tz: str }, ['period']),
    prices: list(
      object(
        {
          effectiveFrom: str,
          name: str,
          currency: str,
          minorDigits: int,
          tz: str,
          standingMilliPerDay: int,
          vatBasisPoints: int,
          bands: list(object({ band: str, priceMilliPerKwh: int, feedInMilliPerKwh: int }, ['band', 'priceMilliPerKwh'])),
        },
        ['effectiveFrom', 'currency', 'minorDigits', 'standingMilliPerDay', 'vatBasisPoints', 'bands'],
      ),
    ),
  },
  ['bands', 'prices'],
);
/** `/api/tariff`: the household's tariff, if the server was given one. */
export const tariffReply = object({ configured: bool, tariff: tariffFile }, ['configured']);
export const archiveReply = object({
  items: { type: 'array', items: { type: 'array', items: [int, str], minItems: 2, maxItems: 2 } },
  more: bool,
  archiving: bool,
});
const perRoute = { type: 'object', additionalProperties: int } as const;
export const healthReply = object({
  ok: bool,
  broker: bool,
  archiving: bool,
  counters: object({ archived: int, duplicates: int, rejected: int, keysPublished: int }),
  requests: object({ badInput: perRoute, throttled: perRoute }),
});
