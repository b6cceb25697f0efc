/**
 * Node-side makers of household-key messages (docs/protocol.md §10.1) for tests: what a household's browser
 * makes with its activation code, and what it makes to rotate to a new key.
 */
import { constants, createPublicKey, sign, type KeyObject } from 'node:crypto';
import { activationMac, bindingKeySync, bindingSigned, encodeHouseholdKey, popSigned, PSS_SALT_BYTES, type BindingAuth } from '../../protocol/household-key.js';

const pss = (key: KeyObject) => ({ key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: PSS_SALT_BYTES });
export const spkiOf = (k: KeyObject): Buffer => createPublicKey(k).export({ type: 'spki', format: 'der' });

/** A binding by the activation code (`code`, or the binding key itself), signed by `newKey` (its private key). */
export function activationMessage(household: string, code: string | Uint8Array, newKey: KeyObject, boundAt = 1_765_000_000, spki: Uint8Array = spkiOf(newKey)): Uint8Array {
  const key = typeof code === 'string' ? bindingKeySync(code, household) : code;
  const auth: BindingAuth = { type: 'activation', mac: activationMac(key, household, spki, boundAt) };
  return encodeHouseholdKey({ household, spki, boundAt, auth, pop: sign('sha256', popSigned(household, spki, boundAt, auth), pss(newKey)) });
}

/** A rotation to `newKey`, authorised by the currently bound `currentKey`. */
export function rotationMessage(household: string, currentKey: KeyObject, newKey: KeyObject, boundAt: number): Uint8Array {
  const spki = spkiOf(newKey);
  const auth: BindingAuth = { type: 'rotation', sig: sign('sha256', bindingSigned(household, spki, boundAt), pss(currentKey)) };
  return encodeHouseholdKey({ household, spki, boundAt, auth, pop: sign('sha256', popSigned(household, spki, boundAt, auth), pss(newKey)) });
}
