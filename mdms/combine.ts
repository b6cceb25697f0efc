/**
 * The MDMS in the end-to-end mode (docs/paillier.md): it receives the PES's release (window, ciphertext, the
 * PES's partial decryption; signed by the PES) and the guardian's partial (signed by the guardian), pairs them
 * by the ciphertext they name, combines them (protocol/paillier/threshold.ts `combinePartials`), checks the
 * packed slots, and yields exactly the aggregate the classic mode would have stored. A partial without its
 * counterpart waits; one that names another window than its counterpart, or does not combine, is refused.
 * Pure: the caller unseals (openAggregate with the PES's or the guardian's verify key) and stores.
 *
 * A neighbourhood release with a DP ledger (`dp`, docs/privacy.md) is a sum of the meters' noised totals
 * (protocol/e2e.ts `unpackNoisy`): its import and export are signed, and a total below 0 is stored as 0, as the
 * classic PES releases it (post-processing). The MDMS is the first party to see the noised totals: the exact
 * ones exist nowhere outside the meters.
 * @module
 */
import type { Aggregate } from '../protocol/aggregate.js';
import { registerLayout, unpackNoisy, unpackRegisters, type E2eRelease, type GuardianPartial } from '../protocol/e2e.js';
import { combinePartials } from '../protocol/paillier/threshold.js';
import type { PublicKey } from '../protocol/paillier/keys.js';

/** What the combiner did (all only grow). */
export interface CombineCounters {
  combined: number;
  refused: number;
}

/**
 * @example
 * ```ts
 * const c = new Combiner(pub);
 * const agg = c.release(parseRelease(pub, body)) ?? c.guardian(parseGuardianPartial(pub, body2));
 * if (agg) await store.insertNeighbourhood(agg);
 * ```
 */
export class Combiner {
  readonly counters: CombineCounters = { combined: 0, refused: 0 };
  private readonly releases = new Map<string, E2eRelease>();
  private readonly partials = new Map<string, GuardianPartial>();

  constructor(private readonly pub: PublicKey) {}

  /** Partials waiting for their counterpart. */
  get waiting(): number {
    return this.releases.size + this.partials.size;
  }

  /** Forgets a half still waiting (pruned past the retention: its counterpart is not coming); true if it was here. */
  forget(ciphertextId: string, half: 'release' | 'partial'): boolean {
    return (half === 'release' ? this.releases : this.partials).delete(ciphertextId);
  }

  /** A PES release: the aggregate if the guardian's partial of the same ciphertext is here. */
  release(r: E2eRelease): Aggregate | null {
    const id = r.partial.ciphertextId.toString('hex');
    const g = this.partials.get(id);
    if (!g) {
      this.releases.set(id, r);
      return null;
    }
    this.partials.delete(id);
    return this.combine(r, g);
  }

  /** A guardian partial: the aggregate if the PES's release of the same ciphertext is here. */
  guardian(g: GuardianPartial): Aggregate | null {
    const id = g.partial.ciphertextId.toString('hex');
    const r = this.releases.get(id);
    if (!r) {
      this.partials.set(id, g);
      return null;
    }
    this.releases.delete(id);
    return this.combine(r, g);
  }

  private combine(r: E2eRelease, g: GuardianPartial): Aggregate {
    const num = (v: bigint) => {
      if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new RangeError('a slot exceeds the largest exact energy');
      return Number(v);
    };
    try {
      if (r.kind !== g.kind || r.key !== g.key || r.start !== g.start || r.end !== g.end || r.meters !== g.meters) throw new TypeError('the PES and the guardian name different windows for one ciphertext');
      const m = combinePartials(this.pub, r.partial, g.partial, r.ciphertext);
      if (r.dp) {
        if (r.kind !== 'neighbourhood') throw new TypeError('only a neighbourhood release is noised');
        const [imp, exp] = unpackNoisy(this.pub, m).map((v) => num(v < 0n ? 0n : v));
        this.counters.combined++;
        return { kind: 'neighbourhood', key: r.key, start: r.start, end: r.end, revision: r.revision, meters: r.meters, energyWh: imp!, exportWh: exp!, dp: { ...r.dp } };
      }
      const layout = registerLayout(this.pub, r.bands.length);
      const { imports, exports } = unpackRegisters(layout, m, r.bands.length);
      this.counters.combined++;
      if (r.kind === 'neighbourhood') {
        const energyWh = num(imports.reduce((a, b) => a + b, 0n));
        return { kind: 'neighbourhood', key: r.key, start: r.start, end: r.end, revision: r.revision, meters: r.meters, energyWh, exportWh: num(exports.reduce((a, b) => a + b, 0n)) };
      }
      // As the classic PES: every band's export, listed only when the household fed in something over the period.
      const bill: Aggregate = { kind: 'billing', key: r.key, start: r.start, end: r.end, revision: r.revision, bands: Object.fromEntries(r.bands.map((b, i) => [b, num(imports[i]!)])) };
      if (exports.some((v) => v !== 0n)) bill.exportBands = Object.fromEntries(r.bands.map((b, i) => [b, num(exports[i]!)]));
      return bill;
    } catch (e) {
      this.counters.refused++;
      throw e;
    }
  }
}
