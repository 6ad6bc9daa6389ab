//go:build linux

package relay

import (
	"net"
	"testing"
	"time"

	"github.com/mqlb/mqlb/internal/testutil"
)

// waitTLSIdle waits until no goroutine serves the TLS pair r: both
// directions are left to the loop.
func waitTLSIdle(t *testing.T, r *Relay) {
	t.Helper()
	p := r.s.(*tlsPair)
	testutil.Eventually(t, 5*time.Second, func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return !p.running[client] && !p.running[server]
	}, "the TLS pair is not idle")
}

// TestTLSPairWakesFromIdle: after each wait until the pair is idle, the
// loop wakes it for one record split in two segments with the pair going
// idle between them (crypto/tls keeps the first part), for many records in
// one segment (crypto/tls reads several at once: all are relayed before
// the pair waits again), and for the server's bytes.
func TestTLSPairWakesFromIdle(t *testing.T) {
	var bc *batchConn
	p := newTLSProxied(t, tlsSetup{wrap: func(c net.Conn) net.Conn { bc = &batchConn{Conn: c}; return bc }})
	for round := range 3 {
		waitTLSIdle(t, p.relay)
		msg := randomBytes(t, 100+round*3000)
		bc.hold = true
		p.client.Write(msg)
		rec := append([]byte(nil), bc.buf.Bytes()...)
		bc.buf.Reset()
		bc.hold = false
		bc.Conn.Write(rec[:len(rec)/2])
		time.Sleep(20 * time.Millisecond) // stimulus: let the relay read the first part
		waitTLSIdle(t, p.relay)
		bc.Conn.Write(rec[len(rec)/2:])
		expect(t, p.server, msg)

		waitTLSIdle(t, p.relay)
		sendBatched(t, p.client, bc, p.server)

		waitTLSIdle(t, p.relay)
		down := randomBytes(t, 1+round*20000)
		p.server.Write(down)
		expect(t, p.client, down)
	}
}
