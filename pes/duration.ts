/**
 * Billing periods now live in lib/billing-period.ts (the guardian parses the same flags and may not import the
 * PES); re-exported here for the PES's modules.
 * @module
 */
export { formatBillingPeriod, nominalSeconds, parseBillingPeriod, type BillingPeriod } from '../lib/billing-period.js';
