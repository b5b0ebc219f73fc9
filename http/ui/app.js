// The shell: session, header, client-side routing by path (the server answers every page path
// with this same document).
import { h, mount, toast, field } from './dom.js';
import { api, auth, get, post, ApiError } from './api.js';
import { t, getLang, setLang } from './i18n.js';
import { projectsPage, projectPage, catalogPage, accountPage } from './pages.js';
import { channelPage } from './channel.js';
import { requestPage } from './request.js';
import { statsPage } from './stats.js';
import { usersPage, tokensPage, deadJobsPage, exporterPage } from './admin.js';

export const app = { me: null, cleanup: [] };

const routes = [
  [/^\/$/, projectsPage],
  [/^\/projects$/, projectsPage],
  [/^\/projects\/([0-9a-f-]{36})$/, projectPage],
  [/^\/projects\/([0-9a-f-]{36})\/channels\/([0-9a-f-]{36})$/, channelPage],
  [/^\/requests\/([0-9a-f-]{36})$/, requestPage],
  [/^\/statistics$/, statsPage],
  [/^\/catalog$/, catalogPage],
  [/^\/account$/, accountPage],
  [/^\/admin\/users$/, usersPage],
  [/^\/admin\/tokens$/, tokensPage],
  [/^\/admin\/dead-jobs$/, deadJobsPage],
  [/^\/admin\/exporter$/, exporterPage],
];

export function go(path, replace = false) {
  if (replace) history.replaceState(null, '', path);
  else history.pushState(null, '', path);
  render();
}

// Plain links stay links (open in a new tab works); a normal click routes in place.
document.addEventListener('click', (e) => {
  const a = e.target.closest('a[href]');
  if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || a.target || a.hasAttribute('download')) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || url.pathname.startsWith('/api')) return;
  e.preventDefault();
  go(url.pathname + url.search);
});
window.addEventListener('popstate', () => render());
// A page the browser keeps for its back button (the back/forward cache) is frozen, not closed:
// its live streams would stay open, and with six connections per host a few such pages starve
// the next page's requests. Stop them when the page is hidden; draw it again if it comes back.
window.addEventListener('pagehide', () => stopPage());
window.addEventListener('pageshow', (e) => { if (e.persisted) render(); });
window.addEventListener('offerflow:signed-out', () => { app.me = null; go('/login', true); });

function header() {
  const me = app.me;
  const link = (href, label) => h('a', { href, 'aria-current': location.pathname === href ? 'page' : null }, label);
  const langSwitch = h('button', {
    class: 'link lang', type: 'button', 'aria-label': t('Language'),
    onclick: () => { setLang(getLang() === 'ru' ? 'en' : 'ru'); render(); },
  }, getLang() === 'ru' ? 'EN' : 'RU');
  return [
    h('a', { class: 'brand', href: '/' }, h('img', { src: '/ui/favicon.svg', alt: '', width: 24, height: 24 }), 'Offerflow'),
    me ? h('nav', { 'aria-label': 'main' },
      link('/projects', t('Projects')),
      me.can_see_statistics ? link('/statistics', t('Statistics')) : null,
      link('/catalog', t('Catalog')),
      me.is_admin ? link('/admin/users', t('Administration')) : null,
    ) : h('span', { class: 'spacer' }),
    h('div', { class: 'user' },
      langSwitch,
      me ? link('/account', me.name || me.email) : null,
      me ? h('button', { type: 'button', class: 'link', onclick: signOut, 'data-test': 'sign-out' }, t('Sign out')) : null),
  ];
}

async function signOut() {
  try { if (auth.refreshToken) await post('/auth/logout', { refresh_token: auth.refreshToken }); } catch { /* already gone */ }
  auth.clear();
  app.me = null;
  go('/login');
}

function loginPage(main) {
  const email = h('input', { type: 'email', name: 'email', autocomplete: 'username', required: true });
  const password = h('input', { type: 'password', name: 'password', autocomplete: 'current-password', required: true });
  const error = h('p', { class: 'error', role: 'alert' });
  const form = h('form', {
    class: 'card narrow', onsubmit: async (e) => {
      e.preventDefault();
      error.textContent = '';
      try {
        const pair = await api('POST', '/auth/login', { email: email.value, password: password.value });
        auth.save(pair);
        app.me = await get('/me');
        const next = new URLSearchParams(location.search).get('next');
        go(next && next.startsWith('/') && !next.startsWith('//') ? next : '/projects', true);
      } catch (err) {
        error.textContent = err.status === 401 ? t('Wrong email or password') : err.message;
      }
    },
  }, h('h1', {}, t('Sign in')), field(t('Email'), email), field(t('Password'), password), error,
  h('button', { type: 'submit', class: 'primary' }, t('Sign in')));
  mount(main, form);
  email.focus();
}

// Ends what the page drawn last left running: timers and live streams.
function stopPage() {
  for (const f of app.cleanup.splice(0)) f();
}

export async function render() {
  stopPage();
  const main = document.getElementById('main');
  const path = location.pathname;
  if (!auth.signedIn && path !== '/login') {
    history.replaceState(null, '', `/login${path !== '/' ? `?next=${encodeURIComponent(path + location.search)}` : ''}`);
  }
  if (auth.signedIn && !app.me) {
    try { app.me = await get('/me'); } catch { auth.clear(); history.replaceState(null, '', '/login'); }
  }
  mount(document.getElementById('top'), header());
  document.querySelector('.skip').textContent = t('Skip to content');
  if (location.pathname === '/login') {
    if (auth.signedIn) return go('/projects', true);
    loginPage(main);
    performance.mark('offerflow:page');
    return undefined;
  }
  const found = routes.map(([re, page]) => [location.pathname.match(re), page]).find(([m]) => m);
  if (!found) return mount(main, h('h1', {}, '404'), h('a', { href: '/' }, t('Projects')));
  const [m, page] = found;
  mount(main, h('p', { class: 'loading' }, t('Loading…')));
  try {
    await page(main, ...m.slice(1));
    // For the benchmark (BENCHMARKS.md): when the page became usable, from navigation start.
    performance.mark('offerflow:page');
  } catch (err) {
    showError(main, err);
  }
}

export function showError(main, err) {
  console.error(err);
  const text = err instanceof ApiError && err.status === 403 ? t('You do not have the right to do this') : err.message;
  mount(main, h('div', { class: 'card' }, h('h1', {}, err.status ? `${err.status}` : 'Error'), h('p', { class: 'error', role: 'alert' }, text)));
}

// A uniform way for buttons to report: failures as a toast naming what the server said.
export async function attempt(fn, okText) {
  try {
    const r = await fn();
    if (okText) toast(okText, 'ok');
    return r;
  } catch (err) {
    const text = err instanceof ApiError && err.status === 403 ? `${t('You do not have the right to do this')}: ${err.message}` : err.message;
    toast(text, 'error');
    return undefined;
  }
}

render();
