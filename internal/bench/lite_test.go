package bench

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mqlb/mqlb/internal/mqttwire"
	"github.com/mqlb/mqlb/internal/testutil"
)

// script is the server side of a scripted MQTT exchange with the light client.
type script struct {
	t    *testing.T
	conn net.Conn
	br   *bufio.Reader
}

// startScript listens on a loopback port, connects a light client to it and
// answers its CONNECT with connack (CONNACK bytes). The client is
// disconnected when the test ends.
func startScript(t *testing.T, version byte, connack []byte, cc clientConfig) (*script, *lite) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	tg, err := ParseTarget("mqtt://"+ln.Addr().String(), version == mqttwire.V5, false, "")
	if err != nil {
		t.Fatal(err)
	}
	cc.target, cc.id, cc.timeout = &tg, "lite-test", 5*time.Second
	type res struct {
		c   *lite
		err error
	}
	done := make(chan res, 1)
	go func() { c, err := connectLite(context.Background(), cc); done <- res{c, err} }()
	conn, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	s := &script{t: t, conn: conn, br: bufio.NewReader(conn)}
	c, _, err := mqttwire.ReadConnect(s.br, nil, 0)
	if err != nil || c.ClientID != "lite-test" || c.Version != version || !c.CleanStart {
		t.Fatalf("CONNECT: %+v, %v", c, err)
	}
	s.write(connack)
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Cleanup(func() { r.c.disconnect(); conn.Close() })
	return s, r.c
}

func (s *script) write(b []byte) {
	s.t.Helper()
	if _, err := s.conn.Write(b); err != nil {
		s.t.Fatal(err)
	}
}

// expect reads the next packet and checks its first byte and packet id.
func (s *script) expect(first byte, id uint16) []byte {
	s.t.Helper()
	got, body, _, err := readPacket(s.br, nil)
	if err != nil {
		s.t.Fatalf("want packet 0x%02x id %d: %v", first, id, err)
	}
	if got != first || len(body) < 2 || binary.BigEndian.Uint16(body) != id && first>>4 != typePublish {
		s.t.Fatalf("got packet 0x%02x % x, want 0x%02x id %d", got, body, first, id)
	}
	return body
}

// expectNothing checks that the client sends nothing for a while.
func (s *script) expectNothing(d time.Duration) {
	s.t.Helper()
	s.conn.SetReadDeadline(time.Now().Add(d))
	defer s.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if first, body, _, err := readPacket(s.br, nil); !errors.Is(err, os.ErrDeadlineExceeded) {
		s.t.Fatalf("want nothing, got packet 0x%02x % x (%v)", first, body, err)
	}
}

func ack(typ byte, id uint16) []byte { return appendAck(nil, typ, id) }

func connack3() []byte { return mqttwire.AppendConnack(nil, mqttwire.V311, false, 0) }

// TestLiteReceiveQoS2ExactlyOnce: a QoS 2 message resent before PUBREL is
// not delivered again; its id is free for a new message after PUBREL; QoS 1
// messages are acknowledged with PUBACK.
func TestLiteReceiveQoS2ExactlyOnce(t *testing.T) {
	var mu sync.Mutex
	var got []string
	s, c := startScript(t, mqttwire.V311, connack3(), clientConfig{onMessage: func(p []byte) {
		mu.Lock()
		got = append(got, string(p))
		mu.Unlock()
	}})
	subDone := make(chan error, 1)
	go func() { subDone <- c.subscribe(context.Background(), "bench/+", 2) }()
	body := s.expect(0x82, 1)
	if want := []byte{0, 1, 0, 7, 'b', 'e', 'n', 'c', 'h', '/', '+', 2}; !slices.Equal(body, want) {
		t.Fatalf("SUBSCRIBE body % x, want % x", body, want)
	}
	s.write([]byte{0x90, 3, 0, 1, 2})
	if err := <-subDone; err != nil {
		t.Fatal(err)
	}
	s.write(appendPublish(nil, mqttwire.V311, 2, 7, "bench/0", []byte("a")))
	s.expect(typePubrec<<4, 7)
	pub := appendPublish(nil, mqttwire.V311, 2, 7, "bench/0", []byte("a"))
	pub[0] |= 0x08 // DUP
	s.write(pub)
	s.expect(typePubrec<<4, 7)
	s.write(ack(typePubrel, 7))
	s.expect(typePubcomp<<4, 7)
	s.write(appendPublish(nil, mqttwire.V311, 2, 7, "bench/0", []byte("b")))
	s.expect(typePubrec<<4, 7)
	s.write(appendPublish(nil, mqttwire.V311, 1, 9, "bench/0", []byte("c")))
	s.expect(typePuback<<4, 9)
	s.write(appendPublish(nil, mqttwire.V311, 0, 0, "bench/0", []byte("d")))
	testutil.Eventually(t, 5*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 4 }, "4 deliveries")
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"a", "b", "c", "d"}; !slices.Equal(got, want) {
		t.Errorf("delivered %q, want %q", got, want)
	}
}

// TestLitePublishQoS2Flow: PUBLISH → PUBREC → PUBREL → PUBCOMP, with the
// window capped by the v5 server's Receive Maximum of 1, so the second
// publish waits for the first flow to complete.
func TestLitePublishQoS2Flow(t *testing.T) {
	connack := []byte{0x20, 6, 0, 0, 3, 0x21, 0, 1} // v5, Receive Maximum 1
	s, c := startScript(t, mqttwire.V5, connack, clientConfig{inflight: 20})
	if cap(c.slots) != 1 {
		t.Fatalf("window %d, want the server's Receive Maximum 1", cap(c.slots))
	}
	ctx := context.Background()
	if err := c.publish(ctx, "bench/0", 2, []byte("one")); err != nil {
		t.Fatal(err)
	}
	second := make(chan error, 1)
	go func() { second <- c.publish(ctx, "bench/0", 2, []byte("two")) }()
	body := s.expect(0x34, 1)
	if want := []byte{0, 7, 'b', 'e', 'n', 'c', 'h', '/', '0', 0, 1, 0, 'o', 'n', 'e'}; !slices.Equal(body, want) {
		t.Fatalf("PUBLISH body % x, want % x", body, want)
	}
	s.expectNothing(200 * time.Millisecond) // the window is full
	s.write(ack(typePubrec, 1))
	s.expect(0x62, 1) // PUBREL has flags 0010
	s.expectNothing(200 * time.Millisecond)
	s.write(ack(typePubcomp, 1))
	s.expect(0x34, 2)
	if err := <-second; err != nil {
		t.Fatal(err)
	}
	flushed := make(chan error, 1)
	go func() { flushed <- c.flush(ctx) }()
	s.write(ack(typePubrec, 2))
	s.expect(0x62, 2)
	s.write(ack(typePubcomp, 2))
	if err := <-flushed; err != nil {
		t.Fatal(err)
	}
}

// TestLitePublishQoS1AndProtocolErrors: PUBACK frees the slot; a PUBACK for
// an id not in flight ends the connection as lost.
func TestLitePublishQoS1AndProtocolErrors(t *testing.T) {
	lost := make(chan error, 1)
	s, c := startScript(t, mqttwire.V311, connack3(), clientConfig{inflight: 1, onLost: func(err error) { lost <- err }})
	ctx := context.Background()
	if err := c.publish(ctx, "t", 1, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if body := s.expect(0x32, 1); !slices.Equal(body, []byte{0, 1, 't', 0, 1, 'x'}) {
		t.Fatalf("PUBLISH body % x", body)
	}
	s.write(ack(typePuback, 1))
	if err := c.flush(ctx); err != nil {
		t.Fatal(err)
	}
	s.write(ack(typePuback, 1)) // nothing in flight with id 1 any more
	select {
	case err := <-lost:
		if !errors.Is(err, errMalformed) {
			t.Errorf("lost with %v, want a protocol error", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("an unexpected PUBACK did not end the connection")
	}
	if err := c.publish(ctx, "t", 0, []byte("y")); !errors.Is(err, errConnectionLost) {
		t.Errorf("publish after the loss: %v, want errConnectionLost", err)
	}
}

func TestLiteRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		mqttwire.ReadConnect(conn, nil, 0)
		conn.Write(mqttwire.AppendConnack(nil, mqttwire.V311, false, mqttwire.Code3NotAuthorized))
	}()
	tg, _ := ParseTarget("mqtt://"+ln.Addr().String(), false, false, "")
	_, err = connectLite(context.Background(), clientConfig{target: &tg, id: "x", timeout: 5 * time.Second})
	if got := reason(err); got != "refused 0x05 (not authorized)" {
		t.Errorf("reason %q (%v)", got, err)
	}
}
