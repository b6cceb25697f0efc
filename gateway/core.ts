/**
 * The gateway's pure core: what a verified link payload is (a frame to forward, another message, or
 * garbage), and the counters a concentrator keeps. No I/O and no keys: frames stay opaque.
 * @module
 */
import { cborDecode } from '../protocol/cbor.js';
import { decodeMessage, MSG_FRAME, meterId } from '../protocol/frame.js';
import type { LinkCounters } from '../protocol/link.js';

/** A ciphered frame as the gateway sees it: routing header plus the exact received bytes. */
export interface OpaqueFrame {
  /** `meterId(systemTitle):ic` — one frame of one meter; retransmissions share it. */
  key: string;
  systemTitle: Uint8Array;
  ic: number;
  /** The CBOR message exactly as received on the line (forwarded unchanged, never deciphered). */
  bytes: Uint8Array;
}

/** What one verified link payload turned out to be. */
export type Classified =
  | { kind: 'frame'; frame: OpaqueFrame }
  /** Well-formed CBOR that is not a ciphered frame (e.g. an ack travelling the wrong way). */
  | { kind: 'notAFrame'; reason: string }
  /** Not decodable as CBOR at all. */
  | { kind: 'malformed'; reason: string };

/**
 * The identity of a frame for de-duplication and acknowledgement.
 * @example
 * ```ts
 * frameKey(systemTitle('SMR', 1), 7); // '534d520000000001:7'
 * ```
 */
export function frameKey(st: Uint8Array, ic: number): string {
  return `${meterId(st)}:${ic}`;
}

/**
 * Classifies one link payload (already FCS-checked by the LinkParser). Never throws.
 * @example
 * ```ts
 * const c = classifyPayload(payload);
 * if (c.kind === 'frame') forward(c.frame);
 * ```
 */
export function classifyPayload(payload: Uint8Array): Classified {
  try {
    const m = decodeMessage(payload);
    if (m.type !== MSG_FRAME) return { kind: 'notAFrame', reason: `message type ${m.type} on the uplink` };
    return { kind: 'frame', frame: { key: frameKey(m.systemTitle, m.ic), systemTitle: m.systemTitle, ic: m.ic, bytes: payload } };
  } catch (e) {
    // Only the rare bad path pays for a second decode, to tell "not CBOR" from "CBOR, but not a frame".
    try {
      cborDecode(payload);
    } catch {
      return { kind: 'malformed', reason: (e as Error).message };
    }
    return { kind: 'notAFrame', reason: (e as Error).message };
  }
}

/** Counters of one serial line. All only grow. */
export interface LineCounters {
  /** Ciphered frames received intact. */
  framesOk: number;
  /** Link frames with a wrong FCS. */
  badCrc: number;
  /** Link frames longer than the maximum payload. */
  oversize: number;
  /** Link frames that were malformed (bad escape, too short) or whose payload is not CBOR. */
  malformed: number;
  /** Times the link parser resynchronised on a flag. */
  resyncs: number;
  /** Intact messages that are not ciphered frames (acks arriving upstream, foreign CBOR). */
  notAFrame: number;
  /** Retransmissions of a frame that was already queued or recently forwarded. */
  duplicates: number;
  /** Frames refused because the queue was full (not acknowledged: the meter keeps and retransmits them). */
  queueFull: number;
  /** Acknowledgements written to the line. */
  acksSent: number;
  /** Acknowledgements that could not be written because the line was down (the meter will retransmit). */
  acksDropped: number;
}

/** Gateway totals: the sum of every line's counters plus forwarding state. */
export interface GatewayCounters extends LineCounters {
  /** Frames whose uplink the broker acknowledged (PUBACK). */
  forwarded: number;
  /** Frames in the queue, not yet acknowledged by the broker. */
  pending: number;
  /** Uplinks published and acknowledged. */
  uplinks: number;
  /** Uplinks that failed (connection lost before PUBACK, refused) and will be re-published. */
  publishErrors: number;
  /** Queue (disk) failures; publishing pauses and retries. */
  storeErrors: number;
  /** Serial lines currently open. */
  linesUp: number;
}

/** Fresh line counters, all zero. */
export function newLineCounters(): LineCounters {
  return { framesOk: 0, badCrc: 0, oversize: 0, malformed: 0, resyncs: 0, notAFrame: 0, duplicates: 0, queueFull: 0, acksSent: 0, acksDropped: 0 };
}

/**
 * Merges a line's own counters with its link parser's (bad FCS, oversize, malformed, resyncs).
 * @example
 * ```ts
 * lineCounters(own, parser.counters).badCrc;
 * ```
 */
export function lineCounters(own: LineCounters, link: LinkCounters): LineCounters {
  return { ...own, badCrc: link.badCrc, oversize: link.oversize, malformed: own.malformed + link.malformed, resyncs: link.resyncs };
}

/**
 * Sums line counters into gateway totals.
 * @example
 * ```ts
 * totalCounters(lines.map((l) => l.counters()), { forwarded, pending, uplinks, publishErrors, linesUp });
 * ```
 */
export function totalCounters(lines: LineCounters[], rest: Omit<GatewayCounters, keyof LineCounters>): GatewayCounters {
  const sum = newLineCounters();
  for (const l of lines) for (const k of Object.keys(sum) as (keyof LineCounters)[]) sum[k] += l[k];
  return { ...sum, ...rest };
}
