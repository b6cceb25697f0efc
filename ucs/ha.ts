/**
 * Home Assistant MQTT discovery for the household's meter (pure): what the HA bridge publishes.
 *
 * Per meter, retained discovery configs on `<prefix>/sensor/<node>/<object>/config` (HA MQTT discovery:
 * `<discovery_prefix>/<component>/[<node_id>/]<object_id>/config`; an empty retained payload removes one):
 * - energy: the meter's import register in kWh — `device_class: energy`, `state_class: total_increasing`,
 *   what the Energy dashboard takes as "grid consumption";
 * - energy returned: the meter's export register in kWh, of the same kind — the Energy dashboard's "return to
 *   grid" (0 for a meter without panels, which the dashboard then simply shows as nothing returned);
 * - power: average power of the newest reading in W — `device_class: power`, `state_class: measurement`;
 * - last reading: end of the newest reading — `device_class: timestamp`.
 * All share one availability topic (`online`/`offline`, the bridge's will) and one device per meter.
 * @module
 */
import type { Row } from './web/body.js';
import { formatKwh } from './web/series.js';

export interface HaTopics {
  prefix: string;
  /** Discovery node id: `smartermeter_<household>` with anything but [A-Za-z0-9_-] replaced by `_`. */
  node: string;
  /** Base of the state topics: `smartermeter/<household>`. */
  base: string;
  availability: string;
}

const PREFIX = /^[A-Za-z0-9_-]+(\/[A-Za-z0-9_-]+)*$/;

/**
 * Topic names for a household.
 * @example
 * ```ts
 * haTopics('hh1').availability; // 'smartermeter/hh1/status'
 * ```
 */
export function haTopics(household: string, prefix = 'homeassistant'): HaTopics {
  if (!PREFIX.test(prefix)) throw new TypeError('--discovery-prefix must be topic levels of letters, digits, "_" or "-"');
  const node = `smartermeter_${household.replace(/[^A-Za-z0-9_-]/g, '_')}`;
  const base = `smartermeter/${household}`;
  return { prefix, node, base, availability: `${base}/status` };
}

/** One MQTT message for the HA broker. */
export interface HaMessage {
  topic: string;
  payload: string;
  retain: boolean;
}

const SENSORS = ['energy', 'energy_returned', 'power', 'last_reading'] as const;

/**
 * The discovery configs of one meter.
 * @example
 * ```ts
 * for (const m of discoveryConfigs(haTopics('hh1'), '534d520000000001', 60)) ha.publish(m.topic, m.payload, { retain: true, qos: 1 });
 * ```
 */
export function discoveryConfigs(t: HaTopics, meter: string, periodS: number): HaMessage[] {
  const device = { identifiers: [`smartermeter_${meter}`], name: `Smart meter ${meter}`, manufacturer: 'Smarter Metering', model: 'Meter stream (sealed by the PES, opened at home)', serial_number: meter };
  const common = { availability_topic: t.availability, payload_available: 'online', payload_not_available: 'offline', device, origin: { name: 'smartermeter ucs ha-bridge' } };
  const configs: Record<(typeof SENSORS)[number], Record<string, unknown>> = {
    energy: { name: 'Energy', device_class: 'energy', state_class: 'total_increasing', unit_of_measurement: 'kWh', suggested_display_precision: 3 },
    energy_returned: { name: 'Energy returned to grid', device_class: 'energy', state_class: 'total_increasing', unit_of_measurement: 'kWh', suggested_display_precision: 3 },
    power: { name: 'Power', device_class: 'power', state_class: 'measurement', unit_of_measurement: 'W', expire_after: Math.max(300, 3 * periodS) },
    last_reading: { name: 'Last reading', device_class: 'timestamp', entity_category: 'diagnostic' },
  };
  return SENSORS.map((s) => ({
    topic: `${t.prefix}/sensor/${t.node}/${meter}_${s}/config`,
    payload: JSON.stringify({ ...configs[s], unique_id: `smartermeter_${meter}_${s}`, state_topic: `${t.base}/${meter}/${s}`, ...common }),
    retain: true,
  }));
}

/**
 * The states of a meter's newest reading (retained, so HA has them after a restart).
 * @example
 * ```ts
 * stateMessages(haTopics('hh1'), row); // energy '1234.567', energy_returned '80.210', power '230', last_reading ISO time
 * ```
 */
export function stateMessages(t: HaTopics, r: Row): HaMessage[] {
  const at = new Date((r.time + r.period) * 1000).toISOString().replace('.000Z', '+00:00');
  return [
    { topic: `${t.base}/${r.meter}/energy`, payload: formatKwh(r.importWh), retain: true },
    { topic: `${t.base}/${r.meter}/energy_returned`, payload: formatKwh(r.exportWh), retain: true },
    { topic: `${t.base}/${r.meter}/power`, payload: String(r.powerW), retain: true },
    { topic: `${t.base}/${r.meter}/last_reading`, payload: at, retain: true },
  ];
}
