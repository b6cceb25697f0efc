/**
 * Records the ingest's refusals (mdms/ingest.ts `onRefused`) in the MDMS audit log, where the utility's
 * auditors already look: user `mdms-ingest`, action `ingest.refused`, the topic as target, the rule and the
 * ids in the detail (never an energy).
 * @module
 */
import type { Refusal } from './ingest.js';
import type { AuditLog } from './web/audit.js';

/**
 * The `onRefused` hook that writes each refusal to `audit`.
 * @example
 * ```ts
 * const web = await openWebDb(driver);
 * startMdmsIngest({ store, privateKey, mqtt, onRefused: auditRefusals(web.audit) });
 * ```
 */
export function auditRefusals(audit: AuditLog): (r: Refusal) => Promise<void> {
  return async (r) => {
    await audit.record({
      userId: null,
      username: 'mdms-ingest',
      action: 'ingest.refused',
      target: r.topic,
      outcome: 'denied',
      ip: '-',
      detail: { rule: r.rule, reason: r.reason, kind: r.kind, key: r.key, start: r.start, revision: r.revision },
    });
  };
}
