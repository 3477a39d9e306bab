package imagetask_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/computeserver/compute/internal/artifact"
	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executors"
	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/task"
	"github.com/computeserver/compute/internal/tasks/imagetask"
)

type fields struct{ Skip bool }

// Without the local models and a hosted executor, the mock is the only
// executor the image types can use: a task that names none is refused
// with the way to a real one; naming the mock, or needing no executor, is
// allowed.
func TestRealOnly(t *testing.T) {
	t.Parallel()
	kinds := []string{"command", "fal", "replicate", "mock"}
	s := &imagetask.RealOnly[fields]{Executors: executors.Default(), Type: "background_remove", Default: "models-bg",
		Kinds: kinds, Skip: func(f *fields) bool { return f.Skip }}
	err := s.Schedule(context.Background(), &task.Task{ProviderType: "mock"}, &fields{})
	var fe *registry.FieldError
	if !errors.As(err, &fe) || fe.Field != "provider_type" || !strings.Contains(fe.Message, "make models") ||
		!strings.Contains(fe.Message, "models-bg") || !strings.Contains(fe.Message, "command, fal or replicate") {
		t.Fatalf("a task routed to the mock: %v, want a provider_type error naming make models and the executor types", err)
	}
	// The config file's route to the mock chooses it.
	routed, err := executors.Build(map[string]executors.Entry{"mock": {Type: "mock"}},
		map[string]executor.Route{"background_remove": {Executor: "mock"}})
	if err != nil {
		t.Fatal(err)
	}
	r := &imagetask.RealOnly[fields]{Executors: routed, Type: "background_remove", Default: "models-bg", Kinds: kinds}
	if err := r.Schedule(context.Background(), &task.Task{Type: "background_remove", ProviderType: "mock"}, &fields{}); err != nil {
		t.Errorf("routed to the mock by the config file: %v", err)
	}
	for _, tt := range []struct {
		name string
		t    *task.Task
		f    *fields
	}{
		{"mock named", &task.Task{ProviderType: "mock", ProviderRequested: true}, &fields{}},
		{"no executor needed", &task.Task{ProviderType: "mock"}, &fields{Skip: true}},
		{"a real executor", &task.Task{ProviderType: "local"}, &fields{}},
	} {
		if err := s.Schedule(context.Background(), tt.t, tt.f); err != nil {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
}

func TestRead(t *testing.T) {
	t.Parallel()
	st, err := artifact.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	put := func(key string, data []byte) string {
		if _, err := st.Put(ctx, key, "image/png", data); err != nil {
			t.Fatal(err)
		}
		return artifact.PathPrefix + key
	}
	fetcher := &artifact.Fetcher{Store: st}
	in, err := imagetask.Read(ctx, fetcher, "", "image_url", put("examples/x/a.png", imagetask.ExamplePNG()))
	if err != nil || in.Config.Width != 32 || in.Config.Height != 24 || in.Format != "png" {
		t.Fatalf("a PNG: %+v, %v", in, err)
	}
	for name, url := range map[string]string{
		"not an image": put("examples/x/b.png", []byte("text")),
		"missing":      artifact.PathPrefix + "examples/x/none.png",
	} {
		_, err := imagetask.Read(ctx, fetcher, "", "image_url", url)
		var ee *executor.Error
		if !errors.As(err, &ee) || ee.Category != executor.InvalidInput || !strings.Contains(err.Error(), "image_url") {
			t.Errorf("%s: %v, want invalid_input naming image_url", name, err)
		}
	}
}

func TestCheckURL(t *testing.T) {
	t.Parallel()
	if err := imagetask.CheckURL("image_url", "", true); err != nil {
		t.Errorf("optional and empty: %v", err)
	}
	for _, url := range []string{"", "ftp://example.com/a.png", "https://" + strings.Repeat("a", 2048)} {
		var fe *registry.FieldError
		if err := imagetask.CheckURL("image_url", url, false); !errors.As(err, &fe) || fe.Field != "image_url" {
			t.Errorf("%.30q: %v, want a field error", url, err)
		}
	}
}
