/**
 * The household-key message (docs/protocol.md §10.1): how a household's public key reaches the PES, which
 * seals the household's stream to it. Retained at QoS 1 on `topics.householdKey(hh)`; payload CBOR
 * `[1, hh, spki]` (version 1, the household id again, the RSA public key as SubjectPublicKeyInfo DER). An
 * empty retained payload withdraws the key (MQTT 3.1.1 §3.3.1.3: it also clears the retained message).
 * Browser-safe: no key is parsed here, only the bytes are carried; the PES checks the key itself.
 * @module
 */
import { asArray, asBytes, asUint, cborDecode, cborEncode } from './cbor.js';
import { parseTopic, topicId } from './topics.js';

/** Version of the household-key message. */
export const HOUSEHOLD_KEY_VERSION = 1;
/** Largest SPKI accepted (an RSA-8192 SPKI is about 1.1 kB). */
export const MAX_SPKI_BYTES = 2048;

/** A decoded household-key message: a key to bind, or `spki: null` for a withdrawal. */
export interface HouseholdKeyMessage {
  household: string;
  spki: Uint8Array | null;
}

/**
 * Encodes a household-key message.
 * @example
 * ```ts
 * client.publish(topics.householdKey('hh1'), encodeHouseholdKey('hh1', spki), { qos: 1, retain: true });
 * ```
 */
export function encodeHouseholdKey(household: string, spki: Uint8Array): Uint8Array {
  topicId(household, 'household');
  if (!(spki instanceof Uint8Array) || spki.length === 0 || spki.length > MAX_SPKI_BYTES) throw new TypeError(`spki must be 1..${MAX_SPKI_BYTES} bytes`);
  return cborEncode([HOUSEHOLD_KEY_VERSION, household, spki]);
}

/**
 * Decodes a household-key message received on `topic`; throws `TypeError` naming what is wrong (not a
 * household-key topic, unsupported version, household differing from the topic's, bad SPKI bytes).
 * @example
 * ```ts
 * const { household, spki } = decodeHouseholdKey(packet.topic, packet.payload); // spki null: withdrawn
 * ```
 */
export function decodeHouseholdKey(topic: string, payload: Uint8Array): HouseholdKeyMessage {
  const household = parseTopic.householdKey(topic);
  if (household === null) throw new TypeError('not a household key topic');
  if (payload.length === 0) return { household, spki: null };
  const a = asArray(cborDecode(payload), 'household key message', 3, 3);
  if (asUint(a[0], 'version', 255) !== HOUSEHOLD_KEY_VERSION) throw new TypeError('unsupported household key version');
  if (a[1] !== household) throw new TypeError('household in payload differs from topic');
  const spki = asBytes(a[2], 'spki');
  if (spki.length === 0 || spki.length > MAX_SPKI_BYTES) throw new TypeError(`spki must be 1..${MAX_SPKI_BYTES} bytes`);
  return { household, spki };
}
