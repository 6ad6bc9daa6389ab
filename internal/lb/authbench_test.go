package lb

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/mqlb/mqlb/internal/mqttwire"
)

// BenchmarkConnectAuth: connects per second through the LB (CONNECT,
// CONNACK, close) without authentication and with an HTTP authentication
// service whose decisions are cached (warm: every credential was seen).
//
//	go test -run '^$' -bench ConnectAuth ./internal/lb/
func BenchmarkConnectAuth(b *testing.B) {
	svc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"result":"allow"}`)
	}))
	defer svc.Close()
	for _, bc := range []struct{ name, upstream string }{
		{"no_auth", noHealth},
		{"http_auth_cached", noHealth + fmt.Sprintf("    auth: { type: http, url: %q, cache_ttl: 10m }\n", svc.URL)},
		{"http_auth_uncached", noHealth + fmt.Sprintf("    auth: { type: http, url: %q }\n", svc.URL)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			h := newHarness(b, harnessOpts{brokers: 1, upstream: bc.upstream, top: "access_log: { path: off }\n"})
			pkt := mqttwire.AppendConnect(nil, &mqttwire.Connect{Version: mqttwire.V311, ClientID: "bench", CleanStart: true,
				KeepAlive: 30, Username: "device", HasUsername: true, Password: []byte("secret"), HasPassword: true})
			benchConnect(b, h.addr, pkt) // warms the cache
			b.ResetTimer()
			start := time.Now()
			for b.Loop() {
				benchConnect(b, h.addr, pkt)
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "connects/s")
		})
	}
}

func benchConnect(b *testing.B, addr string, pkt []byte) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(pkt); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := c.Read(buf); err != nil || buf[0] != 0x20 || buf[3] != 0 {
		b.Fatalf("CONNACK % x, %v", buf, err)
	}
	c.Write([]byte{0xe0, 0}) // DISCONNECT
}
