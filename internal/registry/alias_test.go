package registry_test

import (
	"strings"
	"testing"

	"github.com/computeserver/compute/internal/registry"
)

// TestRouteAlias: a type's route alias is kept in its definition; an
// invalid one, one naming the API's own routes, or one another type has
// is refused at registration, naming the type and the alias.
func TestRouteAlias(t *testing.T) {
	t.Parallel()
	reg := registry.New()
	first := plainType("model_training")
	first.RouteAlias = "training"
	if err := reg.Register(first); err != nil {
		t.Fatal(err)
	}
	if def, _ := reg.Lookup("model_training"); def.RouteAlias != "training" {
		t.Errorf("alias %q", def.RouteAlias)
	}
	tests := []struct {
		name, alias, want string
	}{
		{name: "taken", alias: "training", want: `route alias "training" is already task type "model_training"'s`},
		{name: "not snake case", alias: "Training/x", want: "must be lower-case snake_case"},
		{name: "the tasks routes", alias: "tasks", want: "not one of the API's own path segments"},
		{name: "the artifacts routes", alias: "artifacts", want: "not one of the API's own path segments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { // sequential: they share reg
			ty := plainType("other_" + strings.ReplaceAll(tt.name, " ", "_"))
			ty.RouteAlias = tt.alias
			err := reg.Register(ty)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), ty.Name) {
				t.Errorf("alias %q: %v, want an error naming %s and %q", tt.alias, err, ty.Name, tt.want)
			}
		})
	}
}
