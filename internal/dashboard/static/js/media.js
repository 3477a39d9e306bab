// Artifact previews. The API serves artifacts only with the key, and an
// <img> or <video> cannot send it, so each artifact is fetched with the
// header into a Blob and shown through an object URL, revoked when the
// view goes. Text is shown as text; nothing fetched is ever run: HTML or
// SVG artifacts are offered as downloads, not opened in this origin.

import {artifactPath, fetchBlob} from './api.js';
import {h, replace, bytes, notice} from './dom.js';

const TEXT_LIMIT = 64 * 1024;

function kind(contentType) {
  const ct = (contentType || '').split(';')[0].trim().toLowerCase();
  if (ct === 'image/svg+xml') return 'download';
  if (ct.startsWith('image/')) return 'image';
  if (ct.startsWith('video/')) return 'video';
  if (ct.startsWith('audio/')) return 'audio';
  if (ct.startsWith('text/') && ct !== 'text/html') return 'text';
  if (['application/json', 'application/x-ndjson', 'application/yaml', 'application/xml'].includes(ct)) return 'text';
  return 'download';
}

function fileName(a) {
  const key = a.key || a.url || 'artifact';
  return key.split('/').pop();
}

// Previews keeps the object URLs it made, to revoke them.
export class Previews {
  constructor() {
    this.urls = [];
    this.ctrl = new AbortController();
  }

  // close stops the downloads under way and frees the object URLs; the
  // previews can be used again after it.
  close() {
    this.ctrl.abort();
    this.ctrl = new AbortController();
    for (const u of this.urls) URL.revokeObjectURL(u);
    this.urls = [];
  }

  // card renders one artifact: a preview box filled when its bytes arrive.
  card(a) {
    const k = kind(a.content_type);
    const box = h('div', {class: 'preview loading', dataset: {kind: k}}, h('span', {class: 'muted'}, 'Loading…'));
    const meta = h('div', {class: 'artifact-meta'},
      h('strong', {}, fileName(a)), ' ',
      h('span', {class: 'muted'}, [a.content_type, bytes(a.size), a.width && a.height ? `${a.width}×${a.height}` : ''].filter(Boolean).join(' · ')));
    const links = h('div', {class: 'artifact-links'});
    const card = h('figure', {class: 'artifact', dataset: {key: a.key || ''}}, box, h('figcaption', {}, meta, links));
    const path = artifactPath(a.url);
    if (!path) {
      // Served elsewhere (a CDN or public bucket): no key is needed, but
      // this page may only load from its own origin; link to it instead.
      replace(box, h('span', {class: 'muted'}, 'Served outside this server.'));
      links.append(h('a', {href: a.url, target: '_blank', rel: 'noopener noreferrer'}, 'Open'));
      return card;
    }
    this.fill(box, links, path, k, a);
    return card;
  }

  async fill(box, links, path, k, a) {
    try {
      const blob = await fetchBlob(path, {signal: this.ctrl.signal});
      box.classList.remove('loading');
      if (k === 'text') {
        const text = await blob.slice(0, TEXT_LIMIT).text();
        replace(box, h('pre', {class: 'text-preview'}, text + (blob.size > TEXT_LIMIT ? '\n…' : '')));
      } else if (k === 'image' || k === 'video' || k === 'audio') {
        const url = URL.createObjectURL(blob);
        this.urls.push(url);
        const el = k === 'image' ? h('img', {src: url, alt: fileName(a), class: 'artifact-img'})
          : h(k, {src: url, controls: true, class: 'artifact-' + k, preload: 'metadata'});
        replace(box, el);
      } else {
        replace(box, h('span', {class: 'muted'}, 'No preview for ' + (a.content_type || 'this file') + '.'));
      }
      const dl = URL.createObjectURL(blob);
      this.urls.push(dl);
      links.append(h('a', {href: dl, download: fileName(a)}, 'Download'));
    } catch (err) {
      if (err.name === 'AbortError') return;
      box.classList.remove('loading');
      replace(box, notice('error', `Cannot load: ${err.message}`));
    }
  }
}
