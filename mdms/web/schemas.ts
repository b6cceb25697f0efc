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

/** A neighbourhood release's differential-privacy ledger (docs/protocol.md §11.3). */
export const dpSchema = {
  type: ['object', 'null'],
  properties: {
    epsilon: { type: 'number', description: 'epsilon this release spent' },
    spent: { type: 'number', description: "epsilon spent on this neighbourhood's releases so far, this one included" },
  },
  required: ['epsilon', 'spent'],
  description: 'null: the PES added no noise to this release',
} as const;

export const pointSchema = {
  type: 'object',
  properties: {
    start: iso,
    end: iso,
    meters: int,
    energyWh: { type: 'integer', description: 'Wh imported from the grid' },
    exportWh: { type: 'integer', description: 'Wh exported to the grid (0: none)' },
    netWh: { type: 'integer', description: 'energyWh - exportWh: the net demand, negative when the neighbourhood delivers' },
    revision: { type: 'integer', description: '0 = first release; higher = revised by the PES' },
    dp: dpSchema,
  },
  required: ['start', 'end', 'meters', 'energyWh', 'exportWh', 'netWh', 'revision', 'dp'],
} as const;

export const seriesSchema = {
  type: 'object',
  properties: {
    neighbourhood: str,
    from: iso,
    to: iso,
    points: { type: 'array', items: pointSchema },
    peak: { anyOf: [pointSchema, { type: 'null' }], description: 'the interval of highest import' },
    energyWh: { type: 'integer', description: 'Wh imported over the range' },
    exportWh: { type: 'integer', description: 'Wh exported over the range' },
    netWh: { type: 'integer', description: 'energyWh - exportWh' },
    revised: { type: 'integer', description: 'intervals whose latest revision is above 0' },
  },
  required: ['neighbourhood', 'from', 'to', 'points', 'peak', 'energyWh', 'exportWh', 'netWh', 'revised'],
} as const;

export const revisionSchema = {
  type: 'object',
  properties: { revision: int, meters: int, energyWh: int, exportWh: int, dp: dpSchema, receivedAt: iso },
  required: ['revision', 'meters', 'energyWh', 'exportWh', 'dp', 'receivedAt'],
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

const bands = { type: 'object', additionalProperties: { type: 'integer' }, description: 'Wh imported per tariff band' } as const;
const exportBands = { type: 'object', additionalProperties: { type: 'integer' }, description: 'Wh fed in (exported) per tariff band; bands with none are left out' } as const;

export const periodSchema = {
  type: 'object',
  properties: {
    start: iso,
    end: iso,
    revision: int,
    bands,
    exportBands,
    energyWh: { type: 'integer', description: 'Wh imported over every band' },
    exportWh: { type: 'integer', description: 'Wh fed in over every band' },
    totalMinor: { ...nullable(int), description: 'the period priced on its own; negative = a credit' },
    error: nullable(str),
  },
  required: ['start', 'end', 'revision', 'bands', 'exportBands', 'energyWh', 'exportWh', 'totalMinor', 'error'],
} as const;

export const lineSchema = {
  type: 'object',
  properties: {
    kind: { type: 'string', enum: ['energy', 'feedin', 'standing'], description: 'energy imported in a band, energy fed in (a negative amount), or the standing charge' },
    tariffId: int,
    tariffName: str,
    band: str,
    from: iso,
    to: iso,
    energyWh: { type: 'integer', description: 'energy: Wh imported; feedin: Wh fed in' },
    priceMilliPerKwh: int,
    feedInMilliPerKwh: { type: 'integer', description: 'feedin: thousandths of a minor unit paid per kWh fed in' },
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
    periods: { type: 'array', items: { type: 'object', properties: { start: iso, end: iso, revision: int, bands, exportBands }, required: ['start', 'end', 'revision', 'bands', 'exportBands'] } },
    leftOut: { type: 'array', items: { type: 'object', properties: { start: iso, end: iso }, required: ['start', 'end'] } },
    energyWh: { type: 'integer', description: 'Wh imported' },
    exportWh: { type: 'integer', description: 'Wh fed in' },
    lines: { type: 'array', items: lineSchema },
    subtotalMinor: int,
    vat: { type: 'array', items: { type: 'object', properties: { basisPoints: int, baseMinor: int, amountMinor: int }, required: ['basisPoints', 'baseMinor', 'amountMinor'] } },
    vatMinor: int,
    totalMinor: { type: 'integer', description: 'minor units; negative = a credit to the household (feed-in worth more than the charges)' },
    total: { type: 'string', description: 'the total for people, e.g. £12.34 (-£2.52 for a credit)' },
  },
  required: ['account', 'tariff', 'currency', 'minorDigits', 'from', 'to', 'periods', 'leftOut', 'energyWh', 'exportWh', 'lines', 'subtotalMinor', 'vat', 'vatMinor', 'totalMinor', 'total'],
} as const;

const bandPrice = {
  type: 'object',
  properties: {
    band: { type: 'string', pattern: '^[A-Za-z0-9_.-]{1,32}$' },
    priceMilliPerKwh: { type: 'integer', minimum: -1_000_000_000, maximum: 1_000_000_000, description: 'thousandths of a minor unit per kWh imported' },
    feedInMilliPerKwh: { type: 'integer', minimum: -1_000_000_000, maximum: 1_000_000_000, default: 0, description: 'thousandths of a minor unit paid per kWh fed in (exported) in this band; default 0' },
  },
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
    bands: { ...bands, description: 'Wh imported per tariff band of that revision' },
    exportBands: { ...exportBands, description: 'Wh fed in per tariff band of that revision (bands with some only)' },
    tariff: str,
    tariffVersions: { type: 'array', items: int, description: 'ids of the tariff versions the amounts are priced under' },
    currency: str,
    minorDigits: int,
    lines: { type: 'array', items: lineSchema, description: 'for a note: the change of each line (energy, days, amount)' },
    vat: { type: 'array', items: { type: 'object', properties: { basisPoints: int, baseMinor: int, amountMinor: int }, required: ['basisPoints', 'baseMinor', 'amountMinor'] } },
    subtotalMinor: int,
    vatMinor: int,
    totalMinor: { type: 'integer', description: 'minor units; negative for a credit note, or a bill whose feed-in outweighs its charges' },
    total: str,
    issuedAt: iso,
    issuedBy: str,
  },
  required: ['number', 'kind', 'refersTo', 'account', 'periodStart', 'periodEnd', 'revision', 'bands', 'exportBands', 'tariff', 'tariffVersions', 'currency', 'minorDigits', 'lines', 'vat', 'subtotalMinor', 'vatMinor', 'totalMinor', 'total', 'issuedAt', 'issuedBy'],
} as const;

const num = { type: 'number' } as const;

/** The Privacy page as JSON (`GET /api/v1/privacy`): guards, counters, the DP budget, the report's figures. */
export const privacySchema = {
  type: 'object',
  properties: {
    mdms: {
      type: ['object', 'null'],
      description: 'what the MDMS ingest enforces, as it recorded it when it started; null if no ingest has run on this database',
      properties: { k: int, minBillingPeriodS: int, fleetChecked: { type: 'boolean' }, recordedAt: iso },
      required: ['k', 'minBillingPeriodS', 'fleetChecked', 'recordedAt'],
    },
    statements: {
      type: 'array',
      description: "each PES's latest policy statement (docs/protocol.md §11.3)",
      items: {
        type: 'object',
        properties: {
          pes: str,
          at: { ...iso, description: 'when the PES made the statement' },
          receivedAt: iso,
          k: int,
          revisionK: int,
          membershipGuard: { type: 'boolean' },
          dpEpsilon: { type: ['number', 'null'], description: 'epsilon per noised release; null = no noise' },
          counters: { type: 'object', additionalProperties: { type: 'integer' }, description: 'e.g. suppressed, revisionHeld, membershipHeld, dpReleases' },
        },
        required: ['pes', 'at', 'receivedAt', 'k', 'revisionK', 'membershipGuard', 'dpEpsilon', 'counters'],
      },
    },
    budgets: {
      type: 'array',
      description: 'the differential-privacy budget of each neighbourhood with noised releases',
      items: {
        type: 'object',
        properties: {
          neighbourhood: str,
          spent: { ...num, description: 'epsilon spent so far (the highest ledger total stored)' },
          epsilon: { ...num, description: 'epsilon per release' },
          releases: int,
          lastEnd: iso,
          releasesLastDay: int,
          epsilonLastDay: num,
        },
        required: ['neighbourhood', 'spent', 'epsilon', 'releases', 'lastEnd', 'releasesLastDay', 'epsilonLastDay'],
      },
    },
    refusals: { type: 'object', additionalProperties: { type: 'integer' }, description: 'aggregates the MDMS refused, by rule, among the latest 1000 refusals' },
    warnings: { type: 'array', items: str, description: 'where the MDMS and the PES disagree, or a guard is off' },
    report: {
      type: ['object', 'null'],
      description: 'the privacy report (--privacy-report DIR); null if none is configured',
      properties: {
        ok: { type: 'boolean' },
        html: { type: 'boolean', description: 'report.html is there (GET /privacy/report)' },
        error: str,
        writtenAt: iso,
        figures: {
          type: 'object',
          properties: {
            households: int,
            attacks: { type: 'array', items: { type: 'object', properties: { attack: str, data: str, score: num, chance: num }, required: ['attack', 'data', 'score', 'chance'] } },
            differencing: {
              type: 'array',
              items: { type: 'object', properties: { guard: { type: 'boolean' }, maeWh: num, baselineMaeWh: num, intervals: num, membershipHeld: num }, required: ['guard', 'maeWh', 'baselineMaeWh', 'intervals', 'membershipHeld'] },
            },
            dp: { type: 'array', items: { type: 'object', properties: { epsilon: num, aggregateMape: num, eventsF1: num }, required: ['epsilon', 'aggregateMape', 'eventsF1'] } },
            dataFrom: { type: ['string', 'null'] },
            dataTo: { type: ['string', 'null'] },
          },
          required: ['households', 'attacks', 'differencing', 'dp', 'dataFrom', 'dataTo'],
        },
      },
      required: ['ok', 'html'],
    },
  },
  required: ['mdms', 'statements', 'budgets', 'refusals', 'warnings', 'report'],
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
  'GET /api/v1/privacy': 'getPrivacyStatus',
  'GET /healthz': 'getHealth',
  'GET /metrics': 'getMetrics',
  'GET /openapi.json': 'getOpenApiDocument',
};
