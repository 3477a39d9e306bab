package sqlstore

import (
	"reflect"
	"testing"
)

func TestRebind(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, in, want string
		args, wantArgs []any
	}{
		{"in order", "SELECT $1, $2", "SELECT ?, ?", []any{"a", "b"}, []any{"a", "b"}},
		{"repeated and out of order", "UPDATE t SET a = $2, b = $1 WHERE c = $2", "UPDATE t SET a = ?, b = ? WHERE c = ?",
			[]any{1, 2}, []any{2, 1, 2}},
		{"two digits", "VALUES ($10, $1)", "VALUES (?, ?)",
			[]any{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, []any{10, 1}},
		{"inside a string literal", "SELECT '$1', $1", "SELECT '$1', ?", []any{"x"}, []any{"x"}},
		{"a dollar without digits", "SELECT $ || $0, $1", "SELECT $ || $0, ?", []any{"x"}, []any{"x"}},
		{"no placeholders", "SELECT 1", "SELECT 1", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			q, args := rebind(tc.in, tc.args)
			if q != tc.want || !reflect.DeepEqual(args, tc.wantArgs) {
				t.Errorf("rebind(%q, %v) = %q, %v; want %q, %v", tc.in, tc.args, q, args, tc.want, tc.wantArgs)
			}
		})
	}
}
