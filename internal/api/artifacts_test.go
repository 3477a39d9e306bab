package api_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// An unsatisfiable Range on an artifact is a problem+json 416 that keeps
// its Content-Range.
func TestArtifactRangeProblem(t *testing.T) {
	t.Parallel()
	e := start(t, "sqlite")
	done := e.must(201, "POST", "/api/v1/tasks/", map[string]any{"task_type": "generation", "prompt": "a dress", "width": 64, "height": 64})
	id := done["id"].(string)
	e.waitStatus(id, "completed")
	res := e.must(200, "GET", "/api/v1/tasks/"+id+"/result", nil)
	art := res["result"].(map[string]any)["artifacts"].([]any)[0].(map[string]any)
	url := strings.TrimPrefix(art["url"].(string), e.base)
	size := int64(art["size"].(float64))

	r := e.do("GET", url, nil, "Range", "bytes=999999999-")
	problemAt(t, r, http.StatusRequestedRangeNotSatisfiable, "")
	if got, want := r.header.Get("Content-Range"), fmt.Sprintf("bytes */%d", size); got != want {
		t.Errorf("Content-Range %q, want %q", got, want)
	}
	problemAt(t, e.do("GET", url, nil, "Range", "bytes=zz"), http.StatusRequestedRangeNotSatisfiable, "")
	// Satisfiable ranges and whole files are unchanged.
	if r := e.do("GET", url, nil, "Range", "bytes=0-9"); r.status != http.StatusPartialContent || len(r.body) != 10 {
		t.Errorf("range 0-9: status %d, %d bytes", r.status, len(r.body))
	}
	if r := e.do("GET", url, nil); r.status != 200 || int64(len(r.body)) != size || r.header.Get("Content-Type") != art["content_type"] {
		t.Errorf("whole file: status %d, %d bytes, type %q", r.status, len(r.body), r.header.Get("Content-Type"))
	}
}
