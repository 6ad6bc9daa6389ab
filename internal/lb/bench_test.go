package lb

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/mqlb/mqlb/internal/mqttwire"
)

// BenchmarkConnectThroughLB is one client's whole way through the load
// balancer, per iteration: accept, CONNECT inspected, a broker (mochi,
// in-process) dialled, its CONNACK relayed back, then the client closes.
func BenchmarkConnectThroughLB(b *testing.B) {
	h := newHarness(b, harnessOpts{brokers: 1, upstream: "    health_check: { type: none }\n",
		top: "access_log: { path: \"off\" }\n"})
	pkt := mqttwire.AppendConnect(nil, &mqttwire.Connect{Version: 4, CleanStart: true, ClientID: "bench", KeepAlive: 30})
	ack := make([]byte, 4)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		c, err := net.Dial("tcp", h.addr)
		if err != nil {
			b.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write(pkt)
		if _, err := io.ReadFull(c, ack); err != nil || ack[3] != 0 {
			b.Fatalf("CONNACK % x, %v", ack, err)
		}
		c.Close()
	}
}
