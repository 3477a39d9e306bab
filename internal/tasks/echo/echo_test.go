package echo_test

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/task"
	"github.com/computeserver/compute/internal/tasks/echo"
	"github.com/computeserver/compute/internal/testutil/fakeruntime"
)

func TestTypeDeclares(t *testing.T) {
	t.Parallel()
	reg := registry.New()
	if err := reg.Register(echo.Type()); err != nil {
		t.Fatalf("Register(echo.Type()): %v", err)
	}
	def, ok := reg.Lookup(echo.Name)
	if !ok {
		t.Fatalf("Lookup(%q) found nothing", echo.Name)
	}
	if def.Table != "echo_tasks" || def.MaxAttempts != 1 || def.Timeout != 2*time.Minute {
		t.Errorf("definition = table %q, max attempts %d, timeout %s; want echo_tasks, 1, 2m", def.Table, def.MaxAttempts, def.Timeout)
	}
}

func TestProcess(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		fields   echo.Fields
		want     string // the echoed message; empty when the task must fail
		wantErr  string
		minDelay time.Duration
	}{
		{name: "echo", fields: echo.Fields{Message: "hello"}, want: "hello"},
		{name: "unicode", fields: echo.Fields{Message: "héllo, 世界"}, want: "héllo, 世界"},
		{name: "after a sleep", fields: echo.Fields{Message: "late", SleepMS: 50}, want: "late", minDelay: 50 * time.Millisecond},
		{name: "fail with", fields: echo.Fields{Message: "x", FailWith: "boom"}, wantErr: "boom"},
		{name: "fail after a sleep", fields: echo.Fields{Message: "x", SleepMS: 30, FailWith: "late boom"}, wantErr: "late boom", minDelay: 30 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fields := tt.fields
			job, rt := fakeruntime.NewJob(t, echo.Name, "local", &fields)
			start := time.Now()
			res, err := echo.Processor{}.Process(t.Context(), job)
			elapsed := time.Since(start)
			if elapsed < tt.minDelay {
				t.Errorf("Process returned after %s, want at least the %s sleep", elapsed, tt.minDelay)
			}
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("Process = %+v, nil; want error %q", res, tt.wantErr)
				}
				if err.Error() != tt.wantErr || !task.IsPermanent(err) {
					t.Errorf("Process error = %v (permanent %v), want permanent %q", err, task.IsPermanent(err), tt.wantErr)
				}
				if res != nil {
					t.Errorf("Process returned a result with its error: %+v", res)
				}
				return
			}
			if err != nil {
				t.Fatalf("Process: %v", err)
			}
			if !reflect.DeepEqual(res.Data, echo.Output{Message: tt.want}) {
				t.Errorf("result data = %#v, want %#v", res.Data, echo.Output{Message: tt.want})
			}
			if res.Artifacts == nil || len(res.Artifacts) != 0 {
				t.Errorf("artifacts = %#v, want an empty, non-nil list", res.Artifacts)
			}
			if err := rt.CheckProgress(); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestProcessSleepHonoursContext(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		ctx  func(t *testing.T) context.Context
		want error
	}{
		{
			name: "cancelled",
			ctx: func(t *testing.T) context.Context {
				ctx, cancel := context.WithCancel(t.Context())
				time.AfterFunc(50*time.Millisecond, cancel)
				t.Cleanup(cancel)
				return ctx
			},
			want: context.Canceled,
		},
		{
			name: "deadline",
			ctx: func(t *testing.T) context.Context {
				ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
				t.Cleanup(cancel)
				return ctx
			},
			want: context.DeadlineExceeded,
		},
		{
			name: "already cancelled",
			ctx: func(t *testing.T) context.Context {
				ctx, cancel := context.WithCancel(t.Context())
				cancel()
				return ctx
			},
			want: context.Canceled,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			job, _ := fakeruntime.NewJob(t, echo.Name, "local", &echo.Fields{Message: "never", SleepMS: 60000})
			start := time.Now()
			res, err := echo.Processor{}.Process(tt.ctx(t), job)
			if elapsed := time.Since(start); elapsed > 5*time.Second {
				t.Errorf("Process took %s after its context ended, want it to return promptly", elapsed)
			}
			if !errors.Is(err, tt.want) {
				t.Errorf("Process error = %v, want %v", err, tt.want)
			}
			if task.IsPermanent(err) {
				t.Errorf("a context error must not be permanent: %v", err)
			}
			if res != nil {
				t.Errorf("Process returned a result after its context ended: %+v", res)
			}
		})
	}
}
