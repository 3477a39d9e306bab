package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/spf13/cobra"

	"github.com/computeserver/compute/internal/app"
	"github.com/computeserver/compute/internal/artifact"
)

// healthcheckCmd is the container's HEALTHCHECK: the image has no shell
// and no curl, so the binary checks itself. It GETs --url (by default
// /healthz at COMPUTE_ADDR's port on loopback) and exits 0 on a 2xx.
func healthcheckCmd(f *flags, stdout io.Writer) *cobra.Command {
	var (
		target  string
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "healthcheck",
		Short: "Exit 0 when the server at COMPUTE_ADDR (or --url) answers its /healthz",
		Long: "GETs --url, by default http://127.0.0.1:PORT/healthz with COMPUTE_ADDR's port, and exits 0 on a 2xx answer, 1 otherwise. " +
			"A worker has no API: point --url at its COMPUTE_METRICS_ADDR's /metrics.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if target == "" {
				cfg, err := f.config(cmd)
				if err != nil {
					return err
				}
				_, port, err := net.SplitHostPort(cfg.Addr)
				if err != nil {
					return fmt.Errorf("COMPUTE_ADDR %q: %w", cfg.Addr, err)
				}
				target = "http://" + net.JoinHostPort("127.0.0.1", port) + "/healthz"
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
			if err != nil {
				return fmt.Errorf("healthcheck: %w", err)
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				return fmt.Errorf("healthcheck: %w", err)
			}
			defer res.Body.Close()
			_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 1<<20))
			if res.StatusCode/100 != 2 {
				return fmt.Errorf("healthcheck: GET %s answered %s", target, res.Status)
			}
			fmt.Fprintf(stdout, "%s: %s\n", target, res.Status)
			return nil
		},
	}
	cmd.Flags().StringVar(&target, "url", "", "URL to GET (default http://127.0.0.1:<COMPUTE_ADDR's port>/healthz)")
	cmd.Flags().DurationVar(&timeout, "timeout", 3*time.Second, "how long to wait for the answer")
	return cmd
}

// artifactsCmd groups the artifact store's commands.
func artifactsCmd(f *flags, stdout io.Writer) *cobra.Command {
	cmd := &cobra.Command{Use: "artifacts", Short: "Manage the artifact store"}
	var wait time.Duration
	create := &cobra.Command{
		Use:   "create-bucket",
		Short: "Create the bucket of COMPUTE_ARTIFACTS_URL if it does not exist",
		Long: "Creates the S3 bucket COMPUTE_ARTIFACTS_URL names, with the AWS_* settings every process uses; " +
			"a bucket that exists is left as it is. Retries for --wait while the S3 server is not reachable yet.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := f.config(cmd)
			if err != nil {
				return err
			}
			if cfg.ArtifactsURL == "" {
				return fmt.Errorf("COMPUTE_ARTIFACTS_URL is not set: artifacts are kept in %s, which needs no bucket", cfg.ArtifactDir())
			}
			st, err := app.NewArtifacts(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			s3, ok := st.(*artifact.S3)
			if !ok {
				return fmt.Errorf("COMPUTE_ARTIFACTS_URL %q is not an S3 bucket", cfg.ArtifactsURL)
			}
			deadline := time.Now().Add(wait)
			for {
				ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
				created, err := s3.CreateBucket(ctx)
				cancel()
				switch {
				case err == nil && created:
					fmt.Fprintf(stdout, "created the bucket of %s\n", cfg.ArtifactsURL)
					return nil
				case err == nil:
					fmt.Fprintf(stdout, "the bucket of %s exists\n", cfg.ArtifactsURL)
					return nil
				case time.Now().After(deadline) || cmd.Context().Err() != nil:
					return err
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "retrying in 1s: %v\n", err)
				select {
				case <-time.After(time.Second):
				case <-cmd.Context().Done():
					return err
				}
			}
		},
	}
	create.Flags().DurationVar(&wait, "wait", 30*time.Second, "how long to retry while the S3 server cannot be reached")
	cmd.AddCommand(create)
	return cmd
}
