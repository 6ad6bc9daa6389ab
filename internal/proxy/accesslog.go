package proxy

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/mqlb/mqlb/internal/config"
)

// Record is one access-log line, written when a connection closes.
type Record struct {
	Start      time.Time     `json:"time"`
	Remote     string        `json:"remote"`
	Listener   string        `json:"listener"`
	ClientID   string        `json:"client_id"`
	Username   string        `json:"username"`
	CertCN     string        `json:"cert_cn,omitempty"`
	Identity   string        `json:"identity,omitempty"` // the certificate identity (tls.identity)
	Version    byte          `json:"protocol"`
	Upstream   string        `json:"upstream,omitempty"`
	Server     string        `json:"server,omitempty"`
	ServerAddr string        `json:"server_addr,omitempty"`
	Retries    int           `json:"retries,omitempty"` // servers tried after the first (connect_retries)
	Connack    Connack       `json:"connack,omitzero"`
	BytesIn    int64         `json:"bytes_in"`
	BytesOut   int64         `json:"bytes_out"`
	Duration   time.Duration `json:"-"`
	Seconds    float64       `json:"duration"`
	Result     string        `json:"result"`
	Reason     string        `json:"reason,omitempty"`
}

// Connack is the CONNACK code a client was answered with, by a server or
// by the load balancer itself. The zero value is "no CONNACK", which the
// log leaves out: code 0 means accepted.
type Connack struct {
	Code byte
	Sent bool
}

func connackCode(code byte) Connack { return Connack{Code: code, Sent: true} }

// IsZero reports that no CONNACK was sent (for omitzero).
func (c Connack) IsZero() bool { return !c.Sent }

// MarshalJSON writes the code as a number.
func (c Connack) MarshalJSON() ([]byte, error) { return strconv.AppendInt(nil, int64(c.Code), 10), nil }

// AccessLog writes one Record per connection as text (logfmt, in the spirit
// of NGINX's stream log) or JSON lines. Passwords are never part of a record.
type AccessLog struct {
	mu   sync.Mutex
	w    io.Writer
	file *os.File // owned, closed by Close
	json bool
	buf  []byte
	rec  Record // the record being written (so the caller's does not escape)
}

// OpenAccessLog opens the configured destination; path "off" (or "") gives
// a log that writes nothing.
func OpenAccessLog(c config.AccessLog) (*AccessLog, error) {
	a := &AccessLog{json: c.Format == "json"}
	switch c.Path {
	case "off", "":
		return a, nil
	case "stdout":
		a.w = os.Stdout
	case "stderr":
		a.w = os.Stderr
	default:
		f, err := os.OpenFile(c.Path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
		if err != nil {
			return nil, fmt.Errorf("access_log.path: %w", err)
		}
		a.w, a.file = f, f
	}
	return a, nil
}

// Close closes a file destination.
func (a *AccessLog) Close() error {
	if a == nil || a.file == nil {
		return nil
	}
	return a.file.Close()
}

// Write logs r. Safe for concurrent use; a nil or "off" log does nothing.
func (a *AccessLog) Write(r *Record) {
	if a == nil || a.w == nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.rec = *r
	if a.rec.Result == "" {
		a.rec.Result = ResultError
	}
	if a.json {
		a.rec.Seconds = a.rec.Duration.Seconds()
		b, _ := json.Marshal(&a.rec)
		a.buf = append(append(a.buf[:0], b...), '\n')
	} else {
		a.buf = appendText(a.buf[:0], &a.rec)
	}
	a.w.Write(a.buf)
}

func appendText(b []byte, r *Record) []byte {
	b = r.Start.UTC().AppendFormat(b, "2006-01-02T15:04:05.000Z")
	b = append(b, " remote="...)
	b = append(b, r.Remote...)
	b = append(b, " listener="...)
	b = append(b, r.Listener...)
	b = append(b, " client_id="...)
	b = strconv.AppendQuote(b, r.ClientID)
	b = append(b, " username="...)
	b = strconv.AppendQuote(b, r.Username)
	if r.CertCN != "" {
		b = append(b, " cert_cn="...)
		b = strconv.AppendQuote(b, r.CertCN)
	}
	if r.Identity != "" {
		b = append(b, " identity="...)
		b = strconv.AppendQuote(b, r.Identity)
	}
	b = append(b, " protocol="...)
	b = strconv.AppendInt(b, int64(r.Version), 10)
	b = appendField(b, " upstream=", r.Upstream)
	b = appendField(b, " server=", r.Server)
	b = appendField(b, " server_addr=", r.ServerAddr)
	if r.Retries > 0 {
		b = append(b, " retries="...)
		b = strconv.AppendInt(b, int64(r.Retries), 10)
	}
	if r.Connack.Sent {
		b = append(b, " connack="...)
		b = strconv.AppendInt(b, int64(r.Connack.Code), 10)
	}
	b = append(b, " bytes_in="...)
	b = strconv.AppendInt(b, r.BytesIn, 10)
	b = append(b, " bytes_out="...)
	b = strconv.AppendInt(b, r.BytesOut, 10)
	b = append(b, " duration="...)
	b = strconv.AppendFloat(b, r.Duration.Seconds(), 'f', 3, 64)
	b = append(b, " result="...)
	b = append(b, r.Result...)
	if r.Reason != "" {
		b = append(b, " reason="...)
		b = strconv.AppendQuote(b, r.Reason)
	}
	return append(b, '\n')
}

func appendField(b []byte, key, v string) []byte {
	if v == "" {
		v = "-"
	}
	return append(append(b, key...), v...)
}
