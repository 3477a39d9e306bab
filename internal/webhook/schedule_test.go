package webhook

import (
	"testing"
	"time"

	"github.com/computeserver/compute/internal/store"
)

// TestBackoff checks the schedule: RetryMin×2^(n-1) plus at most 25%,
// never above RetryMax.
func TestBackoff(t *testing.T) {
	t.Parallel()
	d := New(Config{RetryMin: 30 * time.Second, RetryMax: 4 * time.Hour}, nil, nil)
	for n := 1; n <= 40; n++ {
		base := 30 * time.Second
		for i := 1; i < n && base < 4*time.Hour; i++ {
			base *= 2
		}
		lo, hi := base, base+base/4
		if base >= 4*time.Hour {
			lo, hi = 4*time.Hour-4*time.Hour/5, 4*time.Hour
		} else {
			hi = min(hi, 4*time.Hour)
		}
		for range 50 {
			if got := d.backoff(n); got < lo || got > hi {
				t.Fatalf("backoff(%d) = %s, want within [%s, %s]", n, got, lo, hi)
			}
		}
	}
	if got := d.backoff(1); got < 30*time.Second {
		t.Errorf("the first retry waits %s, less than RetryMin", got)
	}
}

// TestOutcome checks how an attempt's result moves its delivery.
func TestOutcome(t *testing.T) {
	t.Parallel()
	d := New(Config{RetryMin: time.Minute, MaxAttempts: 5, Window: time.Hour}, nil, nil)
	now := time.Date(2026, 1, 2, 12, 0, 0, 0, time.UTC)
	fresh := store.Delivery{CreatedAt: now.Add(-time.Minute), Attempts: 1}
	redelivered := now.Add(-time.Second)
	cases := []struct {
		name string
		dl   store.Delivery
		r    result
		want store.DeliveryStatus
	}{
		{"200 delivers", fresh, result{code: 200}, store.DeliveryDelivered},
		{"299 delivers", fresh, result{code: 299}, store.DeliveryDelivered},
		{"410 stops", fresh, result{code: 410}, store.DeliveryStopped},
		{"500 retries", fresh, result{code: 500}, store.DeliveryPending},
		{"404 retries", fresh, result{code: 404}, store.DeliveryPending},
		{"302 retries", fresh, result{code: 302}, store.DeliveryPending},
		{"no answer retries", fresh, result{err: "connection refused"}, store.DeliveryPending},
		{"refused destination fails", fresh, result{err: "forbidden destination", permanent: true}, store.DeliveryFailed},
		{"last attempt fails", store.Delivery{CreatedAt: now, Attempts: 5}, result{code: 500}, store.DeliveryFailed},
		{"last attempt still delivers", store.Delivery{CreatedAt: now, Attempts: 5}, result{code: 200}, store.DeliveryDelivered},
		{"retry past the window fails", store.Delivery{CreatedAt: now.Add(-59 * time.Minute), Attempts: 1}, result{code: 500}, store.DeliveryFailed},
		{"a redelivery has a fresh budget", store.Delivery{CreatedAt: now.Add(-48 * time.Hour), Attempts: 9, AttemptsBase: 8, RedeliveredAt: &redelivered},
			result{code: 500}, store.DeliveryPending},
		{"a redelivery's budget runs out", store.Delivery{CreatedAt: now.Add(-48 * time.Hour), Attempts: 13, AttemptsBase: 8, RedeliveredAt: &redelivered},
			result{code: 500}, store.DeliveryFailed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := d.outcome(tc.dl, tc.r, now)
			if o.Status != tc.want {
				t.Fatalf("outcome = %s, want %s", o.Status, tc.want)
			}
			if o.Status == store.DeliveryPending {
				n := tc.dl.Attempts - tc.dl.AttemptsBase
				lo := now.Add(time.Minute << (n - 1))
				if o.NextAttemptAt.Before(lo) || o.NextAttemptAt.After(lo.Add((time.Minute<<(n-1))/4)) {
					t.Errorf("next attempt at %s, want %s plus at most 25%%", o.NextAttemptAt, lo)
				}
			}
		})
	}
}
