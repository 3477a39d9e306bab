package mock

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/task"
)

// OpTrainLoRA is the operation of a training task: LoRA weights from a zip
// of images. The mock "trains" without a GPU: it reads the archive, checks
// that it holds images, and writes deterministic weights.
const OpTrainLoRA = "train_lora"

// The names of a mock training's outputs, as fal's flux-lora-fast-training
// names its files (reference/executors.md §2.5: diffusers_lora_file,
// config_file).
const (
	WeightsName = "pytorch_lora_weights.safetensors"
	ConfigName  = "config.json"
)

// trainRequest is what the mock reads of a training task's fields.
type trainRequest struct {
	ImagesDataURL string `json:"images_data_url"`
	Steps         int    `json:"steps"`
	TriggerWord   string `json:"trigger_word"`
	CreateMasks   bool   `json:"create_masks"`
	IsStyle       bool   `json:"is_style"`
	Preprocessed  bool   `json:"is_input_format_already_preprocessed"`
}

// imageExts are the image files a training archive may hold.
var imageExts = map[string]bool{".png": true, ".jpg": true, ".jpeg": true, ".webp": true}

// train runs a training job: progress 10, 40, 70, 100 and two outputs,
// WeightsName and ConfigName. A trigger word starting with FailPrefix fails
// the job with that category; an archive that is not a zip of images is
// invalid input.
func (e *Executor) train(ctx context.Context, job *executor.Job, r executor.Reporter) (*executor.Output, error) {
	var req trainRequest
	if err := json.Unmarshal(job.Fields, &req); err != nil {
		return nil, executor.Errorf(executor.InvalidInput, "mock: reading training fields: %w", err)
	}
	if err := scriptedFailure(req.TriggerWord); err != nil {
		return nil, err
	}
	if req.Steps <= 0 {
		req.Steps = 1
	}
	digest := sha256.New()
	images := 0
	if job.OpenInput != nil && req.ImagesDataURL != "" {
		data, err := job.OpenInput(ctx, req.ImagesDataURL)
		if err != nil {
			return nil, executor.Classify(executor.InvalidInput, fmt.Errorf("mock: reading images_data_url: %w", err))
		}
		if images, err = countImages(data); err != nil {
			return nil, err
		}
		digest.Write(data)
	} else {
		digest.Write([]byte(req.ImagesDataURL))
	}
	fmt.Fprintf(digest, "\x00%s\x00%d\x00%t\x00%t\x00%t", req.TriggerWord, req.Steps, req.CreateMasks, req.IsStyle, req.Preprocessed)
	sum := digest.Sum(nil)
	for i, pct := range []float64{10, 40, 70} {
		if err := e.sleep(ctx); err != nil {
			return nil, err
		}
		stage := fmt.Sprintf("step %d/%d", req.Steps*(i+1)/4, req.Steps)
		if err := r.Progress(ctx, pct, stage); err != nil {
			return nil, err
		}
	}
	weights := Safetensors(map[string]string{"format": "pt", "trigger_word": req.TriggerWord, "steps": strconv.Itoa(req.Steps)},
		map[string][]float32{"lora_unet_down.weight": vector(sum, 16), "lora_unet_up.weight": vector(sum[16:], 16)}, 4)
	w, err := job.Put(ctx, WeightsName, "application/octet-stream", weights)
	if err != nil {
		return nil, fmt.Errorf("storing weights: %w", err)
	}
	cfg, _ := json.Marshal(map[string]any{ // plain values: cannot fail
		"trainer": "mock", "steps": req.Steps, "trigger_word": req.TriggerWord, "images": images,
		"create_masks": req.CreateMasks, "is_style": req.IsStyle, "is_input_format_already_preprocessed": req.Preprocessed,
		"dataset_sha256": fmt.Sprintf("%x", sum),
	})
	c, err := job.Put(ctx, ConfigName, "application/json", cfg)
	if err != nil {
		return nil, fmt.Errorf("storing config: %w", err)
	}
	if err := r.Progress(ctx, 100, "trained"); err != nil {
		return nil, err
	}
	return &executor.Output{Artifacts: []task.Artifact{w, c}, Data: map[string]any{"steps": req.Steps, "images": images}}, nil
}

// countImages counts the images of a zip archive; an archive that is not a
// zip, or holds no image, is invalid input.
func countImages(data []byte) (int, error) {
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return 0, executor.Errorf(executor.InvalidInput, "mock: images_data_url is not a zip archive: %w", err)
	}
	n := 0
	for _, f := range zr.File {
		if imageExts[strings.ToLower(path.Ext(f.Name))] && !strings.HasSuffix(f.Name, "/") {
			n++
		}
	}
	if n == 0 {
		return 0, executor.Errorf(executor.InvalidInput, "mock: the archive holds no images (png, jpg, jpeg or webp)")
	}
	return n, nil
}

// vector derives n weights in [-1, 1) from seed.
func vector(seed []byte, n int) []float32 {
	out := make([]float32, n)
	h := sha256.Sum256(seed)
	for i := range out {
		if i > 0 && i%8 == 0 {
			h = sha256.Sum256(h[:])
		}
		v := binary.BigEndian.Uint32(h[(i%8)*4:])
		out[i] = float32(float64(v)/float64(math.MaxUint32)*2 - 1)
	}
	return out
}

// Safetensors encodes float32 tensors of shape [len/cols, cols] in the
// safetensors format: an 8-byte little-endian header length, a JSON header
// naming each tensor's dtype, shape and byte range (with metadata under
// "__metadata__"), then the tensors' bytes, in name order.
func Safetensors(meta map[string]string, tensors map[string][]float32, cols int) []byte {
	names := make([]string, 0, len(tensors))
	for n := range tensors {
		names = append(names, n)
	}
	sort.Strings(names)
	header := map[string]any{"__metadata__": meta}
	var data bytes.Buffer
	for _, n := range names {
		t := tensors[n]
		start := data.Len()
		for _, v := range t {
			_ = binary.Write(&data, binary.LittleEndian, v) // a bytes.Buffer does not fail
		}
		header[n] = map[string]any{"dtype": "F32", "shape": []int{len(t) / cols, cols}, "data_offsets": []int{start, data.Len()}}
	}
	hdr, _ := json.Marshal(header) // plain values: cannot fail
	var out bytes.Buffer
	_ = binary.Write(&out, binary.LittleEndian, uint64(len(hdr)))
	out.Write(hdr)
	out.Write(data.Bytes())
	return out.Bytes()
}
