package artifact_test

import (
	"context"
	"testing"

	"github.com/computeserver/compute/internal/artifact"
	"github.com/computeserver/compute/internal/testutil/s3server"
)

// TestCreateBucket: a missing bucket is created once; a second call finds
// it and reports so; the store then works in it.
func TestCreateBucket(t *testing.T) {
	t.Parallel()
	srv := s3server.Start(t)
	ctx := context.Background()
	st, err := artifact.NewS3(ctx, artifact.S3Config{
		URL: "s3://compute-created-bucket/artifacts", Region: s3server.Region, Endpoint: srv.Endpoint,
		AccessKeyID: s3server.AccessKey, SecretAccessKey: s3server.SecretKey,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Check(ctx); err == nil {
		t.Fatal("Check passed before the bucket exists")
	}
	for i, want := range []bool{true, false} {
		created, err := st.CreateBucket(ctx)
		if err != nil || created != want {
			t.Fatalf("call %d: created %v, %v; want %v", i+1, created, err, want)
		}
	}
	if err := st.Check(ctx); err != nil {
		t.Fatalf("Check after CreateBucket: %v", err)
	}
	if _, err := st.Put(ctx, artifact.TaskKey("0197a5e0-0000-7000-8000-000000000001", "a.txt"), "text/plain", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if keys := srv.Keys(t, ""); len(keys) != 0 {
		t.Fatalf("the test's own bucket changed: %v", keys)
	}
}
