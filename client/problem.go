package client

import (
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Problem is an error answer of the API: an RFC 9457 problem body
// (application/problem+json), or, for an answer that has none (a proxy's
// error page), one made from its status.
type Problem struct {
	// Type is a URI naming the kind of problem ("about:blank" when absent).
	Type string `json:"type,omitempty"`
	// Title is a short summary, the HTTP status text.
	Title string `json:"title,omitempty"`
	// Status is the HTTP status code.
	Status int `json:"status,omitempty"`
	// Detail explains this occurrence.
	Detail string `json:"detail,omitempty"`
	// Instance is a URI naming this occurrence, when the server gives one.
	Instance string `json:"instance,omitempty"`
	// Errors name each failing field of a validation problem.
	Errors []ProblemError `json:"errors,omitempty"`
	// RetryAfter is the answer's Retry-After (429, 503, 507), else 0.
	RetryAfter time.Duration `json:"-"`
}

// ProblemError is one failing field of a Problem.
type ProblemError struct {
	// Location names the field: "body.width", "query.status",
	// "header.Last-Event-ID".
	Location string `json:"location,omitempty"`
	// Message says what is wrong with it.
	Message string `json:"message,omitempty"`
	// Value is the rejected value (cut to 200 characters by the server).
	Value any `json:"value,omitempty"`
}

// Error implements error: the status, the detail and each failing field.
func (p *Problem) Error() string {
	var b strings.Builder
	b.WriteString(strconv.Itoa(p.Status))
	if p.Title != "" {
		b.WriteString(" ")
		b.WriteString(p.Title)
	}
	if p.Detail != "" && p.Detail != p.Title {
		b.WriteString(": ")
		b.WriteString(p.Detail)
	}
	for i, e := range p.Errors {
		if i == 0 {
			b.WriteString(" (")
		} else {
			b.WriteString("; ")
		}
		if e.Location != "" {
			b.WriteString(e.Location)
			b.WriteString(": ")
		}
		b.WriteString(e.Message)
		if i == len(p.Errors)-1 {
			b.WriteString(")")
		}
	}
	return b.String()
}

// maxProblemBytes bounds the error body read; problem bodies are small.
const maxProblemBytes = 64 << 10

// readProblem turns a non-2xx answer into a *Problem.
func readProblem(res *http.Response) *Problem {
	raw, _ := io.ReadAll(io.LimitReader(res.Body, maxProblemBytes))
	p := &Problem{}
	ct, _, _ := mime.ParseMediaType(res.Header.Get("Content-Type"))
	if ct == "application/problem+json" || ct == "application/json" {
		if err := json.Unmarshal(raw, p); err != nil {
			p = &Problem{}
		}
	}
	if p.Status == 0 {
		p.Status = res.StatusCode
	}
	if p.Title == "" {
		p.Title = http.StatusText(res.StatusCode)
	}
	if p.Detail == "" && p.Errors == nil && ct != "application/problem+json" {
		p.Detail = snippet(raw)
	}
	p.RetryAfter = retryAfter(res.Header.Get("Retry-After"))
	return p
}

// snippet is the start of a body that is not a problem, as text.
func snippet(raw []byte) string {
	s := strings.TrimSpace(strings.ToValidUTF8(string(raw), "\uFFFD"))
	if utf8.RuneCountInString(s) > 200 {
		s = string([]rune(s)[:200]) + "…"
	}
	return s
}

// retryAfter parses a Retry-After header: seconds or an HTTP date.
func retryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n >= 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}
