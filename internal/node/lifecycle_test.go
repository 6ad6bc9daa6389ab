package node

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqlb/mqlb/internal/config"
	"github.com/mqlb/mqlb/internal/testutil"
)

// TestNodeLossRestartAndClusterRestart runs one cluster through a node
// closing under its clients, the node coming back on its data directory, and
// the whole cluster restarting.
func TestNodeLossRestartAndClusterRestart(t *testing.T) {
	c, err := startCluster("life", 3, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.close)
	c.ready(t)
	retainer := dialV3(t, c.addr(0), "life-retainer", true)
	retainer.send(t, "life/r1", 1, true, "before")
	retainedAt(t, c.nodes[2], "life/r1", "before")

	pub := loseNodeUnderClients(t, c)
	retainer = dialV3(t, c.addr(1), "life-retainer", true)
	retainer.send(t, "life/r2", 1, true, "while node 3 was down")

	restartNode(t, c, 2)
	// The restarted node holds its earlier run's offline sessions again,
	// and its admin API says which protocol their clients speak.
	if got := offlineProtocol(t, c.nodes[2], "life-away3"); got != 4 {
		t.Errorf("restored offline 3.1.1 session: protocol %d in the clients API, want 4", got)
	}
	pub.send(t, "life/a", 1, "while away")
	queuedAt(t, c.nodes[2], "life-away", 1)
	back := dialV5(t, c.addr(1), "life-away", false, 600)
	if !back.connack.SessionPresent {
		t.Error("offline session of a restarted node: session present = 0")
	}
	back.waitPayload(t, "while away")
	retainedAt(t, c.nodes[2], "life/r1", "before")
	retainedAt(t, c.nodes[2], "life/r2", "while node 3 was down")
	checkRetained(t, c, 2, "after node restart")

	// Messages queued for an offline session when the whole cluster
	// stops: with replicated durability they are on disk in the queue
	// stream, and its anchor (in memory on each node) comes back at its
	// start, short of them.
	back.sub(t, "life/q", 1)
	_ = back.Disconnect(&paho.Disconnect{})
	queued := []string{"q1", "q2", "q3"}
	for _, p := range queued {
		pub.send(t, "life/q", 1, p)
	}
	if c.nodes[0].durable.On() {
		queuedAt(t, c.nodes[1], "life-away", len(queued))
	}

	restartCluster(t, c)
	checkRetained(t, c, 1, "after cluster restart")
	if c.nodes[0].durable.On() {
		back = dialV5(t, c.addr(2), "life-away", false, 600)
		if !back.connack.SessionPresent {
			t.Error("offline session after a cluster restart: session present = 0")
		}
		anchorReady(t, c.nodes[2], "life-away")
		for _, p := range queued {
			back.waitPayload(t, p)
		}
	}
}

// loseNodeUnderClients closes node 3 while a subscriber, a publisher and
// persistent sessions use it; they carry on through the other nodes. It
// returns the publisher, now on node 1.
func loseNodeUnderClients(t *testing.T, c *cluster) *v5 {
	t.Helper()
	sub := dialV5(t, c.addr(2), "life-sub", true, 0)
	sub.sub(t, "life/t", 1)
	pub := dialV5(t, c.addr(2), "life-pub", true, 0)
	pub.send(t, "life/t", 1, "one")
	sub.waitPayload(t, "one")
	persistent := dialV3(t, c.addr(2), "life-session", false)
	persistent.sub(t, "life/s", 1)
	away := dialV5(t, c.addr(2), "life-away", true, 600)
	away.sub(t, "life/a", 1)
	_ = away.Disconnect(&paho.Disconnect{})
	away3 := dialV3(t, c.addr(2), "life-away3", false)
	away3.sub(t, "life/a3", 1)
	away3.Disconnect(100)

	closeNode(t, c, 2, sub)

	sub = dialV5(t, c.addr(1), "life-sub", true, 0)
	sub.sub(t, "life/t", 1)
	pub = dialV5(t, c.addr(0), "life-pub", true, 0)
	pub.send(t, "life/t", 1, "two")
	sub.waitPayload(t, "two")
	resumed := dialV3(t, c.addr(0), "life-session", false)
	if !resumed.sessionPresent {
		t.Error("session of a closed node: session present = 0, want its subscriptions restored from the registry")
	}
	pub.send(t, "life/s", 1, "to the restored subscription")
	resumed.waitPayload(t, "to the restored subscription")
	return pub
}

// closeNode closes node i and checks a v5 client on it was told why.
func closeNode(t *testing.T, c *cluster, i int, client *v5) {
	t.Helper()
	c.nodes[i].Close()
	select {
	case d := <-client.disconnect:
		if d.ReasonCode != packets.ErrServerShuttingDown.Code {
			t.Errorf("DISCONNECT reason %#x, want 0x8B server shutting down", d.ReasonCode)
		}
	case <-time.After(waitFor):
		t.Error("client of the closed node got no DISCONNECT")
	}
}

// restartNode starts node i again on its data directory.
func restartNode(t *testing.T, c *cluster, i int) {
	t.Helper()
	var peers []string
	if i > 0 {
		peers = []string{c.nodes[0].RouteAddr()}
	} else {
		peers = []string{c.nodes[1].RouteAddr()}
	}
	n, err := startNode(nodeConfig(c.name, i, c.dirs[i], peers...))
	if err != nil {
		t.Fatalf("restart node %d: %v", i+1, err)
	}
	c.nodes[i] = n
	c.ready(t)
}

// restartCluster closes every node and starts them again, the first one
// seeding the others, as at the first start.
func restartCluster(t *testing.T, c *cluster) {
	t.Helper()
	c.close()
	for i := range c.nodes {
		var peers []string
		if i > 0 {
			peers = []string{c.nodes[0].RouteAddr()}
		}
		n, err := startNode(nodeConfig(c.name, i, c.dirs[i], peers...))
		if err != nil {
			t.Fatalf("cluster restart, node %d: %v", i+1, err)
		}
		c.nodes[i] = n
	}
	c.ready(t)
}

// checkRetained expects both retained messages at a new subscriber on node i.
func checkRetained(t *testing.T, c *cluster, i int, when string) {
	t.Helper()
	retainedAt(t, c.nodes[i], "life/r2", "while node 3 was down")
	got := retainedFor(t, c.addr(i), "life-reader", "life/+", "life-fence")
	var payloads []string
	for _, m := range got {
		payloads = append(payloads, m.payload)
	}
	slices.Sort(payloads)
	if want := []string{"before", "while node 3 was down"}; !slices.Equal(payloads, want) {
		t.Errorf("%s: retained %q, want %q", when, payloads, want)
	}
}

// TestPublishRefusedWithoutQuorum: a QoS 1 publish the session queue cannot
// store (two of three nodes gone: no JetStream quorum) is refused, not
// acknowledged: v5 PUBACK 0x80 with a Reason String saying why.
func TestPublishRefusedWithoutQuorum(t *testing.T) {
	c, err := startCluster("noquorum", 3, func(cfg *config.Node) { cfg.Mesh.Timeout = config.Duration(time.Second) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.close)
	c.ready(t)
	if !c.nodes[0].durable.On() {
		t.Skip("sessions.durability memory: nothing is stored before the PUBACK")
	}
	pub := dialV5(t, c.addr(0), "nq-pub", true, 0)
	pub.send(t, "nq/t", 1, "stored")
	c.nodes[1].Close()
	c.nodes[2].Close()
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	resp, err := pub.Publish(ctx, &paho.Publish{Topic: "nq/t", QoS: 1, Payload: []byte("not stored")})
	if err == nil || resp == nil || resp.ReasonCode != packets.ErrUnspecifiedError.Code {
		t.Fatalf("publish without quorum: %+v, %v; want PUBACK 0x80", resp, err)
	}
	if rs := resp.Properties.ReasonString; !strings.HasPrefix(rs, "not stored") {
		t.Errorf("refused PUBACK reason string %q, want it to say the message was not stored", rs)
	}

	// A persistent session cannot be looked up: the client is told to come
	// back, and why.
	_, err = tryV5(c.addr(0), "nq-session", false, 600)
	var refused *connackError
	if !errors.As(err, &refused) || refused.code != packets.ErrServerUnavailable.Code {
		t.Fatalf("persistent session without quorum: %v, want CONNACK 0x88", err)
	}
	if !strings.HasPrefix(refused.reason, "session registry") {
		t.Errorf("refused CONNACK reason string %q, want it to name the session registry", refused.reason)
	}
}

// A resume a node refused (its registry had no quorum) leaves no session
// there whose expiry ends the session where it lives: the client resumed on
// another node keeps its queue.
func TestRefusedResumeLeavesNoSession(t *testing.T) {
	c := refusedResume(t)
	back := dialV5(t, c.addr(1), refusedID, false, 600)
	if !back.connack.SessionPresent {
		t.Fatal("resume on the owner: session present = 0")
	}
	// Whatever node 1 kept of the refused connection is gone by now (its
	// expiry was 2 s; mochi sweeps expired sessions every second).
	testutil.Eventually(t, waitFor, func() bool {
		_, ok := c.nodes[0].broker.Clients.Get(refusedID)
		return !ok
	}, "node 1 still holds a session for %s", refusedID)
	anchorReady(t, c.nodes[1], refusedID)
	publishStored(t, c.addr(2), "after the refusal expired")
	back.waitPayload(t, "after the refusal expired")
}

// The client refused on node 1 comes back to node 1. The refused claim may
// have been committed once the other nodes returned (node 1 led the
// registry alone): the record then names node 1, which holds nothing. The
// resume must still find the session (its subscription, its queue) where
// the claim found it, not start empty. (The late commit happens in about
// one run of four: the other runs take the ordinary takeover path.)
func TestRefusedResumeBackOnRefusingNode(t *testing.T) {
	c := refusedResume(t)
	back := dialV5(t, c.addr(0), refusedID, false, 600)
	if !back.connack.SessionPresent {
		t.Fatal("resume on the node that refused it: session present = 0")
	}
	anchorReady(t, c.nodes[0], refusedID)
	publishStored(t, c.addr(2), "back where it was refused")
	back.waitPayload(t, "back where it was refused")
}

const refusedID = "refused-session"

// refusedResume starts 3 nodes, leaves a persistent session subscribed to
// refused/t on node 2, stops nodes 2 and 3, has node 1 (no quorum) refuse
// the session's resume with a 2 s expiry, and restarts nodes 2 and 3.
func refusedResume(t *testing.T) *cluster {
	t.Helper()
	c, err := startCluster("refused", 3, func(cfg *config.Node) { cfg.Mesh.Timeout = config.Duration(time.Second) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.close)
	c.ready(t)
	if !c.nodes[0].durable.On() {
		t.Skip("sessions.durability memory: nothing is refused")
	}
	first := dialV5(t, c.addr(1), refusedID, true, 600)
	first.sub(t, "refused/t", 1)
	_ = first.Disconnect(&paho.Disconnect{})

	// Node 1 alone: no quorum, the resume is refused there.
	c.nodes[1].Close()
	c.nodes[2].Close()
	_, err = tryV5(c.addr(0), refusedID, false, 2) // this CONNECT's session would expire 2 s after it ends
	var refused *connackError
	if !errors.As(err, &refused) || refused.code != packets.ErrServerUnavailable.Code {
		t.Fatalf("resume without quorum: %v, want CONNACK 0x88", err)
	}
	for _, i := range []int{1, 2} {
		n, err := startNode(nodeConfig(c.name, i, c.dirs[i], c.nodes[0].RouteAddr()))
		if err != nil {
			t.Fatalf("restart node %d: %v", i+1, err)
		}
		c.nodes[i] = n
	}
	c.ready(t)
	return c
}

// publishStored publishes payload to refused/t at QoS 1 through addr until
// it is acknowledged: the restarted nodes' store may still refuse a store
// at first ("not stored").
func publishStored(t *testing.T, addr, payload string) {
	t.Helper()
	pub := dialV5(t, addr, "refused-pub", true, 0)
	testutil.Eventually(t, waitFor, func() bool {
		ctx, cancel := context.WithTimeout(t.Context(), waitFor)
		defer cancel()
		_, err := pub.Publish(ctx, &paho.Publish{Topic: "refused/t", QoS: 1, Payload: []byte(payload)})
		if err != nil {
			t.Logf("publish refused/t: %v: sending it again", err)
		}
		return err == nil
	}, "publish refused/t acknowledged")
}

// TestQuorumLossUnhealthy: a node whose two peers are gone can store
// nothing, and says so in /healthz and mqlb_node_store_available although
// nothing it was asked to do failed (without traffic, no operation starts
// the store's cooldown); it is healthy again once a peer is back.
func TestQuorumLossUnhealthy(t *testing.T) {
	c, err := startCluster("quorum", 3, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.close)
	c.ready(t)
	n := c.nodes[0]
	c.nodes[1].Close()
	c.nodes[2].Close()
	// A stream leader on n steps down once it has heard from no follower
	// for a while; the others have no leader from the close.
	testutil.Eventually(t, 60*time.Second, func() bool { return n.Healthy() != nil }, "healthy with both peers closed")
	admin := "http://" + n.AdminAddr()
	code, body := get(t, admin+"/healthz", "")
	if code != 503 || !strings.Contains(body, "no leader") && !strings.Contains(body, "store") {
		t.Errorf("/healthz: %d %q; want 503 naming the store", code, body)
	}
	if _, m := get(t, admin+"/metrics", ""); !strings.Contains(m, `mqlb_node_store_available{node="n1"} 0`) {
		t.Error("store_available is not 0 without quorum")
	}

	restarted, err := startNode(nodeConfig(c.name, 1, c.dirs[1], n.RouteAddr()))
	if err != nil {
		t.Fatal(err)
	}
	c.nodes[1] = restarted
	testutil.Eventually(t, 60*time.Second, func() bool { return n.Healthy() == nil }, "healthy again with a peer back: %v", n.Healthy())
	if code, _ := get(t, admin+"/healthz", ""); code != 200 {
		t.Errorf("/healthz with a peer back: %d", code)
	}
}

// offlineProtocol returns the protocol the node's clients API gives for the
// offline session id (0 if not listed).
func offlineProtocol(t *testing.T, n *Node, id string) byte {
	t.Helper()
	code, body := do(t, "GET", "http://"+n.AdminAddr()+"/api/v1/clients?q="+id)
	var got struct {
		Clients []struct {
			ID        string `json:"client_id"`
			Protocol  byte
			Connected bool
		}
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil || code != 200 {
		t.Fatalf("clients API: %d %v %s", code, err, body)
	}
	for _, c := range got.Clients {
		if c.ID == id && !c.Connected {
			return c.Protocol
		}
	}
	t.Errorf("offline session %s not listed: %s", id, body)
	return 0
}
