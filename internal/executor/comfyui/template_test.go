package comfyui

import (
	"encoding/json"
	"errors"
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

// TestTemplateIndexedInputs: "{{input:field.N}}" takes the URL at index N
// of a list field; an index past the list's end is a missing field.
func TestTemplateIndexedInputs(t *testing.T) {
	t.Parallel()
	tmpl, err := parseTemplate("tryon", []byte(`{
		"1": {"class_type": "LoadImage", "inputs": {"image": "{{input:image_url}}"}},
		"2": {"class_type": "LoadImage", "inputs": {"image": "{{input:reference_image_urls.0}}"}},
		"3": {"class_type": "LoadImage", "inputs": {"image": "{{input:reference_image_urls.1}}"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	fields := map[string]json.RawMessage{
		"image_url":            json.RawMessage(`"https://x.test/person.png"`),
		"reference_image_urls": json.RawMessage(`["https://x.test/dress.png", "https://x.test/belt.png"]`),
	}
	graph, urls, err := tmpl.fill(fields)
	if err != nil {
		t.Fatal(err)
	}
	if urls["reference_image_urls.0"] != "https://x.test/dress.png" || urls["reference_image_urls.1"] != "https://x.test/belt.png" {
		t.Errorf("input urls %v", urls)
	}
	raw, _ := json.Marshal(resolve(graph, map[string]string{"image_url": "p.png", "reference_image_urls.0": "d.png", "reference_image_urls.1": "b.png"}))
	if !strings.Contains(string(raw), `"image":"d.png"`) || !strings.Contains(string(raw), `"image":"b.png"`) {
		t.Errorf("filled graph %s", raw)
	}
	fields["reference_image_urls"] = json.RawMessage(`["https://x.test/dress.png"]`)
	var missing *MissingFieldsError
	if _, _, err := tmpl.fill(fields); !errors.As(err, &missing) || strings.Join(missing.Fields, ",") != "reference_image_urls.1" {
		t.Errorf("one reference short: %v", err)
	}
}
