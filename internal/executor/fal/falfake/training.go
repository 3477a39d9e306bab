package falfake

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
)

// TrainingModel is fal's LoRA trainer, fal-ai/flux-lora-fast-training
// (reference/executors.md §2.5): its input is images_data_url (required:
// a zip of images and captions), trigger_word, steps, create_masks,
// is_style, is_input_format_already_preprocessed, data_archive_format; its
// output {"diffusers_lora_file": File, "config_file": File}, File =
// {url, content_type, file_name, file_size}.
const TrainingModel = "fal-ai/flux-lora-fast-training"

// trainingOutcome is DefaultOutcome for TrainingModel: a request without
// images_data_url fails with fal's 422 validation detail (§2.2), others
// succeed with the trainer's output (trainingOutput).
func trainingOutcome(s Submission) Outcome {
	var in struct {
		ImagesDataURL *string `json:"images_data_url"`
	}
	if json.Unmarshal(s.Input, &in) != nil || in.ImagesDataURL == nil {
		return Outcome{Status: http.StatusUnprocessableEntity, Detail: []map[string]any{{
			"loc": []string{"body", "images_data_url"}, "msg": "field required", "type": "value_error.missing",
		}}}
	}
	return Outcome{}
}

// trainingOutput is the output of a successful training (§2.5): the
// weights, a small safetensors file derived from the input, and the
// configuration, a JSON file echoing it, both served by the fake until
// the media TTL ends (§2.3) like its images.
func (f *Fake) trainingOutput(j *job) map[string]any {
	sum := sha256.Sum256(j.sub.Input)
	header, _ := json.Marshal(map[string]any{ // plain values: cannot fail
		"__metadata__":          map[string]string{"format": "pt", "request_id": j.sub.ID},
		"lora_unet_down.weight": map[string]any{"dtype": "U8", "shape": []int{len(sum)}, "data_offsets": []int{0, len(sum)}},
	})
	weights := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	weights = append(append(weights, header...), sum[:]...)
	var input map[string]any
	_ = json.Unmarshal(j.sub.Input, &input) // trainingOutcome vetted it
	config, _ := json.Marshal(map[string]any{"input": input, "request_id": j.sub.ID})
	file := func(data []byte, contentType, ext, name string) map[string]any {
		path := f.files.Put(data, contentType, ext, j.mediaTTL)
		return map[string]any{"url": j.base + path, "content_type": contentType, "file_name": name, "file_size": len(data)}
	}
	return map[string]any{
		"diffusers_lora_file": file(weights, "application/octet-stream", ".safetensors", "pytorch_lora_weights.safetensors"),
		"config_file":         file(config, "application/json", ".json", fmt.Sprintf("config_%s.json", j.sub.ID)),
	}
}
