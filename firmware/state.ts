/**
 * The meter's persisted state: what it must remember across a power cut, as one CBOR map.
 *
 * Everything here describes the meter at its last *frame boundary*: readings after the last sealed frame
 * are not persisted, so after a restart the meter re-reads those samples from its source and rebuilds them
 * exactly (the register and the source position move together). The invocation counter is the exception:
 * its mark only ever moves forward, and is persisted ahead of use (see counter.ts).
 * @module
 */
import { asArray, asBytes, asUint } from '../protocol/cbor.js';
import { MAX_IC, SYSTEM_TITLE_LEN, meterId } from '../protocol/frame.js';
import { MAX_KEY_GENERATION, WRAPPED_KEY_LEN } from '../protocol/key-wrap.js';
import type { E2eEncoderState } from './e2e.js';
import { MILLIWS_PER_WH } from './register.js';
import type { RingFrame } from './ring.js';

/** Largest register accepted, Wh (as in protocol/reading.ts: exact in a double, far beyond any meter). */
const MAX_REGISTER_WH = 2 ** 48;

/**
 * Version of the NV record layout written. Version 1 (before the export register) is read as export 0 and
 * rewritten as version 2 by the next save; any other version is refused.
 */
export const STATE_VERSION = 2;

export interface MeterState {
  /** The meter this record belongs to. */
  systemTitle: Uint8Array;
  /** Invocation-counter high-water mark (exclusive); counting resumes here after a restart. */
  reservedIc: number;
  /** Import register total at the end of the last framed reading, mW·s. */
  registerMilliWs: bigint;
  /** Export register total at the end of the last framed reading, mW·s (0 for a meter that never exported). */
  exportMilliWs: bigint;
  /** End (Unix s) of the last framed sample: the source resumes at samples starting here; -1 if none yet. */
  resumeAt: number;
  /** Samples consumed into frames since the meter was first started. */
  samples: number;
  /** Unacknowledged frames, oldest first. */
  ring: RingFrame[];
  /**
   * The key in use when it is not the provisioned one (generation 0): its generation and the key wrapped under
   * the meter's KEK, as it arrived (NV holds no meter key in clear).
   */
  key?: StoredKey;
  /** A transferred key the meter acknowledged and switches to once every frame sealed under the old key is acknowledged. */
  next?: StoredKey;
  /**
   * The end-to-end mode's snapshot encoder (firmware/e2e.ts) as of the last frame: its band registers and the
   * next interval boundary. Saved with the frame that advanced it, so that a restarted meter neither encrypts
   * a snapshot twice nor skips one (absent: a classic meter).
   */
  e2e?: E2eEncoderState;
}

/** A transferred key as NV keeps it: wrapped under the meter's KEK (protocol/key-wrap.ts). */
export interface StoredKey {
  generation: number;
  wrapped: Uint8Array;
}

/** `[whole Wh, remaining mW·s]`: both parts plain CBOR integers. */
function splitMilliWs(total: bigint): [number, number] {
  return [Number(total / MILLIWS_PER_WH), Number(total % MILLIWS_PER_WH)];
}

function joinMilliWs(v: unknown, name: string): bigint {
  const [wh, rest] = asArray(v, name, 2, 2);
  return BigInt(asUint(wh, `${name}.wh`, MAX_REGISTER_WH)) * MILLIWS_PER_WH + BigInt(asUint(rest, `${name}.milliWs`, Number(MILLIWS_PER_WH) - 1));
}

/**
 * The CBOR-ready form of a state: a plain map with short keys. Each register (`reg` import, `xreg` export) is
 * stored as `[whole Wh, remaining mW·s]` so that both parts are plain CBOR integers (the project's CBOR caps
 * integers at 2^53 - 1, and the exact total in mW·s can exceed that).
 * @example
 * ```ts
 * await nv.save(encodeMeterState(state));
 * ```
 */
export function encodeMeterState(s: MeterState): Record<string, unknown> {
  return {
    v: STATE_VERSION,
    st: s.systemTitle,
    ic: s.reservedIc,
    reg: splitMilliWs(s.registerMilliWs),
    xreg: splitMilliWs(s.exportMilliWs),
    at: s.resumeAt,
    n: s.samples,
    ring: s.ring.map((f) => [f.ic, f.bytes]),
    ...(s.key ? { key: [s.key.generation, s.key.wrapped] } : {}),
    ...(s.next ? { next: [s.next.generation, s.next.wrapped] } : {}),
    ...(s.e2e ? { e2e: [s.e2e.imports.map(Number), s.e2e.exports.map(Number), s.e2e.nextBoundary ?? -1] } : {}),
  };
}

function e2eState(v: unknown): E2eEncoderState | undefined {
  if (v === undefined) return undefined;
  const [imp, exp, next] = asArray(v, 'e2e', 3, 3);
  const registers = (a: unknown, name: string) => asArray(a, name, 1, 64).map((x, i) => BigInt(asUint(x, `${name}[${i}]`, MAX_REGISTER_WH)));
  const imports = registers(imp, 'e2e.imports');
  const exports = registers(exp, 'e2e.exports');
  if (imports.length !== exports.length) throw new TypeError('e2e import and export registers differ in bands');
  return { imports, exports, nextBoundary: next === -1 ? null : asUint(next, 'e2e.nextBoundary') };
}

function storedKey(v: unknown, name: string): StoredKey | undefined {
  if (v === undefined) return undefined;
  const [g, w] = asArray(v, name, 2, 2);
  const generation = asUint(g, `${name}.generation`, MAX_KEY_GENERATION);
  if (generation < 1) throw new TypeError(`${name}.generation must be at least 1`);
  return { generation, wrapped: Uint8Array.from(asBytes(w, `${name}.wrapped`, WRAPPED_KEY_LEN)) };
}

/**
 * Validates a loaded record and checks that it belongs to `systemTitle`; throws an `Error` naming the
 * first problem (a corrupt or foreign NV record must stop the meter, not be silently replaced: that
 * could reuse invocation counters).
 * @example
 * ```ts
 * const state = decodeMeterState(await nv.load(), st);
 * ```
 */
export function decodeMeterState(record: unknown, systemTitle: Uint8Array): MeterState {
  try {
    if (typeof record !== 'object' || record === null || Array.isArray(record)) throw new TypeError('record must be a map');
    const r = record as Record<string, unknown>;
    const version = asUint(r.v, 'v');
    if (version !== 1 && version !== STATE_VERSION) throw new TypeError(`unsupported version ${String(r.v)}`);
    const st = asBytes(r.st, 'st', SYSTEM_TITLE_LEN);
    if (meterId(st) !== meterId(systemTitle)) throw new TypeError(`record belongs to meter ${meterId(st)}`);
    const reg = joinMilliWs(r.reg, 'reg');
    // Version 1 records come from before the export register: such a meter had exported nothing.
    const xreg = version === 1 ? 0n : joinMilliWs(r.xreg, 'xreg');
    const at = r.at === -1 ? -1 : asUint(r.at, 'at');
    const ring = asArray(r.ring, 'ring').map((e, i) => {
      const [ic, bytes] = asArray(e, `ring[${i}]`, 2, 2);
      return { ic: asUint(ic, `ring[${i}].ic`, MAX_IC), bytes: Buffer.from(asBytes(bytes, `ring[${i}].bytes`)) };
    });
    const key = storedKey(r.key, 'key');
    const next = storedKey(r.next, 'next');
    if (next && next.generation <= (key?.generation ?? 0)) throw new TypeError('next key generation is not above the current one');
    const e2e = e2eState(r.e2e);
    return { systemTitle: st, reservedIc: asUint(r.ic, 'ic', MAX_IC + 1), registerMilliWs: reg, exportMilliWs: xreg, resumeAt: at, samples: asUint(r.n, 'n'), ring, ...(key ? { key } : {}), ...(next ? { next } : {}), ...(e2e ? { e2e } : {}) };
  } catch (e) {
    throw new Error(`NV record of meter ${meterId(systemTitle)} is invalid: ${(e as Error).message}`);
  }
}
