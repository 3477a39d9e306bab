package monitor_test

import (
	"fmt"
	"testing"

	"github.com/computeserver/compute/internal/apikey"
	"github.com/computeserver/compute/internal/app"
	"github.com/computeserver/compute/internal/testutil/testdb"
	"github.com/computeserver/compute/internal/testutil/testserver"
)

// usageView is a task's or a tenant's usage as the API shows it.
type usageView struct {
	ProviderSeconds float64 `json:"provider_seconds"`
	InputTokens     int64   `json:"input_tokens"`
	OutputTokens    int64   `json:"output_tokens"`
}

// TestTokensReachTaskTenantsAndMetrics: the tokens a language model
// reports (the mock executor's chat counts words, as result.data.usage
// shows) are stored on each task, in the write of its outcome, and show
// in GET /tasks/{id} (usage), in /monitoring/tenants summed per tenant
// (another tenant sees only its own), and in /metrics
// (compute_provider_tokens_total by type), on both databases.
func TestTokensReachTaskTenantsAndMetrics(t *testing.T) {
	t.Parallel()
	for _, dialect := range testdb.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			cfg := testserver.Config(t, dialect, adminKey)
			srv := testserver.Start(t, cfg, app.Options{Workers: true, Version: "test-v1"}, testdb.Logger(t))
			acme, other := "usage-test-acme-key-0123456789", "usage-test-other-key-0123456789"
			for key, tenant := range map[string]string{acme: "acme", other: "other"} {
				if err := srv.App.Store.CreateAPIKey(t.Context(), apikey.Record(key, "tenant", tenant)); err != nil {
					t.Fatal(err)
				}
			}
			var ids []string
			for _, prompt := range []string{"describe the linen dress", "and its colour in three words please"} {
				var created struct{ ID string }
				body := fmt.Sprintf(`{"task_type":"llm_interaction","provider_type":"mock","prompt":%q}`, prompt)
				if code := call(t, acme, "POST", srv.Base+"/api/v1/tasks/", body, &created); code != 201 {
					t.Fatalf("create: %d", code)
				}
				ids = append(ids, created.ID)
			}
			var want usageView // the sum of what the results say
			for _, id := range ids {
				var got struct {
					Status string
					Usage  usageView
				}
				waitFor(t, "task "+id+" to complete", func() bool {
					call(t, acme, "GET", srv.Base+"/api/v1/tasks/"+id, "", &got)
					return got.Status == "completed"
				})
				var res struct {
					Result struct {
						Data struct {
							Usage struct {
								PromptTokens     int64 `json:"prompt_tokens"`
								CompletionTokens int64 `json:"completion_tokens"`
							}
						}
					}
				}
				call(t, acme, "GET", srv.Base+"/api/v1/tasks/"+id+"/result", "", &res)
				u := res.Result.Data.Usage
				if u.PromptTokens <= 0 || u.CompletionTokens <= 0 || got.Usage != (usageView{InputTokens: u.PromptTokens, OutputTokens: u.CompletionTokens}) {
					t.Errorf("task %s usage %+v, want the tokens its result reports (%+v)", id, got.Usage, u)
				}
				want.InputTokens += u.PromptTokens
				want.OutputTokens += u.CompletionTokens
			}

			type tenants struct {
				Tenants []struct {
					TenantID string `json:"tenant_id"`
					usageView
				}
			}
			var all tenants
			if code := call(t, adminKey, "GET", srv.Base+"/api/v1/monitoring/tenants", "", &all); code != 200 {
				t.Fatalf("GET /monitoring/tenants: %d", code)
			}
			if len(all.Tenants) != 1 || all.Tenants[0].TenantID != "acme" || all.Tenants[0].usageView != want {
				t.Errorf("tenants = %+v, want acme with %+v", all.Tenants, want)
			}
			var others tenants
			if code := call(t, other, "GET", srv.Base+"/api/v1/monitoring/tenants", "", &others); code != 200 || len(others.Tenants) != 0 {
				t.Errorf("another tenant sees %d %+v, want nothing", code, others.Tenants)
			}

			fams := scrape(t, srv.Base)
			labels := func(typ string) map[string]string {
				return map[string]string{"task_type": "llm_interaction", "executor": "mock", "type": typ}
			}
			if in, out := value(fams, "compute_provider_tokens_total", labels("input")), value(fams, "compute_provider_tokens_total", labels("output")); in != float64(want.InputTokens) || out != float64(want.OutputTokens) {
				t.Errorf("compute_provider_tokens_total input %v output %v, want %d and %d", in, out, want.InputTokens, want.OutputTokens)
			}
			if got := value(fams, "compute_provider_seconds_total", nil); got > 0 {
				t.Errorf("compute_provider_seconds_total = %v, but the mock reports no service time", got)
			}
		})
	}
}
