/**
 * Pricing household billing aggregates: the pure core lives in lib/billing.ts so that the household app
 * prices its own bill preview with the same function, to the minor unit (issue 20 item 12). This module keeps
 * the MDMS's imports where they were.
 * @example
 * ```ts
 * import { priceBill } from './billing.js';
 * const bill = priceBill([{ start, end, bands: { peak: 4200 } }], versions);
 * ```
 * @module
 */
export * from '../../lib/billing.js';
