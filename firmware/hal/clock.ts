/**
 * The meter's clock: wall time for timeouts, and simulated time that advances at a chosen speed.
 *
 * Speed 1 replays a dataset in real time, speed N runs N times faster, and `'max'` does not wait at all
 * (the meter then paces itself on the line and on acknowledgements instead).
 * @module
 */
/** Simulated-time speed: a positive factor over real time, or `'max'` for no waiting. */
export type Speed = number | 'max';

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
 * Parses a speed flag: a positive number or `max`.
 * @example
 * ```ts
 * parseSpeed('60'); // 60
 * parseSpeed('max'); // 'max'
 * ```
 */
export function parseSpeed(text: string): Speed {
  if (text === 'max') return 'max';
  const n = Number(text);
  if (!/^\d+(\.\d+)?$/.test(text) || !(n > 0) || n > 1e9) throw new RangeError(`speed must be a positive number or "max", got "${text}"`);
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
  if (speed !== 'max' && !(typeof speed === 'number' && speed > 0 && Number.isFinite(speed))) {
    throw new RangeError('speed must be a positive number or "max"');
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
      if (speed === 'max') {
        // Yield to the event loop so acknowledgements and timers run between ticks.
        await new Promise<void>((resolve) => setImmediate(resolve));
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
