package event

import (
	"errors"
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// Every task state change builds one Body, and the engine builds thousands
// a second, so New writes it with appendBody instead of encoding/json's
// reflection: New takes 0.7 µs instead of 2 µs (BenchmarkNew against
// BenchmarkNewEncodingJSON), which gave the PostgreSQL engine about 7 % more
// tasks/s together with the engine's lazy log attributes. The output is
// byte for byte what json.Marshal writes for the same Body: encode_test.go
// checks that against encoding/json for generated bodies and strings, so a
// field added to Body must be added here too, and that test fails until it is.

// errUnencodable is what json.Marshal refuses: NaN or infinite progress, a
// time outside years 0–9999 or with a zone offset of 24 hours or more.
var errUnencodable = errors.New("event: body has a value JSON cannot encode")

// appendBody appends b as json.Marshal encodes it: the fields in
// declaration order, metadata's keys sorted.
func appendBody(dst []byte, b *Body) ([]byte, error) {
	dst = append(dst, `{"event_type":`...)
	dst = appendString(dst, b.EventType)
	dst = append(dst, `,"task_id":"`...)
	dst = append(dst, b.TaskID.String()...)
	dst = append(dst, `","task_type":`...)
	dst = appendString(dst, b.TaskType)
	dst = append(dst, `,"status":`...)
	dst = appendString(dst, string(b.Status))
	dst = append(dst, `,"entity_id":`...)
	dst = appendString(dst, b.EntityID)
	dst = append(dst, `,"origin_instance":`...)
	dst = appendString(dst, b.OriginInstance)
	dst = append(dst, `,"origin_zone":`...)
	dst = appendString(dst, b.OriginZone)
	dst = append(dst, `,"origin_version":`...)
	dst = appendString(dst, b.OriginVersion)
	dst = append(dst, `,"timestamp":`...)
	var err error
	if dst, err = appendTime(dst, b.Timestamp); err != nil {
		return nil, err
	}
	dst = append(dst, `,"metadata":`...)
	if dst, err = appendMetadata(dst, b.Metadata); err != nil {
		return nil, err
	}
	dst = append(dst, `,"progress":`...)
	if dst, err = appendFloat(dst, b.Progress); err != nil {
		return nil, err
	}
	if b.ErrorMessage != "" {
		dst = append(dst, `,"error_message":`...)
		dst = appendString(dst, b.ErrorMessage)
	}
	if b.ErrorCategory != "" {
		dst = append(dst, `,"error_category":`...)
		dst = appendString(dst, b.ErrorCategory)
	}
	for _, f := range [...]struct {
		key string
		t   *time.Time
	}{{`,"started_at":`, b.StartedAt}, {`,"completed_at":`, b.CompletedAt}} {
		dst = append(dst, f.key...)
		if f.t == nil {
			dst = append(dst, "null"...)
			continue
		}
		if dst, err = appendTime(dst, *f.t); err != nil {
			return nil, err
		}
	}
	return append(dst, '}'), nil
}

// metadataKeys are the keys New puts in Body.Metadata, in sorted order.
var metadataKeys = [...]string{"attempt", "origin_tenant_id", "queue_name", "retry_count", "stage"}

// appendMetadata appends m when it holds only New's keys with their types
// (int or string); anything else is reported, and New falls back to
// encoding/json.
func appendMetadata(dst []byte, m map[string]any) ([]byte, error) {
	if m == nil {
		return append(dst, "null"...), nil
	}
	known := 0
	dst = append(dst, '{')
	for _, k := range metadataKeys {
		v, ok := m[k]
		if !ok {
			continue
		}
		if known > 0 {
			dst = append(dst, ',')
		}
		known++
		dst = appendString(dst, k)
		dst = append(dst, ':')
		switch v := v.(type) {
		case int:
			dst = strconv.AppendInt(dst, int64(v), 10)
		case string:
			dst = appendString(dst, v)
		default:
			return nil, errOtherMetadata
		}
	}
	if known != len(m) {
		return nil, errOtherMetadata
	}
	return append(dst, '}'), nil
}

// errOtherMetadata says metadata holds a key or type appendMetadata does
// not write.
var errOtherMetadata = errors.New("event: metadata needs encoding/json")

// appendTime appends t as time.Time.MarshalJSON does (RFC 3339 with
// nanoseconds, quoted), refusing what it refuses: a year outside 0–9999,
// a zone offset of 24 hours or more.
func appendTime(dst []byte, t time.Time) ([]byte, error) {
	if y := t.Year(); y < 0 || y > 9999 {
		return nil, errUnencodable
	}
	if _, off := t.Zone(); off <= -24*3600 || off >= 24*3600 {
		return nil, errUnencodable
	}
	dst = append(dst, '"')
	dst = t.AppendFormat(dst, time.RFC3339Nano)
	return append(dst, '"'), nil
}

// appendFloat appends f as encoding/json does for a float64.
func appendFloat(dst []byte, f float64) ([]byte, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil, errUnencodable
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	n := len(dst)
	dst = strconv.AppendFloat(dst, f, format, -1, 64)
	if format == 'e' {
		// clean up e-09 to e-9, as encoding/json does
		if m := len(dst) - n; m >= 4 && dst[len(dst)-4] == 'e' && dst[len(dst)-3] == '-' && dst[len(dst)-2] == '0' {
			dst[len(dst)-2] = dst[len(dst)-1]
			dst = dst[:len(dst)-1]
		}
	}
	return dst, nil
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string the way json.Marshal does: HTML
// characters, U+2028 and U+2029 escaped, invalid UTF-8 replaced by U+FFFD.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
