/**
 * The household key pair, made and used with WebCrypto (in the browser; Node 20 has the same API, which the
 * tests use). RSA-OAEP with SHA-256 and MGF1-SHA-256, what the PES wraps each epoch's content key with
 * (protocol/seal.ts, docs/protocol.md §11). The private key leaves the browser only as AES-256-GCM
 * ciphertext under the password-derived `wrapKey` (ucs/web/kdf.ts), bound to the household id by the AAD.
 *
 * What is sealed is the household's secrets ({@link packSecrets}): the private key (PKCS#8 DER) followed by the
 * household's stream key (32 bytes, derived from the activation code at registration: the key its meters seal
 * the stream with in the end-to-end mode, docs/protocol.md §11.5). An account registered before the stream key
 * existed holds the DER alone; its stream key is null.
 * @module
 */
import { CONTENT_KEY_BYTES } from '../../protocol/envelope.js';
import { activationMac, encodeHouseholdKey, popSigned, PSS_SALT_BYTES } from '../../protocol/household-key.js';
import { ab, b64u, utf8 } from './bytes.js';

/** Modulus of new household keys: 3072 bits, about 128-bit security (NIST SP 800-57 Part 1, Table 2). */
export const RSA_BITS = 3072;
const OAEP = { name: 'RSA-OAEP', hash: 'SHA-256' } as const;

/** The private key as stored on the server: AES-256-GCM, 12-byte IV, 16-byte tag at the end of `ct`. */
export interface SealedPrivateKey {
  iv: Uint8Array;
  ct: Uint8Array;
}

/**
 * A wrong password (or a blob for another household): the GCM tag did not verify.
 * @example
 * ```ts
 * if (e instanceof WrongPasswordError) notice('error', e.message);
 * ```
 */
export class WrongPasswordError extends Error {
  constructor() {
    super('Wrong password.');
    this.name = 'WrongPasswordError';
  }
}

/**
 * Generates a household key pair; returns the public key as DER SubjectPublicKeyInfo and the private key
 * as DER PKCS#8 (the caller wraps it and then zeroes it).
 * @example
 * ```ts
 * const { spki, pkcs8 } = await generateHouseholdKey();
 * ```
 */
export async function generateHouseholdKey(bits = RSA_BITS): Promise<{ spki: Uint8Array<ArrayBuffer>; pkcs8: Uint8Array<ArrayBuffer> }> {
  const kp = await crypto.subtle.generateKey({ ...OAEP, modulusLength: bits, publicExponent: new Uint8Array([1, 0, 1]) }, true, ['encrypt', 'decrypt']);
  const spki = new Uint8Array(await crypto.subtle.exportKey('spki', kp.publicKey));
  const pkcs8 = new Uint8Array(await crypto.subtle.exportKey('pkcs8', kp.privateKey));
  return { spki, pkcs8 };
}

/** The secrets the password protects. */
export interface HouseholdSecrets {
  pkcs8: Uint8Array<ArrayBuffer>;
  /** The end-to-end mode's stream key; null for an account registered before it existed. */
  streamKey: Uint8Array<ArrayBuffer> | null;
}

/**
 * The plaintext {@link sealPrivateKey} seals: the PKCS#8 DER, then the 32-byte stream key.
 * @example
 * ```ts
 * const sealed = await sealPrivateKey(packSecrets(pkcs8, (await activationSecrets(code, 'hh1', 2)).stream), wrapKey, 'hh1');
 * ```
 */
export function packSecrets(pkcs8: Uint8Array, streamKey: Uint8Array): Uint8Array<ArrayBuffer> {
  if (streamKey.length !== CONTENT_KEY_BYTES) throw new TypeError(`the stream key must be ${CONTENT_KEY_BYTES} bytes`);
  if (derLength(pkcs8) !== pkcs8.length) throw new TypeError('the private key must be one PKCS#8 DER structure');
  const out = new Uint8Array(pkcs8.length + streamKey.length);
  out.set(pkcs8);
  out.set(streamKey, pkcs8.length);
  return out;
}

/**
 * Splits what {@link openPrivateKey} returns into the private key and the stream key (the DER's own length says
 * where it ends). Throws `TypeError` on anything else.
 * @example
 * ```ts
 * const { pkcs8, streamKey } = unpackSecrets(await openPrivateKey(sealed, wrapKey, 'hh1'));
 * ```
 */
export function unpackSecrets(plain: Uint8Array<ArrayBuffer>): HouseholdSecrets {
  const n = derLength(plain);
  if (n === plain.length) return { pkcs8: plain, streamKey: null };
  if (n + CONTENT_KEY_BYTES !== plain.length) throw new TypeError('the sealed secrets are neither a private key nor a private key and a stream key');
  return { pkcs8: plain.slice(0, n), streamKey: plain.slice(n) };
}

/** Length of the DER SEQUENCE at the start of `b` (header included); throws unless it is one. */
function derLength(b: Uint8Array): number {
  if (b.length < 2 || b[0] !== 0x30) throw new TypeError('not a DER SEQUENCE');
  const first = b[1]!;
  if (first < 0x80) return 2 + first;
  const bytes = first & 0x7f;
  if (bytes < 1 || bytes > 3 || b.length < 2 + bytes) throw new TypeError('DER length out of range');
  let len = 0;
  for (let i = 0; i < bytes; i++) len = len * 256 + b[2 + i]!;
  return 2 + bytes + len;
}

const keyAad = (household: string) => utf8(`smartermeter/ucs/v1/private-key|${household}`);

async function aesKey(raw: Uint8Array, use: 'encrypt' | 'decrypt'): Promise<CryptoKey> {
  return crypto.subtle.importKey('raw', ab(raw), 'AES-GCM', false, [use]);
}

/**
 * Encrypts a PKCS#8 private key under `wrapKey` (AES-256-GCM, random IV, AAD = household id).
 * @example
 * ```ts
 * const sealed = await sealPrivateKey(pkcs8, wrapKey, 'hh1');
 * ```
 */
export async function sealPrivateKey(pkcs8: Uint8Array, wrapKey: Uint8Array, household: string): Promise<SealedPrivateKey> {
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const ct = await crypto.subtle.encrypt({ name: 'AES-GCM', iv, additionalData: keyAad(household), tagLength: 128 }, await aesKey(wrapKey, 'encrypt'), ab(pkcs8));
  return { iv, ct: new Uint8Array(ct) };
}

/**
 * Decrypts a sealed private key; throws {@link WrongPasswordError} when `wrapKey` is not the right one.
 * @example
 * ```ts
 * const pkcs8 = await openPrivateKey(sealed, wrapKey, 'hh1');
 * ```
 */
export async function openPrivateKey(sealed: SealedPrivateKey, wrapKey: Uint8Array, household: string): Promise<Uint8Array<ArrayBuffer>> {
  try {
    const pt = await crypto.subtle.decrypt({ name: 'AES-GCM', iv: ab(sealed.iv), additionalData: keyAad(household), tagLength: 128 }, await aesKey(wrapKey, 'decrypt'), ab(sealed.ct));
    return new Uint8Array(pt);
  } catch {
    throw new WrongPasswordError();
  }
}

/**
 * Imports a PKCS#8 private key as a non-extractable RSA-OAEP-SHA-256 decryption key.
 * @example
 * ```ts
 * const key = await importPrivateKey(pkcs8); pkcs8.fill(0);
 * ```
 */
export async function importPrivateKey(pkcs8: Uint8Array): Promise<CryptoKey> {
  return crypto.subtle.importKey('pkcs8', ab(pkcs8), OAEP, false, ['decrypt']);
}

/**
 * Key id of a public key: SHA-256(SPKI DER)[0..8], as protocol/seal.ts `keyId`.
 * @example
 * ```ts
 * hex(await keyIdOf(spki)); // '3c1f…' (16 hex digits)
 * ```
 */
export async function keyIdOf(spki: Uint8Array): Promise<Uint8Array<ArrayBuffer>> {
  return new Uint8Array(await crypto.subtle.digest('SHA-256', ab(spki))).slice(0, 8);
}

/**
 * PEM text of a PKCS#8 private key (what `ucs watch --key` and `ucs ha-bridge --key` read).
 * @example
 * ```ts
 * pkcs8Pem(pkcs8); // '-----BEGIN PRIVATE KEY-----\n…'
 * ```
 */
export function pkcs8Pem(pkcs8: Uint8Array): string {
  return pem('PRIVATE KEY', pkcs8);
}

/**
 * PEM text of a public key in SPKI DER (the PES's signature key, as `ucs watch --pes-key` reads it).
 * @example
 * ```ts
 * spkiPem(der); // '-----BEGIN PUBLIC KEY-----\n…'
 * ```
 */
export function spkiPem(spki: Uint8Array): string {
  return pem('PUBLIC KEY', spki);
}

function pem(label: string, der: Uint8Array): string {
  const b64 = b64u(der).replace(/-/g, '+').replace(/_/g, '/');
  const padded = b64 + '='.repeat((4 - (b64.length % 4)) % 4);
  return `-----BEGIN ${label}-----\n${padded.match(/.{1,64}/g)!.join('\n')}\n-----END ${label}-----\n`;
}

/**
 * The household-key message that binds a new key with the activation code (docs/protocol.md §10.1), made in
 * the browser from the binding key it derived from the code (protocol/household-key.ts `activationSecrets`):
 * the household app's server only forwards it, and could not have made it (it never sees the binding key).
 * `pop` is an RSA-PSS signature by the new key itself. The caller zeroes `bindingKey`.
 * @example
 * ```ts
 * const binding = await activationBinding('hh1', (await activationSecrets(code, 'hh1', 2)).binding, spki, pkcs8);
 * ```
 */
export async function activationBinding(household: string, bindingKey: Uint8Array, spki: Uint8Array, pkcs8: Uint8Array, boundAt = Math.floor(Date.now() / 1000)): Promise<Uint8Array> {
  const auth = { type: 'activation' as const, mac: activationMac(bindingKey, household, spki, boundAt) };
  const pss = await crypto.subtle.importKey('pkcs8', ab(pkcs8), { name: 'RSA-PSS', hash: 'SHA-256' }, false, ['sign']);
  const pop = new Uint8Array(await crypto.subtle.sign({ name: 'RSA-PSS', saltLength: PSS_SALT_BYTES }, pss, ab(popSigned(household, spki, boundAt, auth))));
  return encodeHouseholdKey({ household, spki, boundAt, auth, pop });
}
