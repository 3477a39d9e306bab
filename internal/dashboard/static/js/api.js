// The API client of the dashboard: every request carries the API key in
// the Authorization header, read from sessionStorage (never from a URL).
// Event streams are read with fetch() streaming, since EventSource cannot
// send headers, and resume with Last-Event-ID after a drop.

const KEY = 'compute.apiKey';

export function getKey() {
  return sessionStorage.getItem(KEY);
}

export function setKey(key) {
  sessionStorage.setItem(KEY, key);
}

export function clearKey() {
  sessionStorage.removeItem(KEY);
}

// ApiError is a failed request, with the RFC 9457 problem when the server
// sent one.
export class ApiError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
  }

  // fieldErrors maps "body.prompt" style locations to their messages.
  get fieldErrors() {
    return (this.problem.errors || []).map((e) => ({location: e.location || '', message: e.message || ''}));
  }
}

function headers(extra) {
  const hd = new Headers(extra || {});
  const key = getKey();
  if (key) hd.set('Authorization', 'Bearer ' + key);
  return hd;
}

async function problemOf(res) {
  const ct = res.headers.get('Content-Type') || '';
  if (ct.includes('json')) {
    try {
      return await res.json();
    } catch (_) {
      return null;
    }
  }
  return null;
}

// unauthorized is dispatched on window when a request's key is refused.
function check401(res) {
  if (res.status === 401) window.dispatchEvent(new CustomEvent('compute:unauthorized'));
}

// api sends a JSON request and returns the decoded answer (null for an
// empty one); a non-2xx answer throws an ApiError.
export async function api(method, path, body, opts) {
  const init = {method, headers: headers({Accept: 'application/json'}), signal: opts && opts.signal};
  if (body !== undefined) {
    init.headers.set('Content-Type', 'application/json');
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  if (!res.ok) {
    check401(res);
    throw new ApiError(res.status, await problemOf(res));
  }
  if (res.status === 204) return null;
  const text = await res.text();
  return text ? JSON.parse(text) : null;
}

export const get = (path, opts) => api('GET', path, undefined, opts);
export const post = (path, body, opts) => api('POST', path, body, opts);

// artifactPath returns the path to fetch an artifact URL from on this
// origin with the key: the API's /api/v1/artifacts/ path of an absolute
// or relative URL, or null for a URL elsewhere (a CDN), which needs no key.
export function artifactPath(url) {
  let u;
  try {
    u = new URL(url, location.href);
  } catch (_) {
    return null;
  }
  const i = u.pathname.indexOf('/api/v1/artifacts/');
  if (i < 0) return null;
  return u.pathname.slice(i) + u.search;
}

// fetchBlob downloads a path with the key.
export async function fetchBlob(path, opts) {
  const res = await fetch(path, {headers: headers(), signal: opts && opts.signal});
  if (!res.ok) {
    check401(res);
    throw new ApiError(res.status, await problemOf(res));
  }
  return res.blob();
}

// SILENCE_MS is how long a stream may send nothing, not even a
// keep-alive, before it is taken for dead and reconnected.
const SILENCE_MS = 60000;

const newEvent = () => ({id: null, event: 'message', data: []});

// EventStream follows a Server-Sent Event route with the key. onEvent
// gets {id, event, data} (data parsed from JSON); onState gets 'live',
// 'reconnecting' or 'ended'; onError gets an ApiError that stops the
// stream (401, 404, 422). When the server ends the stream, reconnect()
// decides whether to follow again (default: yes); drops always resume
// from the last id received with Last-Event-ID.
export class EventStream {
  constructor(path, {onEvent, onState, onError, reconnect, lastId} = {}) {
    this.path = path;
    this.onEvent = onEvent || (() => {});
    this.onState = onState || (() => {});
    this.onError = onError || (() => {});
    this.reconnect = reconnect || (() => true);
    this.lastId = lastId === undefined ? null : lastId;
    this.ctrl = null;
    this.closed = false;
    this.backoff = 500;
  }

  start() {
    this.closed = false;
    this.loop();
    return this;
  }

  close() {
    this.closed = true;
    if (this.ctrl) this.ctrl.abort();
  }

  async loop() {
    while (!this.closed) {
      let wait = this.backoff;
      try {
        const ended = await this.once();
        if (ended && !this.reconnect()) {
          this.onState('ended');
          return;
        }
        this.backoff = 500;
        wait = 200;
      } catch (err) {
        if (this.closed) return;
        if (err instanceof ApiError && [401, 403, 404, 422].includes(err.status)) {
          this.onState('ended');
          this.onError(err);
          return;
        }
        if (err instanceof ApiError && err.retryAfter) wait = err.retryAfter * 1000;
        this.backoff = Math.min(this.backoff * 2, 10000);
      }
      if (this.closed) return;
      this.onState('reconnecting');
      await new Promise((r) => setTimeout(r, wait));
    }
  }

  // once reads one connection to its end: true when the server ended it,
  // an exception when it failed.
  async once() {
    this.ctrl = new AbortController();
    const hd = headers({Accept: 'text/event-stream'});
    if (this.lastId !== null) hd.set('Last-Event-ID', String(this.lastId));
    const res = await fetch(this.path, {headers: hd, signal: this.ctrl.signal, cache: 'no-store'});
    if (!res.ok) {
      check401(res);
      const e = new ApiError(res.status, await problemOf(res));
      e.retryAfter = Number(res.headers.get('Retry-After')) || 0;
      throw e;
    }
    this.onState('live');
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    const p = {buf: '', ev: newEvent()};
    // The server sends a keep-alive comment every 15 s when idle
    // (COMPUTE_SSE_KEEPALIVE): a connection silent for much longer died
    // without a word (a sleeping laptop, a dropped proxy) and is replaced.
    let watchdog = null;
    const arm = () => {
      clearTimeout(watchdog);
      watchdog = setTimeout(() => this.ctrl.abort(), SILENCE_MS);
    };
    arm();
    try {
      for (;;) {
        const {value, done} = await reader.read();
        if (done) return true;
        arm();
        this.consume(p, value);
      }
    } finally {
      clearTimeout(watchdog);
    }
  }

  // consume parses the complete lines of a chunk (after what was left of
  // the last one), dispatching each event at its blank line.
  consume(p, text) {
    p.buf += text;
    let nl;
    while ((nl = p.buf.search(/\r\n|\r|\n/)) >= 0) {
      if (p.buf[nl] === '\r' && nl === p.buf.length - 1) break; // a \r\n cut in two
      const line = p.buf.slice(0, nl);
      p.buf = p.buf.slice(nl + (p.buf[nl] === '\r' && p.buf[nl + 1] === '\n' ? 2 : 1));
      if (line === '') {
        if (p.ev.data.length) this.dispatch(p.ev);
        p.ev = newEvent();
        continue;
      }
      if (line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      let val = colon < 0 ? '' : line.slice(colon + 1);
      if (val.startsWith(' ')) val = val.slice(1);
      if (field === 'id') p.ev.id = val;
      else if (field === 'event') p.ev.event = val;
      else if (field === 'data') p.ev.data.push(val);
    }
  }

  dispatch(ev) {
    if (ev.id !== null) this.lastId = ev.id;
    let data = ev.data.join('\n');
    try {
      data = JSON.parse(data);
    } catch (_) {
      // not JSON: pass the text
    }
    this.onEvent({id: ev.id === null ? null : Number(ev.id), event: ev.event, data});
  }
}
