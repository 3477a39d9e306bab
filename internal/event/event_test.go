package event

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/task"
)

// TestBodyMetadataEncoding pins the metadata object of event bodies: the
// keys in alphabetical order (as the map it replaced encoded them), stage
// and origin_tenant_id only when set.
func TestBodyMetadataEncoding(t *testing.T) {
	now := time.Date(2026, 11, 27, 1, 2, 3, 0, time.UTC)
	tk := &task.Task{ID: uuid.MustParse("0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"), Type: "echo",
		Status: task.StatusExecuting, QueueName: "default", Attempt: 2, RetryCount: 1}
	for _, tc := range []struct {
		stage, tenant, want string
	}{
		{"", "", `{"attempt":2,"queue_name":"default","retry_count":1}`},
		{"rendering", "acme", `{"attempt":2,"origin_tenant_id":"acme","queue_name":"default","retry_count":1,"stage":"rendering"}`},
	} {
		tk.Stage, tk.OriginTenantID = tc.stage, tc.tenant
		var b struct {
			Metadata json.RawMessage `json:"metadata"`
		}
		if err := json.Unmarshal(New(tk, KindStatus, now).Body, &b); err != nil {
			t.Fatal(err)
		}
		if string(b.Metadata) != tc.want {
			t.Errorf("metadata %s, want %s", b.Metadata, tc.want)
		}
	}
}
