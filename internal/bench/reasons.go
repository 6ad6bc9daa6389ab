package bench

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"slices"
	"sync"
	"syscall"

	"github.com/mqlb/mqlb/internal/mqttwire"
)

// reason names why a connection attempt failed, coarsely enough to count:
// "refused 0x87 (not authorized)", "timeout", "reset", "eof",
// "dial: connection refused", "tls: ...", "protocol: ...".
func reason(err error) string {
	var re *refusedError
	var de *dialError
	var te *tlsError
	var ne net.Error
	switch {
	case errors.As(err, &re):
		return re.Error()
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.As(err, &de):
		return "dial: " + errnoText(de.err)
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "eof"
	case errors.As(err, &te):
		return "tls: " + errnoText(te.err)
	case errors.Is(err, mqttwire.ErrMalformed):
		return "protocol: malformed CONNACK"
	}
	return "other: " + errnoText(err)
}

// errnoText is the errno's text when there is one ("connection refused"),
// else the error's.
func errnoText(err error) string {
	var en syscall.Errno
	if errors.As(err, &en) {
		return en.Error()
	}
	return err.Error()
}

// refusedError is a CONNACK that did not accept the connection.
type refusedError struct {
	code    byte
	version byte
}

func (e *refusedError) Error() string {
	return fmt.Sprintf("refused 0x%02x (%s)", e.code, codeName(e.code, e.version))
}

func codeName(code, version byte) string {
	if version != mqttwire.V5 {
		if code < byte(len(v3Codes)) {
			return v3Codes[code]
		}
		return "unknown"
	}
	if n, ok := v5Codes[code]; ok {
		return n
	}
	return "unknown"
}

// v3Codes are the CONNACK return codes of 3.1/3.1.1 (v3.1.1 §3.2.2.3).
var v3Codes = [...]string{"accepted", "unacceptable protocol version", "identifier rejected",
	"server unavailable", "bad user name or password", "not authorized"}

// v5Codes are the CONNACK reason codes of 5.0 (v5 §3.2.2.2).
var v5Codes = map[byte]string{
	0x80: "unspecified error", 0x81: "malformed packet", 0x82: "protocol error",
	0x83: "implementation specific error", 0x84: "unsupported protocol version",
	0x85: "client identifier not valid", 0x86: "bad user name or password", 0x87: "not authorized",
	0x88: "server unavailable", 0x89: "server busy", 0x8a: "banned", 0x8c: "bad authentication method",
	0x90: "topic name invalid", 0x95: "packet too large", 0x97: "quota exceeded",
	0x99: "payload format invalid", 0x9a: "retain not supported", 0x9b: "QoS not supported",
	0x9c: "use another server", 0x9d: "server moved", 0x9f: "connection rate exceeded",
}

// tally counts failures by reason.
type tally struct {
	mu sync.Mutex
	m  map[string]int64
}

func (t *tally) add(reason string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = map[string]int64{}
	}
	t.m[reason]++
}

func (t *tally) snapshot() map[string]int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return maps.Clone(t.m)
}

// sortedReasons lists reasons with the most frequent first.
func sortedReasons(m map[string]int64) []string {
	keys := slices.Collect(maps.Keys(m))
	slices.SortFunc(keys, func(a, b string) int {
		return cmp.Or(cmp.Compare(m[b], m[a]), cmp.Compare(a, b))
	})
	return keys
}
