package listen

import (
	"crypto/tls"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/mqlb/mqlb/internal/testutil"
)

// newRaw builds and initialises a listener without mochi.
func newRaw(t *testing.T, o Options) *listener {
	t.Helper()
	l, err := New(o, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Init(nil); err != nil {
		t.Fatal(err)
	}
	return l.(*listener)
}

func TestCloseInterruptsPreamble(t *testing.T) {
	l := newRaw(t, Options{ID: "pp", Type: TypeTCP, Address: "127.0.0.1:0",
		ProxyProtocol: true, Trusted: loopback, ProxyTimeout: time.Minute})
	served := make(chan struct{})
	go func() {
		defer close(served)
		l.Serve(func(string, net.Conn) error { t.Error("established a connection without its header"); return nil })
	}()
	c := dial(t, l.Address())
	testutil.Eventually(t, 5*time.Second, func() bool { return l.ln.Pending() == 1 }, "connection never reached its preamble")
	l.Close(func(string) {})
	waitClosed(t, c, 5*time.Second)
	<-served
}

func TestAddressReportsBoundPort(t *testing.T) {
	l := newRaw(t, Options{ID: "a", Type: TypeTCP, Address: "127.0.0.1:0"})
	defer l.Close(func(string) {})
	if strings.HasSuffix(l.Address(), ":0") {
		t.Errorf("Address() = %q, want the bound port", l.Address())
	}
}

func TestOptionsValidation(t *testing.T) {
	cases := []struct {
		o    Options
		want string
	}{
		{Options{Type: TypeTCP}, "id is empty"},
		{Options{ID: "x", Type: "quic"}, `unknown type "quic"`},
		{Options{ID: "x", Type: TypeTLS}, "needs a TLS config"},
		{Options{ID: "x", Type: TypeWSS}, "needs a TLS config"},
		{Options{ID: "x", Type: TypeTCP, ProxyProtocol: true}, "trusted prefix"},
		{Options{ID: "x", Type: TypeTCP, ProxyProtocol: true, Trusted: []netip.Prefix{{}}}, "invalid trusted prefix"},
		{Options{ID: "x", Type: TypeWS, UsernameFromCert: true}, "needs TLS or a PROXY v2 header"},
		{Options{ID: "x", Type: TypeTLS, TLS: &tls.Config{ClientAuth: tls.RequestClientCert}, UsernameFromCert: true}, "verifies certificates"},
	}
	for _, tc := range cases {
		_, err := New(tc.o, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v, want error containing %q", tc.o, err, tc.want)
		}
	}
	l, err := New(Options{ID: "x", Type: TypeWSS, TLS: &tls.Config{}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := l.(*listener).o; got.Path != DefaultPath || got.ProxyTimeout != DefaultProxyTimeout {
		t.Errorf("defaults not applied: path %q proxy timeout %v", got.Path, got.ProxyTimeout)
	}
}

func TestSilentClientsAreClosed(t *testing.T) {
	const limit = 300 * time.Millisecond
	ca := testutil.NewCA(t)
	ts := startServer(t,
		Options{ID: "connect", Type: TypeTCP, ConnectTimeout: limit},
		Options{ID: "handshake", Type: TypeTLS, TLS: ca.ServerConfig(t, tls.NoClientCert), HandshakeTimeout: limit})
	for _, id := range []string{"connect", "handshake"} {
		c := dial(t, ts.addr[id]) // never sends a byte: no CONNECT, no ClientHello
		if took := waitClosed(t, c, 5*time.Second); took < limit-50*time.Millisecond {
			t.Errorf("%s: closed after %v, before the %v deadline", id, took, limit)
		}
	}
}
