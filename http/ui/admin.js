// Administration: users, API tokens, dead generation jobs, the Argilla exporter.
import { h, mount, field, fmtDate, modal, toast } from './dom.js';
import { get, post, patch, del, missingRoute } from './api.js';
import { t } from './i18n.js';
import { app, attempt, render } from './app.js';
import { pager } from './pages.js';

function tabs() {
  const link = (href, label) => h('a', { href, class: 'tab', 'aria-current': location.pathname === href ? 'page' : null }, label);
  return h('nav', { class: 'tabs', 'aria-label': t('Administration') },
    app.me.is_admin ? link('/admin/users', t('Users')) : null, link('/admin/tokens', t('API tokens')),
    app.me.is_admin ? link('/admin/dead-jobs', t('Dead jobs')) : null, app.me.is_admin ? link('/admin/exporter', t('Exporter')) : null);
}

export async function usersPage(main) {
  const params = new URLSearchParams(location.search);
  const offset = Number(params.get('offset') || 0);
  const list = await get(`/users?limit=50&offset=${offset}`);
  const email = h('input', { type: 'email', name: 'email', required: true });
  const name = h('input', { name: 'name', required: true });
  const password = h('input', { type: 'password', name: 'password', required: true, autocomplete: 'new-password' });
  const admin = h('input', { type: 'checkbox', name: 'is_admin' });
  mount(main, h('h1', {}, t('Administration')), tabs(),
    h('form', { class: 'card row', onsubmit: async (e) => {
      e.preventDefault();
      if (await attempt(() => post('/users', { email: email.value, name: name.value, password: password.value, is_admin: admin.checked }), t('Saved'))) render();
    } }, field(t('Email'), email), field(t('Full name'), name), field(t('Password'), password),
    h('label', { class: 'check' }, admin, t('Administrator')), h('button', { type: 'submit', class: 'primary' }, t('New user'))),
    h('div', { class: 'table-wrap' }, h('table', {},
      h('thead', {}, h('tr', {}, [t('Full name'), t('Email'), t('Position'), t('Administrator'), t('Active'), ''].map((x) => h('th', { scope: 'col' }, x)))),
      h('tbody', {}, list.items.map((u) => h('tr', {},
        h('td', {}, u.name), h('td', {}, u.email), h('td', {}, u.position), h('td', {}, u.is_admin ? '✓' : ''), h('td', {}, u.active ? '✓' : '—'),
        // Nobody may switch themselves off (the server refuses it too).
        h('td', {}, u.id === app.me.id ? h('span', { class: 'muted' }, t('You')) : h('button', { type: 'button', onclick: async () => {
          if (await attempt(() => patch(`/users/${u.id}`, { active: !u.active }), t('Saved'))) render();
        } }, u.active ? t('Deactivate') : t('Activate')))))))),
    pager(list.total, offset, 50, (o) => { history.replaceState(null, '', `?offset=${o}`); render(); }));
}

export async function tokensPage(main) {
  const list = await get('/api-tokens');
  const name = h('input', { name: 'name', required: true });
  mount(main, h('h1', {}, t('API tokens')), tabs(),
    h('form', { class: 'card row', onsubmit: async (e) => {
      e.preventDefault();
      const r = await attempt(() => post('/api-tokens', { name: name.value }));
      if (!r) return;
      const secret = h('input', { readonly: true, value: r.token || r.secret || '', class: 'mono wide', 'aria-label': t('New token') });
      const copy = h('button', { type: 'button', onclick: async () => {
        try { await navigator.clipboard.writeText(secret.value); toast(t('Copied'), 'ok'); } catch { secret.select(); }
      } }, t('Copy'));
      const d = modal(t('New token'), h('div', {}, h('p', {}, t('Copy it now: it is shown only once')), secret),
        [copy, h('button', { type: 'button', class: 'primary', onclick: () => d.close() }, 'OK')]);
      d.addEventListener('close', () => render());
      secret.select();
    } }, field(t('Name'), name), h('button', { type: 'submit', class: 'primary' }, t('New token'))),
    h('div', { class: 'table-wrap' }, h('table', {},
      h('thead', {}, h('tr', {}, [t('Name'), t('Created'), ''].map((x) => h('th', { scope: 'col' }, x)))),
      h('tbody', {}, (list.items || []).map((tk) => h('tr', {}, h('td', {}, tk.name), h('td', {}, fmtDate(tk.created_at)),
        h('td', {}, h('button', { type: 'button', class: 'danger', onclick: async () => {
          if (await attempt(() => del(`/api-tokens/${tk.id}`), t('Saved'))) render();
        } }, t('Revoke')))))))));
}

export async function deadJobsPage(main) {
  const params = new URLSearchParams(location.search);
  const offset = Number(params.get('offset') || 0);
  const list = await get(`/admin/dead-jobs?limit=50&offset=${offset}`);
  mount(main, h('h1', {}, t('Administration')), tabs(),
    h('div', { class: 'table-wrap' }, h('table', {},
      h('thead', {}, h('tr', {}, [t('Client'), t('Attempts'), t('Last error'), t('Died at'), ''].map((x) => h('th', { scope: 'col' }, x)))),
      h('tbody', {}, list.items.length ? list.items.map((j) => h('tr', {},
        h('td', {}, h('a', { href: `/requests/${j.request_id}` }, j.request_id.slice(0, 8))), h('td', { class: 'num' }, j.attempts),
        h('td', { class: 'wrap' }, j.last_error || ''), h('td', {}, fmtDate(j.died_at)),
        h('td', {}, h('button', { type: 'button', onclick: async () => {
          if (await attempt(() => post(`/admin/dead-jobs/${j.generation_id}/requeue`), t('Queued'))) render();
        } }, t('Requeue')))))
        : h('tr', {}, h('td', { colspan: 5, class: 'muted' }, t('Nothing here yet')))))),
    pager(list.total, offset, 50, (o) => { history.replaceState(null, '', `?offset=${o}`); render(); }));
}

export async function exporterPage(main) {
  const params = new URLSearchParams(location.search);
  const offset = Number(params.get('offset') || 0);
  let body;
  try {
    const [status, letters] = await Promise.all([get('/admin/argilla/status'), get(`/admin/argilla/dead-letters?limit=50&offset=${offset}`)]);
    const items = letters.items || [];
    const state = !status.configured ? t('The export to Argilla is off in this server (OFFERFLOW_ARGILLA_URL)')
      : status.events_behind > 0 ? `${t('Behind the log')}: ${status.events_behind} · ${Math.round(status.lag_seconds)} ${t('s')}`
        : t('Caught up with the log');
    const facts = status.configured ? h('dl', { class: 'kv' },
      h('dt', {}, 'Argilla'), h('dd', { class: 'mono' }, status.url),
      h('dt', {}, t('Workspace')), h('dd', {}, status.workspace),
      h('dt', {}, t('Datasets')), h('dd', { class: 'mono' }, `${status.dataset_prefix}…`),
      h('dt', {}, t('Events exported')), h('dd', {}, String(status.events_processed ?? 0)),
      h('dt', {}, t('Updated')), h('dd', {}, fmtDate(status.updated_at))) : null;
    body = [h('section', { class: 'card', 'data-test': 'export-status' },
      h('h2', {}, t('Exporter')), h('p', { role: 'status', 'data-test': 'export-state' }, state), facts),
    h('section', { class: 'card' },
      h('h2', {}, `${t('Dead letters')}: ${letters.total ?? items.length}`),
      h('div', { class: 'table-wrap' }, h('table', {},
        h('thead', {}, h('tr', {}, [t('Client'), 'dataset', 'HTTP', t('Last error'), t('Attempts'), t('When'), ''].map((x) => h('th', { scope: 'col' }, x)))),
        h('tbody', {}, items.length ? items.map((d) => h('tr', {},
          h('td', {}, d.request_id ? h('a', { href: `/requests/${d.request_id}` }, d.request_id.slice(0, 8)) : ''),
          h('td', {}, d.dataset || ''), h('td', { class: 'num' }, d.status_code ?? ''),
          h('td', { class: 'wrap' }, d.error || ''), h('td', { class: 'num' }, d.attempts ?? ''),
          h('td', {}, fmtDate(d.last_failed_at || d.first_failed_at)),
          h('td', {}, h('button', { type: 'button', onclick: async () => {
            if (await attempt(() => post(`/admin/argilla/dead-letters/${d.message_id}/requeue`), t('Queued'))) render();
          } }, t('Requeue')))))
          : h('tr', {}, h('td', { colspan: 7, class: 'muted' }, t('Nothing here yet')))))),
      pager(letters.total ?? items.length, offset, 50, (o) => { history.replaceState(null, '', `?offset=${o}`); render(); }))];
  } catch (err) {
    body = h('p', { class: 'card muted', role: 'status' }, missingRoute(err) ? t('Not available in this build') : err.message);
  }
  mount(main, h('h1', {}, t('Administration')), tabs(), body);
}
