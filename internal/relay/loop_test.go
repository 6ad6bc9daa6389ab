package relay

import (
	"io"
	"net"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mqlb/mqlb/internal/testutil"
)

// TestIdleRelaysUseNoGoroutines: relays cost no goroutine, idle or not, and
// carry their data both ways when it comes.
func TestIdleRelaysUseNoGoroutines(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("event loops are linux-only")
	}
	ps := make([]*proxied, 100)
	ps[0] = newProxied(t, Options{}) // starts the loops
	before := runtime.NumGoroutine()
	for i := 1; i < len(ps); i++ {
		ps[i] = newProxied(t, Options{})
	}
	if n := runtime.NumGoroutine(); n > before+2 {
		t.Errorf("%d goroutines after 99 more relays (was %d); want none per relay", n, before)
	}
	for round := range 3 {
		for i, p := range ps {
			msg := []byte{byte(round), byte(i), 'u', 'p'}
			if _, err := p.client.Write(msg); err != nil {
				t.Fatal(err)
			}
			expect(t, p.server, msg)
			reply := []byte{byte(round), byte(i), 'd', 'n'}
			if _, err := p.server.Write(reply); err != nil {
				t.Fatal(err)
			}
			expect(t, p.client, reply)
		}
	}
	for _, p := range ps {
		if p.stats.In.Load() != 12 || p.stats.Out.Load() != 12 {
			t.Fatalf("stats in=%d out=%d, want 12 and 12", p.stats.In.Load(), p.stats.Out.Load())
		}
	}
}

func expect(t *testing.T, c net.Conn, want []byte) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != string(want) {
		t.Fatalf("read %q, %v; want %q", got, err, want)
	}
}

// TestBackpressure: a server that does not read fills the socket buffers
// and the relay's pipe; the relay stops reading the client and resumes when
// the server reads again. Every byte arrives, in order.
func TestBackpressure(t *testing.T) {
	p := newProxied(t, Options{})
	checkBackpressure(t, p.client.(*net.TCPConn), p.server, 24<<20)
}

// checkBackpressure writes n bytes from client while nothing reads the
// server: the writer must block on a full path. Then the server reads them
// all, in order.
func checkBackpressure(t *testing.T, client interface {
	io.Writer
	CloseWrite() error
}, server io.Reader, n int) {
	t.Helper()
	data := randomBytes(t, n)
	wrote := make(chan error, 1)
	go func() { _, err := client.Write(data); client.CloseWrite(); wrote <- err }()
	select {
	case err := <-wrote:
		t.Fatalf("%d bytes written with nobody reading (%v); no backpressure", n, err)
	case <-time.After(300 * time.Millisecond): // stimulus: let the buffers fill
	}
	got, err := io.ReadAll(server)
	if err != nil || !sameBytes(got, data) {
		t.Fatalf("server got %d bytes (%v), want the %d sent", len(got), err, len(data))
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
}

// TestManyPairsConcurrently moves random data both ways through 40 pairs at
// once (the loops interleave them).
func TestManyPairsConcurrently(t *testing.T) {
	var wg sync.WaitGroup
	for range 40 {
		p := newProxied(t, Options{})
		up, down := randomBytes(t, 300<<10), randomBytes(t, 200<<10)
		wg.Add(2)
		go func() {
			defer wg.Done()
			go func() { p.client.Write(up); p.client.(*net.TCPConn).CloseWrite() }()
			if got, _ := io.ReadAll(p.server); !sameBytes(got, up) {
				t.Errorf("server got %d bytes, want %d", len(got), len(up))
			}
		}()
		go func() {
			defer wg.Done()
			go func() { p.server.Write(down); p.server.(*net.TCPConn).CloseWrite() }()
			if got, _ := io.ReadAll(p.client); !sameBytes(got, down) {
				t.Errorf("client got %d bytes, want %d", len(got), len(down))
			}
		}()
	}
	wg.Wait()
}

// TestCloseEndsRelay: Close ends an idle relay and reports "closed".
func TestCloseEndsRelay(t *testing.T) {
	c, lc := tcpPair(t)
	ls, s := tcpPair(t)
	defer c.Close()
	defer s.Close()
	done := make(chan Result, 1)
	r := Start(lc, ls, new(Stats), Options{}, DoneFunc(func(res Result) { done <- res }))
	r.Close()
	r.Close() // twice is fine
	select {
	case res := <-done:
		if res.Reason != "closed" {
			t.Errorf("reason %q, want closed", res.Reason)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("done not called after Close")
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(c); err != nil {
		t.Errorf("client side not closed: %v", err)
	}
}

// TestBurstsWithPauses moves random bursts with pauses between them: every
// byte arrives, in order.
func TestBurstsWithPauses(t *testing.T) {
	p := newProxied(t, Options{})
	var sent []byte
	got := make(chan []byte, 1)
	go func() { b, _ := io.ReadAll(p.server); got <- b }()
	for i := range 8 {
		burst := randomBytes(t, 1+i*37000)
		sent = append(sent, burst...)
		if _, err := p.client.Write(burst); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond) // stimulus: separate bursts, not synchronisation
	}
	p.client.(*net.TCPConn).CloseWrite()
	if b := <-got; !sameBytes(b, sent) {
		t.Fatalf("server got %d bytes, want %d in order", len(b), len(sent))
	}
}

// TestNoGoroutineLeak: after relays end, no goroutines are left behind.
func TestNoGoroutineLeak(t *testing.T) {
	newProxied(t, Options{}) // loops started
	before := runtime.NumGoroutine()
	for range 20 {
		p := newProxied(t, Options{})
		p.client.Close()
		p.server.Close()
		p.wait(t)
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return runtime.NumGoroutine() <= before },
		"%d goroutines, %d before", runtime.NumGoroutine(), before)
}

// TestLastWordsThenEOF: bytes and the FIN that follows them, both already
// queued when the relay first looks, arrive with the EOF. A short read does
// not end a wake once the source has reported its end (no edge would come
// for the EOF).
func TestLastWordsThenEOF(t *testing.T) {
	for i := range 20 {
		c, lc := tcpPair(t)
		ls, s := tcpPair(t)
		t.Cleanup(func() { c.Close(); s.Close() })
		msg := []byte{byte(i), 'b', 'y', 'e'}
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		c.CloseWrite() // loopback: data and FIN are queued at lc when these return
		Start(lc, ls, new(Stats), Options{}, DoneFunc(func(Result) {}))
		s.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, err := io.ReadAll(s)
		if err != nil || string(got) != string(msg) {
			t.Fatalf("pair %d: server read %q, %v; want %q then EOF", i, got, err, msg)
		}
	}
}

// TestSmallWritesBackpressure: a stream of small writes (copied, not
// spliced) into a server that reads only later parks what the server's
// socket does not take and delivers every byte in order.
func TestSmallWritesBackpressure(t *testing.T) {
	p := newProxied(t, Options{})
	data := randomBytes(t, 8<<20)
	wrote := make(chan error, 1)
	go func() {
		var err error
		for b := data; len(b) > 0 && err == nil; {
			k := min(len(b), 300)
			_, err = p.client.Write(b[:k])
			b = b[k:]
		}
		p.client.(*net.TCPConn).CloseWrite()
		wrote <- err
	}()
	time.Sleep(200 * time.Millisecond) // stimulus: let the buffers fill
	got, err := io.ReadAll(p.server)
	if err != nil || !sameBytes(got, data) {
		t.Fatalf("server got %d bytes (%v), want the %d sent in order", len(got), err, len(data))
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	if n := p.stats.In.Load(); n != int64(len(data)) {
		t.Errorf("stats in=%d, want %d", n, len(data))
	}
}

// TestSmallWritesIntoFullDestination: a destination that fills while small
// reads are being copied (tiny socket buffers towards a server that reads
// later) gets the bytes it did not take once it drains, in order.
func TestSmallWritesIntoFullDestination(t *testing.T) {
	c, lc := tcpPair(t)
	ls, s := smallBufferPair(t)
	t.Cleanup(func() { c.Close(); s.Close() })
	st := new(Stats)
	Start(lc, ls, st, Options{}, DoneFunc(func(Result) {}))
	data := randomBytes(t, 200<<10)
	wrote := make(chan error, 1)
	go func() {
		var err error
		for b := data; len(b) > 0 && err == nil; {
			k := min(len(b), 500)
			_, err = c.Write(b[:k])
			b = b[k:]
			time.Sleep(200 * time.Microsecond) // stimulus: a slow source, read in small copies
		}
		c.CloseWrite()
		wrote <- err
	}()
	time.Sleep(100 * time.Millisecond) // stimulus: let the destination fill
	s.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(s)
	if err != nil || !sameBytes(got, data) {
		t.Fatalf("server got %d bytes (%v), want the %d sent in order", len(got), err, len(data))
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	if n := st.In.Load(); n != int64(len(data)) {
		t.Errorf("stats in=%d, want %d", n, len(data))
	}
}

// smallBufferPair is tcpPair with about 4 KiB socket buffers at the
// listening end (from before the handshake, so the window matches) and the
// dialling end's send buffer: a destination that fills after a few KiB.
func smallBufferPair(t testing.TB) (a, b *net.TCPConn) {
	t.Helper()
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	a, b = tcpPairWith(t, lc)
	a.SetWriteBuffer(4096)
	return a, b
}
