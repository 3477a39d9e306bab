#!/usr/bin/env python3
"""A stand-in LoRA trainer for the command executor: it "trains" on a CPU,
deterministically, in well under a second, and speaks the executor's line
protocol (docs/executors.md, "Command") like a real training script would.

It reads the task's fields (--fields, the executor's {{fields_file}}) and the
zip of images (--images, {{input:images_data_url}}), then runs `steps` steps of
a toy optimisation whose target is derived from the archive's bytes, the
trigger word and the flags. As it goes it prints

    PROGRESS <percent> step <i>/<steps>
    CHECKPOINT <path>            every --checkpoint-every steps
    RESULT {"start_step": N, …}  once, at the start

and at the end writes into --out:

    pytorch_lora_weights.safetensors   the weights (a real safetensors file)
    config.json                        the training configuration

Given --checkpoint (the executor's {{checkpoint}}: the task's last checkpoint,
"" when there is none) it resumes from the checkpoint's step instead of step 0;
the weights are byte-identical to an uninterrupted run's. Exit codes: 0 done,
2 unusable input (not a zip, no images, bad fields), 1 a failure (retried).

Test knobs: --step-delay SECONDS sleeps each step; --fail-at-step N exits 1 on
reaching step N when the attempt (COMPUTE_ATTEMPT) is --fail-on-attempt.
Standard library only.
"""

import argparse
import hashlib
import json
import os
import struct
import sys
import time
import zipfile

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp")
SIZE = 16  # weights per tensor
LEARNING_RATE = 0.01


def fail(code, message):
    print("error: " + message, file=sys.stderr, flush=True)
    sys.exit(code)


def read_dataset(path):
    """Returns (images, captions, sha256 of the archive)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
        with zipfile.ZipFile(path) as z:
            names = [n for n in z.namelist() if not n.endswith("/")]
    except (OSError, zipfile.BadZipFile) as e:
        fail(2, "images_data_url is not a zip archive: %s" % e)
    images = sorted(n for n in names if n.lower().endswith(IMAGE_EXTS))
    if not images:
        fail(2, "the archive holds no images (png, jpg, jpeg or webp)")
    stems = {os.path.splitext(n)[0] for n in names if n.lower().endswith(".txt")}
    captions = sum(1 for n in images if os.path.splitext(n)[0] in stems)
    return images, captions, hashlib.sha256(data).hexdigest()


def target_of(seed):
    """2*SIZE floats in [-1, 1) derived from seed."""
    out, h = [], hashlib.sha256(seed.encode()).digest()
    while len(out) < 2 * SIZE:
        for i in range(0, 32, 4):
            v = struct.unpack(">I", h[i:i + 4])[0]
            out.append(v / 4294967295.0 * 2 - 1)
        h = hashlib.sha256(h).digest()
    return out[:2 * SIZE]


def safetensors(meta, tensors):
    """Encodes float32 tensors of shape [SIZE/4, 4] as safetensors."""
    header, data = {"__metadata__": meta}, b""
    for name in sorted(tensors):
        raw = struct.pack("<%df" % len(tensors[name]), *tensors[name])
        header[name] = {"dtype": "F32", "shape": [len(tensors[name]) // 4, 4],
                        "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    return struct.pack("<Q", len(h)) + h + data


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--fields", required=True, help="the task's fields (JSON file)")
    p.add_argument("--images", required=True, help="the zip of training images")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--work", default=".", help="where checkpoints are written")
    p.add_argument("--checkpoint", default="", help="checkpoint to resume from")
    p.add_argument("--checkpoint-every", type=int, default=0, help="steps between checkpoints (default: a quarter)")
    p.add_argument("--step-delay", type=float, default=0.0)
    p.add_argument("--fail-at-step", type=int, default=0)
    p.add_argument("--fail-on-attempt", type=int, default=1)
    a = p.parse_args()

    try:
        with open(a.fields) as f:
            fields = json.load(f)
        steps = int(fields.get("steps") or 1000)
    except (OSError, ValueError, TypeError) as e:
        fail(2, "reading the fields: %s" % e)
    if steps < 1:
        fail(2, "steps must be at least 1")
    trigger = fields.get("trigger_word") or ""
    flags = [bool(fields.get(k)) for k in ("create_masks", "is_style", "is_input_format_already_preprocessed")]
    images, captions, digest = read_dataset(a.images)
    print("dataset: %d images, %d captions, sha256 %s" % (len(images), captions, digest), flush=True)

    seed = "%s|%s|%s|%d" % (digest, trigger, flags, steps)
    target = target_of(seed)
    weights, start = [0.0] * (2 * SIZE), 0
    if a.checkpoint:
        try:
            with open(a.checkpoint) as f:
                ck = json.load(f)
            if ck.get("seed") == seed:
                weights, start = [float(w) for w in ck["weights"]], int(ck["step"])
                print("resuming from step %d (%s)" % (start, os.path.basename(a.checkpoint)), flush=True)
            else:
                print("the checkpoint is of another training; starting at step 0", flush=True)
        except (OSError, ValueError, KeyError, TypeError) as e:
            print("the checkpoint cannot be read (%s); starting at step 0" % e, flush=True)
    print("RESULT " + json.dumps({"start_step": start, "images": len(images), "captions": captions}), flush=True)

    every = a.checkpoint_every or max(1, steps // 4)
    attempt = int(os.environ.get("COMPUTE_ATTEMPT", "1") or 1)
    ckdir = os.path.join(a.work, "ckpt")
    os.makedirs(ckdir, exist_ok=True)
    for step in range(start + 1, steps + 1):
        if a.fail_at_step and step == a.fail_at_step and attempt == a.fail_on_attempt:
            fail(1, "the trainer fell over at step %d (attempt %d)" % (step, attempt))
        if a.step_delay:
            time.sleep(a.step_delay)
        weights = [w + LEARNING_RATE * (t - w) for w, t in zip(weights, target)]
        print("PROGRESS %.2f step %d/%d" % (100.0 * step / steps, step, steps), flush=True)
        if step % every == 0 and step < steps:
            path = os.path.join(ckdir, "step-%06d.json" % step)
            with open(path + ".tmp", "w") as f:
                json.dump({"step": step, "seed": seed, "weights": weights}, f)
            os.replace(path + ".tmp", path)
            print("CHECKPOINT " + path, flush=True)

    meta = {"format": "pt", "trigger_word": trigger, "steps": str(steps), "trainer": "examples/training/train_lora.py"}
    out = safetensors(meta, {"lora_unet_down.weight": weights[:SIZE], "lora_unet_up.weight": weights[SIZE:]})
    with open(os.path.join(a.out, "pytorch_lora_weights.safetensors"), "wb") as f:
        f.write(out)
    config = {"trainer": "train_lora.py", "steps": steps, "trigger_word": trigger, "images": len(images),
              "captions": captions, "create_masks": flags[0], "is_style": flags[1],
              "is_input_format_already_preprocessed": flags[2], "dataset_sha256": digest}
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(config, f, sort_keys=True, indent=1)
    print("PROGRESS 100 trained", flush=True)


if __name__ == "__main__":
    main()
