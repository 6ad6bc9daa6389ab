package node

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqlb/mqlb/internal/mqttwire"
	"github.com/mqlb/mqlb/internal/testutil"
)

// connackGate holds the CONNACK of clients whose id starts with prefix in
// OnPacketEncode (before mochi writes it) until the test lets it go.
type connackGate struct {
	mqtt.HookBase
	prefix   string
	entered  chan string   // the client id whose CONNACK is held
	release  chan struct{} // one receive lets one CONNACK go
	stop     chan struct{} // closed: hold nothing more
	stopOnce sync.Once
}

func (g *connackGate) ID() string           { return "test-connack-gate" }
func (g *connackGate) Provides(b byte) bool { return b == mqtt.OnPacketEncode }

func (g *connackGate) OnPacketEncode(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if pk.FixedHeader.Type != packets.Connack || !strings.HasPrefix(cl.ID, g.prefix) {
		return pk
	}
	select {
	case g.entered <- cl.ID:
	case <-g.stop:
		return pk
	}
	select {
	case <-g.release:
	case <-g.stop:
	}
	return pk
}

func (g *connackGate) open() { g.stopOnce.Do(func() { close(g.stop) }) }

// TestConnectionEndedBeforeConnack: a client that sends CONNECT and resets
// its socket before the CONNACK makes mochi v2.7.9 return from attachClient
// without OnDisconnect (the CONNACK write fails). The node ends such a
// connection as any other (unseen.go): nothing of it stays, a clean session
// leaves mochi's list and the registry, a persistent one is recorded
// disconnected and stays resumable, and the will is published
// [MQTT-3.1.2-8].
func TestConnectionEndedBeforeConnack(t *testing.T) {
	n := soloNode(t, nil)
	addr := n.ListenerAddr("tcp")
	gate := &connackGate{prefix: "unseen-", entered: make(chan string), release: make(chan struct{}), stop: make(chan struct{})}
	if err := n.broker.AddHook(gate, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gate.open) // never leave mochi's goroutine held

	wills := dialV5(t, addr, "will-sub-of-unseen", true, 0)
	wills.sub(t, "unseen/will/#", 0)
	baseClients, baseAttached := n.broker.Clients.Len(), n.attached.len()

	const rounds = 200
	connects := func(i int) (id string, c mqttwire.Connect) {
		c = mqttwire.Connect{Version: 5, CleanStart: true, KeepAlive: 30, WillFlag: true, WillTopic: "unseen/will/x",
			WillPayload: []byte("gone")}
		switch i % 4 {
		case 0: // v5 session ending with the connection
			id = fmt.Sprintf("unseen-clean5-%d", i)
		case 1: // v3.1.1 clean session
			id, c.Version = fmt.Sprintf("unseen-clean4-%d", i), 4
		case 2: // v5 persistent session
			id, c.SessionExpiry = fmt.Sprintf("unseen-keep5-%d", i), 300
		case 3: // the same persistent id again: resumes the session left by round i-1
			id, c.CleanStart, c.SessionExpiry = fmt.Sprintf("unseen-keep5-%d", i-1), false, 300
		}
		c.ClientID = id
		return id, c
	}
	for i := range rounds {
		id, cp := connects(i)
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Write(mqttwire.AppendConnect(nil, &cp)); err != nil {
			t.Fatal(err)
		}
		select {
		case got := <-gate.entered:
			if got != id {
				t.Fatalf("CONNACK of %q held, want %q", got, id)
			}
		case <-time.After(waitFor):
			t.Fatalf("round %d: no CONNACK for %q within %v", i, id, waitFor)
		}
		_ = conn.(*net.TCPConn).SetLinger(0) // reset: the CONNACK write fails
		_ = conn.Close()
		gate.release <- struct{}{}
	}

	// Every connection ended: nothing per connection stays.
	testutil.Eventually(t, waitFor, func() bool { return n.attached.len() == baseAttached },
		"connections noted: %d, want %d", n.attached.len(), baseAttached)
	persistent := rounds / 2 / 2 // one session per pair of rounds 2, 3
	testutil.Eventually(t, waitFor, func() bool { return n.broker.Clients.Len() == baseClients+persistent },
		"mochi's clients: %d, want %d (+%d persistent sessions)", n.broker.Clients.Len(), baseClients+persistent, persistent)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	for i := range rounds {
		id, cp := connects(i)
		if i%4 == 3 {
			continue
		}
		rec, err := n.sessions.Lookup(ctx, id)
		switch {
		case err != nil:
			t.Fatalf("registry lookup %q: %v", id, err)
		case cp.SessionExpiry == 0 && rec != nil:
			t.Errorf("clean session %q still in the registry: %+v", id, rec)
		case cp.SessionExpiry > 0 && (rec == nil || rec.Gone == 0):
			t.Errorf("persistent session %q not recorded disconnected: %+v", id, rec)
		}
		if cl, ok := n.broker.Clients.Get(id); ok && !cl.Closed() {
			t.Errorf("%q still connected in mochi's list", id)
		}
	}
	n.flow.held.Range(func(k, _ any) bool { t.Errorf("messages held back for %v", k); return true })
	n.flow.windows.Range(func(k, _ any) bool { t.Errorf("send window of %v", k.(*mqtt.Client).ID); return true })

	// Each connection ended without DISCONNECT: its will is published.
	testutil.Eventually(t, waitFor, func() bool { return len(payloadsOn(wills.all(), "unseen/will/x")) == rounds },
		"wills published: %d of %d", len(payloadsOn(wills.all(), "unseen/will/x")), rounds)

	// A persistent session left that way resumes.
	gate.open()
	back := dialV5(t, addr, "unseen-keep5-2", false, 300)
	if !back.connack.SessionPresent {
		t.Error("persistent session of a connection ended before its CONNACK: session present = 0")
	}
}

// len counts the connections noted.
func (a *attached) len() int {
	n := 0
	a.m.Range(func(_, _ any) bool { n++; return true })
	return n
}
