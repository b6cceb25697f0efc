/**
 * Window arithmetic now lives in lib/calendar.ts (the guardian recomputes the same windows and may not import
 * the PES); re-exported here for the PES's modules.
 * @module
 */
export { Calendar, type BillingSlot } from '../../lib/calendar.js';
