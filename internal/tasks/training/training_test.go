package training_test

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/computeserver/compute/internal/artifact"
	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executor/mock"
	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/task"
	"github.com/computeserver/compute/internal/tasks/training"
	"github.com/computeserver/compute/internal/testutil/fakeruntime"
)

func ptr[T any](v T) *T { return &v }

// valid returns fields as the API would store them: defaults applied.
func valid() *training.Fields {
	return &training.Fields{ImagesDataURL: "https://example.com/set.zip", Steps: 1000, CreateMasks: true}
}

func TestDeclare(t *testing.T) {
	t.Parallel()
	reg := registry.New()
	if err := reg.Register(training.Type(training.Config{})); err != nil {
		t.Fatal(err)
	}
	def, ok := reg.Lookup(training.Name)
	if !ok {
		t.Fatal("not registered")
	}
	if def.Table != "training_tasks" || def.DefaultProvider != "mock" || def.RouteAlias != "training" {
		t.Errorf("table %q, default provider %q, alias %q", def.Table, def.DefaultProvider, def.RouteAlias)
	}
	if want := "[mock fal replicate command]"; fmt.Sprint(def.Providers) != want {
		t.Errorf("providers %v, want %s", def.Providers, want)
	}
	readOnly := map[string]bool{}
	for _, c := range def.Columns {
		readOnly[c.Name] = c.ReadOnly
	}
	for _, name := range []string{"weights_path", "weights_url", "config_url"} {
		if !readOnly[name] {
			t.Errorf("column %s should be read-only", name)
		}
	}
	if len(def.UpdateFields) != 6 {
		t.Errorf("%d update fields, want 6 (every input)", len(def.UpdateFields))
	}
	if training.Operation != "train_lora" {
		t.Errorf("operation %q", training.Operation)
	}
}

func TestDefaultsAndValidation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		change    func(f *training.Fields)
		wantField string // "" means valid
	}{
		{name: "valid", change: func(*training.Fields) {}},
		{name: "artifact path", change: func(f *training.Fields) { f.ImagesDataURL = "/api/v1/artifacts/uploads/set.zip" }},
		{name: "every flag", change: func(f *training.Fields) {
			f.CreateMasks, f.IsStyle, f.IsInputFormatAlreadyPreprocessed, f.TriggerWord = false, true, true, ptr("TOK")
		}},
		{name: "fewest and most steps", change: func(f *training.Fields) { f.Steps = 1 }},
		{name: "most steps", change: func(f *training.Fields) { f.Steps = training.MaxSteps }},
		{name: "too many steps", change: func(f *training.Fields) { f.Steps = training.MaxSteps + 1 }, wantField: "steps"},
		{name: "negative steps", change: func(f *training.Fields) { f.Steps = -1 }, wantField: "steps"},
		{name: "no archive", change: func(f *training.Fields) { f.ImagesDataURL = "" }, wantField: "images_data_url"},
		{name: "archive not a URL", change: func(f *training.Fields) { f.ImagesDataURL = "set.zip" }, wantField: "images_data_url"},
		{name: "archive over ftp", change: func(f *training.Fields) { f.ImagesDataURL = "ftp://example.com/set.zip" }, wantField: "images_data_url"},
		{name: "long url", change: func(f *training.Fields) { f.ImagesDataURL = "https://example.com/" + strings.Repeat("a", 2048) }, wantField: "images_data_url"},
		{name: "long trigger word", change: func(f *training.Fields) { f.TriggerWord = ptr(strings.Repeat("é", 257)) }, wantField: "trigger_word"},
		{name: "trigger word of 256 multibyte characters", change: func(f *training.Fields) { f.TriggerWord = ptr(strings.Repeat("é", 256)) }},
	}
	def, err := training.Type(training.Config{}).Declare()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := valid()
			tt.change(f)
			err := def.PrepareModel(f)
			if tt.wantField == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			var fe *registry.FieldError
			if !errors.As(err, &fe) || fe.Field != tt.wantField {
				t.Fatalf("got %v, want a FieldError for %s", err, tt.wantField)
			}
		})
	}
	f := &training.Fields{ImagesDataURL: "https://example.com/set.zip"}
	f.ApplyDefaults()
	if f.Steps != training.DefaultSteps || f.CreateMasks {
		t.Errorf("defaults in Go: %+v (create_masks' true default is the API's tag; a false built in Go is kept)", f)
	}
}

// storeInput puts data into the job runtime's artifact store under key
// and returns its artifact path.
func storeInput(t *testing.T, rt *fakeruntime.Runtime, key string, data []byte) string {
	t.Helper()
	if _, err := rt.Store.Put(context.Background(), key, "application/zip", data); err != nil {
		t.Fatal(err)
	}
	return artifact.PathPrefix + key
}

// safetensorsHeader decodes a safetensors file's header, failing the test
// when the file is not one.
func safetensorsHeader(t *testing.T, data []byte) map[string]json.RawMessage {
	t.Helper()
	if len(data) < 8 {
		t.Fatalf("weights of %d bytes", len(data))
	}
	n := binary.LittleEndian.Uint64(data[:8])
	if n == 0 || 8+n > uint64(len(data)) {
		t.Fatalf("header length %d of a %d-byte file", n, len(data))
	}
	var h map[string]json.RawMessage
	if err := json.Unmarshal(data[8:8+n], &h); err != nil {
		t.Fatalf("header: %v", err)
	}
	var tensor struct {
		Dtype       string `json:"dtype"`
		DataOffsets []int  `json:"data_offsets"`
	}
	if err := json.Unmarshal(h["lora_unet_down.weight"], &tensor); err != nil || tensor.Dtype == "" || len(tensor.DataOffsets) != 2 {
		t.Fatalf("tensor lora_unet_down.weight: %s (%v)", h["lora_unet_down.weight"], err)
	}
	return h
}

// readArtifact reads the artifact at key from the runtime's store.
func readArtifact(t *testing.T, rt *fakeruntime.Runtime, key string) []byte {
	t.Helper()
	rc, _, err := rt.Store.Open(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// zipOf builds a zip archive of files.
func zipOf(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for name, body := range files {
		w, err := zw.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(body))
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestMockTraining(t *testing.T) {
	t.Parallel()
	f := valid()
	f.Steps, f.TriggerWord = 20, ptr("TOK")
	job, rt := fakeruntime.NewJob(t, training.Name, "mock", f)
	f.ImagesDataURL = storeInput(t, rt, "uploads/set.zip", training.ExampleDataset(4))
	p := training.Type(training.Config{Fetcher: &artifact.Fetcher{Store: rt.Store}}).Processor
	res, err := p.Process(context.Background(), job)
	if err != nil {
		t.Fatal(err)
	}
	out := res.Data.(training.Output)
	if f.WeightsURL == nil || out.WeightsURL != *f.WeightsURL || !strings.HasSuffix(out.WeightsURL, "/"+mock.WeightsName) {
		t.Fatalf("weights url %v, output %+v", f.WeightsURL, out)
	}
	if f.ConfigURL == nil || !strings.HasSuffix(*f.ConfigURL, "/"+mock.ConfigName) || out.TriggerWord != "TOK" || out.Steps != 20 {
		t.Errorf("config url %v, output %+v", f.ConfigURL, out)
	}
	h := safetensorsHeader(t, readArtifact(t, rt, *f.WeightsPath))
	if !bytes.Contains(h["__metadata__"], []byte(`"trigger_word":"TOK"`)) {
		t.Errorf("metadata %s", h["__metadata__"])
	}
	if err := rt.CheckProgress(); err != nil {
		t.Error(err)
	}
	if calls := rt.ProgressCalls(); calls[len(calls)-1].Percent != 100 {
		t.Errorf("last progress %+v", calls[len(calls)-1])
	}
}

func TestMockTrainingRefusesBadArchives(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{name: "not a zip", data: []byte("these are not images"), want: "not a zip archive"},
		{name: "no images", data: zipOf(t, map[string]string{"notes.txt": "hello"}), want: "holds no images"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := valid()
			job, rt := fakeruntime.NewJob(t, training.Name, "mock", f)
			f.ImagesDataURL = storeInput(t, rt, "uploads/bad.zip", tt.data)
			_, err := training.Type(training.Config{Fetcher: &artifact.Fetcher{Store: rt.Store}}).Processor.Process(context.Background(), job)
			if !executor.Is(err, executor.InvalidInput) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want invalid_input naming %q", err, tt.want)
			}
			if f.WeightsURL != nil {
				t.Errorf("weights url %q on a failure", *f.WeightsURL)
			}
		})
	}
}

func TestInvalidFieldsArePermanent(t *testing.T) {
	t.Parallel()
	f := valid()
	f.Steps = 0
	job, _ := fakeruntime.NewJob(t, training.Name, "mock", f)
	_, err := training.Type(training.Config{}).Processor.Process(context.Background(), job)
	if !task.IsPermanent(err) {
		t.Fatalf("got %v, want a permanent error", err)
	}
}
