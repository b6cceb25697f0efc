/**
 * JSON Schemas shared by the API routes: they validate requests, serialise responses (fast-json-stringify
 * drops anything not declared, so a handler cannot leak a field by accident) and make the OpenAPI document.
 * @module
 */
import { AUDIT_ACTIONS } from './audit.js';
import { ROLES } from './roles.js';
import { TIME_PATTERN } from './time.js';

const int = { type: 'integer' } as const;
const str = { type: 'string' } as const;
const iso = { type: 'string', format: 'date-time', description: 'ISO 8601, UTC' } as const;
const nullable = <T extends { type: string }>(s: T) => ({ ...s, type: [s.type, 'null'] }) as const;

export const NAME_PATTERN = '^[A-Za-z0-9_.-]{1,64}$';

/** The body of every error answer. */
export const errorSchema = {
  $id: 'HttpError',
  type: 'object',
  properties: { statusCode: int, error: str, message: str },
  required: ['statusCode', 'error', 'message'],
} as const;

/** Every 4xx/5xx response of an API route. */
export const errors = { '4xx': { $ref: 'HttpError#' }, '5xx': { $ref: 'HttpError#' } } as const;

export const userSchema = {
  type: 'object',
  properties: {
    id: int,
    username: str,
    roles: { type: 'array', items: { type: 'string', enum: ROLES } },
    disabled: { type: 'boolean' },
    createdAt: iso,
    passwordChangedAt: iso,
  },
  required: ['id', 'username', 'roles', 'disabled'],
} as const;

export const sessionSchema = {
  type: 'object',
  properties: { user: userSchema, csrfToken: { type: 'string', description: 'send as the x-csrf-token header on POST/PUT/PATCH/DELETE' }, expiresAt: iso },
  required: ['user', 'csrfToken', 'expiresAt'],
} as const;

export const pointSchema = {
  type: 'object',
  properties: { start: iso, end: iso, meters: int, energyWh: int, revision: { type: 'integer', description: '0 = first release; higher = revised by the PES' } },
  required: ['start', 'end', 'meters', 'energyWh', 'revision'],
} as const;

export const seriesSchema = {
  type: 'object',
  properties: {
    neighbourhood: str,
    from: iso,
    to: iso,
    points: { type: 'array', items: pointSchema },
    peak: { anyOf: [pointSchema, { type: 'null' }] },
    energyWh: int,
    revised: { type: 'integer', description: 'intervals whose latest revision is above 0' },
  },
  required: ['neighbourhood', 'from', 'to', 'points', 'peak', 'energyWh', 'revised'],
} as const;

export const revisionSchema = {
  type: 'object',
  properties: { revision: int, meters: int, energyWh: int, receivedAt: iso },
  required: ['revision', 'meters', 'energyWh', 'receivedAt'],
} as const;

export const meterSchema = {
  type: 'object',
  properties: { meter: str, neighbourhood: str, account: nullable(str) },
  required: ['meter', 'neighbourhood', 'account'],
} as const;

export const accountSchema = {
  type: 'object',
  properties: {
    account: str,
    household: { type: 'string', description: "the PES household key (a pseudonym, not a person's identity)" },
    tariff: { ...nullable(str), description: 'the account’s own tariff code; null = the default tariff' },
    effectiveTariff: nullable(str),
    meters: { type: 'array', items: str },
  },
  required: ['account', 'household', 'tariff', 'effectiveTariff', 'meters'],
} as const;

const bands = { type: 'object', additionalProperties: { type: 'integer' }, description: 'Wh per tariff band' } as const;

export const periodSchema = {
  type: 'object',
  properties: { start: iso, end: iso, revision: int, bands, energyWh: int, totalMinor: nullable(int), error: nullable(str) },
  required: ['start', 'end', 'revision', 'bands', 'energyWh', 'totalMinor', 'error'],
} as const;

export const lineSchema = {
  type: 'object',
  properties: {
    kind: { type: 'string', enum: ['energy', 'standing'] },
    tariffId: int,
    tariffName: str,
    band: str,
    from: iso,
    to: iso,
    energyWh: int,
    priceMilliPerKwh: int,
    days: int,
    standingMilliPerDay: int,
    vatBasisPoints: int,
    amountMinor: int,
  },
  required: ['kind', 'tariffId', 'from', 'to', 'amountMinor', 'vatBasisPoints'],
} as const;

export const billSchema = {
  type: 'object',
  properties: {
    account: str,
    tariff: str,
    currency: str,
    minorDigits: int,
    from: iso,
    to: iso,
    periods: { type: 'array', items: { type: 'object', properties: { start: iso, end: iso, revision: int, bands }, required: ['start', 'end', 'revision', 'bands'] } },
    leftOut: { type: 'array', items: { type: 'object', properties: { start: iso, end: iso }, required: ['start', 'end'] } },
    energyWh: int,
    lines: { type: 'array', items: lineSchema },
    subtotalMinor: int,
    vat: { type: 'array', items: { type: 'object', properties: { basisPoints: int, baseMinor: int, amountMinor: int }, required: ['basisPoints', 'baseMinor', 'amountMinor'] } },
    vatMinor: int,
    totalMinor: int,
    total: { type: 'string', description: 'the total for people, e.g. £12.34' },
  },
  required: ['account', 'tariff', 'currency', 'minorDigits', 'from', 'to', 'periods', 'leftOut', 'energyWh', 'lines', 'subtotalMinor', 'vat', 'vatMinor', 'totalMinor', 'total'],
} as const;

const bandPrice = {
  type: 'object',
  properties: { band: { type: 'string', pattern: '^[A-Za-z0-9_.-]{1,32}$' }, priceMilliPerKwh: { type: 'integer', minimum: -1_000_000_000, maximum: 1_000_000_000 } },
  required: ['band', 'priceMilliPerKwh'],
  additionalProperties: false,
} as const;

/** A tariff version as the API shows it. */
export const tariffSchema = {
  type: 'object',
  properties: {
    id: int,
    code: str,
    name: str,
    currency: str,
    minorDigits: int,
    tz: str,
    effectiveFrom: { type: 'string', format: 'date' },
    standingMilliPerDay: int,
    vatBasisPoints: int,
    bands: { type: 'array', items: bandPrice },
    schedule: { anyOf: [{ type: 'object', additionalProperties: true }, { type: 'null' }] },
    createdAt: iso,
    createdBy: str,
  },
  required: ['id', 'code', 'name', 'currency', 'minorDigits', 'tz', 'effectiveFrom', 'standingMilliPerDay', 'vatBasisPoints', 'bands', 'createdAt', 'createdBy'],
} as const;

/** A new tariff version (request body). */
export const newTariffSchema = {
  type: 'object',
  properties: {
    code: { type: 'string', pattern: '^[a-z0-9][a-z0-9_-]{0,31}$' },
    name: { type: 'string', minLength: 1, maxLength: 80 },
    currency: { type: 'string', pattern: '^[A-Z]{3}$' },
    minorDigits: { type: 'integer', minimum: 0, maximum: 4, default: 2 },
    tz: { type: 'string', minLength: 1, maxLength: 64 },
    effectiveFrom: { type: 'string', pattern: '^\\d{4}-\\d{2}-\\d{2}$' },
    standingMilliPerDay: { type: 'integer', minimum: 0, maximum: 1_000_000_000, description: 'thousandths of a minor unit per day' },
    vatBasisPoints: { type: 'integer', minimum: 0, maximum: 10_000, default: 0 },
    bands: { type: 'array', items: bandPrice, minItems: 1, maxItems: 64 },
    schedule: { type: ['object', 'null'], description: 'optional band schedule in the PES tariff file format' },
  },
  required: ['code', 'name', 'currency', 'tz', 'effectiveFrom', 'standingMilliPerDay', 'bands'],
  additionalProperties: false,
} as const;

export const auditSchema = {
  type: 'object',
  properties: {
    id: int,
    at: iso,
    userId: nullable(int),
    username: str,
    action: { type: 'string', enum: AUDIT_ACTIONS },
    target: str,
    outcome: { type: 'string', enum: ['ok', 'denied', 'failed'] },
    ip: str,
    detail: { type: 'object', additionalProperties: true },
    hash: str,
  },
  required: ['id', 'at', 'userId', 'username', 'action', 'target', 'outcome', 'ip', 'detail', 'hash'],
} as const;

export const settingsSchema = {
  type: 'object',
  properties: {
    utilityName: { type: 'string', minLength: 1, maxLength: 80 },
    billFooter: { type: 'string', maxLength: 500 },
    timezone: { type: 'string', minLength: 1, maxLength: 64 },
    defaultTariff: { type: 'string', pattern: '^([a-z0-9][a-z0-9_-]{0,31})?$' },
  },
} as const;

/** `from`/`to` query values. */
export const rangeQuery = {
  from: { type: 'string', pattern: TIME_PATTERN, description: 'YYYY-MM-DD (local midnight in the display time zone) or an ISO 8601 time' },
  to: { type: 'string', pattern: TIME_PATTERN, description: 'exclusive; same forms as from' },
} as const;

/** An issued bill or credit/debit note. */
export const documentSchema = {
  type: 'object',
  properties: {
    number: { type: 'string', description: 'B-YYYY-NNNNNN (bill), CN-… (credit note), DN-… (debit note); never reused' },
    kind: { type: 'string', enum: ['bill', 'credit', 'debit'] },
    refersTo: { ...nullable(str), description: 'the bill a note settles' },
    account: str,
    periodStart: iso,
    periodEnd: iso,
    revision: { type: 'integer', description: 'the billing aggregate revision this document brings the period to' },
    bands: { ...bands, description: 'Wh per tariff band of that revision' },
    tariff: str,
    tariffVersions: { type: 'array', items: int, description: 'ids of the tariff versions the amounts are priced under' },
    currency: str,
    minorDigits: int,
    lines: { type: 'array', items: lineSchema, description: 'for a note: the change of each line (energy, days, amount)' },
    vat: { type: 'array', items: { type: 'object', properties: { basisPoints: int, baseMinor: int, amountMinor: int }, required: ['basisPoints', 'baseMinor', 'amountMinor'] } },
    subtotalMinor: int,
    vatMinor: int,
    totalMinor: { type: 'integer', description: 'minor units; negative for a credit note' },
    total: str,
    issuedAt: iso,
    issuedBy: str,
  },
  required: ['number', 'kind', 'refersTo', 'account', 'periodStart', 'periodEnd', 'revision', 'bands', 'tariff', 'tariffVersions', 'currency', 'minorDigits', 'lines', 'vat', 'subtotalMinor', 'vatMinor', 'totalMinor', 'total', 'issuedAt', 'issuedBy'],
} as const;

/**
 * The `operationId` of every operation in the OpenAPI document, keyed `METHOD /path` as fastify routes are
 * declared: the method names a generated client gets (`client.getAccountBill(...)`). The app refuses to start
 * with a documented route that is missing here (server.ts), and the API test checks they are unique.
 * @example
 * ```ts
 * OPERATION_IDS['GET /api/v1/accounts/:account/bill']; // 'getAccountBill'
 * ```
 */
export const OPERATION_IDS: Readonly<Record<string, string>> = {
  'POST /api/v1/session': 'signIn',
  'GET /api/v1/session': 'getSession',
  'DELETE /api/v1/session': 'signOut',
  'POST /api/v1/session/password': 'changeOwnPassword',
  'GET /api/v1/neighbourhoods': 'listNeighbourhoods',
  'GET /api/v1/neighbourhoods/:nb/series': 'getNeighbourhoodSeries',
  'GET /api/v1/neighbourhoods/:nb/intervals/:start/revisions': 'listIntervalRevisions',
  'GET /api/v1/neighbourhoods/:nb/forecast': 'getNeighbourhoodForecast',
  'GET /api/v1/neighbourhoods/:nb/backtest': 'getNeighbourhoodBacktest',
  'GET /api/v1/quality/findings': 'listQualityFindings',
  'GET /api/v1/quality/estimates': 'listQualityEstimates',
  'POST /api/v1/quality/check': 'runQualityCheck',
  'GET /api/v1/exports/neighbourhood.csv': 'exportNeighbourhoodCsv',
  'GET /api/v1/exports/billing.csv': 'exportBillingCsv',
  'GET /api/v1/exports/bills.csv': 'exportBillsCsv',
  'GET /api/v1/accounts': 'listAccounts',
  'GET /api/v1/accounts/:account': 'getAccount',
  'GET /api/v1/accounts/:account/periods': 'listAccountPeriods',
  'PUT /api/v1/accounts/:account/tariff': 'setAccountTariff',
  'GET /api/v1/accounts/:account/bill': 'getAccountBill',
  'GET /api/v1/bills': 'listBills',
  'GET /api/v1/bills/:number': 'getBill',
  'POST /api/v1/bills/run': 'runBills',
  'GET /api/v1/meters': 'listMeters',
  'GET /api/v1/tariffs': 'listTariffs',
  'POST /api/v1/tariffs': 'createTariff',
  'DELETE /api/v1/tariffs/:id': 'withdrawTariff',
  'GET /api/v1/users': 'listUsers',
  'POST /api/v1/users': 'createUser',
  'PATCH /api/v1/users/:id': 'updateUser',
  'POST /api/v1/users/:id/password': 'resetUserPassword',
  'GET /api/v1/settings': 'getSettings',
  'PUT /api/v1/settings': 'setSettings',
  'GET /api/v1/audit': 'listAuditEntries',
  'GET /api/v1/audit/verify': 'verifyAuditLog',
  'GET /healthz': 'getHealth',
  'GET /metrics': 'getMetrics',
  'GET /openapi.json': 'getOpenApiDocument',
};
