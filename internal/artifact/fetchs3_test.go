package artifact_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/computeserver/compute/internal/artifact"
	"github.com/computeserver/compute/internal/testutil/s3server"
)

// TestFetcherS3Inputs: with the S3 store, an input may name an artifact by
// its s3:// URL or its public (CDN) URL, both read from the bucket under
// the tenant check; an s3:// URL of another bucket is refused; Presign
// hands out a working URL of our artifacts only, and never another
// tenant's.
func TestFetcherS3Inputs(t *testing.T) {
	t.Parallel()
	srv := s3server.Start(t)
	st := newS3(t, srv, "p")
	ctx := context.Background()
	const id = "0197a5e0-0000-7000-8000-0000000000aa"
	key := artifact.TaskKey(id, "image.png")
	if _, err := st.Put(ctx, key, "image/png", []byte("stored bytes")); err != nil {
		t.Fatal(err)
	}
	f := &artifact.Fetcher{
		Store: st, Client: &http.Client{Transport: failingTransport{t}},
		PublicBaseURL: "https://compute.example.com", PublicArtifactsURL: "https://cdn.example.com/files/",
		Owner: func(context.Context, string) (string, error) { return "acme", nil },
	}
	for _, u := range []string{st.URL(key), "https://cdn.example.com/files/" + key, "/api/v1/artifacts/" + key} {
		if err := artifact.CheckInputURL(u); err != nil {
			t.Errorf("CheckInputURL(%s): %v", u, err)
		}
		data, ct, err := f.Open(ctx, "acme", u)
		if err != nil || string(data) != "stored bytes" || ct != "image/png" {
			t.Errorf("Open(%s) = %q %q %v", u, data, ct, err)
		}
		rc, size, err := f.OpenStream(ctx, "acme", u)
		if err != nil || size != 12 {
			t.Fatalf("OpenStream(%s): %d %v", u, size, err)
		}
		rc.Close()
		if _, _, err := f.Open(ctx, "globex", u); !errors.Is(err, artifact.ErrNotFound) {
			t.Errorf("another tenant opens %s: %v", u, err)
		}
	}
	other := "s3://other-bucket/p/" + key
	if err := artifact.CheckInputURL(other); err != nil {
		t.Errorf("CheckInputURL(%s): %v (which bucket is ours is known when it is read)", other, err)
	}
	if _, _, err := f.Open(ctx, "acme", other); !errors.Is(err, artifact.ErrUnsupportedURL) {
		t.Errorf("Open(%s): %v", other, err)
	}
	for _, bad := range []string{"s3://", "s3://b/../x", "s3://b/p?x=1"} {
		if err := artifact.CheckInputURL(bad); err == nil {
			t.Errorf("CheckInputURL(%s) accepted", bad)
		}
	}

	signed, ok, err := f.Presign(ctx, "acme", st.URL(key), time.Minute)
	if err != nil || !ok {
		t.Fatalf("Presign: %v %v", ok, err)
	}
	res, err := http.Get(signed)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || string(body) != "stored bytes" {
		t.Fatalf("GET presigned: %d %q", res.StatusCode, body)
	}
	if _, _, err := f.Presign(ctx, "globex", st.URL(key), time.Minute); !errors.Is(err, artifact.ErrNotFound) {
		t.Errorf("another tenant presigns: %v", err)
	}
	if _, _, err := f.Presign(ctx, "acme", st.URL(artifact.TaskKey(id, "missing.png")), time.Minute); !errors.Is(err, artifact.ErrNotFound) {
		t.Errorf("presigning a missing artifact: %v", err)
	}
	if _, ok, err := f.Presign(ctx, "acme", "https://example.com/x.png", time.Minute); ok || err != nil {
		t.Errorf("presigning a foreign URL: %v %v", ok, err)
	}
	local, _ := newFetcher(t)
	if _, ok, err := local.Presign(ctx, "", "/api/v1/artifacts/"+key, time.Minute); ok || err != nil {
		t.Errorf("the local store presigns: %v %v", ok, err)
	}
}
