/**
 * The meter's serial line as the firmware sees it: bytes out, bytes in.
 * @module
 */
import type { Duplex } from 'node:stream';

/**
 * A byte pipe to the gateway.
 * @example
 * ```ts
 * const off = line.onData((chunk) => parser.write(chunk));
 * await line.write(encodeLinkFrame(payload));
 * ```
 */
export interface SerialLine {
  /** Queues bytes for transmission; resolves once the driver took them (not necessarily delivered). */
  write(bytes: Buffer): Promise<void>;
  /**
   * Resolves once every byte written so far has left the transmitter (`tcdrain`): the meter starts a frame's
   * acknowledgement timer then. Without it, a write's completion stands for it.
   */
  drain?(): Promise<void>;
  /** Subscribes to received bytes; returns the unsubscribe function. */
  onData(listener: (chunk: Buffer) => void): () => void;
}

/**
 * Wraps an open duplex stream (a `SerialPortStream`, one end of a crossed mock pair, a socket) as a
 * {@link SerialLine}. A write to a stream that has gone away resolves (the bytes are lost on the line, as on
 * a real wire; the meter retransmits unacknowledged frames) rather than rejecting. `drain` uses the stream's
 * own `drain(callback)` when it has one (a `SerialPortStream`: `tcdrain`).
 * @example
 * ```ts
 * const [meterEnd, gatewayEnd] = await openCrossedMockPair('/dev/m1', '/dev/g1');
 * const line = streamLine(meterEnd);
 * ```
 */
export function streamLine(stream: Duplex): SerialLine {
  return {
    write: (bytes) =>
      new Promise((resolve) => {
        if (stream.destroyed || !stream.writable) return resolve();
        stream.write(bytes, () => resolve());
      }),
    drain: () =>
      new Promise((resolve) => {
        const port = stream as Duplex & { drain?: (cb: (err?: Error | null) => void) => void };
        if (stream.destroyed || !stream.writable || typeof port.drain !== 'function') return resolve();
        port.drain(() => resolve());
      }),
    onData(listener) {
      stream.on('data', listener);
      return () => stream.off('data', listener);
    },
  };
}
