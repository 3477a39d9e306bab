package fakekit_test

import (
	"bytes"
	"context"
	"image/png"
	"net/http"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/computeserver/compute/internal/executor/internal/fakekit"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestPNGIsDeterministicAndReal(t *testing.T) {
	t.Parallel()
	a, b, c := fakekit.PNG(30, 20, "x"), fakekit.PNG(30, 20, "x"), fakekit.PNG(30, 20, "y")
	if !bytes.Equal(a, b) || bytes.Equal(a, c) {
		t.Error("the same seed must give the same bytes, another seed others")
	}
	img, err := png.Decode(bytes.NewReader(a))
	if err != nil || img.Bounds().Dx() != 30 || img.Bounds().Dy() != 20 {
		t.Fatalf("decoded %v, %v", img, err)
	}
	if img.At(0, 0) == img.At(29, 19) {
		t.Error("the gradient has one colour")
	}
	if img, err := png.Decode(bytes.NewReader(fakekit.PNG(0, -3, "z"))); err != nil || img.Bounds().Dx() != 1 {
		t.Errorf("a degenerate size gives a 1×1 image: %v %v", img, err)
	}
}

func TestFilesExpire(t *testing.T) {
	t.Parallel()
	files := fakekit.NewFiles("/files/")
	s := fakekit.Serve(files)
	t.Cleanup(s.Shutdown)
	keep := files.Put([]byte("kept"), "text/plain", ".txt", 0)
	gone := files.Put([]byte("gone"), "text/plain", ".txt", time.Hour)
	if c := fakekit.Do(t, http.MethodGet, s.URL+gone, ""); c.Code != http.StatusOK || string(c.Body) != "gone" {
		t.Fatalf("fresh file: %d %q", c.Code, c.Body)
	}
	files.Expire(gone)
	if c := fakekit.Do(t, http.MethodGet, s.URL+gone, ""); c.Code != http.StatusNotFound {
		t.Errorf("expired file: %d", c.Code)
	}
	if c := fakekit.Do(t, http.MethodGet, s.URL+keep, ""); c.Code != http.StatusOK || c.Header.Get("Content-Type") != "text/plain" {
		t.Errorf("kept file: %d %v", c.Code, c.Header)
	}
	if n := files.Downloads(keep); n != 1 {
		t.Errorf("downloads = %d", n)
	}
}

func TestSenderFilterAndFinish(t *testing.T) {
	t.Parallel()
	rc := fakekit.NewReceiver(t, nil)
	var got fakekit.Journal[fakekit.Delivery]
	s := &fakekit.Sender{URL: rc.URL, Filter: []string{"start"}, Client: http.DefaultClient, JobID: "j1", Record: got.Add}
	s.EmitObject("start", map[string]string{"status": "processing"})
	s.EmitObject("logs", map[string]string{"status": "processing"})
	s.Finish()
	done := make(chan struct{})
	go func() {
		s.Run(context.Background())
		close(done)
	}()
	<-done // Run returns by itself once finished and drained
	if ev := fakekit.Events(got.All()); ev != "start:processing" {
		t.Errorf("events = %s", ev)
	}
	if d := got.All()[0]; d.ID != "j1" || d.Attempt != 1 || d.Code != http.StatusOK {
		t.Errorf("delivery = %+v", d)
	}
}
