// Package client is a Go client for the compute server's HTTP API
// (/api/v1): typed create, get, list, patch, cancel, retry and delete of
// tasks, their results and artifacts, workflows, and a task's event stream
// (Server-Sent Events) with Watch, which resumes with Last-Event-ID after a
// dropped connection, and Wait, which returns a task once it has finished.
//
// Errors the server answers with an RFC 9457 problem body are returned as
// *Problem, so callers can read the status and the failing fields:
//
//	var p *client.Problem
//	if errors.As(err, &p) && p.Status == http.StatusUnprocessableEntity {
//		for _, e := range p.Errors {
//			fmt.Println(e.Location, e.Message)
//		}
//	}
//
// The package is written by hand against the server's OpenAPI document
// (GET /openapi.json); its tests check its types against that document.
package client
