package listener

import (
	"log/slog"
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mqlb/mqlb/internal/testutil"
)

func listen(t *testing.T) *Listener {
	t.Helper()
	ln, err := Listen("127.0.0.1:0", "t", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// failFirst makes l's first n accepts fail with EMFILE, as a process out of
// file descriptors does.
func failFirst(l *Listener, n int32) *atomic.Int32 {
	left := new(atomic.Int32)
	left.Store(n)
	accept := l.accept
	l.accept = func() (*net.TCPConn, error) {
		if left.Add(-1) >= 0 {
			return nil, &net.OpError{Op: "accept", Net: "tcp", Err: syscall.EMFILE}
		}
		return accept()
	}
	return left
}

// serve runs l.Serve and returns a channel closed when it returns.
func serve(l *Listener, handle func(*net.TCPConn)) chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		l.Serve(handle)
	}()
	return done
}

func TestAcceptErrorsAreRetried(t *testing.T) {
	l := listen(t)
	left := failFirst(l, 3)
	got := make(chan struct{}, 1)
	served := serve(l, func(c *net.TCPConn) { c.Close(); got <- struct{}{} })
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("no connection handled after accept errors")
	}
	if n := left.Load(); n >= 0 {
		t.Errorf("accept was not retried past the errors (%d left)", n+1)
	}
	l.Close()
	<-served
}

// TestCloseInterruptsBackoff: a listener backing off after accept errors
// stops at once when closed, not after its backoff.
func TestCloseInterruptsBackoff(t *testing.T) {
	l := listen(t)
	left := failFirst(l, 1<<30)
	served := serve(l, func(c *net.TCPConn) { t.Error("handled a connection") })
	// After 8 failures the backoff is 640 ms.
	testutil.Eventually(t, 5*time.Second, func() bool { return left.Load() <= 1<<30-8 }, "8 accept failures")
	start := time.Now()
	l.Close()
	select {
	case <-served:
		if d := time.Since(start); d > 100*time.Millisecond {
			t.Errorf("Serve returned %v after Close", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after Close")
	}
}

// TestClosePending: connections still in their preamble are tracked until
// settled (or handled), and ClosePending closes them.
func TestClosePending(t *testing.T) {
	l := listen(t)
	release := make(chan struct{})
	serve(l, func(c *net.TCPConn) { <-release })
	defer close(release)
	var clients []net.Conn
	for range 3 {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		clients = append(clients, c)
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return l.Pending() == 3 }, "3 pending, got %d", l.Pending())
	l.Close()
	if n := l.ClosePending(); n != 3 {
		t.Errorf("ClosePending closed %d, want 3", n)
	}
	for _, c := range clients {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Error("a pending connection is still open")
		}
	}
}

func TestNextBackoff(t *testing.T) {
	var d time.Duration
	var seen []time.Duration
	for range 12 {
		d = nextBackoff(d)
		seen = append(seen, d)
	}
	if seen[0] != minAcceptBackoff || seen[1] != 2*minAcceptBackoff || seen[len(seen)-1] != maxAcceptBackoff {
		t.Errorf("backoff sequence %v: want %v doubling up to %v", seen, minAcceptBackoff, maxAcceptBackoff)
	}
}
