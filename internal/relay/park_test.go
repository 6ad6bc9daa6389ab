package relay

import (
	"io"
	"net"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/mqlb/mqlb/internal/testutil"
)

// TestMain parks idle directions quickly, so every test in the package also
// exercises parking and resuming.
func TestMain(m *testing.M) {
	ParkAfter = 50 * time.Millisecond
	os.Exit(m.Run())
}

// TestIdleRelaysParkWithoutGoroutines: idle relays cost no goroutine, and
// wake up with their data when it arrives, in both directions.
func TestIdleRelaysParkWithoutGoroutines(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("parking is linux-only")
	}
	const n = 100
	before := runtime.NumGoroutine()
	ps := make([]*proxied, n)
	for i := range ps {
		ps[i] = newProxied(t, Options{})
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return runtime.NumGoroutine() <= before+5 },
		"%d goroutines for %d idle relays (started with %d); want them parked", runtime.NumGoroutine(), n, before)
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
		testutil.Eventually(t, 5*time.Second, func() bool { return runtime.NumGoroutine() <= before+5 },
			"relays parked again after round %d", round)
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

// TestParkedHalfCloseAndFinTimeout: the server hangs up while both
// directions are parked; the client sees EOF and, staying silent, is cut
// off after the fin timeout.
func TestParkedHalfCloseAndFinTimeout(t *testing.T) {
	p := newProxied(t, Options{FinTimeout: 200 * time.Millisecond})
	waitParked(t)
	p.server.Close()
	p.client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(p.client); err != nil {
		t.Fatalf("client read: %v (want EOF)", err)
	}
	r := p.wait(t)
	if r.Reason != "server_closed" {
		t.Errorf("reason %q, want server_closed", r.Reason)
	}
}

// TestParkedClose: Close on a parked relay ends it and reports "closed".
func TestParkedClose(t *testing.T) {
	c, lc := tcpPair(t)
	ls, s := tcpPair(t)
	defer c.Close()
	defer s.Close()
	done := make(chan Result, 1)
	r := Start(lc, ls, new(Stats), Options{}, func(res Result) { done <- res })
	waitParked(t)
	r.Close()
	r.Close() // twice is fine
	select {
	case res := <-done:
		if res.Reason != "closed" {
			t.Errorf("reason %q, want closed", res.Reason)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("done not called after Close on a parked relay")
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(c); err != nil {
		t.Errorf("client side not closed: %v", err)
	}
}

// TestBurstsAcrossParking moves random bursts with pauses longer than
// ParkAfter: every byte arrives, in order.
func TestBurstsAcrossParking(t *testing.T) {
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
		time.Sleep(3 * ParkAfter) // let it park between bursts (stimulus, not synchronisation)
	}
	p.client.(*net.TCPConn).CloseWrite()
	if b := <-got; !sameBytes(b, sent) {
		t.Fatalf("server got %d bytes, want %d in order", len(b), len(sent))
	}
}

func waitParked(t *testing.T) {
	t.Helper()
	testutil.Eventually(t, 5*time.Second, func() bool {
		n := 0
		pairs.each(func(p *pair) {
			for _, d := range p.dirs {
				if d.mode.Load() == modeParked {
					n++
				}
			}
		})
		return n >= 2
	}, "relay parked")
}
