/**
 * MQTT topics (MQTT 3.1.1 §4.7). Every payload is CBOR; who may publish and subscribe is in
 * docs/protocol.md and enforced by the broker ACL (broker/acl.ts).
 * @module
 */
const ID = /^[A-Za-z0-9_.-]{1,64}$/;

/** Checks an identifier used as a topic level (no wildcards, no separators). */
export function topicId(id: string, what = 'id'): string {
  if (typeof id !== 'string' || !ID.test(id)) throw new TypeError(`${what} must match ${ID.source}`);
  return id;
}

export const topics = {
  /** Gateway -> PES: batches of opaque ciphered frames. */
  frames: (gateway: string) => `sm/v1/frames/${topicId(gateway, 'gateway id')}`,
  framesAll: 'sm/v1/frames/+',
  /** PES -> MDMS: sealed neighbourhood x interval aggregates. */
  neighbourhood: (nb: string) => `sm/v1/agg/neighbourhood/${topicId(nb, 'neighbourhood')}`,
  /** PES -> MDMS: sealed household x billing period x band totals. */
  billing: (hh: string) => `sm/v1/agg/billing/${topicId(hh, 'household')}`,
  aggregatesAll: 'sm/v1/agg/#',
  /** PES -> household: the household's own readings, sealed to its key. */
  household: (hh: string) => `sm/v1/household/${topicId(hh, 'household')}/readings`,
  householdAll: (hh: string) => `sm/v1/household/${topicId(hh, 'household')}/#`,
  /** UCS server / provisioning -> PES: a household's public key (retained). */
  householdKey: (hh: string) => `sm/v1/pes/household-key/${topicId(hh, 'household')}`,
  householdKeysAll: 'sm/v1/pes/household-key/+',
} as const;
