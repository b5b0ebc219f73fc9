// The UI's only way to the server: /api/v1 with the caller's bearer token. Every command's
// consistency token is remembered and sent with later reads, so a user always sees what they
// just did even while the read models catch up.
const KEY = 'offerflow.session';
let session = JSON.parse(localStorage.getItem(KEY) || 'null');
// Kept for the tab's life, so a reload still shows the user's last write.
let consistency = sessionStorage.getItem('offerflow.consistency');
let refreshing = null;

export class ApiError extends Error {
  constructor(status, body) {
    const e = body && body.error ? body.error : {};
    super(e.message || `HTTP ${status}`);
    this.status = status;
    this.code = e.code || String(status);
    this.fields = e.fields || [];
  }
}

export const auth = {
  get signedIn() { return !!(session && session.access_token); },
  save(pair) { session = pair; localStorage.setItem(KEY, JSON.stringify(pair)); },
  clear() { session = null; consistency = null; localStorage.removeItem(KEY); sessionStorage.removeItem('offerflow.consistency'); },
  get refreshToken() { return session && session.refresh_token; },
};

export function remember(answer) {
  if (answer && answer.consistency_token) {
    consistency = answer.consistency_token;
    sessionStorage.setItem('offerflow.consistency', consistency);
  }
  return answer;
}

async function refresh() {
  if (!session || !session.refresh_token) return false;
  refreshing ??= fetch('/api/v1/auth/refresh', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ refresh_token: session.refresh_token }),
  }).then(async (r) => {
    if (!r.ok) return false;
    auth.save(await r.json());
    return true;
  }).catch(() => false).finally(() => { refreshing = null; });
  return refreshing;
}

function headers(extra) {
  const h = { ...extra };
  if (session && session.access_token) h.Authorization = `Bearer ${session.access_token}`;
  if (consistency) h['X-Consistency-Token'] = consistency;
  return h;
}

export async function raw(method, path, body, retry = true, signal = undefined) {
  const opts = { method, headers: headers(), signal };
  if (body instanceof FormData) opts.body = body;
  else if (body !== undefined) {
    opts.body = JSON.stringify(body);
    opts.headers['Content-Type'] = 'application/json';
  }
  const r = await fetch(`/api/v1${path}`, opts);
  if (r.status === 400 && consistency) {
    // A token from another database (a reset server) names no point of this log: forget it.
    const e = await r.clone().json().catch(() => null);
    if (e && e.error && (e.error.fields || []).includes('consistency_token')) {
      consistency = null;
      sessionStorage.removeItem('offerflow.consistency');
      return raw(method, path, body, retry, signal);
    }
  }
  if (r.status === 401 && retry && (await refresh())) return raw(method, path, body, false, signal);
  if (r.status === 401) {
    auth.clear();
    window.dispatchEvent(new Event('offerflow:signed-out'));
  }
  return r;
}

export async function api(method, path, body) {
  const r = await raw(method, path, body);
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  if (!r.ok) throw new ApiError(r.status, data);
  if (method !== 'GET') remember(data);
  return data;
}

export const get = (p) => api('GET', p);
export const post = (p, b) => api('POST', p, b ?? {});
export const put = (p, b) => api('PUT', p, b ?? {});
export const patch = (p, b) => api('PATCH', p, b ?? {});
export const del = (p) => api('DELETE', p);

// Whether an endpoint another part of the system provides is there (404 on the route itself
// means "not in this build"; the UI then says so instead of breaking).
export function missingRoute(e) {
  return e instanceof ApiError && e.status === 404 && /route/i.test(e.message);
}

export async function blob(path) {
  const r = await raw('GET', path);
  if (!r.ok) {
    let data = null;
    try { data = await r.json(); } catch { /* not JSON */ }
    throw new ApiError(r.status, data);
  }
  return r.blob();
}

// Server-sent events over fetch: EventSource cannot send the Authorization header.
// The signal aborts the request itself, so a page left before the stream answered does not keep
// a connection (browsers allow six per host) open behind the next page.
export async function stream(path, onEvent, signal) {
  const r = await raw('GET', path, undefined, true, signal);
  if (!r.ok || !r.body) throw new ApiError(r.status, null);
  const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let cut;
    while ((cut = buffer.indexOf('\n\n')) >= 0) {
      const chunk = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let event = 'message';
      const data = [];
      for (const line of chunk.split('\n')) {
        if (line.startsWith('event:')) event = line.slice(6).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).trimStart());
      }
      if (data.length) {
        try { onEvent(event, JSON.parse(data.join('\n'))); } catch { /* a keep-alive or junk */ }
      }
    }
  }
}
