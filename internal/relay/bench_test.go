package relay

import (
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// BenchmarkPipeThroughput streams 64 KiB writes client→server through a
// relayed pair on loopback (the splice path). b.SetBytes makes -bench report MB/s.
func BenchmarkPipeThroughput(b *testing.B) {
	p := newProxied(b, Options{})
	go io.Copy(io.Discard, p.server)
	buf := make([]byte, 64<<10)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := p.client.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	p.client.Close()
}

// BenchmarkPipeRoundTrip sends 256-byte messages and waits for each echo, the
// shape of MQTT QoS 1 traffic: latency per round trip through two relays hops.
func BenchmarkPipeRoundTrip(b *testing.B) {
	p := newProxied(b, Options{})
	go echo(p.server)
	benchRoundTrip(b, p.client)
}

// BenchmarkDirectRoundTrip is the same without the relay, for the ratio.
func BenchmarkDirectRoundTrip(b *testing.B) {
	c, s := tcpPair(b)
	defer c.Close()
	go echo(s)
	benchRoundTrip(b, c)
}

func benchRoundTrip(b *testing.B, c net.Conn) {
	msg := make([]byte, 256)
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	cpu0 := cpuTime()
	defer func() { b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op") }()
	b.ResetTimer()
	for range b.N {
		if _, err := c.Write(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, msg); err != nil {
			b.Fatal(err)
		}
	}
}

// cpuTime is the process's user+system CPU time: with both ends and the
// relay in this process, CPU per round trip compares relays fairly.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func echo(c net.Conn) {
	io.Copy(c, c)
	c.Close()
}

// BenchmarkCopyRoundTrip is BenchmarkPipeRoundTrip through the buffered
// (read/write) path, to compare it with splice.
func BenchmarkCopyRoundTrip(b *testing.B) {
	c, lc := tcpPair(b)
	ls, s := tcpPair(b)
	defer c.Close()
	go echo(s)
	go func() {
		var in, out Stats
		go copyBuffered(ls, lc, &in.In)
		copyBuffered(lc, ls, &out.Out)
	}()
	benchRoundTrip(b, c)
}
