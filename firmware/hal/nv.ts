/**
 * Non-volatile storage for the meter's small state record (counter mark, register, source position,
 * unacknowledged frames), in CBOR.
 *
 * The file store replaces the record atomically: write a temporary file (mode 0600), fsync it, rename it
 * over the old record, fsync the directory (POSIX rename(2) is atomic; the directory fsync makes the rename
 * itself durable). A power cut at any point leaves either the old record or the new one, never a torn one.
 * @module
 */
import { constants } from 'node:fs';
import { open, readFile, rename, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import { cborDecode, cborEncode } from '../../protocol/cbor.js';

/**
 * Load/save of one CBOR record.
 * @example
 * ```ts
 * const state = await nv.load(); // undefined on first boot
 * await nv.save({ v: 1, ... });
 * ```
 */
export interface NvStore {
  /** The last saved record, or `undefined` if none was ever saved. */
  load(): Promise<unknown>;
  /** Replaces the record atomically; resolves once it is durable. */
  save(record: unknown): Promise<void>;
}

/**
 * An {@link NvStore} in one file.
 * @example
 * ```ts
 * const nv = new FileNvStore('/var/lib/meter/nv.cbor');
 * ```
 */
export class FileNvStore implements NvStore {
  constructor(readonly path: string) {
    if (typeof path !== 'string' || path.length === 0) throw new TypeError('NV store path must be a non-empty string');
  }

  async load(): Promise<unknown> {
    let bytes: Buffer;
    try {
      bytes = await readFile(this.path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new Error(`cannot read NV store ${this.path}: ${(e as Error).message}`);
    }
    try {
      return cborDecode(bytes);
    } catch (e) {
      throw new Error(`NV store ${this.path} is corrupt: ${(e as Error).message}`);
    }
  }

  async save(record: unknown): Promise<void> {
    const bytes = cborEncode(record);
    const tmp = `${this.path}.tmp`;
    await unlink(tmp).catch(() => undefined); // a leftover from a cut save may have other permissions
    const fh = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
    try {
      await fh.writeFile(bytes);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, this.path);
    const dir = await open(dirname(this.path), constants.O_RDONLY);
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
  }
}

/** When a simulated power cut hits a save of a {@link MemoryNvStore}. */
export type PowerCut = 'before-save' | 'after-save';

/**
 * An in-memory {@link NvStore} for tests, able to simulate a power cut around a chosen save: the cut save
 * never resolves (execution on a dead meter does not continue), and every later save is ignored until
 * {@link MemoryNvStore.powerOn}. Records are stored as CBOR bytes, so they round-trip like the file store.
 * @example
 * ```ts
 * const nv = new MemoryNvStore();
 * nv.cutAt(nv.saves + 1, 'before-save'); // the next save is lost
 * await nv.powerCut; // resolves when the cut happened
 * nv.powerOn();
 * ```
 */
export class MemoryNvStore implements NvStore {
  /** Saves completed since construction. */
  saves = 0;
  private bytes: Buffer | undefined;
  private cut: { at: number; when: PowerCut } | undefined;
  private dead = false;
  private notifyCut!: () => void;
  private cutHappened!: Promise<void>;

  constructor() {
    this.arm();
  }

  /** Resolves when the next power cut happens (a fresh promise after every {@link powerOn}). */
  get powerCut(): Promise<void> {
    return this.cutHappened;
  }

  async load(): Promise<unknown> {
    return this.bytes === undefined ? undefined : cborDecode(this.bytes);
  }

  async save(record: unknown): Promise<void> {
    if (this.dead) return new Promise(() => undefined);
    const attempt = this.saves + 1;
    if (this.cut?.at === attempt) {
      if (this.cut.when === 'after-save') {
        this.bytes = cborEncode(record);
        this.saves = attempt;
      }
      this.dead = true;
      this.notifyCut();
      return new Promise(() => undefined);
    }
    this.bytes = cborEncode(record);
    this.saves = attempt;
  }

  /** Schedules a power cut at save number `at` (1-based, counting completed saves), before or after it lands. */
  cutAt(at: number, when: PowerCut): void {
    if (!Number.isSafeInteger(at) || at <= this.saves) throw new RangeError(`cut must be at a future save (> ${this.saves})`);
    this.cut = { at, when };
  }

  /** Restores power: later saves work again. The stored record is whatever survived the cut. */
  powerOn(): void {
    this.dead = false;
    this.cut = undefined;
    this.arm();
  }

  /** Whether the store is currently without power. */
  get isCut(): boolean {
    return this.dead;
  }

  private arm(): void {
    this.cutHappened = new Promise((resolve) => (this.notifyCut = resolve));
  }
}
