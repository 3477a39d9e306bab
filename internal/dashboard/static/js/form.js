// The create form, generated from the task type's create JSON Schema (GET
// /api/v1/task-types): a control per property, by its type, format and
// constraints; required fields first, the type's own fields next, the
// options every type shares folded away. The server validates: its 422
// problem's errors are shown at their fields.

import {post, ApiError} from './api.js';
import {h, replace, notice, humanize} from './dom.js';
import {session, typeNamed} from './session.js';

// commonFields are the create properties every type has (queue_name,
// priority, webhook_url…): shown under "Options".
function commonFields() {
  const sets = session.types.map((t) => new Set(Object.keys((t.schemas.create || {}).properties || {})));
  if (!sets.length) return new Set();
  return new Set([...sets[0]].filter((k) => sets.every((s) => s.has(k))));
}

// resolve follows a local $ref ("#/$defs/X") within the document.
function resolve(doc, sc) {
  let n = 0;
  while (sc && sc.$ref && n++ < 10) {
    const path = sc.$ref.replace(/^#\//, '').split('/');
    sc = path.reduce((o, p) => (o ? o[p] : undefined), doc);
  }
  return sc || {};
}

function typeOf(sc) {
  const t = Array.isArray(sc.type) ? sc.type.find((x) => x !== 'null') : sc.type;
  if (t) return t;
  if (sc.enum) return 'string';
  return 'json';
}

function hint(sc) {
  const parts = [];
  if (sc.minimum !== undefined && sc.maximum !== undefined) parts.push(`${sc.minimum} to ${sc.maximum}`);
  else if (sc.minimum !== undefined) parts.push(`≥ ${sc.minimum}`);
  else if (sc.maximum !== undefined) parts.push(`≤ ${sc.maximum}`);
  if (sc.multipleOf) parts.push(`multiple of ${sc.multipleOf}`);
  if (sc.maxLength) parts.push(`up to ${sc.maxLength} characters`);
  if (sc.format && sc.format !== 'int64' && sc.format !== 'double') parts.push(sc.format);
  return parts.join(', ');
}

const LONG_TEXT = /prompt|message|system|content|text/;

// example is a JSON value of the schema's shape, shown as a placeholder
// of the JSON text areas.
function example(doc, sc, depth) {
  sc = resolve(doc, sc);
  if (depth > 3) return null;
  if (sc.enum) return sc.enum[0];
  switch (typeOf(sc)) {
    case 'object': {
      const out = {};
      for (const [k, v] of Object.entries(sc.properties || {})) out[k] = example(doc, v, depth + 1);
      return out;
    }
    case 'array':
      return [example(doc, sc.items || {}, depth + 1)];
    case 'integer':
    case 'number':
      return sc.minimum || 0;
    case 'boolean':
      return false;
    case 'string':
      return '';
    default:
      return null;
  }
}

// Field is one property's control; value() returns undefined when unset.
class Field {
  constructor(doc, name, sc, required) {
    this.name = name;
    this.doc = doc;
    this.sc = resolve(doc, sc);
    this.required = required;
    this.kind = typeOf(this.sc);
    this.error = h('div', {class: 'field-error', id: 'err-' + name});
    this.input = this.control();
    this.input.id = 'f-' + name;
    this.input.name = name;
    const desc = this.sc.description || '';
    const hn = hint(this.sc);
    this.el = h('div', {class: 'field k-' + this.kind, dataset: {field: name}},
      h('label', {for: 'f-' + name}, humanize(name), required ? h('span', {class: 'req', title: 'required'}, ' *') : null, ' ', h('code', {class: 'muted'}, name)),
      this.input,
      desc || hn ? h('div', {class: 'help muted'}, desc, desc && hn ? ' · ' : '', hn) : null,
      this.error);
  }

  control() {
    const sc = this.sc;
    if (sc.enum) {
      return h('select', {}, h('option', {value: ''}, this.required ? 'Choose…' : '(default)'), sc.enum.map((v) => h('option', {value: v}, String(v))));
    }
    switch (this.kind) {
      case 'boolean':
        return h('select', {}, h('option', {value: ''}, '(default)'), h('option', {value: 'true'}, 'true'), h('option', {value: 'false'}, 'false'));
      case 'integer':
      case 'number':
        return h('input', {type: 'number', min: sc.minimum, max: sc.maximum, step: sc.multipleOf || (this.kind === 'integer' ? 1 : 'any'), inputmode: this.kind === 'integer' ? 'numeric' : 'decimal'});
      case 'string':
        if (sc.format === 'date-time') return h('input', {type: 'datetime-local', step: 1});
        if (LONG_TEXT.test(this.name) || (sc.maxLength || 0) > 2048) return h('textarea', {rows: 3, maxlength: sc.maxLength});
        return h('input', {type: 'text', maxlength: sc.maxLength, spellcheck: 'false'});
      case 'array': {
        const items = resolve(this.doc, sc.items || {});
        if (items.enum) {
          this.kind = 'enum-array';
          return h('div', {class: 'checks'}, items.enum.map((v) => h('label', {}, h('input', {type: 'checkbox', value: v}), String(v))));
        }
        if (typeOf(items) === 'string') {
          this.kind = 'string-array';
          return h('textarea', {rows: 2, placeholder: 'one per line'});
        }
        this.kind = 'json';
        return h('textarea', {rows: 4, class: 'mono', placeholder: 'JSON, e.g. ' + JSON.stringify(example(this.doc, sc, 0))});
      }
      default:
        this.kind = 'json';
        return h('textarea', {rows: 4, class: 'mono', placeholder: sc.properties ? 'JSON, e.g. ' + JSON.stringify(example(this.doc, sc, 0)) : 'JSON object'});
    }
  }

  // value reads the control; it throws a message for input it cannot read.
  value() {
    const v = this.kind === 'enum-array' ? null : String(this.input.value || '').trim();
    switch (this.kind) {
      case 'enum-array': {
        const picked = [...this.input.querySelectorAll('input:checked')].map((i) => i.value);
        return picked.length ? picked : undefined;
      }
      case 'string-array':
        return v ? v.split('\n').map((x) => x.trim()).filter(Boolean) : undefined;
      case 'json':
        if (!v) return undefined;
        try {
          return JSON.parse(v);
        } catch (_) {
          throw new Error('not valid JSON');
        }
      case 'boolean':
        return v === '' ? undefined : v === 'true';
      case 'integer':
      case 'number':
        if (v === '') return undefined;
        if (Number.isNaN(Number(v))) throw new Error('not a number');
        return Number(v);
      default:
        if (v === '') return undefined;
        if (this.sc.format === 'date-time') return new Date(v).toISOString();
        return this.input.value;
    }
  }

  showError(message) {
    this.el.classList.toggle('invalid', Boolean(message));
    replace(this.error, message || '');
  }
}

export function renderCreate(root, typeName) {
  const types = session.types;
  const picker = h('div', {class: 'type-picker', id: 'type-picker'}, types.map((t) => h('a', {
    href: '#/new/' + encodeURIComponent(t.name), class: 'type-card' + (t.name === typeName ? ' active' : ''), dataset: {type: t.name},
  }, h('strong', {}, t.title || t.name), h('code', {class: 'muted'}, t.name), h('span', {class: 'muted small'}, t.description || ''))));
  root.append(h('div', {class: 'title-row'}, h('h1', {}, 'New task')));
  const def = typeNamed(typeName);
  if (!def) {
    root.append(h('p', {class: 'muted'}, typeName ? `No task type "${typeName}". Choose one:` : 'Choose a task type:'), picker);
    return null;
  }
  const doc = def.schemas.create || {};
  const required = new Set(doc.required || []);
  const common = commonFields();
  const fields = Object.entries(doc.properties || {})
    .filter(([name]) => name !== 'task_type')
    .map(([name, sc]) => new Field(doc, name, sc, required.has(name)));
  const byName = new Map(fields.map((f) => [f.name, f]));
  // The type's own optional fields: the wide ones (text areas) first, as
  // they carry the content, then the short ones in a grid.
  const wide = (f) => f.input.tagName === 'TEXTAREA' || f.kind === 'enum-array';
  const own = fields.filter((f) => !f.required && !common.has(f.name)).sort((a, b) => wide(b) - wide(a));
  const shared = fields.filter((f) => !f.required && common.has(f.name));
  const top = h('div', {id: 'form-msg'});
  const submit = h('button', {type: 'submit', id: 'create-submit'}, `Create ${def.name} task`);
  const preview = h('pre', {class: 'json', id: 'body-preview'});

  const form = h('form', {class: 'card create', id: 'create-form', novalidate: true, dataset: {type: def.name}},
    h('div', {class: 'title-row'}, h('h2', {}, def.title || def.name), h('a', {href: '#/new', class: 'small'}, 'Other type')),
    def.description ? h('p', {class: 'muted'}, def.description) : null,
    h('p', {class: 'muted small'}, `Runs on ${def.default_provider || 'its default executor'} · queue ${def.default_queue} · ${def.max_attempts} attempt(s) · timeout ${def.timeout_seconds} s`),
    top,
    h('div', {class: 'fields'}, fields.filter((f) => f.required).map((f) => f.el)),
    own.length ? h('div', {class: 'fields'}, own.map((f) => f.el)) : null,
    shared.length ? h('details', {class: 'options'}, h('summary', {}, 'Options (queue, priority, webhook, timing…)'), h('div', {class: 'fields'}, shared.map((f) => f.el))) : null,
    h('details', {class: 'options'}, h('summary', {}, 'Request body'), preview),
    h('div', {class: 'form-actions'}, submit));

  // body reads every field; errors are shown and null returned.
  function body(show) {
    const out = {task_type: def.name};
    let ok = true;
    for (const f of fields) {
      try {
        const v = f.value();
        if (v !== undefined) out[f.name] = v;
        if (show) f.showError('');
      } catch (err) {
        ok = false;
        if (show) f.showError(err.message);
      }
    }
    return ok ? out : null;
  }

  form.addEventListener('input', () => {
    const b = body(false);
    preview.textContent = b ? JSON.stringify(b, null, 2) : '(a field cannot be read)';
  });
  preview.textContent = JSON.stringify(body(false), null, 2);

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    replace(top);
    const b = body(true);
    if (!b) {
      replace(top, notice('error', 'Some fields cannot be read; see below.'));
      return;
    }
    submit.disabled = true;
    try {
      const created = await post('/api/v1/tasks/', b);
      location.hash = '#/tasks/' + created.id;
    } catch (err) {
      submit.disabled = false;
      if (!(err instanceof ApiError)) {
        replace(top, notice('error', `Cannot create the task: ${err.message}`));
        return;
      }
      const rest = [];
      const seen = new Set();
      for (const fe of err.fieldErrors) {
        const name = fe.location.replace(/^body\./, '').split(/[.[]/)[0];
        const f = byName.get(name);
        if (f && fe.location.startsWith('body.')) {
          f.showError((seen.has(name) ? f.error.textContent + '; ' : '') + fe.message);
          seen.add(name);
          f.el.closest('details')?.setAttribute('open', '');
        } else {
          rest.push(`${fe.location}: ${fe.message}`);
        }
      }
      replace(top, notice('error', `The server refused the task (${err.status}): ${err.message}.`, seen.size ? ' The fields concerned are marked below.' : '',
        rest.length ? h('ul', {}, rest.map((r) => h('li', {}, r))) : null));
    }
  });

  root.append(form);
  const first = fields.find((f) => f.required) || fields[0];
  if (first) first.input.focus();
  return null;
}
