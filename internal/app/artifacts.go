package app

import (
	"context"
	"time"

	"github.com/computeserver/compute/internal/artifact"
	"github.com/computeserver/compute/internal/config"
)

// NewArtifacts returns the artifact store cfg selects: the S3-compatible
// bucket of COMPUTE_ARTIFACTS_URL, or the directory DataDir/artifacts. It
// does not contact the bucket; New checks that it can.
func NewArtifacts(ctx context.Context, cfg config.Config) (artifact.Store, error) {
	if cfg.ArtifactsURL == "" {
		return artifact.NewLocal(cfg.ArtifactDir())
	}
	return artifact.NewS3(ctx, artifact.S3Config{
		URL: cfg.ArtifactsURL, Region: cfg.S3Region, Endpoint: cfg.S3Endpoint,
		AccessKeyID: cfg.S3AccessKeyID, SecretAccessKey: cfg.S3SecretAccessKey,
	})
}

// checkArtifacts reaches a remote artifact store once, so that a wrong
// bucket or credentials stop the process at start, not at the first task.
func checkArtifacts(ctx context.Context, st artifact.Store) error {
	c, ok := st.(interface{ Check(context.Context) error })
	if !ok {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return c.Check(ctx)
}
