/**
 * Prometheus metrics of the web app, in a registry of its own (several apps can live in one process, as in
 * tests). Counters and durations only — never an energy or money value, never an account number.
 * @module
 */
import { collectDefaultMetrics, Counter, Histogram, Registry } from 'prom-client';

/** The app's metrics. */
export interface Metrics {
  registry: Registry;
  requests: Histogram<'method' | 'route' | 'status'>;
  logins: Counter<'outcome'>;
  audit: Counter<'action' | 'outcome'>;
  bills: Counter<'outcome'>;
  exports: Counter<'what'>;
  forecasts: Counter<'outcome'>;
  qualityFindings: Counter<'rule'>;
  peerChecks: Counter<'outcome'>;
}

/**
 * Creates the registry, with Node's default process metrics.
 * @example
 * ```ts
 * const m = createMetrics();
 * m.logins.inc({ outcome: 'ok' });
 * await m.registry.metrics();
 * ```
 */
export function createMetrics(): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'mdms_web_' });
  return {
    registry,
    requests: new Histogram({
      name: 'mdms_web_http_request_duration_seconds',
      help: 'HTTP requests by route template, method and status',
      labelNames: ['method', 'route', 'status'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [registry],
    }),
    logins: new Counter({ name: 'mdms_web_logins_total', help: 'Login attempts by outcome (ok, failed, limited)', labelNames: ['outcome'], registers: [registry] }),
    audit: new Counter({ name: 'mdms_web_audit_events_total', help: 'Audit log entries by action and outcome', labelNames: ['action', 'outcome'], registers: [registry] }),
    bills: new Counter({ name: 'mdms_web_bills_total', help: 'Bills computed (ok) or refused (error)', labelNames: ['outcome'], registers: [registry] }),
    exports: new Counter({ name: 'mdms_web_exports_total', help: 'CSV exports by kind', labelNames: ['what'], registers: [registry] }),
    forecasts: new Counter({ name: 'mdms_web_forecasts_total', help: 'Demand forecasts computed (ok) or refused for too little history (refused)', labelNames: ['outcome'], registers: [registry] }),
    qualityFindings: new Counter({ name: 'mdms_web_quality_findings_total', help: 'New data-quality findings stored, by rule (gap, meter-drop, spike, flat, late-revision, changepoint, peer-outlier)', labelNames: ['rule'], registers: [registry] }),
    peerChecks: new Counter({ name: 'mdms_web_peer_checks_total', help: 'Checks of neighbourhoods against each other: judged (ok) or not (skipped: under 3 neighbourhoods or no day with enough data)', labelNames: ['outcome'], registers: [registry] }),
  };
}
