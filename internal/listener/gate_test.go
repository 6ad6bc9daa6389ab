package listener

import (
	"net"
	"net/netip"
	"testing"
)

// pipeConn is one end of an in-memory connection, to see the gate close it.
func pipeConn(t *testing.T) (net.Conn, net.Conn) {
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

func TestGatePerIPAndPending(t *testing.T) {
	var g Gate
	ip1, ip2 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	c1, peer1 := pipeConn(t)
	var t1, t2, t3, t4, t5 Ticket
	if !g.Enter(&t1, c1, ip1, 2, 2) || !g.Enter(&t2, nil, ip1, 2, 2) {
		t.Fatal("the first two connections from an address refused")
	}
	if g.Enter(&t5, nil, ip1, 2, 2) {
		t.Fatal("a third connection from the address admitted with max 2")
	}
	t2.Settled()
	c3, _ := pipeConn(t)
	g.Enter(&t3, c3, ip2, 2, 2) // pending: t1, t3
	c4, _ := pipeConn(t)
	g.Enter(&t4, c4, netip.Addr{}, 2, 2) // pending: t1, t3, t4: the oldest (t1) goes
	if !t1.Evicted() || t3.Evicted() || t4.Evicted() {
		t.Errorf("evicted: t1 %v t3 %v t4 %v; want only the oldest pending, t1", t1.Evicted(), t3.Evicted(), t4.Evicted())
	}
	if _, err := peer1.Read(make([]byte, 1)); err == nil {
		t.Error("the evicted connection is open")
	}
	if g.Pending() != 2 {
		t.Errorf("pending %d, want 2", g.Pending())
	}
	t1.Leave()
	if !g.Enter(&t5, nil, ip1, 2, 0) {
		t.Error("a connection from ip1 refused after one left")
	}
	if !t4.CountIP(ip2, 2) {
		t.Error("CountIP for a connection behind a proxy")
	}
	if g.Enter(new(Ticket), nil, ip2, 2, 0) {
		t.Error("ip2 has t3 and t4 (counted by its PROXY header): a third is over 2")
	}
}
