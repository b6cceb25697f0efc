/**
 * A maximum MQTT packet size, enforced on the bytes of a connection before the packet parser buffers them.
 * aedes 1.2 and mqtt-packet 9 have no such limit: mqtt-packet's parser reads the remaining length and then
 * buffers until that many bytes have arrived, so a CONNECT announcing 256 MB is buffered whole, before any
 * authentication. The guard reads only the fixed headers (MQTT 3.1.1 §2.2) and skips the bodies.
 * @module
 */

export { MAX_PACKET_BYTES } from '../protocol/acl.js';

/**
 * Default largest packet before CONNACK: a CONNECT of this protocol is client id, user name and password
 * (well under 1 kB); a small will of a third-party client fits too.
 * @example
 * ```ts
 * await startBroker({ users, maxPacketBytesBeforeConnack: MAX_PACKET_BYTES_BEFORE_CONNACK });
 * ```
 */
export const MAX_PACKET_BYTES_BEFORE_CONNACK = 4096;

/**
 * Follows the packet boundaries of one connection's byte stream (MQTT 3.1.1 §2.2.3: a type byte, then the
 * remaining length in 1..4 bytes of 7 bits, least significant group first, high bit set when another
 * follows) and reports a packet larger than {@link PacketSizeGuard.limit} as soon as its header is complete.
 * `limit` may change between calls (raised after CONNACK).
 * @example
 * ```ts
 * const guard = new PacketSizeGuard(4096);
 * guard.feed(Buffer.from([0x10, 0x80, 0x80, 0x80, 0x40])); // 134217733: a 128 MB CONNECT, refuse it
 * guard.feed(Buffer.from([0xc0, 0x00]));                   // 0: a PINGREQ is fine
 * ```
 */
export class PacketSizeGuard {
  /** Largest packet allowed, fixed header included, in bytes. */
  limit: number;
  /** Body bytes of the current packet still to pass. */
  private skip = 0;
  /** Inside a fixed header: after the type byte, reading the remaining length. */
  private inHeader = false;
  private length = 0;
  private lengthBytes = 0;

  constructor(limit: number) {
    this.limit = limit;
  }

  /**
   * Feeds the next bytes of the stream. Returns 0 while every packet fits, else the size the offending
   * packet announces (Infinity for a remaining length longer than 4 bytes, which is malformed, §2.2.3);
   * once it returned non-zero the connection is to be closed and the guard not fed again.
   */
  feed(chunk: Uint8Array): number {
    let i = 0;
    while (i < chunk.length) {
      if (this.skip > 0) {
        const n = Math.min(this.skip, chunk.length - i);
        this.skip -= n;
        i += n;
        continue;
      }
      if (!this.inHeader) {
        this.inHeader = true; // the type and flags byte
        this.length = 0;
        this.lengthBytes = 0;
        i++;
        continue;
      }
      const b = chunk[i++]!;
      this.length += (b & 0x7f) * 128 ** this.lengthBytes++;
      if (b & 0x80) {
        if (this.lengthBytes === 4) return Infinity;
        continue;
      }
      this.inHeader = false;
      const size = 1 + this.lengthBytes + this.length;
      if (size > this.limit) return size;
      this.skip = this.length;
    }
    return 0;
  }
}
