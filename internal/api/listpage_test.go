package api_test

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/computeserver/compute/internal/config"
)

// TestListPageBytesBounded checks that a page of large tasks ends before
// COMPUTE_MAX_PAGE_BYTES and that following the cursors lists every task
// exactly once, newest first (issue 10: 20 readers of 500-item pages of
// large tasks took the server from 230 MB to 3.7 GB).
func TestListPageBytesBounded(t *testing.T) {
	t.Parallel()
	const budget = 64 << 10
	forEachDBWith(t, func(c *config.Config) { c.MaxPageBytes, c.Workers = budget, 0 }, func(t *testing.T, e *env) {
		var created []string
		for i := range 24 {
			m := e.must(201, "POST", "/api/v1/tasks/", map[string]any{
				"task_type": "echo", "message": fmt.Sprintf("%02d", i) + strings.Repeat("x", 20000),
			})
			created = append(created, m["id"].(string))
		}
		slices.Reverse(created) // the list is newest first

		var listed []string
		cursor, pages := "", 0
		for {
			path := "/api/v1/tasks/?limit=500"
			if cursor != "" {
				path += "&cursor=" + url.QueryEscape(cursor)
			}
			r := e.do("GET", path, nil)
			if r.status != 200 {
				t.Fatalf("GET %s: %d %s", path, r.status, r.body)
			}
			var page struct {
				Items      []json.RawMessage `json:"items"`
				NextCursor *string           `json:"next_cursor"`
			}
			if err := json.Unmarshal(r.body, &page); err != nil {
				t.Fatal(err)
			}
			pages++
			size := 0
			for _, it := range page.Items {
				size += len(it)
				var task struct {
					ID string `json:"id"`
				}
				if err := json.Unmarshal(it, &task); err != nil {
					t.Fatal(err)
				}
				listed = append(listed, task.ID)
			}
			if size > budget || len(r.body) > budget+1024 {
				t.Errorf("page %d: items of %d bytes, body of %d, want at most the %d budget", pages, size, len(r.body), budget)
			}
			if len(page.Items) == 0 {
				t.Fatalf("page %d is empty", pages)
			}
			if page.NextCursor == nil {
				break
			}
			cursor = *page.NextCursor
			if pages > len(created) {
				t.Fatalf("more pages than tasks")
			}
		}
		if pages < 8 {
			t.Errorf("%d pages of ~20 KB tasks within a 64 KiB budget, want at least 8", pages)
		}
		if !slices.Equal(listed, created) {
			t.Errorf("listed %d tasks\n  %v\nwant each of the %d once, newest first\n  %v", len(listed), listed, len(created), created)
		}
	})
}
