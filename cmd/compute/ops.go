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
// healthURL of COMPUTE_ADDR) and exits 0 on a 2xx.
func healthcheckCmd(f *flags, stdout io.Writer) *cobra.Command {
	var (
		target  string
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "healthcheck",
		Short: "Exit 0 when the server at COMPUTE_ADDR (or --url) answers its /healthz",
		Long: "GETs --url, by default /healthz at COMPUTE_ADDR (on 127.0.0.1 when it listens on every interface), and exits 0 on a 2xx answer, 1 otherwise. " +
			"A worker has no API: point --url at its COMPUTE_METRICS_ADDR's /metrics.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if target == "" {
				cfg, err := f.config(cmd)
				if err != nil {
					return err
				}
				target = healthURL(cfg.Addr)
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
	cmd.Flags().StringVar(&target, "url", "", "URL to GET (default /healthz at COMPUTE_ADDR, 127.0.0.1 for 0.0.0.0)")
	cmd.Flags().DurationVar(&timeout, "timeout", 3*time.Second, "how long to wait for the answer")
	return cmd
}

// healthURL is /healthz at the listen address addr: on loopback when
// addr listens on every interface (the container's 0.0.0.0:9000), else at
// the host it names.
func healthURL(addr string) string {
	host, port, _ := net.SplitHostPort(addr) // Validate checked it
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + "/healthz"
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
