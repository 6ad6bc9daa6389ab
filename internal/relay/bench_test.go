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
	defer reportCPU(b)()
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
	b.ResetTimer()
	defer reportCPU(b)()
	for range b.N {
		if _, err := c.Write(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, msg); err != nil {
			b.Fatal(err)
		}
	}
}

// reportCPU reports the process's CPU time per op when the returned
// function is called (with the timer).
func reportCPU(b *testing.B) func() {
	cpu0 := cpuTime()
	return func() { b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op") }
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

// BenchmarkPipeSmallStream streams 256-byte writes client→server through a
// relay without waiting for answers, the shape of QoS 0 traffic at maximum
// rate: bytes/s, and CPU per message (writer, relay and reader together).
func BenchmarkPipeSmallStream(b *testing.B) {
	p := newProxied(b, Options{})
	msg := make([]byte, 256)
	read := make(chan error, 1)
	go func() {
		_, err := io.CopyN(io.Discard, p.server, int64(b.N*len(msg)))
		read <- err
	}()
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	b.ResetTimer()
	defer reportCPU(b)()
	for range b.N {
		if _, err := p.client.Write(msg); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-read; err != nil {
		b.Fatal(err)
	}
}

// BenchmarkConnect is the connect path around the relay, one connection at
// a time: a client dials the front listener, which accepts, dials the
// server and starts a relay; one 16-byte round trip; the client closes and
// the relay ends. Time and CPU per connection.
func BenchmarkConnect(b *testing.B) {
	srv, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	go func() {
		for {
			c, err := srv.Accept()
			if err != nil {
				return
			}
			go echo(c)
		}
	}()
	front, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer front.Close()
	ended := make(chan Result, 1)
	go func() {
		for {
			c, err := front.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", srv.Addr().String())
			if err != nil {
				c.Close()
				continue
			}
			Start(c, s, new(Stats), Options{}, DoneFunc(func(r Result) { ended <- r }))
		}
	}()
	msg := make([]byte, 16)
	b.ReportAllocs()
	b.ResetTimer()
	defer reportCPU(b)()
	for range b.N {
		c, err := net.Dial("tcp", front.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Write(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, msg); err != nil {
			b.Fatal(err)
		}
		c.Close()
		<-ended
	}
}
