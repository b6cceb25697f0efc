/**
 * The PES as a library: the core plus its state file and an outbox. Used by the MQTT service (pes/mqtt.ts),
 * the replay and the tests.
 *
 * Order of effects for every message: process -> re-randomise and commit the changed state (and the sealed
 * messages it produced) in one SQLite transaction -> only then publish those messages; each is removed from
 * the outbox once its publish is acknowledged. Messages still in the outbox at start-up are published again
 * (the MDMS is idempotent by (key, start, revision); household clients by (meter, time)).
 * @module
 */
import type { KeyObject } from 'node:crypto';
import { pino, type Logger } from 'pino';
import type { PaillierPrivate, PoolOptions } from '../protocol/paillier/engine.js';
import { formatBillingPeriod, nominalSeconds, parseBillingPeriod, type BillingPeriod } from './duration.js';
import { FLAT_TARIFF, type Tariff } from '../lib/tariff.js';
import type { PesCounters } from './core/counters.js';
import { PesCore, type Checkpoint, type MeterInfo, type OutMessage, type PesSettings, type Snapshot, type WindowRecord, type WindowRef } from './core/pes.js';
import { PesStore, type StoredOutMessage } from './store.js';
import { topicId } from '../protocol/topics.js';
import type { PolicyStatement } from '../protocol/aggregate.js';

export type { MeterInfo, OutMessage, PesSettings } from './core/pes.js';
export type { PesCounters } from './core/counters.js';

export interface PesKeySet {
  /** The PES RSA private key (wraps the state file's key). */
  rsa: KeyObject;
  paillier: PaillierPrivate;
  mdmsPublic: KeyObject;
  /** Per household, the key derived from its activation code: what lets the PES check a first binding. */
  bindingKeys?: Map<string, Uint8Array>;
  /** Ed25519 private key that signs every seal (`loadPesKeys(dir).signer`). */
  signer: KeyObject;
  /** Household public keys known at provisioning (more may arrive at runtime). */
  householdPublic?: Map<string, KeyObject>;
  /** Every provisioned meter by id (hex system title). */
  meters: Map<string, MeterInfo>;
}

export interface CreatePesOptions {
  keys: PesKeySet;
  /** SQLite state file; default `:memory:` (nothing survives close). */
  stateFile?: string;
  /** Neighbourhood interval, seconds. Default 900. */
  intervalS?: number;
  /** Billing period: `'1d'`, `'1mo'`, `'Nh'` or a parsed period. Default `'1d'`. */
  billing?: BillingPeriod | string;
  /** Default: the flat tariff. */
  tariff?: Tariff;
  /** Billing-period time zone. Default: the tariff's zone. */
  tz?: string;
  /** Allowed lateness, seconds. Default 1800. */
  latenessS?: number;
  /** Default 20. */
  k?: number;
  /** Distinct meters needed to release a neighbourhood revision. Default: k. */
  revisionK?: number;
  /** The differencing guard (docs/privacy.md): hold releases whose membership differs from a released one by 1 to revisionK - 1 meters. Default true. */
  membershipGuard?: boolean;
  /** Differential privacy: epsilon per neighbourhood release (pes/core/dp.ts); default none. */
  dpEpsilon?: number;
  /** Most power one meter can draw, W (the DP sensitivity over an interval). Default 7360. */
  dpMaxPowerW?: number;
  /** Most epsilon spent per neighbourhood per UTC day (with `dpEpsilon`): releases beyond it are held (`dpBudgetHeld`). Default none. */
  dpBudget?: number;
  /** This PES's id: the last level of its policy-statement topic `sm/v1/agg/policy/<id>`. Default `pes`. */
  pesId?: string;
  /** Default: two nominal billing periods. */
  retentionS?: number;
  /** Default 7 days. */
  maxSkewS?: number;
  /** Default 8. */
  replayAlarmAfter?: number;
  /** Default 'FULL' (see pes/store.ts). */
  synchronous?: 'FULL' | 'NORMAL';
  /** Commit after every `ingestUplink` / `householdKey` (default true). With false, call `commit()` yourself. */
  autoCommit?: boolean;
  /**
   * Publishes one sealed message at QoS 1 and resolves when the broker acknowledged it. Default: append to
   * `handle.sent` and acknowledge at once.
   */
  publish?: (m: OutMessage) => Promise<void> | void;
  /**
   * Start the engine's background randomiser pool (worker threads), making each re-randomisation one
   * multiplication; closed by `close()`. Default false.
   */
  pool?: boolean | PoolOptions;
  logger?: Logger;
}

export interface PesHandle {
  /** Processes one uplink; when it returns (autoCommit), its effect is durable. */
  ingestUplink(bytes: Uint8Array, topicGateway?: string): void;
  /** Handles a household key message; durable on return (autoCommit). */
  householdKey(topic: string, payload: Uint8Array): boolean;
  /** Closes every open window now and releases what may be released; durable on return. */
  flush(): void;
  /**
   * Queues the policy statement (its guards and their counters; docs/protocol.md §11.3) for the MDMS, commits
   * and publishes it. `at` defaults to now (Unix s).
   */
  publishPolicy(at?: number): PolicyStatement;
  /** The counters a policy statement reports, as they are now (to tell whether a new statement is due). */
  guardCounters(): Record<string, number>;
  /**
   * Commits the changes since the last commit and publishes what they produced. SQLite state only: a state
   * that commits asynchronously (PostgreSQL) throws here; use {@link PesHandle.commitAsync}.
   */
  commit(): void;
  /**
   * Commits the changes since the last commit (taken once every earlier commit is written: closed windows that
   * late readings came for are read back from the state first) and
   * publishes what they produced; resolves once durable. Works with every state. Once a commit failed (e.g. the
   * partition's lease was lost) every later one rejects too: the state in memory is ahead of the stored one.
   */
  commitAsync(): Promise<void>;
  /** True when the state commits asynchronously (PostgreSQL): flush(), publishPolicy() and autoCommit then queue their commits; await commitAsync(). */
  readonly asyncState: boolean;
  /** Resolves when every publish started so far has been acknowledged (or failed). */
  idle(): Promise<void>;
  readonly counters: Readonly<PesCounters>;
  readonly settings: Readonly<PesSettings>;
  readonly watermark: number | null;
  /** A neighbourhood's watermark: what closes its windows (null before its first reading). */
  neighbourhoodWatermark(nb: string): number | null;
  /** Windows held in memory: the open ones (a closed window lives in the state; a late reading reads it back). */
  readonly windowCount: number;
  /** Messages published through the default publisher. */
  readonly sent: OutMessage[];
  /** Commits, waits for outstanding publishes (up to `timeoutMs`), records their acknowledgements, closes the state file. */
  close(timeoutMs?: number): Promise<void>;
  /** Drops everything not yet committed and closes the state file (what a crash does; for tests). */
  abandon(): void;
}

/**
 * A state that commits asynchronously, behind the same contract as the SQLite file: PostgreSQL
 * (pes/pg-state.ts `PgPesState`).
 */
export interface AsyncPesState {
  load(): Promise<Snapshot & { outbox: StoredOutMessage[] }>;
  /** The stored rows of closed windows a late reading came for (see `PesCore.hydrate`). */
  loadWindows(refs: WindowRef[]): Promise<WindowRecord[]>;
  commit(cp: Checkpoint, confirmed: Iterable<number>): Promise<StoredOutMessage[]>;
  confirm(ids: Iterable<number>): Promise<void>;
  close(): Promise<void>;
}

/** What a state must have been made for: the keys, and the settings that shape windows. */
export interface StateIdentity {
  rsa: KeyObject;
  paillierKeyId: string;
  config: Record<string, unknown>;
}

/**
 * Resolves the settings from options (defaults filled in), validating them; throws `RangeError` naming the
 * setting.
 * @example
 * ```ts
 * resolveSettings({ k: 20, billing: '1mo' }).retentionS; // 62 days
 * ```
 */
export function resolveSettings(o: Omit<CreatePesOptions, 'keys'>): PesSettings {
  const tariff = o.tariff ?? FLAT_TARIFF;
  const billing = typeof o.billing === 'string' || o.billing === undefined ? parseBillingPeriod(o.billing ?? '1d') : o.billing;
  const intervalS = o.intervalS ?? 900;
  const latenessS = o.latenessS ?? 1800;
  const k = o.k ?? 20;
  const s: PesSettings = {
    intervalS,
    billing,
    tz: o.tz ?? tariff.tz,
    tariff,
    latenessS,
    k,
    revisionK: o.revisionK ?? k,
    membershipGuard: o.membershipGuard ?? true,
    ...(o.dpEpsilon !== undefined ? { dpEpsilon: o.dpEpsilon } : {}),
    ...(o.dpMaxPowerW !== undefined ? { dpMaxPowerW: o.dpMaxPowerW } : {}),
    ...(o.dpBudget !== undefined ? { dpBudget: o.dpBudget } : {}),
    retentionS: o.retentionS ?? 2 * nominalSeconds(billing),
    maxSkewS: o.maxSkewS ?? 7 * 86400,
    replayAlarmAfter: o.replayAlarmAfter ?? 8,
  };
  const int = (v: number, name: string, min: number) => {
    if (!Number.isSafeInteger(v) || v < min) throw new RangeError(`${name} must be an integer >= ${min}`);
  };
  int(s.intervalS, 'interval', 60);
  if (s.intervalS > 86400 || 86400 % s.intervalS !== 0) throw new RangeError('interval must divide a day (e.g. 1m, 5m, 15m, 1h)');
  int(s.latenessS, 'lateness', 0);
  int(s.k, 'k', 1);
  int(s.revisionK, 'revision-k', 1);
  int(s.maxSkewS, 'max-skew', 60);
  int(s.replayAlarmAfter, 'replay alarm threshold', 1);
  int(s.retentionS, 'retention', 1);
  if (s.dpEpsilon !== undefined && !(Number.isFinite(s.dpEpsilon) && s.dpEpsilon > 0)) throw new RangeError('dp-epsilon must be a positive number');
  if (s.dpMaxPowerW !== undefined) int(s.dpMaxPowerW, 'dp-max-power', 1);
  if (s.dpBudget !== undefined) {
    if (s.dpEpsilon === undefined) throw new RangeError('dp-budget needs dp-epsilon');
    if (!(Number.isFinite(s.dpBudget) && s.dpBudget >= s.dpEpsilon)) throw new RangeError('dp-budget must be a number at least dp-epsilon');
  }
  if (s.retentionS <= s.latenessS) throw new RangeError('retention must be longer than the allowed lateness');
  return s;
}

/**
 * Opens (or resumes from `stateFile`) a PES.
 * @example
 * ```ts
 * const pes = createPes({ keys, stateFile: 'pes.db', intervalS: 900, billing: '1d', latenessS: 1800, k: 20 });
 * pes.ingestUplink(payload);   // durable on return
 * pes.flush();
 * await pes.close();
 * ```
 */
export function createPes(opts: CreatePesOptions): PesHandle {
  const settings = resolveSettings(opts);
  const store = PesStore.open(opts.stateFile ?? ':memory:', { ...stateIdentity(opts, settings), synchronous: opts.synchronous });
  return assemble(opts, settings, { sync: store }, store.load());
}

/**
 * Opens a PES on a state that commits asynchronously (PostgreSQL); `state` opens it for the given keys and
 * window settings. `autoCommit` must be false: call `await pes.commitAsync()` after each message.
 * @example
 * ```ts
 * const pes = await openPes({ keys, k: 20, autoCommit: false,
 *   state: (id) => PgPesState.open(pool, { ...id, lease }) });
 * pes.ingestUplink(payload);
 * await pes.commitAsync(); // durable now
 * ```
 */
export async function openPes(opts: CreatePesOptions & { state: (id: StateIdentity) => Promise<AsyncPesState> }): Promise<PesHandle> {
  if (opts.autoCommit !== false) throw new RangeError('a PES on an asynchronous state needs autoCommit: false (await commitAsync())');
  const settings = resolveSettings(opts);
  const state = await opts.state(stateIdentity(opts, settings));
  let snapshot: Awaited<ReturnType<AsyncPesState['load']>>;
  try {
    snapshot = await state.load();
  } catch (e) {
    await state.close();
    throw e;
  }
  return assemble(opts, settings, { async: state }, snapshot);
}

function stateIdentity(opts: CreatePesOptions, settings: PesSettings): StateIdentity {
  return {
    rsa: opts.keys.rsa,
    paillierKeyId: opts.keys.paillier.keyId,
    config: { intervalS: settings.intervalS, billing: formatBillingPeriod(settings.billing), tz: settings.tz, tariff: settings.tariff },
  };
}

function assemble(opts: CreatePesOptions, settings: PesSettings, backend: { sync: PesStore } | { async: AsyncPesState }, snapshot: Snapshot & { outbox: StoredOutMessage[] }): PesHandle {
  const pesId = topicId(opts.pesId ?? 'pes', 'PES id');
  const log = opts.logger ?? pino({ name: 'pes' });
  const keys = opts.keys;
  const core = new PesCore(settings, { paillier: keys.paillier, mdmsPublic: keys.mdmsPublic, signer: keys.signer, ...(keys.bindingKeys ? { bindingKeys: keys.bindingKeys } : {}), householdPublic: keys.householdPublic ?? new Map(), meters: keys.meters }, log);
  if (opts.pool) keys.paillier.startPool(opts.pool === true ? {} : opts.pool);
  const sent: OutMessage[] = [];
  const publish = opts.publish ?? ((m: OutMessage) => void sent.push(m));
  const autoCommit = opts.autoCommit ?? true;
  const confirmed: number[] = [];
  const inflight = new Set<Promise<void>>();
  let closed = false;
  let abandoned = false;

  const send = (m: StoredOutMessage) => {
    const { id, ...msg } = m;
    const p = Promise.resolve()
      .then(() => publish(msg))
      .then(
        () => void confirmed.push(id),
        (e: Error) => log.warn({ topic: m.topic, err: e.message }, 'pes: publish failed; kept in the outbox for the next start'),
      )
      .finally(() => inflight.delete(p));
    inflight.add(p);
  };

  core.restore(snapshot);
  if (snapshot.outbox.length) log.info({ messages: snapshot.outbox.length }, 'pes: re-publishing messages not acknowledged before the last stop');
  snapshot.outbox.forEach(send);

  const store = 'sync' in backend ? backend.sync : null;
  const state = 'async' in backend ? backend.async : null;
  /** Asynchronous commits, written one after the other in the order their checkpoints were taken. */
  let chain: Promise<void> = Promise.resolve();
  let broken: Error | null = null;
  const commit = () => {
    if (closed) throw new Error('PES is closed');
    if (!store) throw new Error('this PES state commits asynchronously: use commitAsync()');
    const refs = core.coldWanted();
    if (refs.length) core.hydrate(store.loadWindows(refs));
    const out = store.commit(core.checkpoint(), confirmed.splice(0));
    out.forEach(send);
  };
  const commitAsync = (): Promise<void> => {
    if (closed) return Promise.reject(new Error('PES is closed'));
    if (store) {
      try {
        commit();
        return Promise.resolve();
      } catch (e) {
        return Promise.reject(e as Error);
      }
    }
    const p = chain.then(async () => {
      if (broken) throw broken;
      if (abandoned) throw new Error('PES was abandoned');
      try {
        // Taken here, in the chain: windows read back from the state must include every earlier commit. Nothing
        // runs between the last hydrate and the checkpoint, so it holds no pending window.
        for (let refs = core.coldWanted(); refs.length; refs = core.coldWanted()) core.hydrate(await state!.loadWindows(refs));
        const cp = core.checkpoint();
        (await state!.commit(cp, confirmed.splice(0))).forEach(send);
      } catch (e) {
        broken ??= e as Error;
        throw e;
      }
    });
    chain = p.catch(() => undefined);
    return p;
  };
  /** Commits now (SQLite) or queues the commit (asynchronous state; a failure makes every later commit fail). */
  const commitAny = () => {
    if (store) return commit();
    commitAsync().catch((e: Error) => log.error({ err: e.message }, 'pes: commit failed'));
  };

  return {
    ingestUplink(bytes, topicGateway) {
      if (closed) throw new Error('PES is closed');
      core.ingestUplink(bytes, topicGateway);
      if (autoCommit) commitAny();
    },
    householdKey(topic, payload) {
      if (closed) throw new Error('PES is closed');
      const ok = core.householdKey(topic, payload);
      if (autoCommit) commitAny();
      return ok;
    },
    flush() {
      core.flush();
      commitAny();
    },
    publishPolicy(at = Math.floor(Date.now() / 1000)) {
      if (closed) throw new Error('PES is closed');
      const body = core.policyStatement(pesId, at);
      commitAny();
      return body;
    },
    guardCounters: () => core.guardCounters(),
    commit,
    commitAsync,
    asyncState: state !== null,
    async idle() {
      while (inflight.size) await Promise.allSettled([...inflight]);
    },
    get counters() {
      return core.counters;
    },
    settings,
    get watermark() {
      return core.watermark;
    },
    neighbourhoodWatermark: (nb) => core.neighbourhoodWatermark(nb),
    get windowCount() {
      return core.windowCount;
    },
    sent,
    async close(timeoutMs = 10_000) {
      if (closed) return;
      try {
        await commitAsync();
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([this.idle(), new Promise<void>((r) => (timer = setTimeout(r, timeoutMs)))]);
        clearTimeout(timer);
        closed = true;
        if (store) store.confirm(confirmed.splice(0));
        else await state!.confirm(confirmed.splice(0));
      } finally {
        closed = true;
        if (store) store.close();
        else await state!.close();
        if (opts.pool) await keys.paillier.closePool();
      }
    },
    abandon() {
      closed = true;
      abandoned = true;
      if (store) store.close();
      else void state!.close();
      if (opts.pool) void keys.paillier.closePool();
    },
  };
}
