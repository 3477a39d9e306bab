// TensorFlow.js models server: ESRGAN super-resolution (@upscalerjs/esrgan-slim,
// RDN weights inside the package, loaded with tfjs directly) and face
// detection (@vladmandic/face-api, SSD MobileNet v1 weights inside the
// package), on tfjs's WebAssembly backend. It serves every task of the
// command executor it runs under (mode: server); each model loads once, on
// the first task that needs it.
//
// Operations (inputs.image_url is the image; results go to output_dir):
//   upscale          fields upscale_factor (1–4), strength (0–1) → upscaled.png
//   enhance_faces    fields strength (0–1), min_confidence (0–1)  → enhanced.png
//   detect_faces     fields min_confidence                        → output {faces: […]}
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { serve, input, log, TaskError } from './protocol.mjs';

const require = createRequire(import.meta.url);
const faceapi = require('@vladmandic/face-api/dist/face-api.node-wasm.js');
const tf = faceapi.tf;
// The packages' weight files, beside this script (make models installs both).
const modules = path.join(path.dirname(fileURLToPath(import.meta.url)), 'node_modules');

let ready;
function backend() {
  ready ??= (async () => {
    await tf.setBackend('wasm');
    await tf.ready();
    log(`tfjs ${tf.version.tfjs} on ${tf.getBackend()}`);
  })();
  return ready;
}

// ESRGAN models by scale, loaded from the package's files into memory.
const esrgan = new Map();
async function esrganModel(scale) {
  await backend();
  if (!esrgan.has(scale)) {
    esrgan.set(scale, (async () => {
      const dir = path.join(path.join(modules, '@upscalerjs', 'esrgan-slim'), 'models', `x${scale}`);
      const json = JSON.parse(fs.readFileSync(path.join(dir, 'model.json'), 'utf8'));
      const specs = [];
      const buffers = [];
      for (const group of json.weightsManifest) {
        specs.push(...group.weights);
        for (const p of group.paths) buffers.push(fs.readFileSync(path.join(dir, p)));
      }
      const all = Buffer.concat(buffers);
      const weightData = all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength);
      return tf.loadLayersModel(tf.io.fromMemory({ modelTopology: json.modelTopology, weightSpecs: specs, weightData }));
    })());
  }
  return esrgan.get(scale);
}

let faceNet;
async function faceModel() {
  await backend();
  faceNet ??= faceapi.nets.ssdMobilenetv1.loadFromDisk(path.join(modules, '@vladmandic', 'face-api', 'model'));
  await faceNet;
}

/** readRGB decodes an image file to RGB pixels {data, width, height}, alpha flattened away. */
async function readRGB(file) {
  try {
    const { data, info } = await sharp(file).rotate().removeAlpha().raw().toBuffer({ resolveWithObject: true });
    return { data, width: info.width, height: info.height };
  } catch (err) {
    throw new TaskError('invalid_input', `image_url is not a supported image: ${err.message}`);
  }
}

/** resize resamples RGB pixels with Lanczos-3. */
async function resize(img, width, height) {
  const { data, info } = await sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 } })
    .resize(width, height, { fit: 'fill', kernel: 'lanczos3' }).raw().toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height };
}

/** blend returns a·s + b·(1−s) per pixel (same sizes); mask, when given, scales s per pixel (0–1). */
function blend(a, b, s, mask) {
  const out = Buffer.alloc(a.data.length);
  for (let i = 0; i < out.length; i++) {
    const w = mask ? s * mask[Math.floor(i / 3)] : s;
    out[i] = Math.max(0, Math.min(255, Math.round(a.data[i] * w + b.data[i] * (1 - w))));
  }
  return { data: out, width: a.width, height: a.height };
}

/** sharpen applies an unsharp mask (sigma 1) to RGB pixels. */
async function sharpen(img) {
  const { data, info } = await sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 } })
    .sharpen({ sigma: 1 }).raw().toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height };
}

async function writePNG(img, file) {
  await sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 } }).png().toFile(file);
}

const TILE = 128; // the patch size the models were trained on
const PAD = 8;    // context around each tile, cut off after

/** superResolve upscales RGB pixels by the model's integer scale, tile by tile. */
async function superResolve(img, scale, onTile) {
  const model = await esrganModel(scale);
  const { width, height } = img;
  const out = Buffer.alloc(width * scale * height * scale * 3);
  const full = tf.tensor3d(img.data, [height, width, 3], 'int32');
  try {
    const tiles = [];
    for (let y = 0; y < height; y += TILE) for (let x = 0; x < width; x += TILE) tiles.push([x, y]);
    let done = 0;
    for (const [x, y] of tiles) {
      const x0 = Math.max(0, x - PAD), y0 = Math.max(0, y - PAD);
      const x1 = Math.min(width, x + TILE + PAD), y1 = Math.min(height, y + TILE + PAD);
      const result = tf.tidy(() => {
        const patch = tf.slice(full, [y0, x0, 0], [y1 - y0, x1 - x0, 3]).toFloat().expandDims(0);
        return model.predict(patch).squeeze([0]).clipByValue(0, 255).round().toInt();
      });
      const px = await result.data();
      result.dispose();
      const pw = (x1 - x0) * scale;
      const tw = Math.min(TILE, width - x), th = Math.min(TILE, height - y);
      for (let row = 0; row < th * scale; row++) {
        const srcRow = (y - y0) * scale + row;
        const src = (srcRow * pw + (x - x0) * scale) * 3;
        const dst = (((y * scale) + row) * width * scale + x * scale) * 3;
        for (let i = 0; i < tw * scale * 3; i++) out[dst + i] = px[src + i];
      }
      onTile(++done, tiles.length);
    }
  } finally {
    full.dispose();
  }
  return { data: out, width: width * scale, height: height * scale };
}

/** upscale resizes by factor: the ESRGAN model of the next integer scale, resampled when factor is not one. */
async function upscale(img, factor, strength, ctx, lo = 10, hi = 90) {
  const width = Math.round(img.width * factor), height = Math.round(img.height * factor);
  const scale = Math.min(4, Math.max(2, Math.ceil(factor - 1e-9)));
  let sr = await superResolve(img, scale, (i, n) => ctx.progress(lo + ((hi - lo) * i) / n, `upscaling tile ${i}/${n}`));
  if (sr.width !== width || sr.height !== height) sr = await resize(sr, width, height);
  if (strength >= 1) return sr;
  return blend(sr, await resize(img, width, height), strength);
}

function num(v, def, min, max) {
  const n = typeof v === 'number' && Number.isFinite(v) ? v : def;
  return Math.max(min, Math.min(max, n));
}

async function detect(img, minConfidence) {
  await faceModel();
  const t = tf.tensor3d(img.data, [img.height, img.width, 3], 'int32');
  try {
    const found = await faceapi.detectAllFaces(t, new faceapi.SsdMobilenetv1Options({ minConfidence, maxResults: 50 }));
    return found.map((d) => ({
      score: Math.round(d.score * 1000) / 1000,
      box: { x: Math.round(d.box.x), y: Math.round(d.box.y), width: Math.round(d.box.width), height: Math.round(d.box.height) },
    }));
  } finally {
    t.dispose();
  }
}

/** featherMask is 1 inside a crop and falls to 0 over its outer quarter, so a blended face has no seam. */
function featherMask(w, h) {
  const m = new Float32Array(w * h);
  const edge = Math.max(1, Math.round(Math.min(w, h) / 4));
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
    const d = Math.min(x, y, w - 1 - x, h - 1 - y);
    m[y * w + x] = Math.min(1, d / edge);
  }
  return m;
}

function crop(img, x, y, w, h) {
  const out = Buffer.alloc(w * h * 3);
  for (let row = 0; row < h; row++) img.data.copy(out, row * w * 3, ((y + row) * img.width + x) * 3, ((y + row) * img.width + x + w) * 3);
  return { data: out, width: w, height: h };
}

function paste(img, part, x, y) {
  for (let row = 0; row < part.height; row++) part.data.copy(img.data, ((y + row) * img.width + x) * 3, row * part.width * 3, (row + 1) * part.width * 3);
}

serve({
  async upscale(req, ctx) {
    const f = req.fields || {};
    ctx.progress(2, 'reading the image');
    const img = await readRGB(input(req, 'image_url'));
    const factor = num(f.upscale_factor, 2, 1, 4);
    const out = factor === 1 ? img : await upscale(img, factor, num(f.strength, 1, 0, 1), ctx);
    ctx.progress(95, 'writing the image');
    await writePNG(out, path.join(req.output_dir, 'upscaled.png'));
    ctx.output({ width: out.width, height: out.height, scale: factor });
  },

  async detect_faces(req, ctx) {
    const f = req.fields || {};
    ctx.progress(5, 'reading the image');
    const img = await readRGB(input(req, 'image_url'));
    ctx.progress(20, 'finding faces');
    const faces = await detect(img, num(f.min_confidence, 0.5, 0.05, 0.99));
    ctx.output({ faces, width: img.width, height: img.height });
  },

  // Face enhancement: find the faces; super-resolve each face's crop (with
  // a margin) ×2 and resample it back, which cleans noise and compression
  // artefacts but also softens (this network smooths), so sharpen it
  // (unsharp mask, sigma 1); blend it over the original with a feathered
  // mask scaled by strength.
  async enhance_faces(req, ctx) {
    const f = req.fields || {};
    ctx.progress(2, 'reading the image');
    const img = await readRGB(input(req, 'image_url'));
    ctx.progress(10, 'finding faces');
    const faces = await detect(img, num(f.min_confidence, 0.5, 0.05, 0.99));
    const strength = num(f.strength, 0.8, 0, 1);
    const out = { data: Buffer.from(img.data), width: img.width, height: img.height };
    for (const [i, face] of faces.entries()) {
      const m = Math.round(Math.max(face.box.width, face.box.height) * 0.25);
      const x = Math.max(0, face.box.x - m), y = Math.max(0, face.box.y - m);
      const w = Math.min(img.width, face.box.x + face.box.width + m) - x;
      const h = Math.min(img.height, face.box.y + face.box.height + m) - y;
      if (w < 4 || h < 4) continue;
      const part = crop(img, x, y, w, h);
      const lo = 20 + (70 * i) / faces.length, hi = 20 + (70 * (i + 1)) / faces.length;
      const sr = await upscale(part, 2, 1, ctx, lo, hi);
      const back = await sharpen(await resize(sr, w, h));
      paste(out, blend(back, part, strength, featherMask(w, h)), x, y);
    }
    ctx.progress(95, 'writing the image');
    await writePNG(out, path.join(req.output_dir, 'enhanced.png'));
    ctx.output({ width: out.width, height: out.height, faces_found: faces.length, faces });
  },
});
