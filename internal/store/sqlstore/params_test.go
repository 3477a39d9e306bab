package sqlstore

import (
	"reflect"
	"testing"
)

func TestParams(t *testing.T) {
	t.Parallel()
	var p params
	got := "a = " + p.add(1) + " AND b IN (" + p.list("x", "y") + ") AND " + inList(&p, "c", []string{"z"}) +
		" AND " + inList(&p, "d", []string{"u", "v"})
	if want := "a = $1 AND b IN ($2, $3) AND c = $4 AND d IN ($5, $6)"; got != want {
		t.Errorf("statement %q, want %q", got, want)
	}
	if want := []any{1, "x", "y", "z", "u", "v"}; !reflect.DeepEqual(p.vals, want) {
		t.Errorf("values %v, want %v", p.vals, want)
	}
	if s := inList(&p, "e", []string(nil)); s != "" || len(p.vals) != 6 {
		t.Errorf("no values: %q, %d bound", s, len(p.vals))
	}
}
