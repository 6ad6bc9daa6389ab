package node

import (
	"context"
	"net"
	"testing"
	"time"
)

// TestStopClientsWaitsForConnectionEnds: StopClients returns only once the
// node has handled the end of every connection it served. mochi's own count
// of clients drops before the node's end of a connection runs (endedUnseen:
// the will, the hooks and the registry record of a connection mochi never
// reported the end of); a stop that returned then would close the store
// and the mesh under it.
func TestStopClientsWaitsForConnectionEnds(t *testing.T) {
	n := loneNode(t, "stopends")
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	orig := n.ended
	n.ended = func(c net.Conn, err error) {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-release
		orig(c, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	released := false
	t.Cleanup(func() {
		if !released {
			close(release)
		}
		_ = n.Close()
	})
	dialV5(t, n.ListenerAddr("tcp"), "stop-ends", true, 0)

	stopped := make(chan struct{})
	go func() {
		n.StopClients()
		close(stopped)
	}()
	select {
	case <-entered: // mochi is done with the client; the node's end of it waits
	case <-time.After(waitFor):
		t.Fatal("the connection's end was not handled after StopClients began")
	}
	// A negative check needs a bound: StopClients must still be waiting
	// well after mochi's own count of clients dropped.
	select {
	case <-stopped:
		t.Fatal("StopClients returned while a connection's end was still being handled")
	case <-time.After(500 * time.Millisecond):
	}
	close(release)
	released = true
	select {
	case <-stopped:
	case <-time.After(waitFor):
		t.Fatal("StopClients did not return once the connection's end was handled")
	}
}
