package relay

import (
	"bytes"
	"crypto/tls"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/mqlb/mqlb/internal/testutil"
)

// TestTLSPairRandomSizes moves random writes both ways at once — 1-byte
// trickles to bursts of several records — and checks every byte and the
// counts.
func TestTLSPairRandomSizes(t *testing.T) {
	p := newTLSProxied(t, tlsSetup{})
	up, down := randomChunks(t, 1), randomChunks(t, 2)
	atServer, atClient := make(chan []byte, 1), make(chan []byte, 1)
	go func() { b, _ := io.ReadAll(p.server); atServer <- b }()
	go func() { b, _ := io.ReadAll(p.client); atClient <- b }()
	go writeChunks(p.server, down, p.server.CloseWrite)
	writeChunks(p.client, up, p.client.CloseWrite)
	if b := <-atServer; !sameBytes(b, bytes.Join(up, nil)) {
		t.Errorf("server got %d bytes, want the %d sent", len(b), len(bytes.Join(up, nil)))
	}
	if b := <-atClient; !sameBytes(b, bytes.Join(down, nil)) {
		t.Errorf("client got %d bytes, want the %d sent", len(b), len(bytes.Join(down, nil)))
	}
	if r := p.wait(t); r.Err != nil {
		t.Errorf("result %+v, want a clean close", r)
	}
	if p.stats.In.Load() != int64(len(bytes.Join(up, nil))) || p.stats.Out.Load() != int64(len(bytes.Join(down, nil))) {
		t.Errorf("stats in=%d out=%d", p.stats.In.Load(), p.stats.Out.Load())
	}
}

// randomChunks returns writes of random sizes: mostly small, some of
// several TLS records, with runs of single bytes.
func randomChunks(t testing.TB, seed uint64) [][]byte {
	r := rand.New(rand.NewPCG(seed, 13))
	var out [][]byte
	for range 300 {
		n := 1 + r.IntN(300)
		switch r.IntN(10) {
		case 0:
			n = 16<<10 + r.IntN(64<<10)
		case 1:
			n = 1
		}
		out = append(out, randomBytes(t, n))
	}
	return out
}

// writeChunks writes each chunk, pausing now and then so the relay finds
// its sources empty between some of them, then calls end.
func writeChunks(w io.Writer, chunks [][]byte, end func() error) {
	for i, c := range chunks {
		if _, err := w.Write(c); err != nil {
			return
		}
		if i%7 == 0 {
			time.Sleep(100 * time.Microsecond) // stimulus: let the relay go idle
		}
	}
	end()
}

// TestTLSPairSplitRecords: records that reach the relay a few bytes at a
// time (split across TCP segments) are read as they complete; nothing is
// lost across the reads that would block in the middle of a record.
func TestTLSPairSplitRecords(t *testing.T) {
	p := newTLSProxied(t, tlsSetup{wrap: func(c net.Conn) net.Conn { return &trickleConn{Conn: c} }})
	for _, n := range []int{1, 5, 300, 2000, 17000} {
		msg := randomBytes(t, n)
		p.client.Write(msg) // records written a few bytes at a time
		expect(t, p.server, msg)
	}
}

// trickleConn writes in pieces of 1 to 9 bytes, each its own TCP segment,
// once its TLS handshake is done.
type trickleConn struct {
	net.Conn
	writes int
}

func (c *trickleConn) Write(b []byte) (int, error) {
	c.writes++
	if c.writes <= 2 { // the client's handshake flights
		return c.Conn.Write(b)
	}
	for i := 0; i < len(b); {
		k := min(len(b)-i, 1+i%9)
		if _, err := c.Conn.Write(b[i : i+k]); err != nil {
			return i, err
		}
		i += k
		if i%64 < 9 {
			time.Sleep(50 * time.Microsecond) // stimulus: separate segments
		}
	}
	return len(b), nil
}

// TestTLSPairBufferedRecords: many records arriving in one segment are read
// into crypto/tls at once, and records the relay's TLS end already holds
// when it starts (read in with the CONNECT) are relayed with no socket
// event to announce them.
func TestTLSPairBufferedRecords(t *testing.T) {
	var msgs [][]byte
	for i := range 10 {
		msgs = append(msgs, randomBytes(t, 1+i))
	}
	all := bytes.Join(msgs, nil) // 10 records, 285 bytes: one read takes them all
	var bc *batchConn
	first := make([]byte, len(msgs[0]))
	p := newTLSProxied(t, tlsSetup{
		wrap: func(c net.Conn) net.Conn { bc = &batchConn{Conn: c}; return bc },
		before: func(client, end *tls.Conn) {
			bc.hold = true
			for _, m := range msgs {
				client.Write(m)
			}
			bc.flush() // in one segment
			if _, err := io.ReadFull(end, first); err != nil {
				t.Fatal(err)
			}
		},
	})
	expect(t, p.server, all[len(first):])
	// And again once relayed: batches after the relay waits, of many
	// records some of which take more than a read of the socket.
	for range 3 {
		sendBatched(t, p.client, bc, p.server)
	}
}

// sendBatched writes 40 records of growing sizes through client while bc
// holds them, sends them in one go, and expects them all at server.
func sendBatched(t *testing.T, client io.Writer, bc *batchConn, server net.Conn) {
	t.Helper()
	var more [][]byte
	for i := range 40 {
		more = append(more, randomBytes(t, 1+i*97))
	}
	bc.hold = true
	for _, m := range more {
		client.Write(m)
	}
	bc.flush()
	expect(t, server, bytes.Join(more, nil))
}

// batchConn holds writes while hold is set, for flush to send together.
type batchConn struct {
	net.Conn
	hold bool
	buf  bytes.Buffer
}

func (c *batchConn) Write(b []byte) (int, error) {
	if c.hold {
		return c.buf.Write(b)
	}
	return c.Conn.Write(b)
}

func (c *batchConn) flush() {
	c.hold = false
	c.Conn.Write(c.buf.Bytes())
	c.buf.Reset()
}

// TestTLSPairHalfClose: either side's half-close reaches the other (from
// the server: close_notify and FIN), which can still answer; the result
// names the side that finished first.
func TestTLSPairHalfClose(t *testing.T) {
	t.Run("client first", func(t *testing.T) {
		p := newTLSProxied(t, tlsSetup{})
		p.client.Write([]byte("ping"))
		p.client.CloseWrite()
		p.server.SetReadDeadline(time.Now().Add(5 * time.Second))
		if b, err := io.ReadAll(p.server); err != nil || string(b) != "ping" {
			t.Fatalf("server read %q, %v; want ping then EOF", b, err)
		}
		p.server.Write([]byte("pong"))
		p.server.Close()
		if b, err := io.ReadAll(p.client); err != nil || string(b) != "pong" {
			t.Fatalf("client read %q, %v; want pong after its half-close", b, err)
		}
		if r := p.wait(t); r.Reason != "client_closed" {
			t.Errorf("result %+v, want client_closed", r)
		}
	})
	t.Run("server first", func(t *testing.T) {
		p := newTLSProxied(t, tlsSetup{})
		p.server.Write([]byte("bye"))
		p.server.CloseWrite()
		p.client.SetReadDeadline(time.Now().Add(5 * time.Second))
		if b, err := io.ReadAll(p.client); err != nil || string(b) != "bye" {
			t.Fatalf("client read %q, %v; want bye then EOF", b, err)
		}
		p.client.Write([]byte("last words"))
		p.client.Close()
		if b, err := io.ReadAll(p.server); err != nil || string(b) != "last words" {
			t.Fatalf("server read %q, %v; want the client's last words", b, err)
		}
		if r := p.wait(t); r.Reason != "server_closed" {
			t.Errorf("result %+v, want server_closed", r)
		}
	})
}

// TestTLSPairCloses: a side closing (or resetting) ends the pair with a
// result naming it, and the other side is closed.
func TestTLSPairCloses(t *testing.T) {
	cases := []struct {
		name    string
		close   func(p *tlsProxied)
		reasons []string
		other   func(p *tlsProxied) net.Conn
	}{
		{"client closes", func(p *tlsProxied) { p.client.Close() }, []string{"client_closed"}, nil},
		{"server closes", func(p *tlsProxied) { p.server.Close() }, []string{"server_closed"},
			func(p *tlsProxied) net.Conn { return p.client }},
		{"client resets", func(p *tlsProxied) { p.client.NetConn().(*net.TCPConn).SetLinger(0); p.client.NetConn().Close() },
			[]string{"client_error", "client_closed"}, nil},
		{"server resets", func(p *tlsProxied) { p.server.SetLinger(0); p.server.Close() },
			[]string{"server_error", "server_closed"}, func(p *tlsProxied) net.Conn { return p.client }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := newTLSProxied(t, tlsSetup{opt: Options{FinTimeout: 200 * time.Millisecond}})
			c.close(p)
			r := p.wait(t)
			if !oneOf(r.Reason, c.reasons) {
				t.Errorf("result %+v, want %v", r, c.reasons)
			}
			if c.other != nil {
				o := c.other(p)
				o.SetReadDeadline(time.Now().Add(5 * time.Second))
				if _, err := io.ReadAll(o); err != nil && !isClosedByPeer(err) {
					t.Errorf("the other side was not closed: %v", err)
				}
			}
		})
	}
}

func oneOf(s string, in []string) bool {
	for _, x := range in {
		if s == x {
			return true
		}
	}
	return false
}

// isClosedByPeer: EOF, or a reset, not a deadline.
func isClosedByPeer(err error) bool {
	var ne net.Error
	return err == nil || !(errorsAs(err, &ne) && ne.Timeout())
}

// TestTLSPairFinTimeout: once the server has closed, a client that stays
// silent is closed after the fin timeout.
func TestTLSPairFinTimeout(t *testing.T) {
	p := newTLSProxied(t, tlsSetup{opt: Options{FinTimeout: 200 * time.Millisecond}})
	start := time.Now()
	p.server.Close()
	if r := p.wait(t); r.Reason != "server_closed" {
		t.Errorf("result %+v, want server_closed", r)
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("ended after %v, before the fin timeout", d)
	}
	p.client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(p.client); err != nil {
		t.Errorf("client read after the relay ended: %v", err)
	}
}

// TestTLSPairCloseDuringTransfer: Close while both directions move data
// (and the client does not read, so a write waits) ends the pair, with
// "closed", and leaves no goroutine behind.
func TestTLSPairCloseDuringTransfer(t *testing.T) {
	newTLSProxied(t, tlsSetup{}) // the loops are started
	before := runtime.NumGoroutine()
	for range 5 {
		p := newTLSProxied(t, tlsSetup{})
		go io.Copy(io.Discard, p.server)
		go func() {
			for b := randomBytes(t, 64<<10); ; {
				if _, err := p.client.Write(b); err != nil {
					return
				}
			}
		}()
		go func() {
			for b := randomBytes(t, 64<<10); ; {
				if _, err := p.server.Write(b); err != nil {
					return
				}
			}
		}()
		testutil.Eventually(t, 5*time.Second, func() bool { return p.stats.In.Load() > 1<<20 && p.stats.Out.Load() > 0 }, "data moving")
		p.relay.Close()
		if r := p.wait(t); r.Reason != "closed" {
			t.Errorf("result %+v, want closed", r)
		}
		p.relay.Close() // again, after the end
		p.client.Close()
		p.server.Close()
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return runtime.NumGoroutine() <= before },
		"%d goroutines, %d before", runtime.NumGoroutine(), before)
}

// TestTLSPairBackpressure: a server that does not read stops the relay
// reading the client; every byte arrives, in order, once it reads.
func TestTLSPairBackpressure(t *testing.T) {
	p := newTLSProxied(t, tlsSetup{})
	checkBackpressure(t, p.client, p.server, 16<<20)
}

// TestTLSPairsConcurrently moves random data both ways through 30 TLS
// pairs at once.
func TestTLSPairsConcurrently(t *testing.T) {
	var wg sync.WaitGroup
	for i := range 30 {
		p := newTLSProxied(t, tlsSetup{})
		up, down := randomChunks(t, uint64(i)*2)[:60], randomChunks(t, uint64(i)*2+1)[:60]
		wg.Add(2)
		go func() {
			defer wg.Done()
			go writeChunks(p.client, up, p.client.CloseWrite)
			if got, _ := io.ReadAll(p.server); !sameBytes(got, bytes.Join(up, nil)) {
				t.Errorf("server got %d bytes, want %d", len(got), len(bytes.Join(up, nil)))
			}
		}()
		go func() {
			defer wg.Done()
			go writeChunks(p.server, down, p.server.CloseWrite)
			if got, _ := io.ReadAll(p.client); !sameBytes(got, bytes.Join(down, nil)) {
				t.Errorf("client got %d bytes, want %d", len(got), len(bytes.Join(down, nil)))
			}
		}()
	}
	wg.Wait()
}

// TestIdleTLSPairsUseNoGoroutines: TLS pairs cost no goroutine while idle,
// and carry what comes both ways.
func TestIdleTLSPairsUseNoGoroutines(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("event loops are linux-only")
	}
	newTLSProxied(t, tlsSetup{}) // the loops are started
	before := runtime.NumGoroutine()
	ps := make([]*tlsProxied, 30)
	for i := range ps {
		ps[i] = newTLSProxied(t, tlsSetup{})
	}
	for round := range 3 {
		for i, p := range ps {
			msg := []byte{byte(round), byte(i), 'u', 'p'}
			p.client.Write(msg)
			expect(t, p.server, msg)
			reply := []byte{byte(round), byte(i), 'd', 'n'}
			p.server.Write(reply)
			expect(t, p.client, reply)
		}
		testutil.Eventually(t, 5*time.Second, func() bool { return runtime.NumGoroutine() <= before+2 },
			"%d goroutines for 30 idle TLS pairs, %d before", runtime.NumGoroutine(), before)
	}
}
