/**
 * Meter key rotation, the DLMS way (docs/protocol.md §7.1): `provision rotate --meter M` makes the meter's next
 * key, wraps it under the meter's KEK (AES key wrap, generation bound) into a key-transfer message for the
 * meter's line, and wraps it to the PES key next to the meter's earlier keys. No new key is written in clear.
 *
 * Order of operations: rotate, restart the PES (it loads the new key as the meter's next one, and still
 * accepts the current one), then deliver `meters/<id>.transfer` to the meter (`meter --key-transfer`, a
 * technician's tool on its line). The meter acknowledges, drains the frames sealed under the old key and
 * switches; the PES retires the old key at the first frame authenticated under the new one. In an end-to-end
 * key set the new key is also wrapped to the guardian (`guardian/meter-keys.cbor`, to its public key: no
 * guardian secret is needed), which checks the same uplinks; where the guardian's folder has been handed
 * over, deliver that file to its operator with the transfer.
 * @module
 */
import { randomBytes, type KeyObject } from 'node:crypto';
import { cborEncode } from '../protocol/cbor.js';
import { encodeKeyTransfer } from '../protocol/frame.js';
import { MAX_KEY_GENERATION, wrapMeterKey } from '../protocol/key-wrap.js';
import { wrapKey } from '../protocol/seal.js';
import { GUARDIAN_DIR, GUARDIAN_FILES, loadFleet, loadGuardianPublicKey, loadMeterKek, loadPesPublicKey, meterTransferPath, PES_METER_KEYS, readWrappedMeterKeys, replaceSecret, type WrappedMeterKeys } from '../lib/keyset.js';
import { join } from 'node:path';

/** What one rotation produces. */
export interface Rotation {
  generation: number;
  /** The key-transfer message (serial-line type 3) for the meter. */
  transfer: Buffer;
  /** The PES's key file with the new key appended to the meter's rotations. */
  pesKeys: WrappedMeterKeys;
  /** The guardian's key file likewise (end-to-end key sets). */
  guardianKeys?: WrappedMeterKeys;
}

/**
 * The pure core of a rotation: the next generation of `meter`'s key, its transfer message and the PES key file
 * that holds it. `key` is the new key (the caller makes it and wipes it).
 * @example
 * ```ts
 * const r = rotation({ pesKeys, pesPublic, meter: id, kek, key: randomBytes(32) });
 * ```
 */
export function rotation(o: {
  pesKeys: WrappedMeterKeys;
  pesPublic: KeyObject;
  meter: string;
  kek: Uint8Array;
  key: Uint8Array;
  guardian?: { keys: WrappedMeterKeys; publicKey: KeyObject };
}): Rotation {
  if (!o.pesKeys.keys[o.meter]) throw new Error(`the PES key file has no key for meter ${o.meter}`);
  const earlier = o.pesKeys.rotations?.[o.meter] ?? [];
  const generation = earlier.length + 1;
  if (generation > MAX_KEY_GENERATION) throw new RangeError(`meter ${o.meter} has no key generation left`);
  const transfer = encodeKeyTransfer({ systemTitle: Buffer.from(o.meter, 'hex'), generation, wrapped: wrapMeterKey(o.kek, generation, o.key) });
  const pesKeys = { ...o.pesKeys, rotations: { ...o.pesKeys.rotations, [o.meter]: [...earlier, wrapKey(o.pesPublic, o.key)] } };
  if (!o.guardian) return { generation, transfer, pesKeys };
  const g = o.guardian.keys;
  const theirs = g.rotations?.[o.meter] ?? [];
  if (!g.keys[o.meter] || theirs.length !== earlier.length) throw new Error(`the guardian's key file disagrees with the PES's about meter ${o.meter} (generation ${theirs.length + 1}, not ${generation})`);
  const guardianKeys = { ...g, rotations: { ...g.rotations, [o.meter]: [...theirs, wrapKey(o.guardian.publicKey, o.key)] } };
  return { generation, transfer, pesKeys, guardianKeys };
}

/**
 * Rotates `meter`'s key in the key set at `dir`: writes `meters/<id>.transfer` and the PES's key file
 * (both 0600, replaced atomically). Nothing secret is returned.
 * @example
 * ```ts
 * const { generation, transferPath } = rotateMeterKey({ keys: '/var/lib/smartermeter/keys', meter: '534d520000000001' });
 * ```
 */
export function rotateMeterKey(o: { keys: string; meter: string }): { generation: number; transferPath: string } {
  if (!loadFleet(o.keys).meters.some((m) => m.meter === o.meter)) throw new Error(`meter ${o.meter} is not in the fleet of ${o.keys}`);
  let kek: Buffer;
  try {
    kek = loadMeterKek(o.keys, o.meter);
  } catch (e) {
    throw new Error(`meter ${o.meter} has no KEK (${(e as Error).message}); a key set provisioned before key rotation cannot rotate`);
  }
  const key = randomBytes(32);
  try {
    const guardianPublic = loadGuardianPublicKey(o.keys);
    const guardianFile = join(GUARDIAN_DIR, GUARDIAN_FILES.meterKeys);
    const guardian = guardianPublic && { keys: readWrappedMeterKeys(o.keys, guardianFile), publicKey: guardianPublic };
    const r = rotation({ pesKeys: readWrappedMeterKeys(o.keys), pesPublic: loadPesPublicKey(o.keys), meter: o.meter, kek, key, guardian });
    const transferPath = meterTransferPath(o.keys, o.meter);
    // The PES (and the guardian) must know the key before the meter can get it: the key files first, then the transfer.
    replaceSecret(join(o.keys, PES_METER_KEYS), cborEncode(r.pesKeys));
    if (r.guardianKeys) replaceSecret(join(o.keys, guardianFile), cborEncode(r.guardianKeys));
    replaceSecret(transferPath, r.transfer);
    return { generation: r.generation, transferPath };
  } finally {
    key.fill(0);
    kek.fill(0);
  }
}
