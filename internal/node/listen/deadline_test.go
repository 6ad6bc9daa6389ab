package listen

import (
	"net"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
)

// deadlineConn records the deadlines that reach the socket.
type deadlineConn struct {
	net.Conn
	set []time.Time
}

func (c *deadlineConn) SetDeadline(t time.Time) error {
	c.set = append(c.set, t)
	return c.Conn.SetDeadline(t)
}

// TestDeadlineMovedCoarsely: mochi sets the deadline before every packet;
// the socket's is moved about once per deadlineSlack, never earlier than
// asked and at most deadlineSlack later, and an earlier or a cleared
// deadline is passed on at once.
func TestDeadlineMovedCoarsely(t *testing.T) {
	_, server := tcpPair(t)
	dc := &deadlineConn{Conn: server}
	c := &conn{Conn: dc}
	first := time.Now().Add(10 * time.Second) // the CONNECT's deadline
	if err := c.SetDeadline(first); err != nil || len(dc.set) != 1 || !dc.set[0].Equal(first) {
		t.Fatalf("first deadline %v: the socket's is %v (%v)", first, dc.set, err)
	}
	last := time.Time{}
	for range 1000 { // packets read within a moment: 1.5 × a 60 s keep-alive from now
		last = time.Now().Add(90 * time.Second)
		if err := c.SetDeadline(last); err != nil {
			t.Fatal(err)
		}
	}
	if moves := len(dc.set) - 1; moves > 2 {
		t.Errorf("1,000 deadlines asked within a moment moved the socket's %d times; want 1 (2 if a second passed)", moves)
	}
	if got := dc.set[len(dc.set)-1]; got.Before(last) || got.Sub(last) > deadlineSlack {
		t.Errorf("socket deadline %v for a last ask of %v: want no earlier, at most %v later", got, last, deadlineSlack)
	}
	for _, ask := range []time.Time{time.Now().Add(10 * time.Second), {}} { // a shorter keep-alive; keep-alive 0
		n := len(dc.set)
		if err := c.SetDeadline(ask); err != nil {
			t.Fatal(err)
		}
		if got := dc.set[len(dc.set)-1]; len(dc.set) == n || got.Before(ask) || got.Sub(ask) > deadlineSlack {
			t.Errorf("asked %v: the socket's deadline is %v (%d moves)", ask, got, len(dc.set)-n)
		}
	}
}

// TestKeepAliveStillEnforced: a client silent past 1.5 × its keep-alive is
// closed, and not before [MQTT-3.1.2-22]; one that pings in time stays.
func TestKeepAliveStillEnforced(t *testing.T) {
	ts := startServer(t, Options{ID: "tcp", Type: TypeTCP})
	connect := func(id string) net.Conn {
		c := dial(t, ts.addr["tcp"])
		cp := packets.NewControlPacket(packets.CONNECT)
		cn := cp.Content.(*packets.Connect)
		cn.ClientID, cn.CleanStart, cn.KeepAlive = id, true, 2
		if _, err := cp.WriteTo(c); err != nil {
			t.Fatal(err)
		}
		if _, err := packets.ReadPacket(c); err != nil {
			t.Fatal(err)
		}
		return c
	}
	pinger := connect("pinger")
	pinged := make(chan error, 1)
	go func() { // pings every 1.4 s for 5 s, meanwhile
		for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(1400 * time.Millisecond) {
			if _, err := packets.NewControlPacket(packets.PINGREQ).WriteTo(pinger); err != nil {
				pinged <- err
				return
			}
			_ = pinger.SetReadDeadline(time.Now().Add(2 * time.Second))
			if _, err := packets.ReadPacket(pinger); err != nil {
				pinged <- err
				return
			}
		}
		pinged <- nil
	}()
	silent := connect("silent")
	took := waitClosed(t, silent, 10*time.Second)
	if took < 2900*time.Millisecond {
		t.Errorf("a silent client with keep-alive 2 s closed after %v: before 3 s", took)
	}
	t.Logf("silent client with keep-alive 2 s closed after %v", took)
	if err := <-pinged; err != nil {
		t.Errorf("a client pinging every 1.4 s with keep-alive 2 s was closed: %v", err)
	}
}

// BenchmarkSetDeadline is what mochi's read loop pays per packet for its
// keep-alive deadline on a TCP connection.
func BenchmarkSetDeadline(b *testing.B) {
	_, server := tcpPair(b)
	c := &conn{Conn: server}
	for b.Loop() {
		_ = c.SetDeadline(time.Now().Add(90 * time.Second))
	}
}
