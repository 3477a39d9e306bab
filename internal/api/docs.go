package api

import (
	"fmt"
	"net/http"

	"github.com/danielgtaylor/huma/v2"

	"github.com/computeserver/compute/internal/apidocs"
)

// registerDocs serves the API reference page and its assets
// (internal/apidocs) at their exact paths, without an API key: the page
// holds no data, and /openapi.json, which it renders, is public too. Any
// other path under /docs/ is the usual problem+json 404.
func (s *Server) registerDocs() error {
	routes, err := apidocs.Routes()
	if err != nil {
		return err
	}
	for _, r := range routes {
		s.mux.Handle(http.MethodGet+" "+r.Path, r.Handler)
	}
	if len(routes) == 0 {
		return fmt.Errorf("api: the docs page has no files")
	}
	return nil
}

// docTags declares the document's tags in the order a reader meets them,
// each with a sentence; /docs and generated clients group operations by
// them. An operation's tag missing here still works (it is listed after
// these).
func docTags() []*huma.Tag {
	return []*huma.Tag{
		{Name: "Tasks", Description: "Create tasks of any registered type through one union body, read, list, change, cancel, retry and delete them, and read their results."},
		{Name: "Task types", Description: "The registered task types with their JSON Schemas, and a typed create and get route for each type."},
		{Name: "Events", Description: "Server-Sent Event streams of task events, replayable with `Last-Event-ID`."},
		{Name: "Artifacts", Description: "The files tasks produce, served through the API."},
		{Name: "Webhooks", Description: "Webhook endpoints, the delivery ledger with every attempt, and redelivery."},
		{Name: "Workflows", Description: "Multi-step pipelines: a graph of tasks whose steps run when their dependencies complete."},
		{Name: "Scheduling", Description: "Operators' holds on queues, executors and servers, and tenants' concurrency limits."},
		{Name: "Monitoring", Description: "Queues, processes, executors and tenants' usage, read from the database every process shares."},
		{Name: "Operations", Description: "Liveness and readiness probes."},
	}
}
