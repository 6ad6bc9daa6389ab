package wsconn

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// endless writes an HTTP request whose header never ends.
type endless struct{ sent int }

func (e *endless) Read(p []byte) (int, error) {
	if e.sent == 0 {
		e.sent = copy(p, "GET /mqtt HTTP/1.1\r\nX-Filler: ")
		return e.sent, nil
	}
	for i := range p {
		p[i] = 'a'
	}
	e.sent += len(p)
	return len(p), nil
}

// TestUpgradeCapsTheRequest: a request whose header never ends is refused
// after MaxRequest bytes, not buffered until the deadline.
func TestUpgradeCapsTheRequest(t *testing.T) {
	server, client := net.Pipe()
	defer server.Close()
	src := &endless{}
	go func() {
		io.Copy(client, src)
		client.Close()
	}()
	server.SetDeadline(time.Now().Add(10 * time.Second))
	_, err := Upgrade(server, "/mqtt")
	server.Close()
	if !errors.Is(err, errRequestTooLarge) {
		t.Fatalf("Upgrade: %v; want a refusal at the size cap", err)
	}
	if src.sent > 4*MaxRequest {
		t.Errorf("read %d bytes of a request capped at %d", src.sent, MaxRequest)
	}
}
