package relay

import (
	"crypto/tls"
	"io"
	"testing"

	"github.com/mqlb/mqlb/internal/testutil"
)

// TestPipeTLSClient relays a TLS-terminated client (the buffered path) to a
// plain server, both ways, with half-close.
func TestPipeTLSClient(t *testing.T) {
	ca := testutil.NewCA(t)
	srvCert := ca.Server("lb")
	c, lc := tcpPair(t)
	ls, s := tcpPair(t)
	tc := tls.Client(c, &tls.Config{RootCAs: ca.Pool, ServerName: "localhost"})
	tlc := tls.Server(lc, &tls.Config{Certificates: []tls.Certificate{srvCert.TLS}})
	defer tc.Close()
	defer s.Close()
	st := new(Stats)
	done := make(chan Result, 1)
	go func() {
		if err := tlc.Handshake(); err != nil {
			done <- Result{Reason: "handshake", Err: err}
			return
		}
		done <- Pipe(tlc, ls, st, Options{})
	}()
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
