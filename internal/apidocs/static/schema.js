// Schemas: type labels, property tables and generated examples for the
// JSON Schemas of an OpenAPI 3.1 document. Everything is built with DOM
// calls and textContent: no text from the document is parsed as HTML.

const refPrefix = '#/components/schemas/';

// el makes an element with attributes and children (strings become text).
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

// prose renders a description: paragraphs at blank lines, `code` spans.
export function prose(text) {
  const frag = document.createDocumentFragment();
  if (!text) return frag;
  for (const para of String(text).split(/\n\s*\n/)) {
    const p = el('p');
    String(para).split('`').forEach((part, i) => {
      if (part === '') return;
      p.append(i % 2 === 1 ? el('code', {}, part) : part);
    });
    frag.append(p);
  }
  return frag;
}

// refName is the component name a $ref points at.
export function refName(ref) {
  return ref.startsWith(refPrefix) ? decodeURIComponent(ref.slice(refPrefix.length)) : ref;
}

// schemaId is the id of a component schema's section.
export function schemaId(name) {
  return 'schema-' + name.replace(/[^A-Za-z0-9_-]/g, '_');
}

// resolve follows $refs to the schema they name (null when unknown).
export function resolve(doc, schema, seen = new Set()) {
  while (schema && schema.$ref) {
    if (seen.has(schema.$ref)) return null;
    seen.add(schema.$ref);
    schema = (doc.components?.schemas || {})[refName(schema.$ref)] || null;
  }
  return schema;
}

// typeLabel is an inline description of a schema's type, with links to
// the component schemas it refers to.
export function typeLabel(doc, schema) {
  const span = el('span', { class: 'type' });
  if (!schema || typeof schema !== 'object') {
    span.append('any');
    return span;
  }
  if (schema.$ref) {
    const name = refName(schema.$ref);
    span.append(el('a', { href: '#' + schemaId(name) }, name));
    return span;
  }
  const alts = schema.oneOf || schema.anyOf;
  if (alts) {
    span.append(schema.oneOf ? 'one of ' : 'any of ');
    alts.forEach((s, i) => {
      if (i > 0) span.append(' | ');
      span.append(typeLabel(doc, s));
    });
    return span;
  }
  if (schema.allOf) {
    schema.allOf.forEach((s, i) => {
      if (i > 0) span.append(' & ');
      span.append(typeLabel(doc, s));
    });
    return span;
  }
  const types = Array.isArray(schema.type) ? schema.type : schema.type ? [schema.type] : [];
  if (types.length === 0) {
    span.append(schema.properties ? 'object' : 'any');
    return span;
  }
  types.forEach((t, i) => {
    if (i > 0) span.append(' | ');
    if (t === 'array') {
      span.append('array of ', typeLabel(doc, schema.items));
    } else if (t === 'object' && schema.additionalProperties && typeof schema.additionalProperties === 'object') {
      span.append('map of ', typeLabel(doc, schema.additionalProperties));
    } else {
      span.append(t);
    }
  });
  if (schema.format) span.append(' (' + schema.format + ')');
  return span;
}

// constraints lists a schema's validation keywords in words.
export function constraints(schema) {
  if (!schema || typeof schema !== 'object') return [];
  const out = [];
  const j = (v) => JSON.stringify(v);
  if (schema.enum) out.push('one of ' + schema.enum.map(j).join(', '));
  if (schema.const !== undefined) out.push('always ' + j(schema.const));
  if (schema.default !== undefined) out.push('default ' + j(schema.default));
  for (const [k, words] of [['minimum', '≥'], ['exclusiveMinimum', '>'], ['maximum', '≤'], ['exclusiveMaximum', '<']]) {
    if (typeof schema[k] === 'number') out.push(words + ' ' + schema[k]);
  }
  if (schema.minLength !== undefined) out.push('at least ' + schema.minLength + ' characters');
  if (schema.maxLength !== undefined) out.push('at most ' + schema.maxLength + ' characters');
  if (schema.minItems !== undefined) out.push('at least ' + schema.minItems + ' items');
  if (schema.maxItems !== undefined) out.push('at most ' + schema.maxItems + ' items');
  if (schema.pattern) out.push('matches ' + schema.pattern);
  if (schema.readOnly) out.push('read-only');
  if (schema.deprecated) out.push('deprecated');
  return out;
}

// propertiesTable lists an object schema's properties (of its allOf parts
// too), or returns null when it has none.
export function propertiesTable(doc, schema) {
  const props = {};
  const required = new Set();
  const collect = (s, seen) => {
    s = resolve(doc, s, seen);
    if (!s) return;
    for (const part of s.allOf || []) collect(part, seen);
    Object.assign(props, s.properties || {});
    for (const r of s.required || []) required.add(r);
  };
  collect(schema, new Set());
  const names = Object.keys(props);
  if (names.length === 0) return null;
  const body = el('tbody');
  for (const name of names) {
    const p = props[name];
    const desc = el('td', {}, prose(p?.description));
    const extra = constraints(p);
    if (extra.length) desc.append(el('div', { class: 'muted' }, extra.join('; ')));
    body.append(el('tr', {},
      el('td', { class: 'name' }, name, required.has(name) ? el('span', { class: 'req' }, 'required') : null),
      el('td', {}, typeLabel(doc, p)),
      desc));
  }
  return el('table', {}, el('thead', {}, el('tr', {}, el('th', {}, 'Field'), el('th', {}, 'Type'), el('th', {}, 'Description'))), body);
}

const formatExamples = {
  uuid: '0193a5b2-7c1e-7d3a-9f00-2b1c3d4e5f60',
  'date-time': '2026-01-01T12:00:00Z',
  date: '2026-01-01',
  uri: 'https://example.com/input.png',
  email: 'ops@example.com',
};

// example builds an example value of a schema: its own examples, default
// or first enum value where it has one, else one made from its type (an
// object gets its required properties, or all when none is required).
export function example(doc, schema, seen = new Set(), depth = 0) {
  if (!schema || typeof schema !== 'object' || depth > 6) return null;
  if (schema.$ref) {
    if (seen.has(schema.$ref)) return {};
    const next = new Set(seen).add(schema.$ref);
    return example(doc, resolve(doc, { $ref: schema.$ref }), next, depth + 1);
  }
  if (Array.isArray(schema.examples) && schema.examples.length) return schema.examples[0];
  if (schema.example !== undefined) return schema.example;
  if (schema.const !== undefined) return schema.const;
  if (schema.default !== undefined) return schema.default;
  if (Array.isArray(schema.enum) && schema.enum.length) return schema.enum[0];
  const alts = schema.oneOf || schema.anyOf;
  if (alts && alts.length) {
    const disc = schema.discriminator;
    if (!disc || !disc.mapping) return example(doc, alts[0], seen, depth + 1);
    // The variant with the fewest required fields, its discriminator set.
    let best = null;
    for (const [value, ref] of Object.entries(disc.mapping)) {
      const n = (resolve(doc, { $ref: ref })?.required || []).length;
      if (!best || n < best.n) best = { value, ref, n };
    }
    const ex = example(doc, { $ref: best.ref }, seen, depth + 1);
    const out = { [disc.propertyName]: best.value, ...(ex && typeof ex === 'object' ? ex : {}) };
    out[disc.propertyName] = best.value;
    return out;
  }
  if (schema.allOf) {
    return schema.allOf.reduce((acc, s) => Object.assign(acc, example(doc, s, seen, depth + 1) || {}), {});
  }
  const types = Array.isArray(schema.type) ? schema.type.filter((t) => t !== 'null') : [schema.type];
  const type = types[0] || (schema.properties ? 'object' : undefined);
  switch (type) {
    case 'object': {
      const out = {};
      const props = schema.properties || {};
      let names = (schema.required || []).filter((n) => n in props);
      if (names.length === 0) names = Object.keys(props);
      for (const n of names) {
        const p = props[n];
        if (p && p.readOnly) continue;
        out[n] = example(doc, p, seen, depth + 1);
      }
      return out;
    }
    case 'array': return [example(doc, schema.items, seen, depth + 1)];
    case 'string': return formatExamples[schema.format] || 'string';
    case 'integer': return typeof schema.minimum === 'number' ? schema.minimum : 0;
    case 'number': return typeof schema.minimum === 'number' ? schema.minimum : 0;
    case 'boolean': return false;
    default: return null;
  }
}

// schemaSection renders one component schema.
export function schemaSection(doc, name, schema) {
  const sec = el('section', { class: 'schema', id: schemaId(name), 'data-search': name.toLowerCase() });
  const kind = schema.type ? typeLabel(doc, { type: schema.type, format: schema.format, items: schema.items, additionalProperties: schema.additionalProperties }) : null;
  sec.append(el('h3', {}, el('span', { class: 'path' }, name), kind));
  sec.append(prose(schema.description));
  const alts = schema.oneOf || schema.anyOf;
  if (alts) {
    const disc = schema.discriminator;
    if (disc) {
      sec.append(el('p', {}, 'Chosen by ', el('code', {}, disc.propertyName), ':'));
      const body = el('tbody');
      for (const [value, ref] of Object.entries(disc.mapping || {})) {
        body.append(el('tr', {}, el('td', { class: 'name' }, value), el('td', {}, typeLabel(doc, { $ref: ref }))));
      }
      sec.append(el('table', {}, el('thead', {}, el('tr', {}, el('th', {}, disc.propertyName), el('th', {}, 'Schema'))), body));
    } else {
      sec.append(el('p', {}, (schema.oneOf ? 'One of: ' : 'Any of: ')), el('ul', {}, alts.map((s) => el('li', {}, typeLabel(doc, s)))));
    }
  }
  const table = propertiesTable(doc, schema);
  if (table) sec.append(table);
  const extra = constraints(schema);
  if (extra.length) sec.append(el('p', { class: 'muted' }, extra.join('; ')));
  sec.append(el('details', {}, el('summary', {}, 'Example'), el('pre', {}, JSON.stringify(example(doc, schema), null, 2))));
  return sec;
}
