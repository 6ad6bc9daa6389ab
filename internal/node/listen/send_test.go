package listen

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/gorilla/websocket"

	"github.com/mqlb/mqlb/internal/mqttwire"
	"github.com/mqlb/mqlb/internal/testutil"
	"github.com/mqlb/mqlb/internal/wsconn"
)

const waitFor = 10 * time.Second

// senderPair is a connected pair whose server end writes through a sender:
// the client end has a small receive buffer.
func senderPair(t *testing.T, max int, slow func(int)) (peer net.Conn, s *sender) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	d := net.Dialer{Control: testutil.SmallWindow}
	peer, err = d.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { peer.Close(); c.Close() })
	s, err = newSender(c.(*net.TCPConn), max, slow)
	if err != nil {
		t.Fatal(err)
	}
	return peer, s
}

// within fails the test if f has not returned after waitFor: a sender's
// writes must never wait for the peer.
func within(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(waitFor):
		t.Fatalf("%s still waiting after %s", what, waitFor)
	}
}

// record is what writer w writes as its i-th write: a header (w, i, size)
// and size bytes of w.
func record(w, i, size int) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(w))
	b = binary.BigEndian.AppendUint32(b, uint32(i))
	b = binary.BigEndian.AppendUint32(b, uint32(size))
	return append(b, bytes.Repeat([]byte{byte(w)}, size)...)
}

// TestSenderQueuesInOrder: writes to a peer that does not read return at
// once; several writers' writes reach it whole, each writer's in order;
// once the queue has drained the sender holds no queue.
func TestSenderQueuesInOrder(t *testing.T) {
	peer, s := senderPair(t, 64<<20, nil)
	const writers, each = 4, 400
	within(t, "writes to a peer that does not read", func() {
		var wg sync.WaitGroup
		for w := range writers {
			wg.Go(func() {
				for i := range each {
					if _, err := s.Write(record(w, i, 1+(w*7919+i*104729)%20000)); err != nil {
						t.Errorf("write: %v", err)
						return
					}
				}
			})
		}
		wg.Wait()
	})
	if s.queued() == 0 {
		t.Fatal("nothing queued: the peer's buffers took it all, the test proves nothing")
	}
	_ = peer.SetReadDeadline(time.Now().Add(waitFor))
	next := make([]int, writers)
	for range writers * each {
		var h [12]byte
		if _, err := io.ReadFull(peer, h[:]); err != nil {
			t.Fatal(err)
		}
		w, i, size := int(binary.BigEndian.Uint32(h[:])), int(binary.BigEndian.Uint32(h[4:])), int(binary.BigEndian.Uint32(h[8:]))
		if w >= writers || i != next[w] || size != 1+(w*7919+i*104729)%20000 {
			t.Fatalf("record header writer %d #%d size %d; want writer < %d at #%v", w, i, size, writers, next)
		}
		body := make([]byte, size)
		if _, err := io.ReadFull(peer, body); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(body, bytes.Repeat([]byte{byte(w)}, size)) {
			t.Fatalf("record writer %d #%d: bytes of another in it", w, i)
		}
		next[w]++
	}
	testutil.Eventually(t, waitFor, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return !s.draining && s.q == nil
	}, "the sender still holds a queue once it drained")
}

// TestSenderSlowConsumer: a write that would take the queue over its bound
// closes the connection (a reset), tells slow once, and every later write
// fails.
func TestSenderSlowConsumer(t *testing.T) {
	var told atomic.Int32
	peer, s := senderPair(t, 64<<10, func(queued int) {
		told.Add(1)
		if queued <= 64<<10 {
			t.Errorf("slow told of %d queued bytes, within the bound", queued)
		}
	})
	var err error
	written := 0
	within(t, "writes to a peer that does not read", func() {
		for written < 64<<20 {
			if _, err = s.Write(make([]byte, 4096)); err != nil {
				break
			}
			written += 4096
		}
	})
	if !errors.Is(err, ErrSlowConsumer) {
		t.Fatalf("after %d bytes: %v, want ErrSlowConsumer", written, err)
	}
	if _, err := s.Write([]byte("x")); !errors.Is(err, ErrSlowConsumer) {
		t.Errorf("a write after: %v", err)
	}
	if n := told.Load(); n != 1 {
		t.Errorf("slow told %d times", n)
	}
	_ = peer.SetReadDeadline(time.Now().Add(waitFor))
	got, err := io.Copy(io.Discard, peer)
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("the peer read %d bytes, then %v; want a reset", got, err)
	}
}

// TestSenderCloseDrains: Close returns at once; the peer gets what was
// queued, then the end of the stream.
func TestSenderCloseDrains(t *testing.T) {
	peer, s := senderPair(t, 64<<20, nil)
	want := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB
	within(t, "a write and Close", func() {
		if _, err := s.Write(want); err != nil {
			t.Error(err)
		}
		if err := s.CloseWrite(); err != nil {
			t.Error(err)
		}
		if err := s.Close(); err != nil {
			t.Error(err)
		}
		if _, err := s.Write([]byte("late")); err == nil {
			t.Error("a write after Close did not fail")
		}
	})
	_ = peer.SetReadDeadline(time.Now().Add(waitFor))
	got, err := io.ReadAll(peer)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("the peer read %d bytes (%v), want the %d written then EOF", len(got), err, len(want))
	}
}

// TestSenderWriteErrorCloses: once a write fails (the peer reset the
// connection), the socket is closed and nothing more is written.
func TestSenderWriteErrorCloses(t *testing.T) {
	peer, s := senderPair(t, 64<<20, nil)
	_ = peer.(*net.TCPConn).SetLinger(0)
	peer.Close()
	var err error
	testutil.Eventually(t, waitFor, func() bool {
		_, err = s.Write([]byte("x"))
		return err != nil
	}, "writes to a reset connection still succeed")
	if _, err2 := s.Write([]byte("y")); err2 == nil {
		t.Error("a write after a failed one succeeded")
	}
	_ = s.tcp.SetReadDeadline(time.Now().Add(waitFor))
	if _, err := s.tcp.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("the socket after a failed write: %v, want it closed", err)
	}
}

// stuckStream dials l (a listener of ts) as an MQTT 3.1.1 client with a
// small receive buffer, subscribes it to filter at QoS 1 and returns its
// byte stream (under TLS and WebSocket as the listener has them).
func stuckStream(t *testing.T, typ, addr, id, filter string) io.ReadWriter {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second, Control: testutil.SmallWindow}
	var rw io.ReadWriter
	tlsCfg := &tls.Config{InsecureSkipVerify: true}
	switch typ {
	case TypeTCP, TypeTLS:
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		_ = c.SetDeadline(time.Now().Add(waitFor))
		rw = c
		if typ == TypeTLS {
			tc := tls.Client(c, tlsCfg)
			if err := tc.Handshake(); err != nil {
				t.Fatal(err)
			}
			rw = tc
		}
	default:
		scheme := map[string]string{TypeWS: "ws", TypeWSS: "wss"}[typ]
		wd := websocket.Dialer{NetDial: d.Dial, TLSClientConfig: tlsCfg, Subprotocols: []string{"mqtt"}}
		ws, resp, err := wd.Dial(scheme+"://"+addr+DefaultPath, http.Header{})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		t.Cleanup(func() { ws.Close() })
		_ = ws.UnderlyingConn().SetDeadline(time.Now().Add(waitFor))
		rw = wsconn.New(ws)
	}
	if _, err := rw.Write(mqttwire.AppendConnect(nil, &mqttwire.Connect{Version: 4, CleanStart: true, ClientID: id})); err != nil {
		t.Fatal(err)
	}
	if ack, err := mqttwire.ReadConnack(rw, 4, nil); err != nil || ack.Code != 0 {
		t.Fatalf("CONNACK %+v %v", ack, err)
	}
	body := append([]byte{0, 1, 0, byte(len(filter))}, filter...)
	body = append(body, 1)
	if _, err := rw.Write(append(mqttwire.AppendVarint([]byte{0x82}, len(body)), body...)); err != nil {
		t.Fatal(err)
	}
	suback := make([]byte, 5)
	if _, err := io.ReadFull(rw, suback); err != nil || suback[0] != 0x90 || suback[4] != 1 {
		t.Fatalf("SUBACK %x %v", suback, err)
	}
	return rw
}

// TestStuckClientDoesNotBlockPublisher: over each listener type, a QoS 1
// subscriber that does not read does not keep a publisher from its PUBACKs
// (mochi writes to a client holding the lock each QoS 1 delivery to it
// takes), and what it reads later is every PUBLISH, whole and in order.
// Over WebSocket, messages over 4 KiB go out in two parts (gorilla's
// writev through net.Buffers), which must reach the socket through the
// queue too.
func TestStuckClientDoesNotBlockPublisher(t *testing.T) {
	ca := testutil.NewCA(t)
	tlsCfg := ca.ServerConfig(t, tls.NoClientCert)
	for _, typ := range []string{TypeTCP, TypeTLS, TypeWS, TypeWSS} {
		t.Run(typ, func(t *testing.T) {
			o := Options{ID: "stuck", Type: typ}
			if typ == TypeTLS || typ == TypeWSS {
				o.TLS = tlsCfg
			}
			ts := startServer(t, Options{ID: "pub", Type: TypeTCP}, o)
			stuck := stuckStream(t, typ, ts.addr["stuck"], "stuck-"+typ, "s/#")
			pub, _ := mustConnectV5(t, dial(t, ts.addr["pub"]), paho.Connect{ClientID: "pub-" + typ})
			const count, size = 80, 64 << 10 // 5 MiB
			payload := make([]byte, size)
			for i := range count {
				binary.BigEndian.PutUint32(payload, uint32(i))
				ctx, cancel := context.WithTimeout(context.Background(), waitFor)
				_, err := pub.Publish(ctx, &paho.Publish{Topic: "s/t", QoS: 1, Payload: payload})
				cancel()
				if err != nil {
					t.Fatalf("publish %d of %d: %v", i+1, count, err)
				}
			}
			for i := range count {
				var h [1]byte
				if _, err := io.ReadFull(stuck, h[:]); err != nil {
					t.Fatalf("PUBLISH %d: %v", i, err)
				}
				size, err := readVarint(stuck)
				if err != nil || h[0]&0xf0 != 0x30 || size != 2+len("s/t")+2+len(payload) {
					t.Fatalf("PUBLISH %d: header %#x size %d (%v)", i, h[0], size, err)
				}
				body := make([]byte, size)
				if _, err := io.ReadFull(stuck, body); err != nil {
					t.Fatalf("PUBLISH %d: %v", i, err)
				}
				if got := binary.BigEndian.Uint32(body[2+len("s/t")+2:]); got != uint32(i) {
					t.Fatalf("PUBLISH %d carries message %d", i, got)
				}
				puback := []byte{0x40, 2, body[5], body[6]}
				if _, err := stuck.Write(puback); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

func readVarint(r io.Reader) (int, error) {
	v, mult := 0, 1
	for range 4 {
		var b [1]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return 0, err
		}
		v += int(b[0]&127) * mult
		if b[0]&128 == 0 {
			return v, nil
		}
		mult *= 128
	}
	return 0, fmt.Errorf("varint over 4 bytes")
}
