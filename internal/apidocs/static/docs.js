// The API reference: fetches /openapi.json from this server and renders
// its operations, grouped by tag, and its component schemas.

import { el, prose, typeLabel, propertiesTable, example, schemaSection, schemaId, resolve, constraints } from './schema.js';
import { bindKey, tryForm, jsonBody, isStream } from './try.js';

const methods = ['get', 'put', 'post', 'patch', 'delete', 'head', 'options'];

// opId is the id of an operation's section.
function opId(op, method, path) {
  return 'op-' + (op.operationId || (method + path)).replace(/[^A-Za-z0-9_-]/g, '_');
}

// operations lists the document's operations in document order.
function operations(doc) {
  const out = [];
  for (const [path, item] of Object.entries(doc.paths || {})) {
    for (const method of methods) {
      if (item[method]) out.push({ path, method, op: item[method], shared: item.parameters || [] });
    }
  }
  return out;
}

// groups returns the operations by tag: the document's declared tags in
// their order, then the others alphabetically, "Other" for untagged ones.
function groups(doc, ops) {
  const by = new Map();
  for (const o of ops) {
    const tag = (o.op.tags && o.op.tags[0]) || 'Other';
    if (!by.has(tag)) by.set(tag, []);
    by.get(tag).push(o);
  }
  const declared = (doc.tags || []).map((t) => t.name).filter((n) => by.has(n));
  const rest = [...by.keys()].filter((n) => !declared.includes(n)).sort();
  const info = new Map((doc.tags || []).map((t) => [t.name, t]));
  return [...declared, ...rest].map((name) => ({ name, tag: info.get(name), ops: by.get(name) }));
}

// secured reports whether the operation needs an API key: its own
// security requirements, else the document's.
function secured(doc, op) {
  return (op.security ?? doc.security ?? []).length > 0;
}

// curl is a shell example of the operation.
function curl(doc, method, path, op) {
  const lines = [];
  const query = (op.parameters || []).filter((p) => p.in === 'query' && p.required).map((p) => `${p.name}=…`);
  const url = '$COMPUTE_URL' + path + (query.length ? '?' + query.join('&') : '');
  lines.push(`curl${isStream(op) ? ' -N' : ''} -X ${method.toUpperCase()} "${url}"`);
  if (secured(doc, op)) lines.push(`  -H "Authorization: Bearer $COMPUTE_API_KEY"`);
  const body = jsonBody(op);
  if (body) {
    lines.push(`  -H 'Content-Type: ${body.type}'`);
    lines.push(`  -d '${JSON.stringify(example(doc, body.schema)).replace(/'/g, "'\\''")}'`);
  }
  return lines.join(' \\\n');
}

// parameterTable lists an operation's parameters.
function parameterTable(doc, params) {
  const body = el('tbody');
  for (let p of params) {
    if (p.$ref) p = resolveParam(doc, p);
    if (!p) continue;
    const desc = el('td', {}, prose(p.description));
    const extra = constraints(p.schema);
    if (extra.length) desc.append(el('div', { class: 'muted' }, extra.join('; ')));
    body.append(el('tr', {},
      el('td', { class: 'name' }, p.name, p.required ? el('span', { class: 'req' }, 'required') : null),
      el('td', {}, p.in), el('td', {}, typeLabel(doc, p.schema)), desc));
  }
  return el('table', {}, el('thead', {}, el('tr', {}, el('th', {}, 'Name'), el('th', {}, 'In'), el('th', {}, 'Type'), el('th', {}, 'Description'))), body);
}

function resolveParam(doc, p) {
  const name = p.$ref.split('/').pop();
  return (doc.components?.parameters || {})[name] || null;
}

// responsesTable lists an operation's responses and their bodies.
function responsesTable(doc, op) {
  const body = el('tbody');
  for (const [status, r] of Object.entries(op.responses || {})) {
    const content = el('td');
    for (const [type, media] of Object.entries(r.content || {})) {
      content.append(el('div', {}, el('span', { class: 'mono muted' }, type + ' '), media.schema ? typeLabel(doc, media.schema) : ''));
      const table = media.schema && !media.schema.$ref ? propertiesTable(doc, media.schema) : null;
      if (table) content.append(el('details', {}, el('summary', {}, 'Fields'), table));
    }
    const ok = status.startsWith('2') || status.startsWith('3');
    body.append(el('tr', {}, el('td', { class: 'status ' + (ok ? 'ok' : 'err') }, status), el('td', {}, prose(r.description)), content));
  }
  return el('table', {}, el('thead', {}, el('tr', {}, el('th', {}, 'Status'), el('th', {}, 'Description'), el('th', {}, 'Body'))), body);
}

// operationSection renders one operation.
function operationSection(doc, { path, method, op, shared }) {
  const id = opId(op, method, path);
  const search = [method, path, op.summary || '', op.operationId || ''].join(' ').toLowerCase();
  const sec = el('section', { class: 'op', id, 'data-search': search });
  sec.append(el('h3', {},
    el('span', { class: 'method ' + method }, method),
    el('span', { class: 'path' }, path),
    secured(doc, op) ? el('span', { class: 'lock', title: 'Needs Authorization: Bearer <API key>' }, 'API key') : null));
  if (op.summary) sec.append(el('p', {}, el('strong', {}, op.summary), op.operationId ? el('span', { class: 'muted mono' }, '  ' + op.operationId) : null));
  if (op.deprecated) sec.append(el('p', { class: 'error' }, 'Deprecated.'));
  sec.append(prose(op.description));
  const params = [...shared, ...(op.parameters || [])];
  if (params.length) sec.append(el('h4', {}, 'Parameters'), parameterTable(doc, params));
  const body = jsonBody(op);
  if (op.requestBody) {
    sec.append(el('h4', {}, 'Request body'));
    for (const [type, media] of Object.entries(op.requestBody.content || {})) {
      sec.append(el('p', {}, el('span', { class: 'mono muted' }, type + ' '), typeLabel(doc, media.schema), op.requestBody.required ? el('span', { class: 'req' }, 'required') : null));
    }
    if (body) {
      const target = resolve(doc, body.schema);
      const table = target && !target.oneOf ? propertiesTable(doc, body.schema) : null;
      if (table) sec.append(table);
    }
  }
  sec.append(el('h4', {}, 'Responses'), responsesTable(doc, op));
  sec.append(el('h4', {}, 'Example'), el('pre', {}, curl(doc, method, path, op)));
  sec.append(tryForm(doc, method, path, op));
  return sec;
}

function navItem(href, search, ...label) {
  return el('li', { 'data-search': search }, el('a', { href }, ...label));
}

// render builds the page from the document.
function render(doc) {
  const main = document.getElementById('main');
  const nav = document.getElementById('nav');
  document.title = (doc.info?.title || 'API') + ' reference';
  document.getElementById('version').textContent = [doc.info?.version, 'OpenAPI ' + doc.openapi].filter(Boolean).join(' · ');
  const intro = el('section', { id: 'intro' }, el('h1', {}, doc.info?.title || 'API'), prose(doc.info?.description));
  const schemes = doc.components?.securitySchemes || {};
  for (const [name, s] of Object.entries(schemes)) {
    intro.append(el('div', { class: 'auth' }, el('strong', {}, 'Authentication: '), prose(s.description || `${name}: ${s.type} ${s.scheme || ''}`),
      ' Operations marked “API key” need it; paste a key in the side bar to use “Try it”.'));
  }
  main.replaceChildren(intro);
  nav.replaceChildren();
  const ops = operations(doc);
  for (const g of groups(doc, ops)) {
    const tagId = 'tag-' + g.name.replace(/[^A-Za-z0-9_-]/g, '_');
    main.append(el('h2', { class: 'tag', id: tagId }, g.name));
    if (g.tag?.description) main.append(prose(g.tag.description));
    const list = el('ul');
    for (const o of g.ops) {
      main.append(operationSection(doc, o));
      const search = [o.method, o.path, o.op.summary || '', o.op.operationId || ''].join(' ').toLowerCase();
      list.append(navItem('#' + opId(o.op, o.method, o.path), search, el('span', { class: 'method ' + o.method }, o.method), o.op.summary || o.path));
    }
    nav.append(el('h3', {}, el('a', { href: '#' + tagId }, g.name)), list);
  }
  const schemas = doc.components?.schemas || {};
  const names = Object.keys(schemas).sort();
  main.append(el('h2', { class: 'tag', id: 'schemas' }, 'Schemas'));
  const list = el('ul');
  for (const name of names) {
    main.append(schemaSection(doc, name, schemas[name]));
    list.append(navItem('#' + schemaId(name), name.toLowerCase(), name));
  }
  nav.append(el('h3', {}, el('a', { href: '#schemas' }, 'Schemas')), list);
  document.body.dataset.rendered = String(ops.length);
  if (location.hash) document.getElementById(decodeURIComponent(location.hash.slice(1)))?.scrollIntoView();
}

// filter hides the operations and schemas whose text does not match.
function filter(q) {
  q = q.trim().toLowerCase();
  for (const node of document.querySelectorAll('[data-search]')) {
    node.classList.toggle('hidden', q !== '' && !node.dataset.search.includes(q));
  }
}

async function main() {
  bindKey(document.getElementById('apikey'));
  document.getElementById('filter').addEventListener('input', (e) => filter(e.target.value));
  try {
    const res = await fetch('/openapi.json', { headers: { Accept: 'application/json' } });
    if (!res.ok) throw new Error(`GET /openapi.json answered ${res.status}`);
    render(await res.json());
  } catch (err) {
    const status = document.getElementById('status') || document.getElementById('main');
    status.className = 'error';
    status.textContent = 'Could not load the API document: ' + err.message;
    document.body.dataset.error = err.message;
  }
}

main();
