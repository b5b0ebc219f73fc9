// A project channel's clients: the server-paged table, import, generation with live progress,
// inline outcomes and export.
import { h, mount, field, select, toast, download } from './dom.js';
import { get, post, put, raw, blob, stream, missingRoute, remember, ApiError } from './api.js';
import { t, count } from './i18n.js';
import { app, attempt } from './app.js';
import { pager } from './pages.js';

export const OUTCOMES = ['undefined', 'sold', 'interest', 'reflection', 'positive_reaction', 'negative_reaction'];
const STATUSES = ['initial', 'in_progress', 'ok', 'error'];
const SORTS = [['-created_at', t('Newest first')], ['created_at', t('Oldest first')], ['client_id', t('Client')], ['status', t('Status')],
  ['success_type', t('Outcome')], ['cluster', t('Cluster')], ['source', t('Source')]];

function gender(v) {
  if (v === undefined || v === null || v === '') return '';
  return String(v) === '1' ? 'Ж' : String(v) === '0' ? 'М' : String(v);
}

export async function channelPage(main, projectId, channelId) {
  const [project, channel] = await Promise.all([get(`/projects/${projectId}`), get(`/projects/${projectId}/channels/${channelId}`)]);
  const params = new URLSearchParams(location.search);
  const state = {
    status: params.get('status') || '', success_type: params.get('success_type') || '', cluster: params.get('cluster') || '',
    q: params.get('q') || '', sort: params.get('sort') || '-created_at', limit: Number(params.get('limit') || 50),
    offset: Number(params.get('offset') || 0), selected: new Set(), items: [], total: 0,
  };
  const base = `/projects/${projectId}/channels/${channelId}`;

  const tableBox = h('div', { class: 'table-wrap', 'aria-live': 'polite', 'aria-busy': 'false' });
  const pagerBox = h('div');
  const selection = h('span', { class: 'muted', 'data-test': 'selection' });
  const progressBox = h('div', { class: 'progress-box', 'data-test': 'progress' });
  // Open at first; once the channel has clients the table comes first and the import folds.
  const importBox = h('details', { class: 'card import', open: channel.requests === 0 });

  function syncUrl() {
    const p = new URLSearchParams();
    for (const k of ['status', 'success_type', 'cluster', 'q']) if (state[k]) p.set(k, state[k]);
    if (state.sort !== '-created_at') p.set('sort', state.sort);
    if (state.limit !== 50) p.set('limit', state.limit);
    if (state.offset) p.set('offset', state.offset);
    history.replaceState(null, '', `${location.pathname}${p.size ? `?${p}` : ''}`);
  }

  let loading = null;
  async function load() {
    const q = new URLSearchParams({ limit: state.limit, offset: state.offset, sort: state.sort });
    for (const k of ['status', 'success_type', 'cluster', 'q']) if (state[k]) q.set(k, state[k]);
    tableBox.setAttribute('aria-busy', 'true');
    const mine = (loading = get(`${base}/requests?${q}`));
    const list = await mine;
    if (mine !== loading) return; // a newer load superseded this one
    state.items = list.items;
    state.total = list.total;
    tableBox.setAttribute('aria-busy', 'false');
    drawTable();
    syncUrl();
    performance.mark('offerflow:table');
  }

  function drawSelection() {
    selection.textContent = state.selected.size ? `${state.selected.size} ${t('selected')}` : '';
    genSelected.disabled = !state.selected.size;
  }

  function drawTable() {
    const allOnPage = state.items.length > 0 && state.items.every((r) => state.selected.has(r.id));
    const head = h('tr', {},
      h('th', { scope: 'col' }, h('input', { type: 'checkbox', 'aria-label': t('Select all on page'), checked: allOnPage, onchange: (e) => {
        for (const r of state.items) e.target.checked ? state.selected.add(r.id) : state.selected.delete(r.id);
        drawTable();
      } })),
      [['client_id', t('Client')], [null, t('Age')], [null, t('Gender')], ['cluster', t('Cluster')], ['source', t('Source')],
        ['status', t('Status')], [null, t('Latest offer')], [null, t('Rating')], ['success_type', t('Outcome')]].map(([key, label]) => {
        if (!key) return h('th', { scope: 'col' }, label);
        const dir = state.sort === key ? 'ascending' : state.sort === `-${key}` ? 'descending' : null;
        return h('th', { scope: 'col', 'aria-sort': dir || 'none' }, h('button', { type: 'button', class: 'sort', onclick: () => {
          state.sort = state.sort === key ? `-${key}` : key;
          state.offset = 0;
          load();
        } }, label, dir === 'ascending' ? ' ▲' : dir === 'descending' ? ' ▼' : ''));
      }));
    const rows = state.items.map((r) => {
      const offer = r.latest_offer;
      return h('tr', { 'data-request': r.id, 'data-status': r.status },
        h('td', {}, h('input', { type: 'checkbox', 'aria-label': `${t('Select row')} ${r.client_id || r.id}`, checked: state.selected.has(r.id), onchange: (e) => {
          e.target.checked ? state.selected.add(r.id) : state.selected.delete(r.id);
          drawSelection();
        } })),
        h('td', {}, h('a', { href: `/requests/${r.id}` }, r.client_id || r.id.slice(0, 8))),
        h('td', { class: 'num' }, r.client_data.age ?? ''),
        h('td', {}, gender(r.client_data.gender)),
        h('td', {}, r.cluster || ''),
        h('td', {}, r.source),
        h('td', {}, h('span', { class: `status ${r.status}`, title: r.status_reason || null }, t(r.status))),
        h('td', { class: 'offer' }, offer ? h('span', { class: 'offer-text', title: offer.text }, offer.text) : h('span', { class: 'muted' }, '—')),
        h('td', {}, offer && offer.status !== 'undefined' ? t(offer.status) : ''),
        h('td', {}, select('success_type', OUTCOMES.map((o) => [o, t(o)]), r.success_type, {
          'aria-label': `${t('Outcome')} ${r.client_id || ''}`, class: 'outcome',
          onchange: async (e) => {
            if (await attempt(() => put(`/requests/${r.id}/outcome`, { success_type: e.target.value }), t('Saved'))) r.success_type = e.target.value;
            else e.target.value = r.success_type;
          },
        })));
    });
    mount(tableBox, h('table', { class: 'requests' }, h('caption', { class: 'sr-only' }, t('Clients')), h('thead', {}, head),
      h('tbody', {}, rows.length ? rows : h('tr', {}, h('td', { colspan: 10, class: 'muted' }, t('Nothing here yet'))))));
    mount(pagerBox, pager(state.total, state.offset, state.limit, (o) => { state.offset = o; load(); }));
    drawSelection();
  }

  // Filters
  const status = select('status', [['', t('Any')], ...STATUSES.map((s) => [s, t(s)])], state.status);
  const outcome = select('success_type', [['', t('Any')], ...OUTCOMES.map((s) => [s, t(s)])], state.success_type);
  const cluster = h('input', { name: 'cluster', value: state.cluster });
  const q = h('input', { type: 'search', name: 'q', value: state.q });
  const sort = select('sort', SORTS, state.sort);
  const limit = select('limit', [[25, '25'], [50, '50'], [100, '100'], [200, '200']], state.limit);
  const filters = h('form', { class: 'filters', role: 'search', onsubmit: (e) => {
    e.preventDefault();
    Object.assign(state, { status: status.value, success_type: outcome.value, cluster: cluster.value, q: q.value, sort: sort.value, limit: Number(limit.value), offset: 0 });
    load();
  } }, field(t('Search'), q), field(t('Status'), status), field(t('Outcome'), outcome), field(t('Cluster'), cluster),
  field(t('Sort'), sort), field(t('Rows per page'), limit), h('button', { type: 'submit' }, t('Apply')));
  for (const s of [status, outcome, sort, limit]) s.addEventListener('change', () => filters.requestSubmit());

  // Generation
  const genSelected = h('button', { type: 'button', class: 'primary', 'data-test': 'generate-selected', onclick: async () => {
    const r = await attempt(() => post(`${base}/generations`, { request_ids: [...state.selected] }));
    if (r) { toast(`${t('Generation queued')}: ${r.queued}`, 'ok'); state.selected.clear(); load(); }
  } }, t('Generate for selected'));
  const genAll = h('button', { type: 'button', 'data-test': 'generate-all', onclick: async () => {
    const r = await attempt(() => post(`${base}/generations`, { all_pending: true }));
    if (r) { toast(`${t('Generation queued')}: ${r.queued}`, 'ok'); load(); }
  } }, t('Generate all not generated'));

  function drawProgress(p) {
    const finished = p.done + p.failed;
    const pct = p.total ? Math.round((finished / p.total) * 100) : 0;
    mount(progressBox,
      h('div', { class: 'row' }, h('strong', {}, t('Generation progress')),
        h('span', {}, `${t('queued')} ${p.queued} · ${t('running')} ${p.running} · ${t('done')} ${p.done} · ${t('failed')} ${p.failed}`)),
      h('progress', { max: 100, value: pct, 'aria-label': t('Generation progress') }, `${pct}%`));
  }

  // The live view: each change of the counts reloads the visible page, so offers appear as the
  // worker finishes them.
  const abort = new AbortController();
  app.cleanup.push(() => { abort.abort(); clearTimeout(reloadTimer); clearTimeout(settleTimer); });
  let reloadTimer = null;
  let settleTimer = null;
  let last = null;
  (async () => {
    while (!abort.signal.aborted) {
      try {
        await stream(`${base}/generation-progress/stream`, (event, p) => {
          if (event !== 'progress') return;
          drawProgress(p);
          if (last && (p.done !== last.done || p.failed !== last.failed || p.running !== last.running)) {
            // Counts come from the job queue, offers from a read model a moment behind it:
            // look now, and once more after the last change.
            clearTimeout(reloadTimer);
            clearTimeout(settleTimer);
            reloadTimer = setTimeout(() => load().catch(() => {}), 200);
            settleTimer = setTimeout(() => load().catch(() => {}), 1500);
          }
          last = p;
        }, abort.signal);
      } catch { /* the stream dropped: try again shortly */ }
      if (!abort.signal.aborted) await new Promise((r) => setTimeout(r, 2000));
    }
  })();

  // Export: the server's file of every matching row (the filters and sort apply).
  const exportFile = (format) => h('button', { type: 'button', 'data-test': `export-${format}`, onclick: async () => {
    const qs = new URLSearchParams({ format, sort: state.sort });
    for (const k of ['status', 'success_type', 'cluster', 'q']) if (state[k]) qs.set(k, state[k]);
    const file = await attempt(() => blob(`${base}/requests?${qs}`));
    if (file) download(`${project.name}-${channel.key}.${format}`, file);
  } }, format === 'csv' ? t('Export CSV') : t('Export XLSX'));
  const exportButton = [exportFile('csv'), exportFile('xlsx')];

  mount(main,
    h('p', { class: 'crumbs' }, h('a', { href: '/projects' }, t('Projects')), ' / ', h('a', { href: `/projects/${projectId}` }, project.name), ' /'),
    h('div', { class: 'head' }, h('h1', {}, channel.name), h('span', { class: 'muted' }, `${t('Prompt')} · ${t('version')} ${channel.prompt_version}`)),
    importBox, progressBox,
    h('section', { class: 'card' }, filters,
      h('div', { class: 'row toolbar' }, genSelected, genAll, exportButton, selection),
      tableBox, pagerBox));
  importPanel(importBox, base, () => { state.offset = 0; load(); });
  await load();
}

// CSV for the preview only: the server parses the file for real.
export function parseCsv(text, maxRows = 6) {
  const sep = (text.split('\n', 1)[0].match(/;/g) || []).length > (text.split('\n', 1)[0].match(/,/g) || []).length ? ';' : ',';
  const rows = [];
  let row = [], cell = '', quoted = false;
  for (let i = 0; i < text.length && rows.length < maxRows; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') { cell += '"'; i++; } else if (c === '"') quoted = false; else cell += c;
    } else if (c === '"') quoted = true;
    else if (c === sep) { row.push(cell); cell = ''; }
    else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i++;
      row.push(cell); cell = ''; rows.push(row); row = [];
    } else cell += c;
  }
  if ((cell || row.length) && rows.length < maxRows) { row.push(cell); rows.push(row); }
  return rows.map((r, i) => (i === 0 ? r.map((x) => x.replace(/^\ufeff/, '').trim()) : r));
}

let bankColumns = null;
async function knownColumns() {
  if (!bankColumns) {
    try {
      const list = await get('/imports/columns');
      bankColumns = Object.fromEntries(list.items.map((c) => [c.key, c.description]));
    } catch {
      bankColumns = {};
    }
  }
  return bankColumns;
}

function importPanel(box, base, onDone) {
  let file = null;
  let decoding = null;
  const input = h('input', { type: 'file', name: 'file', accept: '.csv,.xlsx,text/csv,application/vnd.openxmlformats-officedocument.spreadsheetml.sheet', class: 'sr-only', 'data-test': 'import-file' });
  const decodingInput = h('input', { type: 'file', name: 'decoding', accept: '.json,application/json' });
  const generate = h('input', { type: 'checkbox', name: 'generate' });
  const preview = h('div', { class: 'preview' });
  const report = h('div', { class: 'report', 'aria-live': 'polite', 'data-test': 'import-report' });
  const start = h('button', { type: 'button', class: 'primary', disabled: true, 'data-test': 'start-import', onclick: () => run() }, t('Start import'));
  const drop = h('label', { class: 'dropzone', tabindex: 0 }, input, h('span', {}, t('Drop a CSV or XLSX file here or choose one')),
    h('span', { class: 'button' }, t('Choose file')));
  drop.addEventListener('keydown', (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); input.click(); } });
  drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => { e.preventDefault(); drop.classList.remove('over'); if (e.dataTransfer.files[0]) choose(e.dataTransfer.files[0]); });
  input.addEventListener('change', () => input.files[0] && choose(input.files[0]));
  decodingInput.addEventListener('change', async () => {
    try { decoding = JSON.parse(await decodingInput.files[0].text()); } catch { decoding = null; toast('decoding: JSON', 'error'); }
    if (file) choose(file);
  });

  async function choose(f) {
    file = f;
    start.disabled = false;
    mount(report);
    const title = h('p', {}, h('strong', {}, f.name), ` · ${Math.ceil(f.size / 1024)} KB`);
    if (!/\.csv$/i.test(f.name)) {
      mount(preview, title, h('p', { class: 'muted' }, t('The file is read on the server')));
      return;
    }
    const rows = parseCsv(await f.slice(0, 256 * 1024).text());
    const [headers = [], ...body] = rows;
    // The server knows the bank's columns; a decoding file adds to or overrides them.
    const known = { ...(await knownColumns()), ...(decoding || {}) };
    const described = headers.filter((c) => known[c]);
    const missing = headers.filter((c) => !known[c]);
    mount(preview, title,
      h('h3', {}, t('Preview')),
      h('div', { class: 'table-wrap' }, h('table', { class: 'small' }, h('caption', { class: 'sr-only' }, t('Preview')),
        h('thead', {}, h('tr', {}, headers.map((c) => h('th', { scope: 'col', title: decoding?.[c] || '' }, c)))),
        h('tbody', {}, body.map((r) => h('tr', {}, r.map((c) => h('td', {}, c))))))),
      h('p', { 'data-test': 'described' }, h('strong', {}, `${t('Columns with descriptions')}: `), described.length ? described.map((c) => `${c} — ${known[c]}`).join('; ') : '—'),
      h('p', { 'data-test': 'undescribed', class: missing.length ? 'error' : '' }, h('strong', {}, `${t('Columns without descriptions')}: `),
        missing.length ? `${missing.join(', ')} (${t('the import refuses a file with undescribed columns')})` : '—'));
  }

  async function run() {
    if (!file) return;
    const form = new FormData();
    form.append('file', file, file.name);
    if (decoding) form.append('decoding', JSON.stringify(decoding));
    form.append('generate', generate.checked ? 'true' : 'false');
    start.disabled = true;
    mount(report, h('p', {}, t('Import is running'), '…'), h('progress', { 'aria-label': t('Import is running') }));
    try {
      const r = await raw('POST', `${base}/imports`, form);
      const body = await r.json().catch(() => null);
      if (!r.ok) throw new ApiError(r.status, body);
      remember(body);
      let status;
      for (;;) {
        status = await get(`/imports/${body.id}`);
        if (!['queued', 'pending', 'running', 'in_progress', 'accepted'].includes(status.status)) break;
        mount(report, h('p', {}, `${t('Import is running')}: ${count(status.rows ?? 0, 'rows')}`), h('progress', { 'aria-label': t('Import is running') }));
        await new Promise((res) => setTimeout(res, 500));
      }
      remember(status);
      // The preview has served its purpose; the report and the table matter now.
      mount(preview);
      showReport(status);
      onDone();
    } catch (err) {
      mount(report, h('p', { class: 'error', role: 'alert' }, missingRoute(err) ? t('Not available in this build') : `${t('Import failed')}: ${err.message}`));
    } finally {
      start.disabled = false;
    }
  }

  function showReport(s) {
    mount(report, h('h3', {}, t('Import report')),
      h('p', { 'data-test': 'import-summary' }, `${count(s.rows ?? 0, 'rows')} · ${s.created ?? 0} ${t('created')} · ${s.duplicates ?? 0} ${t('duplicates')} · ${(s.rejected || []).length} ${t('rejected')}`),
      s.error ? h('p', { class: 'error', role: 'alert' }, s.error) : null,
      (s.rejected || []).length ? h('div', { class: 'table-wrap' }, h('table', { class: 'small' },
        h('thead', {}, h('tr', {}, h('th', {}, t('Row')), h('th', {}, t('Reason')))),
        h('tbody', {}, s.rejected.slice(0, 200).map((x) => h('tr', {}, h('td', {}, x.row), h('td', {}, x.reason)))))) : null);
  }

  mount(box, h('summary', {}, h('h2', {}, t('Import clients'))), drop,
    h('div', { class: 'row' }, field('client_data_decoding (JSON)', decodingInput),
      h('label', { class: 'check' }, generate, t('Generate after import')), start),
    preview, report);
}
