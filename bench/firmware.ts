/** The firmware section of `npm run bench` (source parsing, synthetic model, meter loop): see firmware/bench.ts. */
export { run } from '../firmware/bench.js';
