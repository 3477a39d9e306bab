package app

import (
	"fmt"
	"log/slog"

	"github.com/computeserver/compute/internal/config"
	"github.com/computeserver/compute/internal/netguard"
	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/webhook"
)

// newDeliverer builds the webhook deliverer from the configuration.
func newDeliverer(cfg config.Config, version string, st store.Store, observe func(string), log *slog.Logger) (*webhook.Deliverer, error) {
	var signer *webhook.Signer
	if cfg.WebhookSecret != "" {
		s, err := webhook.NewSigner(cfg.WebhookSecret)
		if err != nil {
			return nil, fmt.Errorf("config: WebhookSecret (COMPUTE_WEBHOOK_SECRET): %w", err)
		}
		signer = s
	} else {
		log.Warn("COMPUTE_WEBHOOK_SECRET is not set: webhooks are sent unsigned and receivers cannot verify them; set it to a whsec_ secret")
	}
	if version == "" {
		version = "dev"
	}
	return webhook.New(webhook.Config{
		RetryMin: cfg.WebhookRetryMin, MaxAttempts: cfg.WebhookMaxAttempts, Window: cfg.WebhookWindow,
		PerDestination: cfg.WebhookPerDestination,
		Policy: netguard.Policy{AllowPrivate: cfg.WebhookAllowPrivate, AllowCIDRs: cfg.WebhookAllowCIDRs,
			Setting: "COMPUTE_WEBHOOK_ALLOW_PRIVATE", CIDRSetting: "COMPUTE_WEBHOOK_ALLOW_CIDRS"},
		Signer:    signer,
		UserAgent: "compute-server/" + version,
		Observe:   observe,
	}, st, log), nil
}
