/**
 * Administration: users (create with a generated password shown once, roles, disable, password reset),
 * settings, and the audit log (filter, page, verify the hash chain). Administrators only; every change is
 * audited, and so is every reading of the audit log.
 * @module
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { AUDIT_ACTIONS, type AuditAction, type AuditEntry } from '../audit.js';
import { clientIp, HttpError, userOf } from '../context.js';
import { html, type SafeHtml } from '../html.js';
import { csrfField, flashOf, sendPage } from '../render.js';
import { parseRoles, ROLES, type Role } from '../roles.js';
import { auditSchema, errors, rangeQuery, settingsSchema, userSchema } from '../schemas.js';
import { checkSettings, type SettingValues } from '../settings.js';
import { fmtTime, parseRange } from '../time.js';
import { generatePassword, MAX_PASSWORD, UserError, type User } from '../users.js';
import { userJson } from './auth.js';

const idParams = { type: 'object', properties: { id: { type: 'integer', minimum: 1 } }, required: ['id'] } as const;
const auditQuery = {
  type: 'object',
  properties: {
    user: { type: 'string', maxLength: 64 },
    action: { type: 'string', enum: AUDIT_ACTIONS },
    ...rangeQuery,
    before: { type: 'integer', minimum: 1 },
    limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100 },
  },
} as const;

/**
 * Registers the admin routes.
 * @example
 * ```ts
 * await app.register(adminRoutes);
 * ```
 */
export async function adminRoutes(app: FastifyInstance): Promise<void> {
  const { web } = app.mdms;

  async function record(req: FastifyRequest, action: AuditAction, target: string, detail: Record<string, string | number | boolean | null> = {}): Promise<void> {
    const u = userOf(req);
    await web.audit.record({ userId: u.id, username: u.username, action, target, outcome: 'ok', ip: clientIp(req), detail });
  }

  async function createUser(req: FastifyRequest, username: string, roles: Role[], password?: string): Promise<{ user: User; generated: string | null }> {
    const generated = password ? null : generatePassword();
    const user = await web.users.create({ username, roles, password: password ?? generated! });
    await record(req, 'user.create', user.username, { roles: roles.join(',') });
    return { user, generated };
  }

  async function updateUser(req: FastifyRequest, id: number, change: { roles?: Role[]; disabled?: boolean }): Promise<User> {
    if (!(await web.users.get(id))) throw new HttpError(404, `no user ${id}`);
    const u = await web.users.update(id, change);
    await record(req, 'user.update', u.username, { roles: u.roles.join(','), disabled: u.disabled });
    return u;
  }

  async function resetPassword(req: FastifyRequest, id: number): Promise<{ user: User; password: string }> {
    const user = await web.users.get(id);
    if (!user) throw new HttpError(404, `no user ${id}`);
    const password = generatePassword();
    await web.users.setPassword(id, password);
    await record(req, 'password.change', user.username, { reset: true });
    return { user, password };
  }

  async function auditList(req: FastifyRequest): Promise<{ entries: AuditEntry[]; q: { user?: string; action?: AuditAction; from?: string; to?: string; before?: number; limit: number } }> {
    const q = req.query as { user?: string; action?: AuditAction; from?: string; to?: string; before?: number; limit: number };
    const tz = (await web.settings.all()).timezone;
    const r = parseRange(q.from, q.to, tz, Number.MAX_SAFE_INTEGER);
    const entries = await web.audit.list({
      ...(q.user ? { username: q.user.toLowerCase() } : {}),
      ...(q.action ? { action: q.action } : {}),
      ...(r.from !== undefined ? { fromMs: r.from * 1000 } : {}),
      ...(r.to !== undefined ? { toMs: r.to * 1000 } : {}),
      ...(q.before ? { before: q.before } : {}),
      limit: q.limit,
    });
    await record(req, 'view.audit', 'audit log', { entries: entries.length });
    return { entries, q };
  }

  const auditJson = (e: AuditEntry) => ({ ...e, at: new Date(e.atMs).toISOString().replace(/\.\d{3}Z$/, 'Z') });

  // ---- pages: users
  const usersPage = async (req: FastifyRequest, reply: FastifyReply, opts: { flash?: { kind: 'ok' | 'error'; text: string } | null; reveal?: SafeHtml; status?: number } = {}) => {
    const users = await web.users.list();
    const tz = (await web.settings.all()).timezone;
    const me = userOf(req);
    return sendPage(req, reply, { title: 'Users', active: '/admin/users', status: opts.status, flash: opts.flash ?? flashOf(req.query, { updated: 'User updated.' }) }, (csrf) => html`
<h1>Users</h1>
<p class="sub">Roles: <strong>admin</strong> manages users, tariffs and settings and reads the audit log; <strong>analyst</strong> reads neighbourhood demand; <strong>billing</strong> reads accounts and bills; <strong>privacy</strong> (the privacy officer) reads the Privacy page: the guards, their counters and the privacy budget. A person may hold several roles.</p>
${opts.reveal ?? ''}
<div class="card table-wrap"><table data-testid="users"><thead><tr><th>User</th><th>Roles</th><th>Status</th><th>Password changed</th><th></th></tr></thead><tbody>
${users.map(
  (u) => html`<tr><td><strong>${u.username}</strong>${u.id === me.id ? html` <span class="badge">you</span>` : ''}</td>
<td><form method="post" action="${`/admin/users/${u.id}`}" class="row">${csrfField(csrf)}<div class="checks">${ROLES.map((r) => html`<label><input type="checkbox" name="roles" value="${r}"${u.roles.includes(r) ? html` checked` : ''}> ${r}</label>`)}</div>
<label class="checks"><span><input type="checkbox" name="disabled" value="1"${u.disabled ? html` checked` : ''}> disabled</span></label><button type="submit" class="secondary">Save</button></form></td>
<td>${u.disabled ? html`<span class="badge err">disabled</span>` : html`<span class="badge ok">active</span>`}</td>
<td>${fmtTime(Math.floor(u.passwordChangedAtMs / 1000), tz)}</td>
<td><form method="post" action="${`/admin/users/${u.id}/password`}" class="inline" data-confirm="${`Reset the password of ${u.username}? Their sessions end.`}">${csrfField(csrf)}<button type="submit" class="link">Reset password</button></form></td></tr>`,
)}
</tbody></table></div>
<div class="card"><h2>Add a user</h2>
<form method="post" action="/admin/users" class="stack">${csrfField(csrf)}
<label>Username <input name="username" required pattern="[A-Za-z0-9][A-Za-z0-9_.\\-]{2,63}" maxlength="64"></label>
<fieldset><legend>Roles</legend><div class="checks">${ROLES.map((r) => html`<label><input type="checkbox" name="roles" value="${r}"> ${r}</label>`)}</div></fieldset>
<label>Password (leave empty to generate one) <input type="password" name="password" autocomplete="new-password" minlength="12" maxlength="${MAX_PASSWORD}"></label>
<button type="submit">Add user</button></form></div>`);
  };

  const revealPassword = (username: string, password: string, what: string): SafeHtml =>
    html`<div class="card" data-testid="new-password"><h2>${what}</h2><p>Give this password to <strong>${username}</strong> over a trusted channel. It is shown only this once.</p><p><span class="secret">${password}</span></p></div>`;

  app.get(
    '/admin/users',
    { config: { access: 'user.admin' }, schema: { hide: true, querystring: { type: 'object', properties: { done: { type: 'string', maxLength: 20 } } }, response: { 200: { type: 'string' } } } },
    async (req, reply) => usersPage(req, reply),
  );

  const rolesField = { type: 'array', items: { type: 'string', enum: ROLES }, maxItems: ROLES.length } as const;
  app.post(
    '/admin/users',
    {
      config: { access: 'user.admin' },
      schema: {
        hide: true,
        body: { type: 'object', properties: { username: { type: 'string', maxLength: 64 }, roles: rolesField, password: { type: 'string', maxLength: MAX_PASSWORD }, _csrf: { type: 'string' } }, required: ['username'] },
        response: { 200: { type: 'string' } },
      },
    },
    async (req, reply) => {
      const b = req.body as { username: string; roles?: Role[]; password?: string };
      try {
        const { user, generated } = await createUser(req, b.username, parseRoles(b.roles ?? []), b.password || undefined);
        return usersPage(req, reply, { flash: { kind: 'ok', text: `User ${user.username} added.` }, ...(generated ? { reveal: revealPassword(user.username, generated, 'New user') } : {}) });
      } catch (e) {
        if (e instanceof UserError || e instanceof TypeError) return usersPage(req, reply, { flash: { kind: 'error', text: e.message }, status: 400 });
        throw e;
      }
    },
  );

  app.post(
    '/admin/users/:id',
    {
      config: { access: 'user.admin' },
      schema: { hide: true, params: idParams, body: { type: 'object', properties: { roles: rolesField, disabled: { type: 'string', enum: ['1'] }, _csrf: { type: 'string' } } }, response: { 200: { type: 'string' } } },
    },
    async (req, reply) => {
      const b = req.body as { roles?: Role[]; disabled?: string };
      try {
        await updateUser(req, (req.params as { id: number }).id, { roles: parseRoles(b.roles ?? []), disabled: b.disabled === '1' });
      } catch (e) {
        if (e instanceof UserError || e instanceof TypeError) return usersPage(req, reply, { flash: { kind: 'error', text: e.message }, status: 400 });
        throw e;
      }
      return reply.redirect('/admin/users?done=updated', 303);
    },
  );

  app.post(
    '/admin/users/:id/password',
    { config: { access: 'user.admin' }, schema: { hide: true, params: idParams, body: { type: 'object', properties: { _csrf: { type: 'string' } } }, response: { 200: { type: 'string' } } } },
    async (req, reply) => {
      const { user, password } = await resetPassword(req, (req.params as { id: number }).id);
      return usersPage(req, reply, { flash: { kind: 'ok', text: `Password of ${user.username} reset; their sessions ended.` }, reveal: revealPassword(user.username, password, 'New password') });
    },
  );

  // ---- pages: settings
  const settingsPage = async (req: FastifyRequest, reply: FastifyReply, values?: SettingValues, error?: string) => {
    const s = values ?? (await web.settings.all());
    const codes = await web.tariffs.codes();
    return sendPage(req, reply, { title: 'Settings', active: '/admin/settings', status: error ? 400 : 200, flash: error ? { kind: 'error', text: error } : flashOf(req.query, { saved: 'Settings saved.' }) }, (csrf) => html`
<h1>Settings</h1>
<form method="post" action="/admin/settings" class="card stack">${csrfField(csrf)}
<label>Utility name (header and bills) <input name="utilityName" required maxlength="80" value="${s.utilityName}"></label>
<label>Time zone for pages and dates <input name="timezone" required maxlength="64" value="${s.timezone}"></label>
<label>Default tariff (accounts without their own) <select name="defaultTariff"><option value="">none</option>${codes.map((c) => html`<option value="${c}"${s.defaultTariff === c ? html` selected` : ''}>${c}</option>`)}</select></label>
<label>Bill footer <textarea name="billFooter" rows="3" maxlength="500">${s.billFooter}</textarea></label>
<button type="submit">Save</button></form>`);
  };

  app.get(
    '/admin/settings',
    { config: { access: 'settings.write' }, schema: { hide: true, querystring: { type: 'object', properties: { done: { type: 'string', maxLength: 20 } } }, response: { 200: { type: 'string' } } } },
    async (req, reply) => settingsPage(req, reply),
  );

  async function saveSettings(req: FastifyRequest, change: Partial<SettingValues>): Promise<SettingValues> {
    try {
      checkSettings(change);
    } catch (e) {
      throw new HttpError(400, (e as Error).message);
    }
    if (change.defaultTariff && (await web.tariffs.versions(change.defaultTariff)).length === 0) throw new HttpError(400, `there is no tariff "${change.defaultTariff}"`);
    const s = await web.settings.set(change);
    await record(req, 'settings.update', 'settings', { fields: Object.keys(change).join(',') });
    return s;
  }

  app.post(
    '/admin/settings',
    {
      config: { access: 'settings.write' },
      schema: { hide: true, body: { type: 'object', properties: { ...settingsSchema.properties, _csrf: { type: 'string' } }, required: ['utilityName', 'timezone'] }, response: { 200: { type: 'string' } } },
    },
    async (req, reply) => {
      const { _csrf: _c, ...change } = req.body as Partial<SettingValues> & { _csrf?: string };
      try {
        await saveSettings(req, change);
      } catch (e) {
        if (e instanceof HttpError) return settingsPage(req, reply, { ...(await web.settings.all()), ...change }, e.message);
        throw e;
      }
      return reply.redirect('/admin/settings?done=saved', 303);
    },
  );

  // ---- pages: audit
  app.get(
    '/admin/audit',
    {
      config: { access: 'audit.read' },
      schema: { hide: true, querystring: { ...auditQuery, properties: { ...auditQuery.properties, verify: { type: 'string', enum: ['1'] } } }, response: { 200: { type: 'string' } } },
    },
    async (req, reply) => {
      const { entries, q } = await auditList(req);
      const tz = (await web.settings.all()).timezone;
      const check = (req.query as { verify?: string }).verify ? await web.audit.verify() : null;
      const params = (over: Record<string, string | number | undefined>): string => {
        const p = new URLSearchParams();
        for (const [k, v] of Object.entries({ user: q.user, action: q.action, from: q.from, to: q.to, ...over })) if (v !== undefined && v !== '') p.set(k, String(v));
        return `/admin/audit?${p}`;
      };
      const last = entries[entries.length - 1];
      return sendPage(req, reply, { title: 'Audit log', active: '/admin/audit' }, () => html`
<h1>Audit log</h1>
<p class="sub">Every sign-in, every view of billing data, every export and every change — who, what, when, from where. Entries are hash-chained: editing or deleting one breaks the chain from there on.</p>
<div class="card no-print"><form method="get" action="/admin/audit" class="row">
<label>User <input name="user" value="${q.user ?? ''}" maxlength="64"></label>
<label>Action <select name="action"><option value="">any</option>${AUDIT_ACTIONS.map((a) => html`<option value="${a}"${q.action === a ? html` selected` : ''}>${a}</option>`)}</select></label>
<label>From <input type="date" name="from" value="${q.from?.slice(0, 10) ?? ''}"></label>
<label>To <input type="date" name="to" value="${q.to?.slice(0, 10) ?? ''}"></label>
<button type="submit">Filter</button>
<a class="button secondary" href="${params({ verify: 1 })}">Verify chain</a>
</form>
${check ? html`<p class="${`flash ${check.ok ? 'flash-ok' : 'flash-error'}`}" data-testid="audit-verify">${check.ok ? `Chain intact: ${check.entries} entries verified.` : `Chain BROKEN at entry ${check.brokenAt} (after ${check.entries} good entries): the log was altered.`}</p>` : ''}
</div>
<div class="card table-wrap"><table data-testid="audit"><thead><tr><th>#</th><th>When (${tz})</th><th>Who</th><th>Action</th><th>What</th><th>Outcome</th><th>From</th><th>Detail</th></tr></thead><tbody>
${entries.map(
  (e) => html`<tr><td class="muted">${e.id}</td><td>${fmtTime(Math.floor(e.atMs / 1000), tz, 'full')}</td><td>${e.username}</td><td class="mono">${e.action}</td><td class="mono">${e.target}</td>
<td>${e.outcome === 'ok' ? html`<span class="badge ok">ok</span>` : html`<span class="badge err">${e.outcome}</span>`}</td><td class="mono">${e.ip}</td>
<td class="mono muted">${Object.entries(e.detail ?? {}).map(([k, v]) => `${k}=${v}`).join(' ')}</td></tr>`,
)}
</tbody></table>
${entries.length === q.limit && last ? html`<p><a href="${params({ before: last.id })}">Older entries →</a></p>` : ''}</div>`);
    },
  );

  // ---- API
  const tags = ['admin'];
  app.get(
    '/api/v1/users',
    { config: { access: 'user.admin' }, schema: { tags, summary: 'Users', description: 'Needs user.admin (admin).', response: { 200: { type: 'array', items: userSchema }, ...errors } } },
    async () => (await web.users.list()).map(userJson),
  );

  app.post(
    '/api/v1/users',
    {
      config: { access: 'user.admin' },
      schema: {
        tags,
        summary: 'Add a user',
        description: 'Without a password one is generated and returned once. Audited. Needs user.admin (admin); needs x-csrf-token.',
        security: [{ session: [], csrf: [] }],
        body: {
          type: 'object',
          properties: { username: { type: 'string', maxLength: 64 }, roles: { type: 'array', items: { type: 'string', enum: ROLES }, minItems: 1, maxItems: ROLES.length }, password: { type: 'string', maxLength: MAX_PASSWORD } },
          required: ['username', 'roles'],
          additionalProperties: false,
        },
        response: { 201: { type: 'object', properties: { user: userSchema, password: { type: 'string', description: 'only when generated' } }, required: ['user'] }, ...errors },
      },
    },
    async (req, reply) => {
      const b = req.body as { username: string; roles: Role[]; password?: string };
      const { user, generated } = await createUser(req, b.username, parseRoles(b.roles), b.password);
      return reply.code(201).send({ user: userJson(user), ...(generated ? { password: generated } : {}) });
    },
  );

  app.patch(
    '/api/v1/users/:id',
    {
      config: { access: 'user.admin' },
      schema: {
        tags,
        summary: 'Change roles or disable a user',
        description: 'Disabling ends the user’s sessions; the last enabled admin cannot be removed. Audited. Needs user.admin (admin); needs x-csrf-token.',
        security: [{ session: [], csrf: [] }],
        params: idParams,
        body: { type: 'object', properties: { roles: { type: 'array', items: { type: 'string', enum: ROLES }, minItems: 1, maxItems: ROLES.length }, disabled: { type: 'boolean' } }, additionalProperties: false, minProperties: 1 },
        response: { 200: userSchema, ...errors },
      },
    },
    async (req) => {
      const b = req.body as { roles?: Role[]; disabled?: boolean };
      return userJson(await updateUser(req, (req.params as { id: number }).id, { ...(b.roles ? { roles: parseRoles(b.roles) } : {}), ...(b.disabled !== undefined ? { disabled: b.disabled } : {}) }));
    },
  );

  app.post(
    '/api/v1/users/:id/password',
    {
      config: { access: 'user.admin' },
      schema: {
        tags,
        summary: "Reset a user's password",
        description: 'Generates a new password (returned once) and ends the user’s sessions. Audited. Needs user.admin (admin); needs x-csrf-token.',
        security: [{ session: [], csrf: [] }],
        params: idParams,
        response: { 200: { type: 'object', properties: { password: { type: 'string' } }, required: ['password'] }, ...errors },
      },
    },
    async (req) => ({ password: (await resetPassword(req, (req.params as { id: number }).id)).password }),
  );

  app.get(
    '/api/v1/settings',
    { config: { access: 'settings.write' }, schema: { tags, summary: 'Settings', description: 'Needs settings.write (admin).', response: { 200: { ...settingsSchema, required: ['utilityName', 'billFooter', 'timezone', 'defaultTariff'] }, ...errors } } },
    async () => web.settings.all(),
  );

  app.put(
    '/api/v1/settings',
    {
      config: { access: 'settings.write' },
      schema: {
        tags,
        summary: 'Change settings',
        description: 'Partial: only the fields sent change. Audited. Needs settings.write (admin); needs x-csrf-token.',
        security: [{ session: [], csrf: [] }],
        body: { ...settingsSchema, additionalProperties: false, minProperties: 1 },
        response: { 200: { ...settingsSchema, required: ['utilityName', 'billFooter', 'timezone', 'defaultTariff'] }, ...errors },
      },
    },
    async (req) => saveSettings(req, req.body as Partial<SettingValues>),
  );

  app.get(
    '/api/v1/audit',
    {
      config: { access: 'audit.read' },
      schema: {
        tags,
        summary: 'Audit log entries',
        description: 'Newest first; page with before=<last id>. Reading the log is itself audited. Needs audit.read (admin).',
        querystring: auditQuery,
        response: { 200: { type: 'array', items: auditSchema }, ...errors },
      },
    },
    async (req) => (await auditList(req)).entries.map(auditJson),
  );

  app.get(
    '/api/v1/audit/verify',
    {
      config: { access: 'audit.read' },
      schema: {
        tags,
        summary: 'Verify the audit hash chain',
        description: 'Recomputes every entry’s hash. Needs audit.read (admin).',
        response: { 200: { type: 'object', properties: { entries: { type: 'integer' }, ok: { type: 'boolean' }, brokenAt: { type: ['integer', 'null'] } }, required: ['entries', 'ok', 'brokenAt'] }, ...errors },
      },
    },
    async () => web.audit.verify(),
  );
}
