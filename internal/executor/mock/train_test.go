package mock_test

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executor/mock"
	"github.com/computeserver/compute/internal/task"
)

// trainJob is a training job whose archive is data (nil: no input
// reader), recording the files it stores.
func trainJob(fields string, data []byte, files map[string][]byte, mu *sync.Mutex) *executor.Job {
	j := &executor.Job{TaskID: uuid.New(), Type: "training", Operation: mock.OpTrainLoRA, Fields: json.RawMessage(fields),
		SaveHandle: func(context.Context, executor.Handle) error { return nil },
		Put: func(_ context.Context, name, ct string, b []byte) (task.Artifact, error) {
			mu.Lock()
			defer mu.Unlock()
			files[name] = b
			return task.Artifact{Key: "tasks/x/" + name, URL: "/api/v1/artifacts/tasks/x/" + name, ContentType: ct, Size: int64(len(b))}, nil
		}}
	if data != nil {
		j.OpenInput = func(context.Context, string) ([]byte, error) { return data, nil }
	}
	return j
}

func zipWith(t *testing.T, names ...string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, n := range names {
		w, err := zw.Create(n)
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte("content of " + n))
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestTrain(t *testing.T) {
	t.Parallel()
	nop := executor.ReporterFunc(func(context.Context, float64, string) error { return nil })
	run := func(fields string, data []byte) (map[string][]byte, *executor.Output, error) {
		var mu sync.Mutex
		files := map[string][]byte{}
		var ex mock.Executor
		out, err := executor.Execute(context.Background(), &ex, trainJob(fields, data, files, &mu), nop)
		return files, out, err
	}
	archive := zipWith(t, "a.png", "a.txt", "b.JPG", "dir/")
	fields := `{"images_data_url": "/api/v1/artifacts/set.zip", "steps": 40, "trigger_word": "TOK"}`
	files, out, err := run(fields, archive)
	if err != nil {
		t.Fatal(err)
	}
	w := files[mock.WeightsName]
	if len(out.Artifacts) != 2 || len(w) < 8 || out.Data["images"] != 2 {
		t.Fatalf("artifacts %+v, data %v, weights of %d bytes", out.Artifacts, out.Data, len(w))
	}
	n := binary.LittleEndian.Uint64(w[:8])
	var header map[string]json.RawMessage
	if err := json.Unmarshal(w[8:8+n], &header); err != nil || !strings.Contains(string(header["__metadata__"]), `"steps":"40"`) {
		t.Fatalf("header %s: %v", w[8:8+n], err)
	}
	if int(8+n)+2*16*4 != len(w) {
		t.Errorf("weights of %d bytes for a header of %d and two 16-float tensors", len(w), n)
	}
	again, _, _ := run(fields, archive)
	if !bytes.Equal(again[mock.WeightsName], w) {
		t.Error("the same training gave different weights")
	}
	other, _, _ := run(fields, zipWith(t, "c.png"))
	if bytes.Equal(other[mock.WeightsName], w) {
		t.Error("another archive gave the same weights")
	}

	for _, tc := range []struct {
		name, fields string
		data         []byte
		want         executor.Category
	}{
		{name: "not a zip", fields: fields, data: []byte("nope"), want: executor.InvalidInput},
		{name: "no images", fields: fields, data: zipWith(t, "notes.txt"), want: executor.InvalidInput},
		{name: "scripted failure", fields: `{"trigger_word": "mock-fail:provider_unavailable"}`, data: archive, want: executor.ProviderUnavailable},
	} {
		if _, _, err := run(tc.fields, tc.data); !executor.Is(err, tc.want) {
			t.Errorf("%s: %v, want %s", tc.name, err, tc.want)
		}
	}
	// Without an input reader the URL stands for the archive.
	if _, _, err := run(fields, nil); err != nil {
		t.Errorf("without an input reader: %v", err)
	}
	var e *executor.Error
	_, _, err = run(fields, []byte("nope"))
	if !errors.As(err, &e) || !strings.Contains(err.Error(), "not a zip archive") {
		t.Errorf("error %v", err)
	}
}
