package comfyui

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func TestTemplateFill(t *testing.T) {
	t.Parallel()
	tmpl, err := parseTemplate("t", []byte(`{
		"1": {"class_type": "A", "inputs": {"seed": "{{seed}}", "sizes": "{{sizes}}", "text": "{{prompt}}",
		      "img": "{{input:image_url}}", "literal": "{{ not a placeholder }}", "partial": "x {{seed}}", "link": ["2", 0]}},
		"2": {"class_type": "B", "inputs": {"flag": "{{flag}}"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"flag", "prompt", "seed", "sizes"}; !reflect.DeepEqual(tmpl.fields, want) {
		t.Errorf("fields %v, want %v", tmpl.fields, want)
	}
	fields := map[string]json.RawMessage{
		"seed": json.RawMessage(`9007199254740993`), "sizes": json.RawMessage(`[512, 768]`),
		"prompt": json.RawMessage(`"{{seed}}"`), "flag": json.RawMessage(`true`),
		"image_url": json.RawMessage(`"https://x.test/a.png"`),
	}
	graph, urls, err := tmpl.fill(fields)
	if err != nil {
		t.Fatal(err)
	}
	if urls["image_url"] != "https://x.test/a.png" {
		t.Errorf("input urls %v", urls)
	}
	raw, err := json.Marshal(resolve(graph, map[string]string{"image_url": "image_url-abc.png"}))
	if err != nil {
		t.Fatal(err)
	}
	got := string(raw)
	for _, want := range []string{
		`"seed":9007199254740993`,         // exact beyond 2^53
		`"sizes":{"__value__":[512,768]}`, // a list is not read as a link
		`"text":"{{seed}}"`,               // one pass
		`"img":"image_url-abc.png"`,       // the uploaded name
		`"literal":"{{ not a placeholder }}"`,
		`"partial":"x {{seed}}"`,
		`"link":["2",0]`,
		`"flag":true`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("filled graph %s lacks %s", got, want)
		}
	}
	// The template itself is untouched.
	if tmpl.graph["1"].(map[string]any)["inputs"].(map[string]any)["seed"] != "{{seed}}" {
		t.Error("fill changed the template")
	}
	delete(fields, "flag")
	fields["seed"] = json.RawMessage(`null`)
	if _, _, err := tmpl.fill(fields); err == nil || !strings.Contains(err.Error(), "flag, seed") {
		t.Errorf("fill without flag and seed: %v", err)
	}
}

func TestParseTemplateRefusesUIFormat(t *testing.T) {
	t.Parallel()
	for _, doc := range []string{`{"nodes": [], "links": []}`, `[]`, `{}`} {
		if _, err := parseTemplate("ui", []byte(doc)); err == nil {
			t.Errorf("parseTemplate(%s) accepted a graph that is not in API format", doc)
		}
	}
}
