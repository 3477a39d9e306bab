package sqlstore

import (
	"reflect"
	"testing"

	"github.com/computeserver/compute/internal/store"
)

// TestShareTurns: claims are shared out in turns across destinations,
// counting the deliveries already in flight, within each destination's
// limit and what it has due.
func TestShareTurns(t *testing.T) {
	t.Parallel()
	a, b, c := dueDestination{"a", 5}, dueDestination{"b", 1}, dueDestination{"c", 3}
	for _, tc := range []struct {
		name string
		due  []dueDestination
		busy map[string]int
		c    store.DeliveryClaim
		want []dueDestination
	}{
		{name: "one each first", due: []dueDestination{a, b, c}, c: store.DeliveryClaim{Limit: 2, PerDestination: 2},
			want: []dueDestination{{"a", 1}, {"b", 1}}},
		{name: "then second turns", due: []dueDestination{a, b, c}, c: store.DeliveryClaim{Limit: 4, PerDestination: 2},
			want: []dueDestination{{"a", 2}, {"b", 1}, {"c", 1}}},
		{name: "per-destination limit", due: []dueDestination{a, b, c}, c: store.DeliveryClaim{Limit: 8, PerDestination: 2},
			want: []dueDestination{{"a", 2}, {"b", 1}, {"c", 2}}},
		{name: "in flight counts toward the turns", due: []dueDestination{a, b, c}, busy: map[string]int{"a": 1},
			c: store.DeliveryClaim{Limit: 2, PerDestination: 3}, want: []dueDestination{{"b", 1}, {"c", 1}}},
		{name: "in flight counts toward the limit", due: []dueDestination{a, c}, busy: map[string]int{"a": 2, "c": 1},
			c: store.DeliveryClaim{Limit: 8, PerDestination: 2}, want: []dueDestination{{"c", 1}}},
		{name: "probe takes one", due: []dueDestination{a, c}, c: store.DeliveryClaim{Limit: 8, PerDestination: 3, Probe: []string{"a"}},
			want: []dueDestination{{"a", 1}, {"c", 3}}},
		{name: "probe with one in flight takes none", due: []dueDestination{a}, busy: map[string]int{"a": 1},
			c: store.DeliveryClaim{Limit: 8, PerDestination: 3, Probe: []string{"a"}}},
		{name: "no limit", due: []dueDestination{a, b}, c: store.DeliveryClaim{Limit: 5},
			want: []dueDestination{{"a", 4}, {"b", 1}}},
	} {
		if got := shareTurns(tc.due, tc.busy, tc.c); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: shares = %v, want %v", tc.name, got, tc.want)
		}
	}
}
