package session

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/mochi-mqtt/server/v2"

	"github.com/mqlb/mqlb/internal/testutil"
)

// handedOverHas reports whether the tracker still keeps cl as given up.
func (s *Tracker) handedOverHas(cl *mqtt.Client) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.handedOver[cl]
	return ok
}

// TestHandedOverWithoutDisconnectPruned: a connection given to another node
// (giveUp) after mochi added it to its client list and before its CONNACK
// was written: the CONNACK then fails on the closed connection and mochi
// returns without OnDisconnect, so Disconnected never forgets it. The
// tracker's prune does, once pendingMargin has passed (not before: a
// Disconnected may still come).
func TestHandedOverWithoutDisconnectPruned(t *testing.T) {
	wb := newWillBroker(t)
	connack, letConnack := wb.hook.gate(t, mqtt.OnPacketEncode, "lost")
	conn, err := net.DialTimeout("tcp", wb.addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c := paho.NewClient(paho.ClientConfig{ClientID: "lost", Conn: conn, OnClientError: func(error) {}})
	connected := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), willWait)
		defer cancel()
		expiry := uint32(60)
		_, err := c.Connect(ctx, &paho.Connect{ClientID: "lost", KeepAlive: 30,
			Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}})
		connected <- err
	}()
	await(t, connack, "mochi writing the CONNACK")
	cl := wb.client("lost")
	if cl == nil || cl.Closed() {
		t.Fatal("the client is not in mochi's list, or Closed, while mochi writes its CONNACK")
	}
	before := time.Now().Unix()
	if h := wb.s.giveUp(takeoverRequest{Client: "lost", From: "elsewhere"}); !h.Found {
		t.Fatal("giveUp found no session")
	}
	after := time.Now().Unix()
	letConnack()
	if err := <-connected; err == nil {
		t.Error("the client had a CONNACK from a connection given up before it was written")
	}
	// attachClient has returned once the connection no longer counts.
	testutil.Eventually(t, willWait, func() bool { return atomic.LoadInt64(&wb.b.Info.ClientsConnected) == 0 },
		"mochi still serving the connection given up")
	if !wb.s.handedOverHas(cl) {
		t.Fatal("mochi called OnDisconnect after a failed CONNACK: nothing to prune (the premise of this test is wrong)")
	}
	wb.s.prune(before + pendingMargin)
	if !wb.s.handedOverHas(cl) {
		t.Error("given-up connection pruned before pendingMargin passed")
	}
	wb.s.prune(after + pendingMargin + 1)
	if wb.s.handedOverHas(cl) {
		t.Error("given-up connection whose end mochi never reported still kept (with its session) after pendingMargin")
	}
}
