// Small DOM helpers and formatters shared by the views. Text always goes
// in as text nodes (never innerHTML), so nothing a task holds can run.

const SVG_NS = 'http://www.w3.org/2000/svg';

function build(el, attrs, children) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'text') el.textContent = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'value' && 'value' in el) el.value = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// h builds an HTML element: h('a', {href: '#/', class: 'x'}, 'text', child).
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

// s builds an SVG element.
export function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

// replace empties an element and appends the given children.
export function replace(el, ...children) {
  el.replaceChildren();
  build(el, {}, children);
  return el;
}

export const TERMINAL = ['completed', 'failed', 'cancelled'];
export const STATUSES = ['pending', 'executing', 'completed', 'failed', 'cancelled'];

// badge shows a status with its colour.
export function badge(status) {
  return h('span', {class: `badge st-${status || 'unknown'}`, dataset: {status: status || ''}}, status || '—');
}

// progressBar is a bar with its percentage; update it with setProgress.
export function progressBar(value, status) {
  const fill = h('div', {class: 'fill'});
  const label = h('span', {class: 'pct'});
  const bar = h('div', {class: 'progress', role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': 100}, fill, label);
  setProgress(bar, value, status);
  return bar;
}

export function setProgress(bar, value, status) {
  const v = Math.max(0, Math.min(100, Math.round(Number(value) || 0)));
  bar.setAttribute('aria-valuenow', v);
  bar.dataset.value = v;
  bar.dataset.status = status || '';
  bar.querySelector('.fill').style.width = v + '%';
  bar.querySelector('.pct').textContent = v + '%';
}

// when formats a timestamp as local time with a relative hint.
export function when(ts) {
  if (!ts) return '—';
  const d = new Date(ts);
  if (Number.isNaN(d.getTime())) return String(ts);
  return h('time', {datetime: d.toISOString(), title: d.toISOString()}, ago(d));
}

export function ago(d) {
  const sec = Math.round((Date.now() - d.getTime()) / 1000);
  if (sec < -5) return 'in ' + span(-sec);
  if (sec < 5) return 'just now';
  if (sec < 3600 * 20) return span(sec) + ' ago';
  return d.toLocaleString();
}

export function span(sec) {
  sec = Math.round(sec);
  if (sec < 60) return sec + ' s';
  if (sec < 3600) return Math.floor(sec / 60) + ' min ' + (sec % 60) + ' s';
  if (sec < 86400) return Math.floor(sec / 3600) + ' h ' + Math.floor((sec % 3600) / 60) + ' min';
  return Math.floor(sec / 86400) + ' d ' + Math.floor((sec % 86400) / 3600) + ' h';
}

// seconds formats a duration given in seconds.
export function seconds(v) {
  if (v === null || v === undefined) return '—';
  if (v < 10) return (Math.round(v * 100) / 100) + ' s';
  return span(v);
}

export function bytes(n) {
  if (n === null || n === undefined) return '';
  if (n < 1024) return n + ' B';
  if (n < 1 << 20) return (n / 1024).toFixed(1) + ' KiB';
  if (n < 1 << 30) return (n / (1 << 20)).toFixed(1) + ' MiB';
  return (n / (1 << 30)).toFixed(2) + ' GiB';
}

export function shortID(id) {
  return id ? String(id).slice(0, 8) + '…' + String(id).slice(-4) : '';
}

// table builds a scrollable table from column titles and rows.
export function table(columns, rows, attrs) {
  return h('div', {class: 'table-wrap'}, h('table', attrs || {},
    h('thead', {}, h('tr', {}, columns.map((c) => h('th', {}, c)))),
    h('tbody', {}, rows)));
}

// notice is a message box: kind is info, error or warn.
export function notice(kind, ...content) {
  return h('div', {class: `notice ${kind}`, role: kind === 'error' ? 'alert' : 'status'}, content);
}

// debounce runs fn at most once per wait ms, after the last call.
export function debounce(fn, wait) {
  let t = null;
  const d = (...args) => {
    clearTimeout(t);
    t = setTimeout(() => fn(...args), wait);
  };
  d.cancel = () => clearTimeout(t);
  return d;
}

// humanize turns a field name into a label: "num_inference_steps" →
// "Num inference steps".
export function humanize(name) {
  const t = String(name).replace(/_/g, ' ');
  return t.charAt(0).toUpperCase() + t.slice(1);
}
