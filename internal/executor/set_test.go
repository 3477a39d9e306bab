package executor_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executor/mock"
	"github.com/computeserver/compute/internal/task"
)

func newSet(t *testing.T) *executor.Set {
	t.Helper()
	set := executor.NewSet()
	for _, name := range []string{"gpu", "cheap"} {
		ex, err := mock.New(name, mock.Settings{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := set.Add("mock", ex); err != nil {
			t.Fatal(err)
		}
	}
	return set
}

// TestStandIn: a mock that nothing chose is refused for the types that
// ask, saying what to configure; one the client or the route named is not.
func TestStandIn(t *testing.T) {
	t.Parallel()
	set := newSet(t)
	kinds := []string{"openai", "gemini", "mock"}
	// Both executors are mocks: nothing real is usable.
	err := set.StandIn("llm_interaction", kinds, "gpu", false)
	var ue *executor.UnusableError
	if !errors.As(err, &ue) || err.Error() != "no configured executor can run llm_interaction tasks: configure an executor of type openai or gemini (docs/executors.md)" {
		t.Errorf("an unnamed mock: %v", err)
	}
	if err := set.StandIn("llm_interaction", kinds, "gpu", true); err != nil {
		t.Errorf("a requested mock: %v", err)
	}
	if err := set.Route("llm_interaction", executor.Route{Executor: "cheap"}); err != nil {
		t.Fatal(err)
	}
	if err := set.StandIn("llm_interaction", kinds, "cheap", false); err != nil {
		t.Errorf("a routed mock: %v", err)
	}
	if err := set.StandIn("llm_interaction", kinds, "gpu", false); err == nil {
		t.Error("a mock the route does not name was accepted")
	}
}

func TestSetResolve(t *testing.T) {
	t.Parallel()
	set := newSet(t)
	if err := set.Route("generation", executor.Route{Executor: "gpu", Fallback: []string{"cheap"}}); err != nil {
		t.Fatal(err)
	}
	mockOnly := []string{"mock"}
	tests := []struct {
		name, typ, fallback, requested string
		kinds                          []string
		want, wantErr                  string
	}{
		{name: "requested", typ: "generation", kinds: mockOnly, requested: "cheap", want: "cheap"},
		{name: "the route", typ: "generation", kinds: mockOnly, fallback: "cheap", want: "gpu"},
		{name: "the declared default", typ: "other", kinds: mockOnly, fallback: "cheap", want: "cheap"},
		{name: "no default among two", typ: "other", kinds: mockOnly, fallback: "mock", wantErr: "no default executor for other tasks; name one of: cheap, gpu"},
		{name: "not configured", typ: "other", kinds: mockOnly, requested: "comfyui", wantErr: `executor "comfyui" is not configured for other tasks; configured: cheap, gpu`},
		{name: "a kind the type cannot use", typ: "adjust", kinds: []string{"local"}, requested: "gpu", wantErr: "no configured executor can run adjust tasks: configure an executor of type local (docs/executors.md)"},
		{name: "what to configure", typ: "llm_interaction", kinds: []string{"openai"}, requested: "gpu",
			wantErr: "no configured executor can run llm_interaction tasks: configure an executor of type openai (docs/executors.md)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := set.Resolve(tt.typ, tt.kinds, tt.fallback, tt.requested)
			if tt.wantErr != "" {
				var ue *executor.UnusableError
				if !errors.As(err, &ue) || err.Error() != tt.wantErr {
					t.Fatalf("err %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("Resolve = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestSetErrors(t *testing.T) {
	t.Parallel()
	set := newSet(t)
	ex, _ := mock.New("gpu", mock.Settings{}, nil)
	if err := set.Add("mock", ex); err == nil || !strings.Contains(err.Error(), `"gpu": already configured`) {
		t.Errorf("a duplicate name: %v", err)
	}
	if err := set.Route("generation", executor.Route{Executor: "gpu", Fallback: []string{"fal"}}); err == nil || !strings.Contains(err.Error(), `"fal" is not configured`) {
		t.Errorf("a route to an unknown executor: %v", err)
	}
	_, err := set.For("fal")
	if !task.IsPermanent(err) || !strings.Contains(err.Error(), "configured: cheap, gpu") {
		t.Errorf("For an unknown executor: %v", err)
	}
}

func TestFromTransport(t *testing.T) {
	t.Parallel()
	_, err := net.Dial("tcp", "127.0.0.1:1") // nothing listens on port 1
	if err == nil {
		t.Skip("something listens on 127.0.0.1:1")
	}
	if got := executor.FromTransport(err); !executor.Is(got, executor.ProviderUnavailable) || task.IsPermanent(got) {
		t.Errorf("a refused connection: %v, want a retryable provider_unavailable", got)
	}
	for _, ctxErr := range []error{context.Canceled, context.DeadlineExceeded} {
		if got := executor.FromTransport(ctxErr); got != ctxErr {
			t.Errorf("FromTransport(%v) = %v, want it unchanged", ctxErr, got)
		}
	}
}

func TestFromStatus(t *testing.T) {
	t.Parallel()
	for code, want := range map[int]executor.Category{
		400: executor.InvalidInput, 422: executor.InvalidInput, 413: executor.InvalidInput,
		429: executor.RateLimited, 502: executor.ProviderUnavailable, 503: executor.ProviderUnavailable,
		504: executor.ProviderUnavailable, 408: executor.ProviderUnavailable, 500: executor.ProviderError,
		401: executor.ProviderError, 404: executor.ProviderError,
	} {
		err := executor.FromStatus(code, errors.New(http.StatusText(code)))
		if got := executor.CategoryOf(err); got != want {
			t.Errorf("HTTP %d: %s, want %s", code, got, want)
		}
		if task.IsPermanent(err) == want.Retryable() {
			t.Errorf("HTTP %d: permanent %v", code, task.IsPermanent(err))
		}
	}
}
