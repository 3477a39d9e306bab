package artifact_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/computeserver/compute/internal/artifact"
	"github.com/computeserver/compute/internal/testutil/s3server"
)

// stores returns the stores the contract runs on: a local directory and a
// bucket of a real S3 server (with a prefix).
func stores(t *testing.T) map[string]func(t *testing.T) artifact.Store {
	return map[string]func(t *testing.T) artifact.Store{
		"local": func(t *testing.T) artifact.Store {
			st, err := artifact.NewLocal(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			return st
		},
		"s3": func(t *testing.T) artifact.Store { return newS3(t, s3server.Start(t), "some/prefix") },
	}
}

func newS3(t *testing.T, srv *s3server.Server, prefix string) *artifact.S3 {
	t.Helper()
	st, err := artifact.NewS3(context.Background(), artifact.S3Config{
		URL: srv.URL(prefix), Region: s3server.Region, Endpoint: srv.Endpoint,
		AccessKeyID: s3server.AccessKey, SecretAccessKey: s3server.SecretKey,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	return st
}

// TestStoreContract: every store puts, opens (with seeks), stats, lists
// by task, deletes one artifact and a task's artifacts alike, and refuses
// bad keys.
func TestStoreContract(t *testing.T) {
	t.Parallel()
	for name, open := range stores(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			st := open(t)
			ctx := context.Background()
			const id, other = "0197a5e0-0000-7000-8000-000000000001", "0197a5e0-0000-7000-8000-000000000002"
			data := bytes.Repeat([]byte("0123456789"), 1000)
			before := time.Now().Add(-time.Minute)
			a, err := st.Put(ctx, artifact.TaskKey(id, "image.png"), "image/png", data)
			if err != nil {
				t.Fatal(err)
			}
			if a.Key != "tasks/"+id+"/image.png" || a.Size != int64(len(data)) || a.ContentType != "image/png" || len(a.SHA256) != 64 {
				t.Fatalf("put: %+v", a)
			}
			for _, k := range []string{artifact.TaskKey(id, "sub/b.txt"), artifact.TaskKey(id, "sub.txt"), artifact.TaskKey(other, "c.json")} {
				if _, err := st.Put(ctx, k, "", []byte("x")); err != nil {
					t.Fatal(err)
				}
			}

			got, err := st.Stat(ctx, a.Key)
			if err != nil || got.Size != a.Size || got.ContentType != "image/png" {
				t.Fatalf("stat: %+v %v", got, err)
			}
			rc, desc, err := st.Open(ctx, a.Key)
			if err != nil || desc.Size != a.Size {
				t.Fatalf("open: %+v %v", desc, err)
			}
			whole, err := io.ReadAll(rc)
			if err != nil || !bytes.Equal(whole, data) {
				t.Fatalf("read whole: %d bytes, %v", len(whole), err)
			}
			if _, err := rc.Seek(9995, io.SeekStart); err != nil {
				t.Fatal(err)
			}
			tail, err := io.ReadAll(rc)
			if err != nil || string(tail) != "56789" {
				t.Fatalf("read after seek: %q %v", tail, err)
			}
			if end, err := rc.Seek(0, io.SeekEnd); err != nil || end != int64(len(data)) {
				t.Fatalf("seek end: %d %v", end, err)
			}
			rc.Close()

			objs, err := st.ListTask(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			var keys []string
			for _, o := range objs {
				keys = append(keys, o.Key)
				if o.Modified.Before(before) || o.Modified.After(time.Now().Add(time.Minute)) {
					t.Errorf("%s modified %v", o.Key, o.Modified)
				}
			}
			if want := []string{a.Key, artifact.TaskKey(id, "sub.txt"), artifact.TaskKey(id, "sub/b.txt")}; !slices.Equal(keys, want) {
				t.Fatalf("list: %v, want %v", keys, want)
			}
			if objs[0].Size != a.Size {
				t.Errorf("listed size %d", objs[0].Size)
			}

			for _, k := range []string{artifact.TaskKey(id, "sub/b.txt"), artifact.TaskKey(id, "sub.txt")} {
				if err := st.Delete(ctx, k); err != nil {
					t.Fatal(err)
				}
			}
			if err := st.Delete(ctx, artifact.TaskKey(id, "sub/b.txt")); err != nil {
				t.Fatalf("deleting a missing artifact: %v", err)
			}
			if _, err := st.Stat(ctx, artifact.TaskKey(id, "sub/b.txt")); !errors.Is(err, artifact.ErrNotFound) {
				t.Fatalf("stat after delete: %v", err)
			}
			if _, _, err := st.Open(ctx, artifact.TaskKey(id, "missing.png")); !errors.Is(err, artifact.ErrNotFound) {
				t.Fatalf("open missing: %v", err)
			}
			if _, err := st.Put(ctx, artifact.TaskKey(id, "x.txt"), "", []byte("x")); err != nil {
				t.Fatal(err)
			}
			if n, err := st.DeleteTask(ctx, id); err != nil || n != 2 {
				t.Fatalf("delete task: %d %v", n, err)
			}
			if objs, err := st.ListTask(ctx, id); err != nil || len(objs) != 0 {
				t.Fatalf("list after delete task: %v %v", objs, err)
			}
			if n, err := st.DeleteTask(ctx, id); err != nil || n != 0 {
				t.Fatalf("delete task again: %d %v", n, err)
			}
			if _, err := st.Stat(ctx, artifact.TaskKey(other, "c.json")); err != nil {
				t.Fatalf("another task's artifact: %v", err)
			}

			for _, bad := range []string{"", "../x", "tasks/../../etc/passwd", "/abs", "a//b"} {
				if _, err := st.Put(ctx, bad, "", nil); !errors.Is(err, artifact.ErrInvalidKey) {
					t.Errorf("put %q: %v", bad, err)
				}
				if _, err := st.Stat(ctx, bad); !errors.Is(err, artifact.ErrInvalidKey) {
					t.Errorf("stat %q: %v", bad, err)
				}
				if err := st.Delete(ctx, bad); !errors.Is(err, artifact.ErrInvalidKey) {
					t.Errorf("delete %q: %v", bad, err)
				}
			}
			if _, err := st.ListTask(ctx, ".."); !errors.Is(err, artifact.ErrInvalidKey) {
				t.Errorf("list ..: %v", err)
			}
			if _, err := st.DeleteTask(ctx, "a/b"); !errors.Is(err, artifact.ErrInvalidKey) {
				t.Errorf("delete task a/b: %v", err)
			}

			p, ok := st.(artifact.Presigner)
			if name == "local" {
				if ok {
					t.Fatal("the local store presigns")
				}
				return
			}
			if !ok {
				t.Fatal("the S3 store does not presign")
			}
			if _, err := st.Put(ctx, a.Key, "image/png", data); err != nil {
				t.Fatal(err)
			}
			u, err := p.Presign(ctx, a.Key, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			res, err := http.Get(u)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != 200 || !bytes.Equal(body, data) {
				t.Fatalf("presigned GET: %d, %d bytes", res.StatusCode, len(body))
			}
			parsed, _ := url.Parse(u)
			q := parsed.Query()
			q.Set("X-Amz-Signature", "0000"+q.Get("X-Amz-Signature")[4:])
			parsed.RawQuery = q.Encode()
			res, err = http.Get(parsed.String())
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != http.StatusForbidden {
				t.Fatalf("a tampered presigned URL: %d", res.StatusCode)
			}
		})
	}
}

// TestS3KeysUnderPrefix: the S3 store keeps the local layout under its
// prefix, names its artifacts by s3:// URL, and two prefixes of one bucket
// do not see each other's artifacts.
func TestS3KeysUnderPrefix(t *testing.T) {
	t.Parallel()
	srv := s3server.Start(t)
	a, b := newS3(t, srv, "env/a"), newS3(t, srv, "")
	ctx := context.Background()
	const id = "0197a5e0-0000-7000-8000-000000000003"
	if _, err := a.Put(ctx, artifact.TaskKey(id, "out.png"), "image/png", []byte("png")); err != nil {
		t.Fatal(err)
	}
	if got := srv.Keys(t, ""); !slices.Equal(got, []string{"env/a/tasks/" + id + "/out.png"}) {
		t.Fatalf("bucket keys %v", got)
	}
	if objs, err := b.ListTask(ctx, id); err != nil || len(objs) != 0 {
		t.Fatalf("the unprefixed store lists %v %v", objs, err)
	}
	u := a.URL(artifact.TaskKey(id, "out.png"))
	if u != "s3://"+srv.Bucket+"/env/a/tasks/"+id+"/out.png" {
		t.Fatalf("URL %s", u)
	}
	for _, tc := range []struct {
		name, url, key string
		ok             bool
	}{
		{"own", u, "tasks/" + id + "/out.png", true},
		{"other bucket", "s3://other/env/a/tasks/" + id + "/out.png", "", false},
		{"other prefix", "s3://" + srv.Bucket + "/env/b/tasks/" + id + "/out.png", "", false},
		{"http", "http://" + srv.Bucket + "/env/a/tasks/" + id + "/out.png", "", false},
	} {
		parsed, _ := url.Parse(tc.url)
		key, ok := a.KeyOf(parsed)
		if ok != tc.ok || key != tc.key {
			t.Errorf("%s: KeyOf = %q %v", tc.name, key, ok)
		}
	}
}

// TestParseS3URL names what COMPUTE_ARTIFACTS_URL accepts.
func TestParseS3URL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, in, bucket, prefix string
		ok                       bool
	}{
		{"bucket", "s3://b", "b", "", true},
		{"bucket slash", "s3://b/", "b", "", true},
		{"prefix", "s3://b/p/q/", "b", "p/q", true},
		{"not s3", "https://b/p", "", "", false},
		{"no bucket", "s3:///p", "", "", false},
		{"dotdot", "s3://b/../p", "", "", false},
		{"query", "s3://b/p?x=1", "", "", false},
	} {
		b, p, err := artifact.ParseS3URL(tc.in)
		if (err == nil) != tc.ok || b != tc.bucket || p != tc.prefix {
			t.Errorf("%s: %q %q %v", tc.name, b, p, err)
		}
	}
}
