/**
 * The gateway's MQTT payload: `[1, gatewayId, [frame, ...]]` in CBOR, each `frame` the exact CBOR bytes of
 * a ciphered frame as received on the serial line (the gateway never deciphers or re-encodes them).
 * @module
 */
import { asArray, asBytes, asText, asUint, cborDecode, cborEncode } from './cbor.js';
import { topicId } from './topics.js';

export const UPLINK_VERSION = 1;
export const MAX_FRAMES_PER_UPLINK = 1024;

export interface Uplink {
  gateway: string;
  frames: Uint8Array[];
}

/**
 * Encodes a batch of frames for publishing.
 * @example
 * ```ts
 * client.publish(topics.frames('gw1'), encodeUplink({ gateway: 'gw1', frames }), { qos: 1 });
 * ```
 */
export function encodeUplink(u: Uplink): Buffer {
  topicId(asText(u.gateway, 'gateway'), 'gateway');
  asArray(u.frames, 'frames', 1, MAX_FRAMES_PER_UPLINK).forEach((f, i) => asBytes(f, `frames[${i}]`));
  return cborEncode([UPLINK_VERSION, u.gateway, u.frames]);
}

/**
 * Decodes and validates an uplink payload; throws `TypeError` naming the bad field.
 * @example
 * ```ts
 * const { gateway, frames } = decodeUplink(message);
 * ```
 */
export function decodeUplink(bytes: Uint8Array): Uplink {
  const a = asArray(cborDecode(bytes), 'uplink', 3, 3);
  if (asUint(a[0], 'uplink version', 255) !== UPLINK_VERSION) throw new TypeError(`unsupported uplink version ${String(a[0])}`);
  const frames = asArray(a[2], 'frames', 1, MAX_FRAMES_PER_UPLINK).map((f, i) => asBytes(f, `frames[${i}]`));
  // The gateway id is also the last level of the topic it arrived on (topics.frames): same syntax here, so
  // the PES can compare them.
  return { gateway: topicId(asText(a[1], 'gateway'), 'gateway'), frames };
}
