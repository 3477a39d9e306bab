package task_test

import (
	"encoding/json"
	"testing"

	"github.com/computeserver/compute/internal/task"
)

func TestFillOutput(t *testing.T) {
	t.Parallel()
	seed := int64(42)
	r := task.Result{Artifacts: []task.Artifact{
		{URL: "/a/1.png", ContentType: "image/png", Width: 64, Height: 32, Seed: &seed},
		{URL: "/a/log.txt", ContentType: "text/plain"},
		{URL: "/a/2.jpg", ContentType: "image/jpeg"},
	}}
	r.FillOutput()
	raw, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Output struct {
			Images []map[string]any `json:"images"`
		} `json:"output"`
	}
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	im := got.Output.Images
	if len(im) != 2 || im[0]["url"] != "/a/1.png" || im[0]["seed"] != 42.0 || im[0]["width"] != 64.0 || im[0]["height"] != 32.0 || im[1]["url"] != "/a/2.jpg" {
		t.Errorf("output.images = %v, want the two images with url, seed, width, height", im)
	}
	none := task.Result{Artifacts: []task.Artifact{{URL: "/a/log.txt", ContentType: "text/plain"}}}
	none.FillOutput()
	if none.Output != nil {
		t.Errorf("a result without images got output %+v", none.Output)
	}
	set := task.Result{Output: &task.Output{Images: []task.OutputImage{{URL: "x"}}}, Artifacts: r.Artifacts}
	set.FillOutput()
	if len(set.Output.Images) != 1 || set.Output.Images[0].URL != "x" {
		t.Errorf("FillOutput replaced the processor's output: %+v", set.Output)
	}
}
