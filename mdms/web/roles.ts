/**
 * Roles and what they permit — the whole authorisation policy of the MDMS web app in one table.
 *
 * | permission           | admin | analyst | billing | privacy |
 * |----------------------|:-----:|:-------:|:-------:|:-------:|
 * | neighbourhood.read   |       |    x    |         |         |
 * | neighbourhood.export |       |    x    |         |         |
 * | billing.read         |       |         |    x    |         |
 * | billing.export       |       |         |    x    |         |
 * | account.write        |       |         |    x    |         |
 * | bill.issue           |       |         |    x    |         |
 * | meter.read           |   x   |         |    x    |         |
 * | tariff.read          |   x   |         |    x    |         |
 * | tariff.write         |   x   |         |         |         |
 * | user.admin           |   x   |         |         |         |
 * | settings.write       |   x   |         |         |         |
 * | audit.read           |   x   |         |         |         |
 * | privacy.read         |   x   |         |         |    x    |
 *
 * Separation of duties: the administrator manages people, prices and settings and reads the audit log, but
 * does not read household bills; a person who needs several duties gets several roles (each use audited).
 * The privacy officer (`privacy`) sees what protects the households — the k and guards of the PES and the
 * MDMS, their counters, the differential-privacy budget, the privacy report — and nothing of their energy.
 * @module
 */

export const ROLES = ['admin', 'analyst', 'billing', 'privacy'] as const;
export type Role = (typeof ROLES)[number];

export const PERMISSIONS = {
  'neighbourhood.read': ['analyst'],
  'neighbourhood.export': ['analyst'],
  'billing.read': ['billing'],
  'billing.export': ['billing'],
  'account.write': ['billing'],
  'bill.issue': ['billing'],
  'meter.read': ['admin', 'billing'],
  'tariff.read': ['admin', 'billing'],
  'tariff.write': ['admin'],
  'user.admin': ['admin'],
  'settings.write': ['admin'],
  'audit.read': ['admin'],
  'privacy.read': ['admin', 'privacy'],
} as const satisfies Record<string, readonly Role[]>;
export type Permission = keyof typeof PERMISSIONS;

/**
 * Whether any of `roles` grants `permission`.
 * @example
 * ```ts
 * can(['analyst'], 'billing.read'); // false
 * ```
 */
export function can(roles: readonly Role[], permission: Permission): boolean {
  const allowed: readonly Role[] = PERMISSIONS[permission];
  return roles.some((r) => allowed.includes(r));
}

/**
 * Parses `admin,billing` (CLI, forms, database) into a sorted, de-duplicated role list; throws a `TypeError`
 * naming the unknown role.
 * @example
 * ```ts
 * parseRoles('billing,admin'); // ['admin', 'billing']
 * ```
 */
export function parseRoles(v: string | readonly string[]): Role[] {
  const parts = (typeof v === 'string' ? v.split(',') : [...v]).map((s) => s.trim()).filter(Boolean);
  if (parts.length === 0) throw new TypeError(`a user needs at least one role (${ROLES.join(', ')})`);
  for (const p of parts) if (!(ROLES as readonly string[]).includes(p)) throw new TypeError(`unknown role "${p.slice(0, 32)}" (roles: ${ROLES.join(', ')})`);
  return ROLES.filter((r) => parts.includes(r));
}
