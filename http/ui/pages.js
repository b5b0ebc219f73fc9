// Projects, a project's page, the catalog and the caller's account.
import { h, mount, field, select, fmtDate, modal, toast } from './dom.js';
import { get, post, patch, put, del } from './api.js';
import { t, count, ratingName } from './i18n.js';
import { app, attempt, go, render } from './app.js';

export function pager(total, offset, limit, onPage) {
  const last = Math.max(0, Math.ceil(total / limit) - 1);
  const page = Math.floor(offset / limit);
  return h('nav', { class: 'pager', 'aria-label': t('Page') },
    h('button', { type: 'button', disabled: page <= 0, onclick: () => onPage((page - 1) * limit) }, `← ${t('Previous')}`),
    h('span', {}, `${total ? offset + 1 : 0}–${Math.min(total, offset + limit)} ${t('of')} ${total}`),
    h('button', { type: 'button', disabled: page >= last, onclick: () => onPage((page + 1) * limit) }, `${t('Next')} →`));
}

async function products() {
  return (await get('/products?limit=500')).items;
}

export async function projectsPage(main) {
  const params = new URLSearchParams(location.search);
  const q = params.get('q') || '';
  const productId = params.get('product_id') || '';
  const archived = params.get('include_archived') === 'true';
  const offset = Number(params.get('offset') || 0);
  const limit = 20;
  const query = new URLSearchParams({ limit, offset });
  if (q) query.set('q', q);
  if (productId) query.set('product_id', productId);
  if (archived) query.set('include_archived', 'true');
  const [list, catalog] = await Promise.all([get(`/projects?${query}`), products()]);
  const search = h('input', { type: 'search', name: 'q', value: q });
  const product = select('product_id', [['', t('All products')], ...catalog.map((p) => [p.id, p.name])], productId);
  const showArchived = h('input', { type: 'checkbox', name: 'include_archived', checked: archived });
  const apply = (extra = {}) => {
    const p = new URLSearchParams();
    if (search.value) p.set('q', search.value);
    if (product.value) p.set('product_id', product.value);
    if (showArchived.checked) p.set('include_archived', 'true');
    for (const [k, v] of Object.entries(extra)) p.set(k, v);
    go(`/projects?${p}`, true);
  };
  const filters = h('form', { class: 'filters', role: 'search', onsubmit: (e) => { e.preventDefault(); apply(); } },
    field(t('Search'), search), field(t('Product'), product),
    h('label', { class: 'check' }, showArchived, t('Show archived')),
    h('button', { type: 'submit' }, t('Apply')));
  product.addEventListener('change', () => apply());
  showArchived.addEventListener('change', () => apply());
  const cards = list.items.map((p) => h('article', { class: 'card project' + (p.archived ? ' archived' : '') },
    h('h2', {}, h('a', { href: `/projects/${p.id}` }, p.name)),
    h('p', { class: 'muted' }, p.product.name, p.archived ? ` · ${t('Archived')}` : '', ` · ${t(p.my_role) || ''}`),
    h('p', { class: 'stats' }, `${count(p.channels, 'channels')} · ${count(p.members, 'members')} · ${count(p.requests, 'requests')}`)));
  mount(main,
    h('div', { class: 'head' }, h('h1', {}, t('Projects')),
      h('button', { type: 'button', class: 'primary', onclick: () => projectForm(catalog) }, `+ ${t('New project')}`)),
    filters,
    cards.length ? h('div', { class: 'grid' }, cards) : h('p', { class: 'muted' }, t('Nothing here yet')),
    list.total > limit ? pager(list.total, offset, limit, (o) => apply({ offset: o })) : null);
}

function projectForm(catalog, project) {
  const name = h('input', { name: 'name', required: true, maxlength: 200, value: project?.name || '' });
  const product = select('product_id', catalog.map((p) => [p.id, p.name]), project?.product.id, { required: true, disabled: !!project });
  const description = h('textarea', { name: 'description', rows: 6 }, project?.description || '');
  const error = h('p', { class: 'error', role: 'alert' });
  const form = h('form', { id: 'project-form', method: 'dialog' }, field(t('Name'), name), field(t('Product'), product),
    field(t('Description (Markdown)'), description), error);
  const save = h('button', { type: 'submit', form: 'project-form', class: 'primary' }, project ? t('Save') : t('Create'));
  const d = modal(project ? t('Edit') : t('New project'), form,
    [h('button', { type: 'button', onclick: () => d.close() }, t('Cancel')), save]);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      if (project) {
        await patch(`/projects/${project.id}`, { name: name.value, description: description.value });
        d.close();
        render();
      } else {
        const r = await post('/projects', { name: name.value, product_id: product.value, description: description.value });
        d.close();
        go(`/projects/${r.id}`);
      }
    } catch (err) {
      error.textContent = err.message;
    }
  });
  name.focus();
}

// A small Markdown subset (paragraphs, headings, lists, **bold**, *italic*, `code`, links)
// built as DOM nodes: user text is never parsed as HTML.
function inline(text) {
  const out = [];
  const re = /\*\*([^*]+)\*\*|\*([^*]+)\*|`([^`]+)`|\[([^\]]+)\]\((https?:\/\/[^)\s]+)\)/g;
  let last = 0;
  for (const m of text.matchAll(re)) {
    out.push(text.slice(last, m.index));
    if (m[1]) out.push(h('strong', {}, m[1]));
    else if (m[2]) out.push(h('em', {}, m[2]));
    else if (m[3]) out.push(h('code', {}, m[3]));
    else out.push(h('a', { href: m[5], rel: 'noopener noreferrer', target: '_blank' }, m[4]));
    last = m.index + m[0].length;
  }
  out.push(text.slice(last));
  return out;
}

export function markdown(text) {
  const blocks = (text || '').split(/\n{2,}/).filter((b) => b.trim());
  return h('div', { class: 'md' }, blocks.map((b) => {
    const lines = b.split('\n');
    if (lines.every((l) => /^\s*[-*]\s+/.test(l))) return h('ul', {}, lines.map((l) => h('li', {}, inline(l.replace(/^\s*[-*]\s+/, '')))));
    const heading = b.match(/^(#{1,6})\s+(.*)$/s);
    if (heading) return h('h3', {}, inline(heading[2]));
    return h('p', {}, inline(b));
  }));
}

export async function projectPage(main, id) {
  const [project, channels, members, catalog] = await Promise.all([
    get(`/projects/${id}`), get(`/projects/${id}/channels`), get(`/projects/${id}/members?limit=500`).catch(() => ({ items: [] })),
    get('/channels?limit=500'),
  ]);
  const manager = project.my_role === 'manager' || app.me.is_admin;
  const attachedIds = new Set(channels.items.map((c) => c.channel_id));
  const free = catalog.items.filter((c) => !c.archived && !attachedIds.has(c.id));
  const attachBox = h('fieldset', { class: 'attach' }, h('legend', {}, t('Attach channels')),
    free.map((c) => h('label', { class: 'check' }, h('input', { type: 'checkbox', name: 'channel', value: c.id, 'data-key': c.key }), c.name)));
  const attach = manager && free.length ? h('form', {
    class: 'card', 'data-test': 'attach-channels', onsubmit: async (e) => {
      e.preventDefault();
      const ids = [...attachBox.querySelectorAll('input:checked')].map((i) => i.value);
      if (!ids.length) return;
      if (await attempt(() => post(`/projects/${id}/channels`, { channel_ids: ids }), t('Saved'))) render();
    },
  }, attachBox, h('button', { type: 'submit' }, t('Attach'))) : null;

  const channelCards = channels.items.map((c) => h('article', { class: 'card channel', 'data-channel': c.key },
    h('div', { class: 'head' }, h('h3', {}, h('a', { href: `/projects/${id}/channels/${c.channel_id}` }, c.name)),
      h('span', { class: 'muted' }, count(c.requests, 'requests'))),
    h('p', { class: 'muted' }, `${t('Prompt')} · ${t('version')} ${c.prompt_version}${c.max_chars ? ` · ${t('Max length')} ${c.max_chars}` : ''}`),
    h('pre', { class: 'prompt' }, c.prompt),
    h('div', { class: 'row' },
      h('a', { class: 'button primary', href: `/projects/${id}/channels/${c.channel_id}` }, t('Clients')),
      manager ? h('button', { type: 'button', 'data-test': 'edit-prompt', onclick: () => promptEditor(id, c) }, t('Edit prompt')) : null,
      h('button', { type: 'button', 'data-test': 'prompt-versions', onclick: () => promptVersions(id, c) }, t('Earlier versions')))));

  const memberRows = members.items.map((m) => h('tr', {},
    h('td', {}, m.name || ''), h('td', {}, m.email || ''),
    h('td', {}, manager ? select('role', [['manager', t('manager')], ['performer', t('performer')]], m.role, {
      'aria-label': `${t('Role')} ${m.email}`,
      onchange: async (e) => { if (await attempt(() => patch(`/projects/${id}/members/${m.user_id}`, { role: e.target.value }), t('Saved'))) render(); },
    }) : t(m.role)),
    h('td', {}, manager ? h('button', { type: 'button', class: 'danger', onclick: async () => {
      if (await attempt(() => del(`/projects/${id}/members/${m.user_id}`), t('Saved'))) render();
    } }, t('Remove')) : null)));
  const newEmail = h('input', { type: 'email', name: 'email', required: true });
  const newRole = select('role', [['performer', t('performer')], ['manager', t('manager')]], 'performer');
  const addMember = manager ? h('form', { class: 'row', onsubmit: async (e) => {
    e.preventDefault();
    if (await attempt(() => post(`/projects/${id}/members`, { email: newEmail.value, role: newRole.value }), t('Saved'))) render();
  } }, field(t('Email'), newEmail), field(t('Role'), newRole), h('button', { type: 'submit' }, t('Add member'))) : null;

  mount(main,
    h('p', { class: 'crumbs' }, h('a', { href: '/projects' }, t('Projects')), ' / '),
    h('div', { class: 'head' }, h('h1', {}, project.name, project.archived ? h('span', { class: 'badge' }, t('Archived')) : null),
      h('div', { class: 'row' },
        manager ? h('button', { type: 'button', onclick: async () => projectForm(await products(), project) }, t('Edit')) : null,
        manager && !project.archived ? h('button', { type: 'button', class: 'danger', onclick: async () => {
          if (confirm(`${t('Archive')}: ${project.name}?`) && await attempt(() => del(`/projects/${id}`), t('Saved'))) go('/projects');
        } }, t('Archive')) : null,
        app.me.can_see_statistics ? h('a', { class: 'button', href: `/statistics?project_id=${id}` }, t('Statistics')) : null)),
    markdown(project.description),
    h('section', { class: 'card product' }, h('h2', {}, t('Product'), ': ', project.product.name),
      markdown(project.product.description),
      project.product.link ? h('a', { href: project.product.link, rel: 'noopener noreferrer', target: '_blank' }, project.product.link) : null),
    h('section', {}, h('h2', {}, t('Channels')), h('div', { class: 'grid' }, channelCards), attach),
    h('section', {}, h('h2', {}, t('Members')),
      h('div', { class: 'table-wrap' }, h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, t('Name')), h('th', {}, t('Email')), h('th', {}, t('Role')), h('th', {}, ''))),
        h('tbody', {}, memberRows))), addMember));
}

function promptEditor(projectId, channel) {
  const text = h('textarea', { name: 'prompt', rows: 12 }, channel.prompt);
  const max = h('input', { type: 'number', name: 'max_chars', min: 1, value: channel.max_chars ?? '' });
  const d = modal(`${t('Edit prompt')}: ${channel.name}`, h('div', {}, field(t('Prompt'), text), field(t('Max length'), max)), [
    h('button', { type: 'button', onclick: () => d.close() }, t('Cancel')),
    h('button', { type: 'button', class: 'primary', onclick: async () => {
      const base = `/projects/${projectId}/channels/${channel.channel_id}`;
      let ok = true;
      if (text.value !== channel.prompt) ok = !!(await attempt(() => patch(base, { prompt: text.value })));
      const newMax = max.value === '' ? null : Number(max.value);
      if (ok && newMax !== (channel.max_chars ?? null)) ok = !!(await attempt(() => put(`${base}/max-length`, { max_chars: newMax })));
      if (ok) { toast(t('Saved'), 'ok'); d.close(); render(); }
    } }, t('Save'))]);
}

async function promptVersions(projectId, channel) {
  const base = `/projects/${projectId}/channels/${channel.channel_id}/prompts`;
  const list = await attempt(() => get(`${base}?limit=100`));
  if (!list) return;
  // The texts a version produced, fetched when asked for: what the marketer compares.
  const offersOf = (v) => {
    const box = h('div', { class: 'version-offers', 'data-version': v.version });
    const show = h('button', { type: 'button', 'data-test': `version-offers-${v.version}`, disabled: v.offers === 0, onclick: async () => {
      const found = await attempt(() => get(`${base}/${v.version}/offers?limit=20`));
      if (!found) return;
      show.remove();
      mount(box, h('ul', { class: 'offers' }, found.items.map((o) => h('li', {},
        h('a', { href: `/requests/${o.request_id}` }, o.client_id || t('Client')),
        o.rating !== 'undefined' ? ` · ${t('Rating')}: ${ratingName(o.rating)}` : '', ` · ${fmtDate(o.created_at)}`,
        h('p', {}, o.text)))),
      found.total > found.items.length ? h('p', { class: 'muted' }, `${found.items.length} ${t('of')} ${found.total}`) : null);
    } }, t('Show texts'));
    box.append(show);
    return box;
  };
  const d = modal(`${t('Earlier versions')}: ${channel.name}`, h('ol', { class: 'versions', reversed: true }, list.items.map((v) => h('li', {},
    h('p', { class: 'muted' }, `${t('version')} ${v.version} · ${fmtDate(v.created_at)} · ${v.author || v.created_by || ''} · ${count(v.offers ?? 0, 'texts')}`),
    h('pre', { class: 'prompt' }, v.prompt),
    offersOf(v)))),
  [h('button', { type: 'button', onclick: () => d.close() }, t('Back'))]);
}

export async function catalogPage(main) {
  const [prods, chans] = await Promise.all([get('/products?limit=500'), get('/channels?limit=500')]);
  const admin = app.me.is_admin;
  // Descriptions run to paragraphs: the first lines, the rest on request, so rows stay scannable.
  const description = (text) => {
    if ((text || '').length <= 180) return text;
    const preview = `${text.slice(0, 160).trimEnd()}…`;
    const summary = h('summary', {}, preview);
    return h('details', { ontoggle: (e) => { summary.textContent = e.target.open ? t('Collapse') : preview; } }, summary, h('p', {}, text));
  };
  const table = (kind, items) => h('div', { class: 'table-wrap' }, h('table', { class: 'catalog' },
    h('thead', {}, h('tr', {}, h('th', {}, t('Key')), h('th', {}, t('Name')), h('th', {}, t('Description')), kind === 'products' ? h('th', {}, t('Link')) : null, admin ? h('th', {}, '') : null)),
    h('tbody', {}, items.map((i) => h('tr', { class: i.archived ? 'archived' : '', 'data-key': i.key },
      h('td', {}, i.key), h('td', {}, i.name), h('td', { class: 'desc' }, description(i.description)),
      kind === 'products' ? h('td', { class: 'link' }, i.link ? h('a', { href: i.link, rel: 'noopener noreferrer', target: '_blank' }, i.link.replace(/^https?:\/\/(www\.)?/, '')) : '') : null,
      admin ? h('td', {}, h('button', { type: 'button', onclick: () => catalogForm(kind, i) }, t('Edit'))) : null)))));
  mount(main, h('h1', {}, t('Catalog')),
    h('section', {}, h('div', { class: 'head' }, h('h2', {}, t('Products')), admin ? h('button', { type: 'button', onclick: () => catalogForm('products') }, `+ ${t('Add')}`) : null), table('products', prods.items)),
    h('section', {}, h('div', { class: 'head' }, h('h2', {}, t('Channels')), admin ? h('button', { type: 'button', onclick: () => catalogForm('channels') }, `+ ${t('Add')}`) : null), table('channels', chans.items)));
}

function catalogForm(kind, item) {
  const key = h('input', { name: 'key', required: true, value: item?.key || '', disabled: !!item });
  const name = h('input', { name: 'name', required: true, value: item?.name || '' });
  const description = h('textarea', { name: 'description', rows: 4 }, item?.description || '');
  const link = h('input', { type: 'url', name: 'link', value: item?.link || '' });
  const error = h('p', { class: 'error', role: 'alert' });
  const d = modal(item ? t('Edit') : t('Add'), h('div', {}, field(t('Key'), key), field(t('Name'), name), field(t('Description'), description),
    kind === 'products' ? field(t('Link'), link) : null, error), [
    h('button', { type: 'button', onclick: () => d.close() }, t('Cancel')),
    item ? h('button', { type: 'button', class: 'danger', onclick: async () => { if (await attempt(() => del(`/${kind}/${item.id}`), t('Saved'))) { d.close(); render(); } } }, t('Archive')) : null,
    h('button', { type: 'button', class: 'primary', onclick: async () => {
      const body = { name: name.value, description: description.value };
      if (kind === 'products') body.link = link.value || null;
      try {
        if (item) await patch(`/${kind}/${item.id}`, body);
        else await post(`/${kind}`, { key: key.value, ...body });
        d.close();
        render();
      } catch (err) {
        // The server names the fields it refused: point at them by their labels.
        const inputs = { key, name, description, link };
        const labels = { key: t('Key'), name: t('Name'), description: t('Description'), link: t('Link') };
        for (const [f, el] of Object.entries(inputs)) {
          if (err.fields && err.fields.includes(f)) el.setAttribute('aria-invalid', 'true'); else el.removeAttribute('aria-invalid');
        }
        const named = (err.fields || []).filter((f) => labels[f]).map((f) => `«${labels[f]}»`);
        error.textContent = named.length ? `${t('Check the field')} ${named.join(', ')}: ${err.message}` : err.message;
      }
    } }, t('Save'))]);
}

export async function accountPage(main) {
  const me = app.me;
  const current = h('input', { type: 'password', name: 'current_password', autocomplete: 'current-password', required: true });
  const next = h('input', { type: 'password', name: 'new_password', autocomplete: 'new-password', required: true, minlength: 8 });
  const error = h('p', { class: 'error', role: 'alert' });
  mount(main, h('h1', {}, t('Account')),
    h('section', { class: 'card' }, h('p', {}, `${t('Signed in as')} ${me.name} <${me.email}>`),
      me.position ? h('p', { class: 'muted' }, `${me.position} ${me.subdivision || ''}`) : null,
      h('ul', {}, me.projects.map((p) => h('li', {}, h('a', { href: `/projects/${p.project_id || p.id}` }, p.name || p.project_id || p.id), ` · ${t(p.role)}`)))),
    h('form', { class: 'card narrow', onsubmit: async (e) => {
      e.preventDefault();
      error.textContent = '';
      try {
        await post('/me/password', { current_password: current.value, new_password: next.value });
        toast(t('Password changed'), 'ok');
        current.value = next.value = '';
      } catch (err) { error.textContent = err.message; }
    } }, h('h2', {}, t('Change password')), field(t('Current password'), current), field(t('New password'), next), error,
    h('button', { type: 'submit', class: 'primary' }, t('Change password'))),
    h('p', {}, h('a', { href: '/admin/tokens' }, t('API tokens'))));
}
