/**
 * Server-side HTML: a tagged template that escapes every interpolated value unless it is already
 * {@link SafeHtml}, and the page layout (header, navigation by permission, main, footer).
 * @module
 */
import { can, type Permission } from './roles.js';
import type { User } from './users.js';

/**
 * HTML that is already escaped (built by {@link html}).
 * @example
 * ```ts
 * new SafeHtml('<br>').toString(); // '<br>' (not escaped again)
 * ```
 */
export class SafeHtml {
  constructor(readonly value: string) {}
  toString(): string {
    return this.value;
  }
}

const ESC: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;', '`': '&#96;' };

/**
 * Escapes text for HTML content and quoted attributes.
 * @example
 * ```ts
 * escapeHtml('<b>"x"</b>'); // '&lt;b&gt;&quot;x&quot;&lt;/b&gt;'
 * ```
 */
export function escapeHtml(s: string): string {
  return s.replace(/[&<>"'`]/g, (c) => ESC[c]!);
}

function render(v: unknown): string {
  if (v === null || v === undefined || v === false) return '';
  if (v instanceof SafeHtml) return v.value;
  if (Array.isArray(v)) return v.map(render).join('');
  return escapeHtml(String(v));
}

/**
 * The template tag: `html\`<td>${name}</td>\`` escapes `name`; arrays are concatenated; null/false render nothing.
 * @example
 * ```ts
 * html`<li>${items.map((i) => html`<b>${i}</b>`)}</li>`;
 * ```
 */
export function html(strings: TemplateStringsArray, ...values: unknown[]): SafeHtml {
  let out = strings[0]!;
  for (let i = 0; i < values.length; i++) out += render(values[i]) + strings[i + 1]!;
  return new SafeHtml(out);
}

/**
 * JSON for a `<script type="application/json">` block (no `</script>` or `<!--` can break out).
 * @example
 * ```ts
 * html`<script type="application/json" id="data">${jsonScript(data)}</script>`;
 * ```
 */
export function jsonScript(v: unknown): SafeHtml {
  return new SafeHtml(JSON.stringify(v).replace(/</g, '\\u003c').replace(/>/g, '\\u003e').replace(/&/g, '\\u0026'));
}

/** Everything the layout needs besides the body. */
export interface PageContext {
  title: string;
  user: User | null;
  utilityName: string;
  /** Path of the current section, to highlight it. */
  active?: string;
  csrfToken?: string;
  assets: { js: string; css: string };
  /** A one-line message on top (success or problem). */
  flash?: { kind: 'ok' | 'error'; text: string } | null;
}

const NAV: { href: string; label: string; permission: Permission | null; icon: string }[] = [
  { href: '/', label: 'Overview', permission: null, icon: '◧' },
  { href: '/neighbourhoods', label: 'Neighbourhood demand', permission: 'neighbourhood.read', icon: '▤' },
  { href: '/forecast', label: 'Demand forecast', permission: 'neighbourhood.read', icon: '↗' },
  { href: '/quality', label: 'Data quality', permission: 'neighbourhood.read', icon: '⚑' },
  { href: '/accounts', label: 'Accounts', permission: 'billing.read', icon: '☰' },
  { href: '/bills', label: 'Bills', permission: 'billing.read', icon: '£' },
  { href: '/meters', label: 'Meters', permission: 'meter.read', icon: '⌁' },
  { href: '/tariffs', label: 'Tariffs', permission: 'tariff.read', icon: '⚖' },
  { href: '/admin/users', label: 'Users', permission: 'user.admin', icon: '☺' },
  { href: '/admin/settings', label: 'Settings', permission: 'settings.write', icon: '⚙' },
  { href: '/admin/audit', label: 'Audit log', permission: 'audit.read', icon: '✓' },
  { href: '/privacy', label: 'Privacy', permission: 'privacy.read', icon: '◎' },
  { href: '/api/docs', label: 'API', permission: null, icon: '{}' },
];

/**
 * A whole page around `body`.
 * @example
 * ```ts
 * reply.type('text/html').send(layout(ctx, html`<h1>Hello</h1>`).value);
 * ```
 */
export function layout(ctx: PageContext, body: SafeHtml): SafeHtml {
  const u = ctx.user;
  const nav = u
    ? NAV.filter((n) => n.permission === null || can(u.roles, n.permission)).map((n) => {
        const active = ctx.active === n.href || (n.href !== '/' && ctx.active?.startsWith(n.href + '/'));
        return html`<a href="${n.href}" class="${active ? 'active' : ''}"${active ? new SafeHtml(' aria-current="page"') : ''}><span class="ico" aria-hidden="true">${n.icon}</span>${n.label}</a>`;
      })
    : [];
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${ctx.title} · ${ctx.utilityName} MDMS</title>
<link rel="stylesheet" href="${ctx.assets.css}">
<script src="${ctx.assets.js}" defer></script>
</head>
<body class="${u ? 'app' : 'bare'}">
${
  u
    ? html`<aside class="sidebar">
  <div class="brand"><span class="logo" aria-hidden="true">⚡</span><span>${ctx.utilityName}<small>Meter data management</small></span></div>
  <nav aria-label="Main">${nav}</nav>
</aside>
<header class="topbar">
  <div class="crumb">${ctx.title}</div>
  <div class="who">
    <span class="user" data-testid="current-user">${u.username}</span>
    ${u.roles.map((r) => html`<span class="role role-${r}">${r}</span>`)}
    <a href="/account/password">Password</a>
    <form method="post" action="/logout" class="inline"><input type="hidden" name="_csrf" value="${ctx.csrfToken ?? ''}"><button class="link" type="submit">Log out</button></form>
  </div>
</header>`
    : ''
}
<main id="main">
${ctx.flash ? html`<div class="flash flash-${ctx.flash.kind}" role="${ctx.flash.kind === 'error' ? 'alert' : 'status'}">${ctx.flash.text}</div>` : ''}
${body}
</main>
</body>
</html>`;
}
