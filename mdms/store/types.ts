/**
 * The MDMS store: the repository interface the ingest writes through and the web app reads through.
 *
 * Both implementations (SQLite, PostgreSQL) keep every revision of every aggregate (history); "latest" means
 * the highest revision of a (key, start). Times are unix seconds, energy is integer Wh, everything returned
 * is a plain JS number (safe integer) — never a float, never a string.
 * @module
 */
import type { BillingAggregate, DpLedger, NeighbourhoodAggregate, PolicyStatement } from '../../protocol/aggregate.js';

/** One stored neighbourhood aggregate (one revision). */
export interface NeighbourhoodRow {
  neighbourhood: string;
  start: number;
  end: number;
  revision: number;
  meters: number;
  /** Energy imported from the grid, Wh. */
  energyWh: number;
  /** Energy exported to the grid, Wh (0 when the body had none, and for rows stored before schema v2). */
  exportWh: number;
  /** The DP ledger of a noised release, or null (no noise, or stored before schema v2). */
  dp: DpLedger | null;
  /** When the MDMS committed this revision, unix ms. */
  receivedAtMs: number;
}

/** One stored band of one billing aggregate (one revision). */
export interface BillingRow {
  household: string;
  start: number;
  end: number;
  band: string;
  revision: number;
  /** Energy imported in this band, Wh. */
  energyWh: number;
  /** Energy exported (fed in) in this band, Wh (0: none, or stored before schema v2). */
  exportWh: number;
  /** When the MDMS committed this revision, unix ms. */
  receivedAtMs: number;
}

/** The latest policy statement of one PES (docs/protocol.md §11.3), as stored. */
export interface PolicyRow extends Omit<PolicyStatement, 'kind' | 'key'> {
  /** The PES's id (the statement's key). */
  pes: string;
  /** When the MDMS committed it, unix ms. */
  receivedAtMs: number;
}

/**
 * What storing a policy statement did: `stored` (first or newer `at`), `duplicate` (same `at`, same content),
 * `stale` (older than the one kept), `conflict` (same `at`, other content: the first one is kept).
 */
export type PolicyOutcome = 'stored' | 'duplicate' | 'stale' | 'conflict';

/** What the MDMS's own ingest enforces, as it recorded it when it started (for the Privacy page). */
export interface IngestPolicyRow {
  /** Fewest meters of a stored neighbourhood aggregate. */
  k: number;
  /** Shortest billing period stored, seconds. */
  minBillingPeriodS: number;
  /** Whether aggregates outside the fleet's households and neighbourhoods are refused. */
  fleetChecked: boolean;
  recordedAtMs: number;
}

/**
 * The differential-privacy budget of one neighbourhood, from the ledgers of its stored releases (every
 * revision is a release and spends epsilon).
 */
export interface DpBudgetRow {
  neighbourhood: string;
  /** The highest `spent` of any stored release (the ledger only grows). */
  spent: number;
  /** Epsilon of the release that carries that `spent`. */
  epsilon: number;
  /** Stored noised releases of this neighbourhood, revisions included. */
  releases: number;
  /** End of the latest noised window, unix s. */
  lastEnd: number;
  /** Noised releases of windows starting in the 24 h before `lastEnd`, and the epsilon they spent. */
  releasesLastDay: number;
  epsilonLastDay: number;
}

/**
 * What an insert did:
 * - `stored`: first revision of this (key, start);
 * - `revision`: stored, and other revisions of this (key, start) already existed (the highest one is "latest");
 * - `duplicate`: exactly this (key, start, revision) with the same content was already stored — nothing written;
 * - `conflict`: this (key, start, revision) was already stored with different content — nothing written
 *   (the first one wins; a PES that changes an aggregate must raise its revision).
 */
export type InsertOutcome = 'stored' | 'revision' | 'duplicate' | 'conflict';

/**
 * Filters for the read functions. Periods are selected by overlap with [from, to) (unix s), rows come sorted
 * by key, then start (then band), and `after` + `limit` page through them (keyset pagination: pass the last
 * row's key and start).
 */
export interface NeighbourhoodQuery {
  neighbourhood?: string;
  /** Only periods ending after `from`. */
  from?: number;
  /** Only periods starting before `to`. */
  to?: number;
  /** Only rows strictly after this (neighbourhood, start). */
  after?: { neighbourhood: string; start: number };
  limit?: number;
}

/** Filters for billing reads; see {@link NeighbourhoodQuery}. `after` pages by (household, start) — whole periods. */
export interface BillingQuery {
  household?: string;
  from?: number;
  to?: number;
  after?: { household: string; start: number };
  /** Maximum number of periods (each may span several band rows). */
  limit?: number;
}

/** Which stored history {@link Store.revisions} returns: every revision of one (key, start). */
export type RevisionsQuery =
  | { kind: 'neighbourhood'; neighbourhood: string; start: number }
  | { kind: 'billing'; household: string; start: number };

/**
 * One half of an end-to-end aggregate waiting for the other (docs/paillier.md): the PES's release or the
 * guardian's partial decryption of the ciphertext `ciphertextId` (hex), as it arrived (sealed to the MDMS); or
 * `combined`, the marker that the pair of that ciphertext was combined and stored (empty payload).
 */
export interface PendingHalf {
  ciphertextId: string;
  half: 'release' | 'partial' | 'combined';
  topic: string;
  payload: Uint8Array;
}

/** Options common to both back ends. */
export interface StoreOptions {
  /** Clock for `received_at_ms` (tests). Default `Date.now`. */
  now?: () => number;
}

/**
 * The repository. Every function is async for both back ends; writes are transactional and idempotent.
 * @example
 * ```ts
 * const store = await openStore('mdms.sqlite');
 * await store.insertNeighbourhood(agg);
 * const rows = await store.latestNeighbourhood({ neighbourhood: 'nb1', from, to });
 * await store.close();
 * ```
 */
export interface Store {
  /** `'sqlite'` or `'postgres'`. */
  readonly dialect: 'sqlite' | 'postgres';
  /** Where it is, with any password removed (for logs). */
  readonly location: string;
  /** Stores one neighbourhood aggregate revision (idempotent). */
  insertNeighbourhood(agg: NeighbourhoodAggregate): Promise<InsertOutcome>;
  /** Stores one billing aggregate revision, one row per band, in one transaction (idempotent). */
  insertBilling(agg: BillingAggregate): Promise<InsertOutcome>;
  /** Latest revision of each neighbourhood aggregate matching `q`, sorted by neighbourhood, start. */
  latestNeighbourhood(q?: NeighbourhoodQuery): Promise<NeighbourhoodRow[]>;
  /** Every band row of the latest revision of each billing period matching `q`, sorted by household, start, band. */
  latestBilling(q?: BillingQuery): Promise<BillingRow[]>;
  /** Every stored revision of one (key, start), oldest revision first (billing: then by band). */
  revisions(q: { kind: 'neighbourhood'; neighbourhood: string; start: number }): Promise<NeighbourhoodRow[]>;
  revisions(q: { kind: 'billing'; household: string; start: number }): Promise<BillingRow[]>;
  /** Keeps a PES's policy statement if it is newer (`at`) than the one stored for that PES. */
  insertPolicy(p: PolicyStatement): Promise<PolicyOutcome>;
  /** The latest policy statement of every PES, sorted by PES id. */
  policies(): Promise<PolicyRow[]>;
  /** Records what the ingest enforces (replacing the previous record). */
  recordIngestPolicy(p: Omit<IngestPolicyRow, 'recordedAtMs'>): Promise<void>;
  /** What the ingest recorded it enforces, or null if no ingest has run on this database since schema v2. */
  ingestPolicy(): Promise<IngestPolicyRow | null>;
  /** The DP budget of every neighbourhood with at least one noised release, sorted by neighbourhood. */
  dpBudgets(): Promise<DpBudgetRow[]>;
  /** Keeps a half waiting for its counterpart (idempotent: a redelivered half is kept once). */
  holdHalf(h: PendingHalf): Promise<void>;
  /** Every half waiting and every combined marker, oldest first. */
  pendingHalves(): Promise<PendingHalf[]>;
  /** Forgets a half once its aggregate is stored. */
  dropHalf(ciphertextId: string, half: PendingHalf['half']): Promise<void>;
  /**
   * Deletes the combined markers and the halves still waiting that arrived more than `olderThanMs` ago (by the
   * store's clock), and returns what it deleted (mdms/e2e-ingest.ts prunes them past its retention).
   */
  pruneHalves(olderThanMs: number): Promise<Pick<PendingHalf, 'ciphertextId' | 'half' | 'topic'>[]>;
  /** Every neighbourhood with at least one aggregate, sorted. */
  listNeighbourhoods(): Promise<string[]>;
  /** Every household with at least one billing aggregate, sorted. */
  listHouseholds(): Promise<string[]>;
  /** Every table and every row, for audits and the privacy test (`{table: rows}`, rows as the database returns them). */
  dump(): Promise<Record<string, Record<string, unknown>[]>>;
  /** Applied schema version. */
  schemaVersion(): Promise<number>;
  /** Closes the connection(s). Idempotent. */
  close(): Promise<void>;
}
