package llminteraction

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestCheckSchema(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ schema, wantErr string }{
		{`{"type":"object"}`, ""},
		{`{"type":"object","properties":{"a":{"$ref":"#/$defs/A"}},"$defs":{"A":{"type":"string"}}}`, ""},
		{`{"type":"array"}`, "must be an object schema"},
		{`{"type":"object","properties":{"a":{"pattern":"("}}}`, "error parsing regexp"},
		{`{"type":"object","properties":{"a":{"$ref":"#/$defs/B"}}}`, `$ref "#/$defs/B" names no schema`},
		{`{"type":"object","properties":{"a":{"$ref":"https://example.com/s.json"}}}`, "only #, #/$defs/NAME"},
		{`{"type":"object","properties":{"a":{"type":"text"}}}`, `unknown type "text"`},
		{`{"type":"object","properties":{"a":3}}`, "must be a schema"},
		{`{"type":"object","anyOf":[]}`, "non-empty list"},
	} {
		var s map[string]any
		if err := json.Unmarshal([]byte(tt.schema), &s); err != nil {
			t.Fatal(err)
		}
		_, err := checkSchema(s)
		if (err == nil) != (tt.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("%s: %v, want %q", tt.schema, err, tt.wantErr)
		}
	}
}

func TestValidateAnswer(t *testing.T) {
	t.Parallel()
	schema := `{"type":"object","required":["colour","sizes"],"additionalProperties":false,"properties":{
		"colour":{"type":"string","enum":["ecru","navy"]},
		"sizes":{"type":"array","minItems":1,"items":{"type":"integer","minimum":32,"maximum":54}},
		"note":{"type":["string","null"],"maxLength":10},
		"fit":{"$ref":"#/$defs/Fit"},
		"price":{"anyOf":[{"type":"number","exclusiveMinimum":0},{"type":"string","pattern":"^[0-9]+ EUR$"}]}},
		"$defs":{"Fit":{"type":"string","const":"relaxed"}}}`
	var s map[string]any
	if err := json.Unmarshal([]byte(schema), &s); err != nil {
		t.Fatal(err)
	}
	c, err := checkSchema(s)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		answer string
		want   []string
	}{
		{`{"colour":"ecru","sizes":[36,38],"note":null,"fit":"relaxed","price":"120 EUR"}`, nil},
		{`{"colour":"ecru","sizes":[36],"price":12.5}`, nil},
		{`{"colour":"red","sizes":[36]}`, []string{`$.colour: is "red", want one of ["ecru","navy"]`}},
		{`{"sizes":[]}`, []string{`$: lacks the required property "colour"`, "$.sizes: has 0 items, want at least 1"}},
		{`{"colour":"navy","sizes":[36.5,60]}`, []string{"$.sizes[0]: is number, want integer", "$.sizes[1]: is 60, want at most 54"}},
		{`{"colour":"navy","sizes":[36],"extra":1}`, []string{"$.extra: is not a property the schema allows"}},
		{`{"colour":"navy","sizes":[36],"note":"far too long a note"}`, []string{"$.note: has 19 characters, want at most 10"}},
		{`{"colour":"navy","sizes":[36],"fit":"slim"}`, []string{`$.fit: is "slim", want "relaxed"`}},
		{`{"colour":"navy","sizes":[36],"price":"cheap"}`, []string{"$.price: matches none of anyOf"}},
		{`["ecru"]`, []string{"$: is array, want object"}},
	} {
		var v any
		if err := json.Unmarshal([]byte(tt.answer), &v); err != nil {
			t.Fatal(err)
		}
		got := c.validate(v, 10)
		if strings.Join(got, "|") != strings.Join(tt.want, "|") {
			t.Errorf("%s:\n got %q\nwant %q", tt.answer, got, tt.want)
		}
	}
}

func TestParseAnswer(t *testing.T) {
	t.Parallel()
	schema := map[string]any{"type": "object", "required": []any{"a"}}
	for _, tt := range []struct{ text, wantErr string }{
		{`{"a":1}`, ""},
		{"```json\n{\"a\": 1}\n```", ""},
		{`  {"a":1}  `, ""},
		{`not json`, "it is not JSON"},
		{`{"a":1} and more`, "text after the JSON value"},
		{`{"b":1}`, `lacks the required property "a"`},
		{`{"a":`, "it is not JSON"},
	} {
		got, err := parseAnswer(tt.text, schema)
		if (err == nil) != (tt.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("%q: %v, want %q", tt.text, err, tt.wantErr)
		}
		if err == nil && got["a"] != 1.0 {
			t.Errorf("%q: parsed %v", tt.text, got)
		}
	}
}
