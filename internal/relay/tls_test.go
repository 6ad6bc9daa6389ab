package relay

import (
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"

	"github.com/mqlb/mqlb/internal/testutil"
)

// tlsRelay relays a TLS client (tc) to a plain server socket (s) through a
// TLS-terminating Pipe; done gets the Pipe's result.
func tlsRelay(t *testing.T) (tc *tls.Conn, s *net.TCPConn, st *Stats, done chan Result) {
	ca := testutil.NewCA(t)
	srvCert := ca.Server("lb")
	c, lc := tcpPair(t)
	ls, s := tcpPair(t)
	tc = tls.Client(c, &tls.Config{RootCAs: ca.Pool, ServerName: "localhost"})
	tlc := tls.Server(lc, &tls.Config{Certificates: []tls.Certificate{srvCert.TLS}})
	t.Cleanup(func() { tc.Close(); s.Close() })
	st, done = new(Stats), make(chan Result, 1)
	go func() {
		if err := tlc.Handshake(); err != nil {
			done <- Result{Reason: "handshake", Err: err}
			return
		}
		Start(tlc, ls, st, Options{}, DoneFunc(func(r Result) { done <- r }))
	}()
	return tc, s, st, done
}

// TestPipeTLSClient relays a TLS-terminated client (the buffered path) to a
// plain server, both ways, with half-close.
func TestPipeTLSClient(t *testing.T) {
	tc, s, st, done := tlsRelay(t)
	up, down := randomBytes(t, 1<<20), randomBytes(t, 3<<20)
	atServer := make(chan []byte, 1)
	go func() { b, _ := io.ReadAll(s); atServer <- b }()
	go func() { s.Write(down); s.CloseWrite() }()
	if _, err := tc.Write(up); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(tc)
	if err != nil || !sameBytes(got, down) {
		t.Fatalf("client got %d bytes (%v), want %d", len(got), err, len(down))
	}
	tc.CloseWrite()
	if b := <-atServer; !sameBytes(b, up) {
		t.Fatalf("server got %d bytes, want %d", len(b), len(up))
	}
	r := <-done
	if r.Reason != "server_closed" {
		t.Errorf("result %+v, want server_closed", r)
	}
	if st.In.Load() != int64(len(up)) || st.Out.Load() != int64(len(down)) {
		t.Errorf("stats in=%d out=%d", st.In.Load(), st.Out.Load())
	}
}

// TestPipeTLSClientWriteSizes: writes of every size around the relay's small
// and full-size buffers each reach the server before the client writes again,
// so nothing is held back while the relay switches buffers.
func TestPipeTLSClientWriteSizes(t *testing.T) {
	tc, s, _, _ := tlsRelay(t)
	sizes := []int{1, 2, smallBufSize - 1, smallBufSize, smallBufSize + 1, 2, 5000, 3, bufSize - 1, bufSize,
		bufSize + 1, 100, 3 * bufSize, smallBufSize, 1, 2 * smallBufSize, 7}
	for _, n := range sizes {
		want := randomBytes(t, n)
		if _, err := tc.Write(want); err != nil {
			t.Fatal(err)
		}
		s.SetReadDeadline(time.Now().Add(10 * time.Second))
		got := make([]byte, n)
		if _, err := io.ReadFull(s, got); err != nil {
			t.Fatalf("write of %d bytes: the server got %v", n, err)
		}
		if !sameBytes(got, want) {
			t.Fatalf("write of %d bytes arrived changed", n)
		}
	}
}
