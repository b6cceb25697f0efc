/**
 * `pes --e2e` as an MQTT service: the blind PES (pes/e2e.ts) over a durable subscription to the uplinks
 * (lib/blind-service.ts). Kill -9 safe as the classic PES: per uplink the changed windows and meters, the sealed
 * releases and the household stream messages it forwards unopened are committed to the state file
 * (lib/e2e-state.ts) before the uplink is acknowledged, and a message leaves the state's outbox only once the
 * broker acknowledged its publish.
 * @module
 */
import { pino, type Logger } from 'pino';
import { startBlindService } from '../lib/blind-service.js';
import type { BlindSettings } from '../lib/e2e-windows.js';
import { blindStateConfig, E2eStateStore } from '../lib/e2e-state.js';
import { newCounters, type PesCounters } from './core/counters.js';
import { PesE2e } from './e2e.js';

/** Options of {@link startPesE2eService}. */
export interface PesE2eServiceOptions {
  settings: BlindSettings;
  keys: ConstructorParameters<typeof PesE2e>[1];
  mqtt: { url: string; username?: string; password?: string; clientId?: string };
  /** SQLite state file (0600), or `':memory:'` (default: nothing survives the process). */
  stateFile?: string;
  /** `NORMAL` for bulk replays (survives a process crash, not a power loss); default `FULL`. */
  synchronous?: 'FULL' | 'NORMAL';
  /** Gateways whose uplinks this PES takes; default every gateway. */
  gateways?: string[];
  /** Most epsilon per neighbourhood per UTC day (`--dp-budget`; pes/e2e.ts): releases beyond it are withheld. */
  dpBudget?: number;
  logger?: Logger;
}

/** The blind PES as the system sees it: counters named as the classic PES's, flush and idle. */
export interface PesE2eHandle {
  readonly counters: PesCounters;
  readonly watermark: number | null;
  flush(): void;
  idle(): Promise<void>;
}

/**
 * @example
 * ```ts
 * const svc = startPesE2eService({ settings, keys, stateFile: 'pes-e2e.sqlite', mqtt: { url, username: 'pes', password } });
 * await svc.ready;
 * ```
 */
export function startPesE2eService(o: PesE2eServiceOptions) {
  const log = o.logger ?? pino({ name: 'pes' });
  const core = new PesE2e(o.settings, o.keys, { ...(o.dpBudget !== undefined ? { dpBudget: o.dpBudget } : {}), log });
  const store = E2eStateStore.open(o.stateFile ?? ':memory:', { role: 'pes', paillierKeyId: o.keys.share.publicKey.keyId, config: blindStateConfig(o.settings), ...(o.synchronous ? { synchronous: o.synchronous } : {}) });
  const counters = newCounters();
  const sync = () => {
    const c = core.windows.counters;
    Object.assign(counters, { framesOk: c.frames, readings: c.readings, badTag: c.badTag, unknownMeter: c.unknownMeter, replay: c.replay, malformedFrame: c.malformedFrame, malformedUplink: c.malformedUplink, tooOld: c.tooOld, absurdTime: c.absurdTime, released: c.released - core.dpBudgetHeld, suppressed: c.suppressed, revisionHeld: c.revisionHeld, membershipHeld: c.membershipHeld, dpReleases: core.dpReleases, dpBudgetHeld: core.dpBudgetHeld, streamMessages: core.streamMessages });
  };
  let svc;
  try {
    svc = startBlindService({
      who: 'the PES (end-to-end mode)',
      tag: 'pes',
      windows: core.windows,
      store,
      extra: core.ledgerState,
      seal: () => {
        const out = core.takeOutbox();
        sync();
        return out;
      },
      mqtt: { ...o.mqtt, clientId: o.mqtt.clientId ?? 'pes' },
      ...(o.gateways ? { gateways: o.gateways } : {}),
      logger: log,
    });
  } catch (e) {
    store.close();
    throw e;
  }
  sync();
  const s = svc;
  const pes: PesE2eHandle = {
    counters,
    get watermark() {
      return core.windows.watermark;
    },
    flush: () => s.flush(),
    idle: () => s.idle(),
  };
  return { pes, core, client: s.client, ready: s.ready, failed: s.failed, close: () => s.close(), kill: () => s.kill() };
}
