/**
 * The browser's own connection to the broker: MQTT over WebSocket with the household's broker credentials,
 * subscribed to its own stream topic only (the broker ACL refuses anything else). Payloads are passed on
 * sealed; opening them is the caller's business.
 * @module
 */
import mqtt from 'mqtt';

export type LiveStatus = 'connecting' | 'live' | 'offline' | 'refused';

export interface LiveOptions {
  wsUrl: string;
  username: string;
  password: string;
  topic: string;
  /** Per-device id (`household-<hh>-<random>`), so a persistent session survives page reloads. */
  clientId: string;
  /** false: ask the broker to keep the session (and queue messages) while this device is away. */
  clean: boolean;
}

export interface Live {
  close(): Promise<void>;
}

/**
 * Connects and subscribes; calls `onMessage` with each sealed payload and `onStatus` on every change.
 * @example
 * ```ts
 * const live = connectLive(opts, (p) => void ingest(p), (s) => show(s));
 * ```
 */
export function connectLive(o: LiveOptions, onMessage: (payload: Uint8Array) => void, onStatus: (s: LiveStatus, detail?: string) => void): Live {
  onStatus('connecting');
  const client = mqtt.connect(o.wsUrl, {
    username: o.username,
    password: o.password,
    clientId: o.clientId,
    clean: o.clean,
    protocolVersion: 4,
    reconnectPeriod: 3000,
    connectTimeout: 10_000,
    keepalive: 30,
  });
  client.on('connect', (connack) => {
    if (!o.clean && connack.sessionPresent) return onStatus('live');
    client.subscribe(o.topic, { qos: 1 }, (err, granted) => {
      if (err || granted?.[0]?.qos !== 1) {
        onStatus('refused', 'The broker refused the subscription to your stream.');
        void client.endAsync();
      } else onStatus('live');
    });
  });
  client.on('message', (topic, payload) => {
    if (topic === o.topic) onMessage(new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength));
  });
  client.on('error', (e: Error & { code?: number | string }) => {
    if (e.code === 4 || e.code === 5) {
      onStatus('refused', 'The broker refused your household credentials.');
      void client.endAsync();
    }
  });
  client.on('offline', () => onStatus('offline'));
  client.on('reconnect', () => onStatus('connecting'));
  return { close: () => client.endAsync(true) };
}
