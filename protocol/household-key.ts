/**
 * The household-key message (docs/protocol.md §10.1): how a household binds the public key the PES seals its
 * stream to. Retained at QoS 1 on `topics.householdKey(hh)`. Neither the household app's server nor any
 * broker password can bind a key: the message proves that whoever made it knows the household's activation
 * code (the first key) or holds the household's current key (a rotation), and holds the new key's private half.
 *
 * Payload: CBOR `[2, hh, spki, boundAt, auth, pop]`:
 * - `hh` the household id (equal to the topic's last level), `spki` its RSA public key (SubjectPublicKeyInfo
 *   DER, >= 2048 bits), `boundAt` Unix seconds, greater than the boundAt of the key it replaces (so an old
 *   message replayed never rolls a binding back);
 * - `auth` = `[1, mac]` with mac = HMAC-SHA256(bindingKey, CBOR `[2, hh, spki, boundAt]`) where
 *   bindingKey = scrypt(activation code, "smartermeter/binding/v1/" ‖ hh, N = 2^14, r = 8, p = 1, 32 bytes)
 *   ({@link bindingKey}; `provision` gives the PES these keys, the household app's server only a hash of the
 *   code's verifier, {@link activationVerifier}, a scrypt of it under another salt; the server never sees the
 *   code itself), or `[2, sig]` with sig = RSA-PSS-SHA256 (salt 32) over the same bytes by
 *   the currently bound key;
 * - `pop` = RSA-PSS-SHA256 (salt 32) by the new key over CBOR `[2, hh, spki, boundAt, auth]` (proof of
 *   possession: nobody binds a key whose private half they do not hold).
 *
 * An empty retained payload withdraws the key (MQTT 3.1.1 §3.3.1.3). Version 1 (`[1, hh, spki]`, no proof)
 * is refused. Browser-safe: @noble/hashes for scrypt and HMAC; the RSA-PSS operations are the caller's
 * (node:crypto in the PES and in tests, WebCrypto in the browser).
 * @module
 */
import { hmac } from '@noble/hashes/hmac.js';
import { scrypt, scryptAsync } from '@noble/hashes/scrypt.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { asArray, asBytes, asUint, cborDecode, cborEncode } from './cbor.js';
import { parseTopic, topicId } from './topics.js';

/** Version of the household-key message. */
export const HOUSEHOLD_KEY_VERSION = 2;
/** Largest SPKI accepted (an RSA-8192 SPKI is about 1.1 kB). */
export const MAX_SPKI_BYTES = 2048;
/** Bytes of an RSA-PSS signature accepted (up to RSA-8192). */
export const MAX_SIG_BYTES = 1024;
/** RSA-PSS parameters of `auth` (rotation) and `pop`: SHA-256, MGF1-SHA-256, 32-byte salt. */
export const PSS_SALT_BYTES = 32;
/** scrypt cost of the binding key (2^14, as the code's own hash: tens of ms, once per registration and household). */
export const BINDING_SCRYPT = { N: 1 << 14, r: 8, p: 1, dkLen: 32 } as const;

/** How the binding is authorised. */
export type BindingAuth = { type: 'activation'; mac: Uint8Array } | { type: 'rotation'; sig: Uint8Array };

/** A decoded household-key message: a key to bind, or `spki: null` for a withdrawal. */
export type HouseholdKeyMessage =
  | { household: string; spki: Uint8Array; boundAt: number; auth: BindingAuth; pop: Uint8Array }
  | { household: string; spki: null };

/**
 * The canonical form of a typed activation code (upper case, groups of four joined by `-`), or null if it
 * cannot be a code. Codes are 12 characters from A-Z0-9.
 * @example
 * ```ts
 * normaliseCode(' abcd efgh-jklm '); // 'ABCD-EFGH-JKLM'
 * normaliseCode('abc');              // null
 * ```
 */
export function normaliseCode(typed: unknown): string | null {
  if (typeof typed !== 'string' || typed.length > 64) return null;
  const s = typed.toUpperCase().replace(/[\s-]/g, '');
  if (!/^[A-Z0-9]{12}$/.test(s)) return null;
  return s.match(/.{4}/g)!.join('-');
}

function bindingSalt(household: string): Uint8Array {
  return new TextEncoder().encode(`smartermeter/binding/v1/${topicId(household, 'household')}`);
}

/**
 * The scrypt inputs of the three values derived from a household's activation code ({@link bindingKey},
 * {@link activationVerifier}, {@link meterStreamKey}): the normalised code's bytes, and per value its salt.
 * For a Node.js caller that derives them with the native, threadpooled `crypto.scrypt` under
 * {@link BINDING_SCRYPT} (provisioning a large fleet); the outputs equal this module's. Throws `TypeError`
 * for a malformed code or household id.
 * @example
 * ```ts
 * const { code, salts } = activationKdfInputs('ABCD-EFGH-JKLM', 'hh1');
 * const binding = scryptSync(code, salts.binding, 32, { N: 1 << 14, r: 8, p: 1 });
 * ```
 */
export function activationKdfInputs(code: string, household: string): { code: Uint8Array; salts: { binding: Uint8Array; verifier: Uint8Array; stream: Uint8Array } } {
  return { code: codeBytes(code), salts: { binding: bindingSalt(household), verifier: verifierSalt(household), stream: streamSalt(household) } };
}

function codeBytes(code: string): Uint8Array {
  const c = normaliseCode(code);
  if (!c) throw new TypeError('an activation code has 12 letters and digits');
  return new TextEncoder().encode(c);
}

/**
 * The household's binding key, derived from its activation code (what `provision` gives the PES, and what
 * the household's browser derives from the code it types).
 * @example
 * ```ts
 * const key = await bindingKey('ABCD-EFGH-JKLM', 'hh1');
 * ```
 */
export function bindingKey(code: string, household: string): Promise<Uint8Array> {
  return scryptAsync(codeBytes(code), bindingSalt(household), BINDING_SCRYPT);
}

/**
 * {@link bindingKey}, synchronously (for provisioning, not for a server's event loop).
 * @example
 * ```ts
 * keys[hh] = bindingKeySync(code, hh);
 * ```
 */
export function bindingKeySync(code: string, household: string): Uint8Array {
  return scrypt(codeBytes(code), bindingSalt(household), BINDING_SCRYPT);
}

function verifierSalt(household: string): Uint8Array {
  return new TextEncoder().encode(`smartermeter/ucs-activation/v1/${topicId(household, 'household')}`);
}

/**
 * What the household's browser sends the household app's server to prove it holds the activation code,
 * instead of the code (`/api/register/begin`): scrypt of the code under a third salt
 * (`smartermeter/ucs-activation/v1/<hh>`), so the server, which keeps only a hash of it, never learns the
 * code, hence neither the binding key nor the stream key derived from it.
 * @example
 * ```ts
 * const verifier = await activationVerifier('ABCD-EFGH-JKLM', 'hh1');
 * ```
 */
export function activationVerifier(code: string, household: string): Promise<Uint8Array> {
  return scryptAsync(codeBytes(code), verifierSalt(household), BINDING_SCRYPT);
}

function streamSalt(household: string): Uint8Array {
  return new TextEncoder().encode(`smartermeter/e2e-stream/v1/${topicId(household, 'household')}`);
}

/**
 * The household's meter stream key (end-to-end mode, docs/protocol.md §11.5): AES-256 key under which the
 * household's meters seal its stream, derived from the activation code as {@link bindingKey} is but under
 * another salt (`smartermeter/e2e-stream/v1/<hh>`), so the binding keys the PES holds say nothing about it.
 * `provision --e2e` gives it to the meters only; the household's browser derives it from the code it types.
 * @example
 * ```ts
 * const k = await meterStreamKey('ABCD-EFGH-JKLM', 'hh1');
 * ```
 */
export function meterStreamKey(code: string, household: string): Promise<Uint8Array> {
  return scryptAsync(codeBytes(code), streamSalt(household), BINDING_SCRYPT);
}

/**
 * {@link meterStreamKey}, synchronously (for provisioning and command-line tools, not for a server's event loop).
 * @example
 * ```ts
 * writeSecret(`meters/${id}.stream`, Buffer.from(meterStreamKeySync(code, hh)).toString('hex'));
 * ```
 */
export function meterStreamKeySync(code: string, household: string): Uint8Array {
  return scrypt(codeBytes(code), streamSalt(household), BINDING_SCRYPT);
}

/**
 * The bytes `auth` covers: CBOR `[2, hh, spki, boundAt]`.
 * @example
 * ```ts
 * const sig = sign('sha256', bindingSigned('hh1', spki, 1_765_000_000), { key: currentKey, padding: RSA_PKCS1_PSS_PADDING, saltLength: 32 });
 * ```
 */
export function bindingSigned(household: string, spki: Uint8Array, boundAt: number): Uint8Array {
  return cborEncode([HOUSEHOLD_KEY_VERSION, topicId(household, 'household'), spki, asUint(boundAt, 'boundAt', 0xffffffff)]);
}

/**
 * The activation MAC of a binding.
 * @example
 * ```ts
 * const auth = { type: 'activation', mac: activationMac(await bindingKey(code, 'hh1'), 'hh1', spki, boundAt) };
 * ```
 */
export function activationMac(key: Uint8Array, household: string, spki: Uint8Array, boundAt: number): Uint8Array {
  if (!(key instanceof Uint8Array) || key.length !== BINDING_SCRYPT.dkLen) throw new TypeError('binding key must be 32 bytes');
  return hmac(sha256, key, bindingSigned(household, spki, boundAt));
}

function authItem(auth: BindingAuth): [number, Uint8Array] {
  return auth.type === 'activation' ? [1, auth.mac] : [2, auth.sig];
}

/**
 * The bytes the new key signs (`pop`): CBOR `[2, hh, spki, boundAt, auth]`.
 * @example
 * ```ts
 * const pop = await crypto.subtle.sign({ name: 'RSA-PSS', saltLength: 32 }, newPssKey, popSigned('hh1', spki, boundAt, auth));
 * ```
 */
export function popSigned(household: string, spki: Uint8Array, boundAt: number, auth: BindingAuth): Uint8Array {
  return cborEncode([HOUSEHOLD_KEY_VERSION, topicId(household, 'household'), spki, asUint(boundAt, 'boundAt', 0xffffffff), authItem(auth)]);
}

/**
 * Encodes a household-key message.
 * @example
 * ```ts
 * client.publish(topics.householdKey('hh1'), encodeHouseholdKey({ household: 'hh1', spki, boundAt, auth, pop }), { qos: 1, retain: true });
 * ```
 */
export function encodeHouseholdKey(m: { household: string; spki: Uint8Array; boundAt: number; auth: BindingAuth; pop: Uint8Array }): Uint8Array {
  topicId(m.household, 'household');
  if (!(m.spki instanceof Uint8Array) || m.spki.length === 0 || m.spki.length > MAX_SPKI_BYTES) throw new TypeError(`spki must be 1..${MAX_SPKI_BYTES} bytes`);
  return cborEncode([HOUSEHOLD_KEY_VERSION, m.household, m.spki, asUint(m.boundAt, 'boundAt', 0xffffffff), authItem(m.auth), m.pop]);
}

function sigBytes(v: unknown, what: string): Uint8Array {
  const b = asBytes(v, what);
  if (b.length === 0 || b.length > MAX_SIG_BYTES) throw new TypeError(`${what} must be 1..${MAX_SIG_BYTES} bytes`);
  return b;
}

/**
 * Decodes a household-key message received on `topic`; throws `TypeError` naming what is wrong (not a
 * household-key topic, unsupported version, household differing from the topic's, malformed fields). It
 * checks the shape only: the PES verifies the proofs.
 * @example
 * ```ts
 * const m = decodeHouseholdKey(packet.topic, packet.payload); // m.spki === null: withdrawn
 * ```
 */
export function decodeHouseholdKey(topic: string, payload: Uint8Array): HouseholdKeyMessage {
  const household = parseTopic.householdKey(topic);
  if (household === null) throw new TypeError('not a household key topic');
  if (payload.length === 0) return { household, spki: null };
  const a = asArray(cborDecode(payload), 'household key message', 3, 6);
  if (asUint(a[0], 'version', 255) !== HOUSEHOLD_KEY_VERSION) throw new TypeError('unsupported household key version (version 1 carried no proof and is refused)');
  if (a.length !== 6) throw new TypeError('household key message must have 6 elements');
  if (a[1] !== household) throw new TypeError('household in payload differs from topic');
  const spki = asBytes(a[2], 'spki');
  if (spki.length === 0 || spki.length > MAX_SPKI_BYTES) throw new TypeError(`spki must be 1..${MAX_SPKI_BYTES} bytes`);
  const boundAt = asUint(a[3], 'boundAt', 0xffffffff);
  const au = asArray(a[4], 'auth', 2, 2);
  const kind = asUint(au[0], 'auth type', 255);
  let auth: BindingAuth;
  if (kind === 1) auth = { type: 'activation', mac: asBytes(au[1], 'activation mac', 32) };
  else if (kind === 2) auth = { type: 'rotation', sig: sigBytes(au[1], 'rotation signature') };
  else throw new TypeError('auth type must be 1 (activation) or 2 (rotation)');
  return { household, spki, boundAt, auth, pop: sigBytes(a[5], 'proof of possession') };
}
