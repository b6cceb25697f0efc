/**
 * The meter's clock: wall time for timeouts, and simulated time that advances at a chosen speed.
 *
 * Speed 1 replays a dataset in real time, speed N runs N times faster, and `'max'` does not wait at all
 * (the meter then paces itself on the line and on acknowledgements instead). `'live'` is a real meter's
 * clock: simulated time is wall-clock time, so samples already in the past go out as fast as `'max'` (a
 * back-fill of history) and each later one when the wall clock reaches it.
 * @module
 */
/** Simulated-time speed: a positive factor over real time, `'max'` for no waiting, or `'live'` (wall-clock time). */
export type Speed = number | 'max' | 'live';

/**
 * Time as the meter sees it.
 * @example
 * ```ts
 * clock.start(firstSample.time);
 * await clock.waitUntil(firstSample.time + firstSample.period, signal);
 * ```
 */
export interface Clock {
  readonly speed: Speed;
  /** Monotonic wall-clock milliseconds, for timeouts. */
  nowMs(): number;
  /** Declares that simulated time `simTime` (Unix s) is now. */
  start(simTime: number): void;
  /** Resolves once simulated time reaches `simTime` (Unix s), or rejects when `signal` aborts. */
  waitUntil(simTime: number, signal?: AbortSignal): Promise<void>;
}

/**
 * Parses a speed flag: a positive number, `max` or `live`.
 * @example
 * ```ts
 * parseSpeed('60'); // 60
 * parseSpeed('max'); // 'max'
 * ```
 */
export function parseSpeed(text: string): Speed {
  if (text === 'max' || text === 'live') return text;
  const n = Number(text);
  if (!/^\d+(\.\d+)?$/.test(text) || !(n > 0) || n > 1e9) throw new RangeError(`speed must be a positive number, "max" or "live", got "${text}"`);
  return n;
}

/**
 * A clock running at `speed` over the process's monotonic clock.
 * @example
 * ```ts
 * const clock = createClock(60); // one simulated hour per real minute
 * ```
 */
export function createClock(speed: Speed): Clock {
  if (speed !== 'max' && speed !== 'live' && !(typeof speed === 'number' && speed > 0 && Number.isFinite(speed))) {
    throw new RangeError('speed must be a positive number, "max" or "live"');
  }
  let anchorSim: number | undefined;
  let anchorWall = 0;
  const nowMs = () => performance.now();
  return {
    speed,
    nowMs,
    start(simTime) {
      anchorSim = simTime;
      anchorWall = nowMs();
    },
    async waitUntil(simTime, signal) {
      signal?.throwIfAborted();
      const dueLive = speed === 'live' ? simTime * 1000 - Date.now() : 0;
      if (speed === 'max' || (speed === 'live' && dueLive <= 0)) {
        // Yield to the event loop so acknowledgements and timers run between ticks.
        await new Promise<void>((resolve) => setImmediate(resolve));
      } else if (speed === 'live') {
        await sleep(dueLive, signal);
      } else {
        if (anchorSim === undefined) this.start(simTime);
        const dueWall = anchorWall + ((simTime - anchorSim!) * 1000) / speed;
        const delay = dueWall - nowMs();
        if (delay > 0) await sleep(delay, signal);
      }
      signal?.throwIfAborted();
    },
  };
}

/** Resolves after `ms`, or rejects with the signal's reason when it aborts first (global timers, so fakeable). */
function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
