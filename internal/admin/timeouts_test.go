package admin

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mqlb/mqlb/internal/adminhttp"
	"github.com/mqlb/mqlb/internal/proxy"
	"github.com/mqlb/mqlb/internal/upstream"
)

type fakeBackend struct{}

func (fakeBackend) Upstreams() *upstream.Set          { return &upstream.Set{} }
func (fakeBackend) Connections() *proxy.Table         { return &proxy.Table{} }
func (fakeBackend) ReloadWarnings() ([]string, error) { return nil, nil }
func (fakeBackend) Serving() bool                     { return true }

// serveAdmin starts a real admin server on loopback for b with token.
func serveAdmin(t *testing.T, b Backend, token string) string {
	t.Helper()
	s := New(b, adminhttp.Options{Token: token}, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	if err := s.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	go s.Serve()
	t.Cleanup(func() { s.Shutdown(t.Context()) })
	return s.Addr()
}

// closedWithin reports whether the server closes c within d.
func closedWithin(c net.Conn, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c)
	return err == nil // EOF: closed by the server; a timeout is an error
}

// TestAdminTimeouts: a request whose body trickles in and a keep-alive
// connection left idle are closed by the server, token or not; the
// profiler still answers a profile longer than the write timeout.
func TestAdminTimeouts(t *testing.T) {
	defer func(r, i, w time.Duration) { readTimeout, idleTimeout, writeTimeout = r, i, w }(readTimeout, idleTimeout, writeTimeout)
	readTimeout, idleTimeout, writeTimeout = 300*time.Millisecond, 300*time.Millisecond, 300*time.Millisecond
	addr := serveAdmin(t, fakeBackend{}, "s3cret")

	slow, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	io.WriteString(slow, "POST /-/reload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n{")
	if !closedWithin(slow, 5*time.Second) {
		t.Error("a POST whose body never comes is still open after 5 s")
	}

	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	io.WriteString(idle, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(idle), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", resp, err)
	}
	resp.Body.Close()
	if !closedWithin(idle, 5*time.Second) {
		t.Error("an idle keep-alive connection is still open after 5 s")
	}

	req, _ := http.NewRequest("GET", "http://"+addr+"/debug/pprof/profile?seconds=1", nil)
	req.Header.Set("Authorization", "Bearer s3cret")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || len(b) == 0 || strings.Contains(string(b), "WriteTimeout") {
		t.Errorf("a 1 s profile with a 300 ms write timeout: %d %v %.100q", resp.StatusCode, err, b)
	}
}
