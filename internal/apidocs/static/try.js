// Try it: a form per operation that sends the request from the browser to
// this server (same origin) with the API key typed in the side bar, which
// is kept in sessionStorage only, never in a URL.

import { el, example } from './schema.js';

const keyName = 'compute.apiKey';

// bindKey keeps the side bar's API key field in sessionStorage.
export function bindKey(input) {
  input.value = sessionStorage.getItem(keyName) || '';
  input.addEventListener('input', () => {
    if (input.value) sessionStorage.setItem(keyName, input.value);
    else sessionStorage.removeItem(keyName);
  });
}

// isStream reports whether an operation answers with Server-Sent Events.
export function isStream(op) {
  return Object.values(op.responses || {}).some((r) => r && r.content && r.content['text/event-stream']);
}

// jsonBody returns the operation's JSON request body schema, if any.
export function jsonBody(op) {
  const c = op.requestBody?.content || {};
  const type = Object.keys(c).find((t) => t.includes('json'));
  return type ? { type, schema: c[type].schema } : null;
}

// tryForm builds the try-it form of one operation.
export function tryForm(doc, method, path, op) {
  const box = el('details', { class: 'try' }, el('summary', {}, 'Try it'));
  if (isStream(op)) {
    box.append(el('p', { class: 'muted' }, 'An event stream: read it with ', el('code', {}, 'curl -N'), ' (see the example above) or the dashboard.'));
    return box;
  }
  const inputs = [];
  for (const p of op.parameters || []) {
    if (!['path', 'query', 'header'].includes(p.in)) continue;
    const input = el('input', { type: 'text', 'data-in': p.in, 'data-name': p.name, placeholder: p.schema?.format || p.schema?.type || '' });
    inputs.push(input);
    box.append(el('label', {}, el('span', { class: 'mono' }, `${p.name} (${p.in})${p.required ? ' *' : ''} `), input));
  }
  const body = jsonBody(op);
  let area = null;
  if (body) {
    area = el('textarea', { spellcheck: 'false' });
    area.value = JSON.stringify(example(doc, body.schema), null, 2);
    box.append(el('label', {}, 'Body (' + body.type + ')'), area);
  }
  const out = el('div');
  const send = el('button', { type: 'button' }, 'Send');
  send.addEventListener('click', () => run(method, path, inputs, body, area, out));
  box.append(send, out);
  return box;
}

// run sends the request the form describes and shows the answer.
async function run(method, path, inputs, body, area, out) {
  out.replaceChildren(el('p', { class: 'muted' }, 'Sending…'));
  let url = path;
  const query = new URLSearchParams();
  const headers = new Headers();
  for (const input of inputs) {
    const v = input.value.trim();
    const name = input.dataset.name;
    if (input.dataset.in === 'path') {
      url = url.replace('{' + name + '}', encodeURIComponent(v));
    } else if (v !== '' && input.dataset.in === 'query') {
      query.append(name, v);
    } else if (v !== '' && input.dataset.in === 'header') {
      headers.set(name, v);
    }
  }
  if ([...query].length) url += '?' + query;
  const key = sessionStorage.getItem(keyName);
  if (key) headers.set('Authorization', 'Bearer ' + key);
  const init = { method: method.toUpperCase(), headers };
  if (body && area) {
    headers.set('Content-Type', body.type);
    init.body = area.value;
  }
  try {
    const res = await fetch(url, init);
    let text = await res.text();
    try { text = JSON.stringify(JSON.parse(text), null, 2); } catch { /* not JSON: shown as it is */ }
    out.replaceChildren(
      el('p', {}, el('span', { class: 'status ' + (res.ok ? 'ok' : 'err') }, String(res.status)), ' ', res.statusText,
        ' ', el('span', { class: 'muted mono' }, method.toUpperCase() + ' ' + url)),
      el('pre', {}, text || '(no body)'));
  } catch (err) {
    out.replaceChildren(el('p', { class: 'error' }, 'The request failed: ' + err.message));
  }
}
