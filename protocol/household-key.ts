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
 * - `auth` = `[1, mac]` with mac = HMAC-SHA256(bindingKey, CBOR `[2, hh, spki, boundAt]`), bindingKey derived
 *   from the household's activation code (below), or `[2, sig]` with sig = RSA-PSS-SHA256 (salt 32) over the
 *   same bytes by the currently bound key;
 * - `pop` = RSA-PSS-SHA256 (salt 32) by the new key over CBOR `[2, hh, spki, boundAt, auth]` (proof of
 *   possession: nobody binds a key whose private half they do not hold).
 *
 * An empty retained payload withdraws the key (MQTT 3.1.1 §3.3.1.3). Version 1 (`[1, hh, spki]`, no proof)
 * is refused.
 *
 * **What the activation code gives** (this module is the one place of both derivations): three 32-byte values,
 * the `verifier` the browser sends the household app's server instead of the code (the server keeps only a MAC
 * of it), the `binding` key above (`provision` gives it to the PES), and the end-to-end mode's meter `stream`
 * key (docs/protocol.md §11.5; `provision --e2e` gives it to the meters). The code is normalised first
 * ({@link normaliseCode}); scrypt's cost is {@link BINDING_SCRYPT} (N = 2^14, r = 8, p = 1) throughout.
 * - Derivation 2 ({@link ACTIVATION_DERIVATION}, what provisioning writes): ONE scrypt of the code under the
 *   salt `smartermeter/activation/v2/<hh>` gives a 32-byte master; HKDF-SHA-256 (RFC 5869, no salt) of it with
 *   the `info` labels of {@link ACTIVATION_INFO} gives the three values; the master is zeroed.
 * - Derivation 1 (key sets provisioned before): three scrypts of the code under the salts
 *   `smartermeter/ucs-activation/v1/<hh>` ({@link activationVerifier}), `smartermeter/binding/v1/<hh>`
 *   ({@link bindingKey}) and `smartermeter/e2e-stream/v1/<hh>` ({@link meterStreamKey}).
 *
 * Either way the verifier says nothing about the other two except through guessing the code, and each guess
 * costs one full scrypt: in derivation 1 they are scrypts under different salts, in derivation 2 HKDF outputs
 * under different labels, which are independent pseudorandom keys (RFC 5869 §3.2).
 *
 * Browser-safe: @noble/hashes for scrypt, HKDF and HMAC; the RSA-PSS operations are the caller's (node:crypto
 * in the PES and in tests, WebCrypto in the browser).
 * @module
 */
import { hkdf } from '@noble/hashes/hkdf.js';
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
/**
 * scrypt cost of every derivation from an activation code (2^14: tens of ms, once per registration and household).
 * @example
 * ```ts
 * const master = scryptSync(code, salt, BINDING_SCRYPT.dkLen, { N: BINDING_SCRYPT.N, r: BINDING_SCRYPT.r, p: BINDING_SCRYPT.p });
 * ```
 */
export const BINDING_SCRYPT = { N: 1 << 14, r: 8, p: 1, dkLen: 32 } as const;
/**
 * How a key set derives its values from the activation codes (the module comment): 1 three scrypts, 2 one scrypt and HKDF.
 * @example
 * ```ts
 * const derivation: ActivationDerivation = loadActivation(keysDir).derivation;
 * ```
 */
export type ActivationDerivation = 1 | 2;
/**
 * The derivation new key sets are provisioned with.
 * @example
 * ```ts
 * const { verifier, binding } = activationSecretsSync(code, hh, ACTIVATION_DERIVATION);
 * ```
 */
export const ACTIVATION_DERIVATION = 2 satisfies ActivationDerivation;
/**
 * Derivation 2's HKDF `info` labels, one per value.
 * @example
 * ```ts
 * const binding = hkdf(sha256, master, undefined, utf8(ACTIVATION_INFO.binding), 32);
 * ```
 */
export const ACTIVATION_INFO = {
  verifier: 'smartermeter/activation/v2/ucs-verifier',
  binding: 'smartermeter/activation/v2/binding',
  stream: 'smartermeter/activation/v2/e2e-stream',
} as const;

/**
 * The values derived from a household's activation code (the module comment), 32 bytes each.
 * @example
 * ```ts
 * const { verifier, binding, stream }: ActivationSecrets = await activationSecrets(code, 'hh1', 2);
 * ```
 */
export interface ActivationSecrets {
  /** Sent to the household app's server instead of the code; the server keeps only a MAC of it. */
  verifier: Uint8Array;
  /** Authenticates the first household-key message (§10.1); the PES holds it. */
  binding: Uint8Array;
  /** The end-to-end mode's meter stream key (§11.5); the meters hold it. */
  stream: Uint8Array;
}

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
 * Derivation 1's scrypt inputs ({@link bindingKey}, {@link activationVerifier}, {@link meterStreamKey}): the
 * normalised code's bytes, and per value its salt. For a Node.js caller that derives them with the native,
 * threadpooled `crypto.scrypt` under {@link BINDING_SCRYPT}; the outputs equal this module's. Throws
 * `TypeError` for a malformed code or household id.
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
 * The household's binding key in derivation 1 (the module comment; {@link activationSecrets} gives either
 * derivation's): scrypt of the code under `smartermeter/binding/v1/<hh>`.
 * @example
 * ```ts
 * const key = await bindingKey('ABCD-EFGH-JKLM', 'hh1');
 * ```
 */
export function bindingKey(code: string, household: string): Promise<Uint8Array> {
  return scryptAsync(codeBytes(code), bindingSalt(household), BINDING_SCRYPT);
}

/**
 * {@link bindingKey}, synchronously (for tests and tools, not for a server's event loop).
 * @example
 * ```ts
 * const key = bindingKeySync('ABCD-EFGH-JKLM', 'hh1');
 * ```
 */
export function bindingKeySync(code: string, household: string): Uint8Array {
  return scrypt(codeBytes(code), bindingSalt(household), BINDING_SCRYPT);
}

function verifierSalt(household: string): Uint8Array {
  return new TextEncoder().encode(`smartermeter/ucs-activation/v1/${topicId(household, 'household')}`);
}

/**
 * The activation code's verifier in derivation 1 (what the household's browser sends the household app's server
 * instead of the code, `/api/register/begin`): scrypt of the code under a third salt
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
 * The household's meter stream key (end-to-end mode, docs/protocol.md §11.5) in derivation 1: AES-256 key under
 * which the household's meters seal its stream, derived from the activation code as {@link bindingKey} is but
 * under another salt (`smartermeter/e2e-stream/v1/<hh>`), so the binding keys the PES holds say nothing about
 * it. `provision --e2e` gives it to the meters only; the household's browser derives it from the code it types.
 * @example
 * ```ts
 * const k = await meterStreamKey('ABCD-EFGH-JKLM', 'hh1');
 * ```
 */
export function meterStreamKey(code: string, household: string): Promise<Uint8Array> {
  return scryptAsync(codeBytes(code), streamSalt(household), BINDING_SCRYPT);
}

/**
 * {@link meterStreamKey}, synchronously (for tests and tools, not for a server's event loop).
 * @example
 * ```ts
 * const key = meterStreamKeySync('ABCD-EFGH-JKLM', 'hh1');
 * ```
 */
export function meterStreamKeySync(code: string, household: string): Uint8Array {
  return scrypt(codeBytes(code), streamSalt(household), BINDING_SCRYPT);
}

function masterSalt(household: string): Uint8Array {
  return new TextEncoder().encode(`smartermeter/activation/v2/${topicId(household, 'household')}`);
}

/**
 * Whether `v` is a derivation this module knows; throws `TypeError` otherwise (a version read from a file or
 * a server's answer).
 * @example
 * ```ts
 * const derivation = activationDerivation(reply.derivation); // 1 or 2
 * ```
 */
export function activationDerivation(v: unknown): ActivationDerivation {
  if (v !== 1 && v !== 2) throw new TypeError('activation derivation must be 1 or 2');
  return v;
}

/**
 * Derivation 2's scrypt inputs: the normalised code's bytes and the salt `smartermeter/activation/v2/<hh>`. For
 * a Node.js caller that runs the one scrypt with the native, threadpooled `crypto.scrypt` under
 * {@link BINDING_SCRYPT} (provisioning a large fleet) and passes the master to {@link expandActivationMaster}.
 * Throws `TypeError` for a malformed code or household id.
 * @example
 * ```ts
 * const { code, salt } = activationMasterInputs('ABCD-EFGH-JKLM', 'hh1');
 * const secrets = expandActivationMaster(scryptSync(code, salt, 32, { N: 1 << 14, r: 8, p: 1 }));
 * ```
 */
export function activationMasterInputs(code: string, household: string): { code: Uint8Array; salt: Uint8Array } {
  return { code: codeBytes(code), salt: masterSalt(household) };
}

/**
 * Derivation 2's HKDF step: the three values from the 32-byte master scrypt gave, HKDF-SHA-256 (RFC 5869, no
 * salt) under the labels of {@link ACTIVATION_INFO}. Zeroes `master` (it derives all three values), also when
 * it throws; throws `TypeError` unless the master is 32 bytes.
 * @example
 * ```ts
 * const { verifier, binding, stream } = expandActivationMaster(master); // master is now all zeros
 * ```
 */
export function expandActivationMaster(master: Uint8Array): ActivationSecrets {
  try {
    if (!(master instanceof Uint8Array) || master.length !== BINDING_SCRYPT.dkLen) throw new TypeError('activation master must be 32 bytes');
    const out = (label: string) => hkdf(sha256, master, undefined, new TextEncoder().encode(label), 32);
    return { verifier: out(ACTIVATION_INFO.verifier), binding: out(ACTIVATION_INFO.binding), stream: out(ACTIVATION_INFO.stream) };
  } finally {
    if (master instanceof Uint8Array) master.fill(0);
  }
}

/**
 * The values a household's activation code gives under `derivation` (the module comment): for derivation 2
 * one scrypt, for derivation 1 three. What the household's browser derives once at registration. Throws
 * `TypeError` for a malformed code, household id or derivation.
 * @example
 * ```ts
 * const { verifier, binding, stream } = await activationSecrets('ABCD-EFGH-JKLM', 'hh1', 2);
 * ```
 */
export async function activationSecrets(code: string, household: string, derivation: ActivationDerivation): Promise<ActivationSecrets> {
  if (activationDerivation(derivation) === 1) {
    const [verifier, binding, stream] = await Promise.all([activationVerifier(code, household), bindingKey(code, household), meterStreamKey(code, household)]);
    return { verifier, binding, stream };
  }
  const { code: bytes, salt } = activationMasterInputs(code, household);
  return expandActivationMaster(await scryptAsync(bytes, salt, BINDING_SCRYPT));
}

/**
 * {@link activationSecrets}, synchronously (for provisioning's tests and command-line tools, not for a server's
 * event loop).
 * @example
 * ```ts
 * const { stream } = activationSecretsSync(readFileSync('hh1.activation', 'utf8'), 'hh1', 2);
 * ```
 */
export function activationSecretsSync(code: string, household: string, derivation: ActivationDerivation): ActivationSecrets {
  if (activationDerivation(derivation) === 1) {
    return { verifier: scrypt(codeBytes(code), verifierSalt(household), BINDING_SCRYPT), binding: bindingKeySync(code, household), stream: meterStreamKeySync(code, household) };
  }
  const { code: bytes, salt } = activationMasterInputs(code, household);
  return expandActivationMaster(scrypt(bytes, salt, BINDING_SCRYPT));
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
