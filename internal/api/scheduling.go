package api

import (
	"context"
	"net/http"
	"net/url"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/computeserver/compute/internal/apikey"
	"github.com/computeserver/compute/internal/store"
)

// TenantLimit is a tenant's global concurrency limit.
type TenantLimit struct {
	TenantID       string `json:"tenant_id" doc:"The tenant (a task's origin_tenant_id)."`
	MaxConcurrency int    `json:"max_concurrency" doc:"At most this many of the tenant's tasks execute at once, counted over every worker process; 0: no limit of its own."`
}

type tenantInput struct {
	Tenant string `path:"tenant" doc:"The tenant (a task's origin_tenant_id)."`
}

type tenantLimitInput struct {
	Tenant string `path:"tenant" doc:"The tenant (a task's origin_tenant_id)."`
	Body   struct {
		MaxConcurrency int `json:"max_concurrency" minimum:"0" maximum:"1000000" doc:"The limit; 0 removes it."`
	}
}

type tenantLimitOutput struct {
	Body TenantLimit
}

// Pause is an operator's pause of a queue or an executor, or drain of an
// executor server.
type Pause struct {
	Kind   string    `json:"kind" enum:"queue,executor,server" doc:"queue: none of the queue's tasks starts; executor: no task whose provider_type names the executor starts; server: an executor server (its URL as configured) takes no new job (a ComfyUI server's slots), while the executor's other servers do."`
	Name   string    `json:"name" doc:"The queue's or executor's name, or the server's URL."`
	Reason string    `json:"reason" doc:"Why, as the operator said."`
	Since  time.Time `json:"since" doc:"When the pause began."`
}

type pauseListOutput struct {
	Body struct {
		Pauses []Pause `json:"pauses"`
	}
}

type pauseInput struct {
	Body struct {
		Kind   string `json:"kind" enum:"queue,executor,server" doc:"What to pause: a queue, an executor, or an executor server (drain)."`
		Name   string `json:"name" minLength:"1" maxLength:"500" doc:"The queue's or executor's name, or the server's URL as in the executor's config."`
		Reason string `json:"reason,omitempty" maxLength:"500" doc:"Why, for the other operators."`
	}
}

type pauseOutput struct {
	Body Pause
}

type resumeInput struct {
	Body struct {
		Kind string `json:"kind" enum:"queue,executor,server"`
		Name string `json:"name" minLength:"1" maxLength:"500"`
	}
}

type resumeOutput struct {
	Body struct {
		Kind    string `json:"kind"`
		Name    string `json:"name"`
		Resumed bool   `json:"resumed" doc:"false when it was not paused."`
	}
}

// scheduling returns the store's scheduling controls, or a problem.
func (s *Server) scheduling() (store.Scheduling, error) {
	sc, ok := s.deps.Store.(store.Scheduling)
	if !ok {
		return nil, huma.Error501NotImplemented("this server's store has no scheduling controls")
	}
	return sc, nil
}

func (s *Server) registerSchedulingRoutes() {
	tags := []string{"Scheduling"}
	huma.Register(s.api, huma.Operation{
		OperationID: "get-tenant-limit", Method: http.MethodGet, Path: "/api/v1/tenants/{tenant}/limit", Tags: tags,
		Summary:     "Read a tenant's concurrency limit",
		Description: "A tenant key reads only its own tenant's limit (another tenant's is a 404); an admin key any tenant's.",
		Security:    bearer, Errors: []int{401, 404, 422},
	}, func(ctx context.Context, in *tenantInput) (*tenantLimitOutput, error) {
		if err := checkTenantName(in.Tenant); err != nil {
			return nil, err
		}
		if p := principalFrom(ctx); !p.admin && p.tenantID != in.Tenant {
			return nil, huma.Error404NotFound("tenant not found: " + quoteName(in.Tenant))
		}
		sc, err := s.scheduling()
		if err != nil {
			return nil, err
		}
		limits, err := sc.TenantLimits(ctx)
		if err != nil {
			return nil, s.problem(err, "tenant limit")
		}
		return &tenantLimitOutput{Body: TenantLimit{TenantID: in.Tenant, MaxConcurrency: limits[in.Tenant]}}, nil
	})

	huma.Register(s.api, huma.Operation{
		OperationID: "set-tenant-limit", Method: http.MethodPut, Path: "/api/v1/tenants/{tenant}/limit", Tags: tags,
		Summary: "Set a tenant's concurrency limit (admin)",
		Description: "At most max_concurrency of the tenant's tasks execute at once, counted over every worker process; " +
			"0 removes the limit. Every process's claims follow a change within a second. Tasks already running go on.",
		Security: bearer, Errors: []int{401, 403, 422},
	}, func(ctx context.Context, in *tenantLimitInput) (*tenantLimitOutput, error) {
		if err := adminOnly(ctx); err != nil {
			return nil, err
		}
		if err := checkTenantName(in.Tenant); err != nil {
			return nil, err
		}
		sc, err := s.scheduling()
		if err != nil {
			return nil, err
		}
		if err := sc.SetTenantLimit(ctx, in.Tenant, in.Body.MaxConcurrency); err != nil {
			return nil, s.problem(err, "tenant limit")
		}
		return &tenantLimitOutput{Body: TenantLimit{TenantID: in.Tenant, MaxConcurrency: in.Body.MaxConcurrency}}, nil
	})

	huma.Register(s.api, huma.Operation{
		OperationID: "list-pauses", Method: http.MethodGet, Path: "/api/v1/scheduling/pauses", Tags: tags,
		Summary:  "List paused queues and executors and drained servers (admin)",
		Security: bearer, Errors: []int{401, 403},
	}, func(ctx context.Context, _ *struct{}) (*pauseListOutput, error) {
		if err := adminOnly(ctx); err != nil {
			return nil, err
		}
		sc, err := s.scheduling()
		if err != nil {
			return nil, err
		}
		hs, err := sc.Holds(ctx)
		if err != nil {
			return nil, s.problem(err, "pauses")
		}
		out := &pauseListOutput{}
		out.Body.Pauses = make([]Pause, len(hs))
		for i, h := range hs {
			out.Body.Pauses[i] = pauseJSON(h)
		}
		return out, nil
	})

	huma.Register(s.api, huma.Operation{
		OperationID: "pause", Method: http.MethodPost, Path: "/api/v1/scheduling/pauses", Tags: tags,
		Summary: "Pause a queue or an executor, or drain an executor server (admin)",
		Description: "Nothing new starts there, on any worker process, within a second; running tasks (and a server's running jobs) finish. " +
			"Pausing what is paused keeps its start and takes the new reason. Resume with POST /api/v1/scheduling/pauses/resume.",
		Security: bearer, Errors: []int{401, 403, 422},
	}, func(ctx context.Context, in *pauseInput) (*pauseOutput, error) {
		if err := adminOnly(ctx); err != nil {
			return nil, err
		}
		h := store.Hold{Kind: store.HoldKind(in.Body.Kind), Name: in.Body.Name, Reason: in.Body.Reason}
		if h.Kind == store.HoldServer {
			if u, err := url.Parse(h.Name); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return nil, huma.Error422UnprocessableEntity("validation failed", &huma.ErrorDetail{
					Location: "body.name", Message: "a server is named by its http(s) URL, as in the executor's config", Value: h.Name,
				})
			}
		}
		sc, err := s.scheduling()
		if err != nil {
			return nil, err
		}
		if err := sc.Hold(ctx, h); err != nil {
			return nil, s.problem(err, "pause")
		}
		hs, err := sc.Holds(ctx)
		if err != nil {
			return nil, s.problem(err, "pause")
		}
		for _, got := range hs {
			if got.Kind == h.Kind && got.Name == h.Name {
				h = got
			}
		}
		return &pauseOutput{Body: pauseJSON(h)}, nil
	})

	huma.Register(s.api, huma.Operation{
		OperationID: "resume", Method: http.MethodPost, Path: "/api/v1/scheduling/pauses/resume", Tags: tags,
		Summary:     "Resume a paused queue or executor, or a drained server (admin)",
		Description: "Its tasks (or the server's slots) are taken again within a second. Resuming what is not paused answers resumed: false.",
		Security:    bearer, Errors: []int{401, 403, 422},
	}, func(ctx context.Context, in *resumeInput) (*resumeOutput, error) {
		if err := adminOnly(ctx); err != nil {
			return nil, err
		}
		sc, err := s.scheduling()
		if err != nil {
			return nil, err
		}
		ok, err := sc.Release(ctx, store.HoldKind(in.Body.Kind), in.Body.Name)
		if err != nil {
			return nil, s.problem(err, "pause")
		}
		out := &resumeOutput{}
		out.Body.Kind, out.Body.Name, out.Body.Resumed = in.Body.Kind, in.Body.Name, ok
		return out, nil
	})
}

// checkTenantName answers 422 for a tenant name no task can have.
func checkTenantName(tenant string) error {
	if err := apikey.CheckTenant(tenant); err != nil {
		return huma.Error422UnprocessableEntity("validation failed", &huma.ErrorDetail{
			Location: "path.tenant", Message: err.Error(), Value: tenant,
		})
	}
	return nil
}

func pauseJSON(h store.Hold) Pause {
	return Pause{Kind: string(h.Kind), Name: h.Name, Reason: h.Reason, Since: h.Since}
}
