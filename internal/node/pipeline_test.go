package node

import (
	"encoding/binary"
	"io"
	"testing"
	"time"
)

// TestV311PipelinedPublishesNotDisconnected: a 3.1.1 client may send QoS 1
// publishes without waiting for their PUBACKs (3.1.1 has no Receive
// Maximum); with replicated durability, where a PUBACK waits for the
// store, it is read more slowly, never disconnected. It was closed after
// about 1,500 ("receive maximum exceeded").
func TestV311PipelinedPublishesNotDisconnected(t *testing.T) {
	c := shared(t)
	if !c.nodes[0].durable.On() {
		t.Skip("needs sessions.durability: replicated")
	}
	const n = 3000
	conn := rawDial(t, c.addr(0))
	write(t, conn, rawConnect(4, "pipeline-311", "", ""))
	if code := readConnack(t, conn, 4); code != 0 {
		t.Fatalf("CONNACK 0x%02x", code)
	}
	go func() {
		var buf []byte
		for i := 1; i <= n; i++ {
			// PUBLISH QoS 1 to pipe/t, packet id i, payload "x".
			buf = append(buf[:0], 0x32, 2+6+2+1, 0, 6, 'p', 'i', 'p', 'e', '/', 't', byte(i>>8), byte(i), 'x')
			if _, err := conn.Write(buf); err != nil {
				return
			}
		}
	}()
	conn.SetReadDeadline(time.Now().Add(2 * time.Minute))
	ack := make([]byte, 4)
	for got := 0; got < n; got++ {
		if _, err := io.ReadFull(conn, ack); err != nil {
			t.Fatalf("after %d of %d PUBACKs: %v", got, n, err)
		}
		if ack[0] != 0x40 || binary.BigEndian.Uint16(ack[2:]) != uint16(got+1) {
			t.Fatalf("PUBACK %d: % x", got+1, ack)
		}
	}
}
