package task_test

import (
	"strings"
	"testing"

	"github.com/computeserver/compute/internal/task"
)

func TestStatusValidAndTerminal(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		status   task.Status
		valid    bool
		terminal bool
	}{
		{name: "pending", status: task.StatusPending, valid: true},
		{name: "executing", status: task.StatusExecuting, valid: true},
		{name: "completed", status: task.StatusCompleted, valid: true, terminal: true},
		{name: "failed", status: task.StatusFailed, valid: true, terminal: true},
		{name: "cancelled", status: task.StatusCancelled, valid: true, terminal: true},
		{name: "empty", status: ""},
		{name: "unknown", status: "running"},
		{name: "wrong case", status: "Pending"},
		{name: "padded", status: " pending"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.status.Valid(); got != tt.valid {
				t.Errorf("Status(%q).Valid() = %v, want %v", tt.status, got, tt.valid)
			}
			if got := tt.status.Terminal(); got != tt.terminal {
				t.Errorf("Status(%q).Terminal() = %v, want %v", tt.status, got, tt.terminal)
			}
		})
	}
}

func TestStatusesListsEveryValidStatus(t *testing.T) {
	t.Parallel()
	want := []task.Status{task.StatusPending, task.StatusExecuting, task.StatusCompleted, task.StatusFailed, task.StatusCancelled}
	if len(task.Statuses) != len(want) {
		t.Fatalf("Statuses = %v, want %v", task.Statuses, want)
	}
	for i, s := range want {
		if task.Statuses[i] != s {
			t.Errorf("Statuses[%d] = %q, want %q", i, task.Statuses[i], s)
		}
	}
}

func TestParseStatus(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    task.Status
		wantErr bool
	}{
		{name: "pending", in: "pending", want: task.StatusPending},
		{name: "executing", in: "executing", want: task.StatusExecuting},
		{name: "completed", in: "completed", want: task.StatusCompleted},
		{name: "failed", in: "failed", want: task.StatusFailed},
		{name: "cancelled", in: "cancelled", want: task.StatusCancelled},
		{name: "empty", in: "", wantErr: true},
		{name: "american spelling", in: "canceled", wantErr: true},
		{name: "upper case", in: "PENDING", wantErr: true},
		{name: "trailing space", in: "failed ", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := task.ParseStatus(tt.in)
			if !tt.wantErr {
				if err != nil || got != tt.want {
					t.Fatalf("ParseStatus(%q) = %q, %v; want %q, nil", tt.in, got, err, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("ParseStatus(%q) = %q, nil; want an error", tt.in, got)
			}
			if got != "" {
				t.Errorf("ParseStatus(%q) returned status %q with its error, want \"\"", tt.in, got)
			}
			msg := err.Error()
			if !strings.Contains(msg, `"`+tt.in+`"`) {
				t.Errorf("ParseStatus(%q) error %q does not quote the input", tt.in, msg)
			}
			for _, s := range task.Statuses {
				if !strings.Contains(msg, string(s)) {
					t.Errorf("ParseStatus(%q) error %q does not name valid status %q", tt.in, msg, s)
				}
			}
		})
	}
}

// allowed is the lifecycle, written out independently of the package's
// table: from → the statuses a task may move to.
var allowed = map[task.Status][]task.Status{
	task.StatusPending:   {task.StatusExecuting, task.StatusCancelled, task.StatusFailed},
	task.StatusExecuting: {task.StatusCompleted, task.StatusFailed, task.StatusCancelled, task.StatusPending},
	task.StatusCompleted: {},
	task.StatusFailed:    {task.StatusPending},
	task.StatusCancelled: {task.StatusPending},
}

func TestCanTransition(t *testing.T) {
	t.Parallel()
	type pair struct{ from, to task.Status }
	want := map[pair]bool{}
	for from, tos := range allowed {
		for _, to := range tos {
			want[pair{from, to}] = true
		}
	}
	all := []task.Status{task.StatusPending, task.StatusExecuting, task.StatusCompleted, task.StatusFailed, task.StatusCancelled}
	checked, legal := 0, 0
	for _, from := range all {
		for _, to := range all {
			p := pair{from, to}
			t.Run(string(from)+"_to_"+string(to), func(t *testing.T) {
				t.Parallel()
				if from == to && want[p] {
					t.Fatalf("the expected table allows %s → itself", from)
				}
				if got := task.CanTransition(from, to); got != want[p] {
					t.Errorf("CanTransition(%s, %s) = %v, want %v", from, to, got, want[p])
				}
			})
			checked++
			if want[p] {
				legal++
			}
		}
	}
	if checked != 25 || legal != 9 {
		t.Errorf("checked %d pairs with %d legal, want 25 with 9", checked, legal)
	}
}

func TestCanTransitionRejectsUnknownStatuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		from, to task.Status
	}{
		{name: "unknown from", from: "running", to: task.StatusPending},
		{name: "unknown to", from: task.StatusPending, to: "running"},
		{name: "empty from", from: "", to: task.StatusExecuting},
		{name: "empty to", from: task.StatusExecuting, to: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if task.CanTransition(tt.from, tt.to) {
				t.Errorf("CanTransition(%q, %q) = true, want false", tt.from, tt.to)
			}
		})
	}
}

func TestAllowedFromAgreesWithCanTransition(t *testing.T) {
	t.Parallel()
	for _, to := range task.Statuses {
		t.Run(string(to), func(t *testing.T) {
			t.Parallel()
			from := map[task.Status]bool{}
			for _, s := range task.AllowedFrom(to) {
				from[s] = true
			}
			for _, s := range task.Statuses {
				if got := task.CanTransition(s, to); got != from[s] {
					t.Errorf("CanTransition(%s, %s) = %v but AllowedFrom(%s) contains it: %v", s, to, got, to, from[s])
				}
			}
		})
	}
}
