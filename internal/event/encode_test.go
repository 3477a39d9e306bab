package event

import (
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/task"
)

// trickyStrings are the cases where JSON string encoders differ: escapes,
// HTML characters, line and paragraph separators, invalid UTF-8.
var trickyStrings = []string{
	"", "plain", `quote " and backslash \`, "<script>&amp;</script>", "tab\tnew\nline\rret",
	"\b\f\x00\x01\x1f\x7f", "\u2028\u2029", "naïve café 日本語 🎨", "bad \xff utf8 \xc3", "\xe2\x80",
	"ends with \\", strings.Repeat("x", 300),
}

func randomString(r *rand.Rand) string {
	if r.IntN(3) == 0 {
		return trickyStrings[r.IntN(len(trickyStrings))]
	}
	var b strings.Builder
	for range r.IntN(12) {
		switch r.IntN(4) {
		case 0:
			b.WriteByte(byte(r.IntN(256))) // any byte, valid UTF-8 or not
		case 1:
			b.WriteRune(rune(r.IntN(0x3000)))
		default:
			b.WriteByte(byte('a' + r.IntN(26)))
		}
	}
	return b.String()
}

func randomTime(r *rand.Rand) time.Time {
	zones := []*time.Location{time.UTC, time.FixedZone("", 5*3600+1800), time.FixedZone("X", -7*3600)}
	t := time.Unix(r.Int64N(4e9), 0).In(zones[r.IntN(len(zones))])
	switch r.IntN(3) {
	case 0: // whole seconds
	case 1:
		t = t.Add(time.Duration(r.IntN(1e9)))
	default:
		t = t.Add(time.Duration(r.IntN(1000)) * time.Millisecond)
	}
	return t
}

func randomBody(r *rand.Rand) Body {
	progress := []float64{0, 1, 0.5, 0.1, 1.0 / 3, 1e-7, 1e-6, 9.99e-7, 123456789, 1e21, 1e20, -0.25, math.Copysign(0, -1), r.Float64()}
	b := Body{
		EventType: randomString(r), TaskID: uuid.New(), TaskType: randomString(r), Status: task.Status(randomString(r)),
		EntityID: randomString(r), OriginInstance: randomString(r), OriginZone: randomString(r), OriginVersion: randomString(r),
		Timestamp: randomTime(r),
		Metadata:  map[string]any{"queue_name": randomString(r), "attempt": r.IntN(10) - 1, "retry_count": r.IntN(1 << 20)},
		Progress:  progress[r.IntN(len(progress))],
	}
	if r.IntN(2) == 0 {
		b.Metadata["stage"] = randomString(r)
	}
	if r.IntN(2) == 0 {
		b.Metadata["origin_tenant_id"] = randomString(r)
	}
	if r.IntN(2) == 0 {
		b.ErrorMessage = randomString(r)
	}
	if r.IntN(2) == 0 {
		b.ErrorCategory = randomString(r)
	}
	if r.IntN(2) == 0 {
		t := randomTime(r)
		b.StartedAt = &t
	}
	if r.IntN(2) == 0 {
		t := randomTime(r)
		b.CompletedAt = &t
	}
	return b
}

func TestAppendBodyIsWhatEncodingJSONWrites(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 20000 {
		b := randomBody(r)
		want, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		got, err := appendBody(nil, &b)
		if err != nil {
			t.Fatalf("body %d: %v", i, err)
		}
		if string(got) != string(want) {
			t.Fatalf("body %d differs\n got: %s\nwant: %s", i, got, want)
		}
	}
}

// TestAppendBodyWritesEveryField sets every field of Body, found by
// reflection, so a field added to Body and not to appendBody fails here
// even when the generated bodies above leave it empty.
func TestAppendBodyWritesEveryField(t *testing.T) {
	var b Body
	v := reflect.ValueOf(&b).Elem()
	now := time.Date(2026, 11, 27, 2, 0, 0, 5, time.UTC)
	for i := range v.NumField() {
		f := v.Field(i)
		switch f.Interface().(type) {
		case string, task.Status:
			f.SetString("set " + v.Type().Field(i).Name)
		case uuid.UUID:
			f.Set(reflect.ValueOf(uuid.New()))
		case time.Time:
			f.Set(reflect.ValueOf(now))
		case *time.Time:
			f.Set(reflect.ValueOf(&now))
		case float64:
			f.SetFloat(0.75)
		case map[string]any:
			f.Set(reflect.ValueOf(map[string]any{"attempt": 2, "queue_name": "q", "retry_count": 1, "stage": "s", "origin_tenant_id": "t"}))
		default:
			t.Fatalf("Body.%s has type %s: teach appendBody and this test about it", v.Type().Field(i).Name, f.Type())
		}
	}
	want, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	got, err := appendBody(nil, &b)
	if err != nil || string(got) != string(want) {
		t.Fatalf("got %s, %v\nwant %s", got, err, want)
	}
}

func TestNewIsWhatEncodingJSONWrites(t *testing.T) {
	now := time.Date(2026, 11, 27, 2, 0, 0, 123456000, time.UTC)
	started := now.Add(-time.Second)
	for _, tk := range []*task.Task{
		{ID: uuid.New(), Type: "echo", Status: task.StatusPending, QueueName: "default"},
		{ID: uuid.New(), Type: "echo", Status: task.StatusFailed, QueueName: "gpu", Attempt: 3, RetryCount: 2,
			Stage: "sampling <50%>", OriginTenantID: "tenant-1", OriginInstance: "host", OriginZone: "eu",
			ErrorMessage: "boom \"quoted\"", ErrorCategory: "timeout", Progress: 0.42, StartedAt: &started, CompletedAt: &now},
	} {
		ev := New(tk, KindStatus, now)
		var b Body
		if err := json.Unmarshal(ev.Body, &b); err != nil {
			t.Fatal(err)
		}
		// json.Unmarshal reads JSON numbers in metadata as float64; New
		// writes ints: rebuild them so Marshal sees what New saw.
		for _, k := range []string{"attempt", "retry_count"} {
			b.Metadata[k] = int(b.Metadata[k].(float64))
		}
		want, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		if string(ev.Body) != string(want) {
			t.Fatalf("New's body differs\n got: %s\nwant: %s", ev.Body, want)
		}
	}
}

func TestAppendBodyRefusesWhatEncodingJSONRefuses(t *testing.T) {
	base := Body{TaskID: uuid.New(), Timestamp: time.Now(), Metadata: map[string]any{}}
	for name, mutate := range map[string]func(*Body){
		"NaN progress":      func(b *Body) { b.Progress = math.NaN() },
		"infinite progress": func(b *Body) { b.Progress = math.Inf(1) },
		"year 10000":        func(b *Body) { b.Timestamp = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) },
		"negative year":     func(b *Body) { t := time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC); b.CompletedAt = &t },
		"offset of +24h":    func(b *Body) { b.Timestamp = time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("", 24*3600)) },
		"offset of -100h": func(b *Body) {
			t := time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("", -100*3600))
			b.StartedAt = &t
		},
	} {
		b := base
		mutate(&b)
		if _, err := json.Marshal(b); err == nil {
			t.Fatalf("%s: encoding/json accepts it; the test is wrong", name)
		}
		if _, err := appendBody(nil, &b); !errors.Is(err, errUnencodable) {
			t.Errorf("%s: appendBody: %v, want errUnencodable", name, err)
		}
	}
}

func TestAppendBodyAcceptsTheWidestOffsets(t *testing.T) {
	for _, off := range []int{24*3600 - 1, -(24*3600 - 1), 23*3600 + 59*60, 5*3600 + 30*60 + 17} {
		b := Body{TaskID: uuid.New(), Timestamp: time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("", off)), Metadata: map[string]any{}}
		want, err := json.Marshal(b)
		if err != nil {
			t.Fatalf("offset %d: encoding/json: %v", off, err)
		}
		got, err := appendBody(nil, &b)
		if err != nil || string(got) != string(want) {
			t.Fatalf("offset %d: got %s, %v; want %s", off, got, err, want)
		}
	}
}

func TestAppendBodyLeavesOtherMetadataToEncodingJSON(t *testing.T) {
	for _, m := range []map[string]any{
		{"attempt": 1, "extra": "x"},
		{"attempt": int64(1)},
		{"queue_name": 1.5},
	} {
		b := Body{TaskID: uuid.New(), Timestamp: time.Now(), Metadata: m}
		if _, err := appendBody(nil, &b); !errors.Is(err, errOtherMetadata) {
			t.Errorf("metadata %v: %v, want errOtherMetadata", m, err)
		}
	}
	b := Body{TaskID: uuid.New(), Timestamp: time.Now()}
	got, err := appendBody(nil, &b)
	want, _ := json.Marshal(b)
	if err != nil || string(got) != string(want) {
		t.Fatalf("nil metadata: %s, %v; want %s", got, err, want)
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range trickyStrings {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendString(nil, s); string(got) != string(want) {
			t.Fatalf("%q: got %s, want %s", s, got, want)
		}
	})
}

func BenchmarkNew(b *testing.B) {
	now := time.Now()
	tk := &task.Task{ID: uuid.New(), Type: "echo", Status: task.StatusCompleted, QueueName: "default", Attempt: 1,
		OriginInstance: "host-1", StartedAt: &now, CompletedAt: &now, Progress: 1}
	b.ReportAllocs()
	for b.Loop() {
		_ = New(tk, KindStatus, now)
	}
}

// BenchmarkNewEncodingJSON is the same body through encoding/json, the
// baseline for BenchmarkNew.
func BenchmarkNewEncodingJSON(b *testing.B) {
	now := time.Now()
	tk := &task.Task{ID: uuid.New(), Type: "echo", Status: task.StatusCompleted, QueueName: "default", Attempt: 1,
		OriginInstance: "host-1", StartedAt: &now, CompletedAt: &now, Progress: 1}
	body := New(tk, KindStatus, now)
	var v Body
	if err := json.Unmarshal(body.Body, &v); err != nil {
		b.Fatal(err)
	}
	v.Metadata = map[string]any{"queue_name": tk.QueueName, "attempt": tk.Attempt, "retry_count": tk.RetryCount}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := json.Marshal(v); err != nil {
			b.Fatal(err)
		}
	}
}
