package llminteraction

import (
	"github.com/computeserver/compute/internal/executor/mock"
	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/task"
)

// examples are the type's sample tasks for the conformance suite. They
// name the mock, the only chat executor a server without a config file
// has (and one that answers only tasks that name it).
func examples() []registry.Example {
	schema := map[string]any{"type": "object", "required": []any{"colour", "sleeves"}, "properties": map[string]any{
		"colour":  map[string]any{"type": "string", "enum": []any{"ecru", "navy", "sage"}},
		"sleeves": map[string]any{"type": "string", "enum": []any{"short", "long", "none"}},
	}}
	return []registry.Example{
		{
			Name: "structured attributes of a garment, on the mock",
			Body: map[string]any{"provider_type": ProviderMock, "system": "You describe garments for a catalogue.",
				"prompt": "Which colour and sleeves has the linen summer dress?", "temperature": 0.2, "max_tokens": 200,
				"response_schema": schema},
			WantStatus: task.StatusCompleted,
		},
		{
			Name: "an answer that breaks the schema",
			Body: map[string]any{"provider_type": ProviderMock, "prompt": mock.AnswerPrefix + "ecru, short sleeves",
				"response_schema": schema},
			WantStatus: task.StatusFailed,
			WantError:  "does not follow response_schema",
		},
	}
}
