package hosted

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/task"
)

// pollFailures is how many polls in a row may fail on a transient error
// (the service unavailable) before a wait gives up.
const pollFailures = 5

// Settings are the settings of a hosted API that is polled (fal,
// Replicate), embedded in its executor's Settings.
type Settings struct {
	// BaseURL is the API's base URL (the provider's by default); tests
	// point it at a fake.
	BaseURL string `json:"base_url"`
	Models
	Common
	Polling
}

// Remote is what the executors of polled hosted APIs share: their name,
// API, settings and the jobs cancelled through them.
type Remote struct {
	// Name is the configured executor name.
	Name string
	// Base is the API's base URL, without a final slash.
	Base string
	// Models, Common and Backoff are from the settings.
	Models  Models
	Common  Common
	Backoff Backoff
	// API makes the JSON calls; HTTP downloads outputs.
	API  Client
	HTTP *http.Client

	cancelled sync.Map // external id -> struct{}
}

// NewRemote checks s and returns the shared part of an executor called
// name whose API is at s.BaseURL (defaultBase when empty), authorized by
// authorization; hc makes its calls (nil: http.DefaultClient).
func NewRemote(name string, s Settings, defaultBase, authorization string, hc *http.Client) (*Remote, error) {
	if s.Model == "" && len(s.Models.Models) == 0 {
		return nil, errors.New("model (or models per task type) is required")
	}
	if err := s.Common.check(); err != nil {
		return nil, err
	}
	b, err := s.Backoff()
	if err != nil {
		return nil, err
	}
	base := strings.TrimRight(s.BaseURL, "/")
	if base == "" {
		base = defaultBase
	}
	return &Remote{
		Name: name, Base: base, Models: s.Models, Common: s.Common, Backoff: b,
		API: Client{HTTP: hc, Authorization: authorization}, HTTP: hc,
	}, nil
}

// MarkCancelled records that job id was cancelled through this executor,
// so that its end is reported as cancelled rather than as the error the
// service answers.
func (r *Remote) MarkCancelled(id string) { r.cancelled.Store(id, struct{}{}) }

// Cancelled reports whether job id was cancelled through this executor.
func (r *Remote) Cancelled(id string) bool {
	_, ok := r.cancelled.Load(id)
	return ok
}

// Follow polls a job until step says it ended. poll reads the job once;
// a transient failure (provider_unavailable) is retried up to five times
// in a row, a rate-limited poll waits its Retry-After, and the end of ctx
// ends the wait with ctx's error. step is handed each answer and returns a
// key that changes when the job moves (the backoff then starts again) and
// whether the job ended, with its error.
func Follow[T any](ctx context.Context, b Backoff, poll func(context.Context) (T, error), step func(T) (key string, done bool, err error)) error {
	last, failures := "", 0
	for {
		v, err := poll(ctx)
		wait := time.Duration(0)
		switch {
		case err != nil && ctx.Err() != nil:
			return ctx.Err()
		case err != nil && executor.Is(err, executor.RateLimited):
			wait = RetryAfterOf(err)
		case err != nil && executor.Is(err, executor.ProviderUnavailable) && failures < pollFailures:
			failures++
		case err != nil:
			return err
		default:
			failures = 0
			key, done, err := step(v)
			if done || err != nil {
				return err
			}
			if key != last {
				last = key
				b.Reset()
			}
		}
		if wait == 0 {
			wait = b.Next()
		}
		if err := Pause(ctx, wait); err != nil {
			return err
		}
	}
}

// RetryAfterOf is the delay a rate-limited error asks for
// (DefaultRetryAfter when it names none).
func RetryAfterOf(err error) time.Duration {
	var ra *task.RetryAfterError
	if errors.As(err, &ra) && ra.After > 0 {
		return ra.After
	}
	return DefaultRetryAfter
}

// Cancel sends a cancel call (method to url). Answers in ok (and any 2xx)
// are success: a service answers a job that already ended, or that it no
// longer knows, with one of them. what names the call in errors.
func (c *Client) Cancel(ctx context.Context, method, url, what string, ok ...int) error {
	resp, err := c.Do(ctx, method, url, nil, nil)
	if err != nil {
		return err
	}
	if resp.Code >= 200 && resp.Code < 300 {
		return nil
	}
	for _, code := range ok {
		if resp.Code == code {
			return nil
		}
	}
	return StatusError(what, resp)
}
