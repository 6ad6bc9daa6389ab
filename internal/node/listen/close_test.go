package listen

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"

	"github.com/mqlb/mqlb/internal/testutil"
)

// TestCloseUnderConnectChurn stops the broker while clients connect and
// leave without pause, some connections have not sent their CONNECT (and
// have a minute to do so) and some MQTT 5 clients are settled. Close must
// return at once, the settled clients must get DISCONNECT 0x8B, and no
// connection may stay open. mochi's Close waits for every EstablishConnection
// call, and under -race reports one that begins without happening before it.
func TestCloseUnderConnectChurn(t *testing.T) {
	ts := startServer(t, Options{ID: "churn", Type: TypeTCP, ConnectTimeout: time.Minute})
	addr := ts.addr["churn"]

	silent := make([]net.Conn, 3) // accepted before the settled clients below
	for i := range silent {
		silent[i] = dial(t, addr)
	}
	reasons := make(chan error, 4)
	for i := range cap(reasons) {
		c := dial(t, addr)
		id := fmt.Sprintf("settled-%d", i)
		if ack := rawConnect(c, id); ack != nil {
			t.Fatalf("%s: %v", id, ack)
		}
		ts.rec.wait(t, id)
		go func() { reasons <- readDisconnect(c) }() // as a client would, closing on EOF
	}

	stop := make(chan struct{})
	var churners sync.WaitGroup
	t.Cleanup(func() { close(stop); churners.Wait() })
	for g := range 8 {
		churners.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				c, err := net.DialTimeout("tcp", addr, 5*time.Second)
				if err != nil {
					return // the listener is closed
				}
				_ = rawConnect(c, fmt.Sprintf("churn-%d-%d", g, i))
				c.Close() // at once, or after the CONNACK
			}
		})
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return ts.rec.count() >= cap(reasons)+40 },
		"churning clients did not connect")

	closed := make(chan struct{})
	go func() { ts.close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("server Close still running after 5s (waiting for connections without a CONNECT?)")
	}
	for range cap(reasons) {
		if err := <-reasons; err != nil {
			t.Error(err)
		}
	}
	for _, c := range silent {
		waitClosed(t, c, 5*time.Second)
	}
}

// rawConnect sends an MQTT 5 CONNECT for id over c and reads the answer:
// nil for a CONNACK accepting it.
func rawConnect(c net.Conn, id string) error {
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	defer c.SetDeadline(time.Time{})
	cp := packets.NewControlPacket(packets.CONNECT)
	connect := cp.Content.(*packets.Connect)
	connect.ClientID, connect.CleanStart, connect.KeepAlive = id, true, 30
	if _, err := cp.WriteTo(c); err != nil {
		return err
	}
	pk, err := packets.ReadPacket(c)
	if err != nil {
		return err
	}
	ack, ok := pk.Content.(*packets.Connack)
	switch {
	case !ok:
		return fmt.Errorf("got %v, want a CONNACK", pk)
	case ack.ReasonCode != packets.ConnackSuccess:
		return fmt.Errorf("CONNACK reason 0x%02x", ack.ReasonCode)
	}
	return nil
}

// readDisconnect reads from a connected client until the server closes the
// connection, which must follow a DISCONNECT 0x8B server shutting down.
func readDisconnect(c net.Conn) error {
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	var got *packets.Disconnect
	for {
		pk, err := packets.ReadPacket(c)
		if err != nil {
			var ne net.Error
			switch {
			case errors.As(err, &ne) && ne.Timeout():
				return fmt.Errorf("connection still open after 30s")
			case got == nil:
				return fmt.Errorf("connection closed (%v) without a DISCONNECT", err)
			case got.ReasonCode != packets.DisconnectServerShuttingDown:
				return fmt.Errorf("DISCONNECT reason 0x%02x, want 0x8b", got.ReasonCode)
			}
			return nil
		}
		if d, ok := pk.Content.(*packets.Disconnect); ok {
			got = d
		}
	}
}
