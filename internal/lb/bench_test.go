package lb

import (
	"io"
	"net"
	"syscall"
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
	cpu0 := cpuTime()
	n := 0
	for b.Loop() {
		n++
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
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(n), "cpu-ns/op")
}

// cpuTime is the process's user+system CPU time: the client, the load
// balancer and the broker all run in the test process.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
