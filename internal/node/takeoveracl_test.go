package node

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/eclipse/paho.golang/paho"
	mqtt3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqlb/mqlb/internal/config"
	"github.com/mqlb/mqlb/internal/testutil"
)

// Takeover of a persistent session by another user (outside audit, HIGH):
// ruser may read r/ruser/#, alice may not; alice connecting with the
// client id of ruser's session inherits it (session present) and with it
// the QoS 1/2 messages queued or in flight for ruser. Those were checked
// against ruser's rights when they were queued; mochi's takeover
// (inheritClientSession) copies them onto the new connection and resends
// them with no check. mosquitto sends nothing of them.

// takeoverACLCluster starts two nodes with the given durability: users
// ruser, alice and pub (password "pw-"+user), each reading and writing
// r/<user>/#, pub publishing anywhere under r/, everything else denied.
func takeoverACLCluster(t *testing.T, durability string) *cluster {
	t.Helper()
	c, err := startCluster("takeacl-"+durability, 2, takeoverACLConfig(t, durability))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.close)
	c.ready(t)
	return c
}

// takeoverACLConfig is the nodes' config of takeoverACLCluster: users
// ruser, alice and pub (password "pw-" + name), and ACL rules by user name.
func takeoverACLConfig(t *testing.T, durability string) func(*config.Node) {
	t.Helper()
	users := filepath.Join(t.TempDir(), "users")
	var b strings.Builder
	for _, u := range []string{"ruser", "alice", "pub"} {
		fmt.Fprintf(&b, "%s:%s\n", u, bcryptOf(t, "pw-"+u))
	}
	if err := os.WriteFile(users, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	no := false
	return func(c *config.Node) {
		c.Sessions.Durability = durability
		c.Auth = config.NodeAuth{AllowAnonymous: &no, ACLDefault: "deny", UsersFile: users, ACL: []config.ACLRule{
			{Allow: true, Access: "all", Topic: "r/%u/#"},
			{Allow: true, Access: "publish", Topic: "r/#", Users: []string{"pub"}},
		}}
		c.SetDefaults()
	}
}

// TestAdoptedSessionKeepsItsMessages: a node restarted on its data
// directory holds its earlier run's offline sessions again (adopted from
// the registry) without their clients' credentials. With ACL rules by user
// name (r/%u/#) the read ACL refused every message published for such a
// session, and its owner, back, got none; they are kept now, and checked
// against the connection that takes the session over (dropUnreadable; see
// TestTakeoverQueuedACL for another user's).
func TestAdoptedSessionKeepsItsMessages(t *testing.T) {
	tweak := takeoverACLConfig(t, "memory")
	c, err := startCluster("adoptacl", 2, tweak)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.close)
	c.ready(t)
	const id = "adopted-ruser"
	owner := dialV5(t, c.addr(1), id, false, 3600, withCreds("ruser", "pw-ruser"))
	owner.sub(t, "r/ruser/#", 1)
	if err := owner.Disconnect(&paho.Disconnect{}); err != nil {
		t.Fatal(err)
	}
	waitOffline(t, c.nodes[1], id)

	c.nodes[1].Close()
	cfg := nodeConfig(c.name, 1, c.dirs[1], c.nodes[0].RouteAddr())
	tweak(cfg)
	n, err := startNode(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.nodes[1] = n
	c.ready(t)
	waitOffline(t, c.nodes[1], id) // adopted

	publishAs(t, c, 0, 1, "adopted-0", "adopted-1")
	queuedOffline(t, c, 1, id, "memory", 2)

	back := dialV5(t, c.addr(1), id, false, 3600, withCreds("ruser", "pw-ruser"))
	if !back.connack.SessionPresent {
		t.Fatal("ruser resuming the adopted session: session present 0")
	}
	back.waitPayload(t, "adopted-0")
	back.waitPayload(t, "adopted-1")
}

func creds3(user string) func(*mqtt3.ClientOptions) {
	return func(o *mqtt3.ClientOptions) { o.SetUsername(user).SetPassword("pw-" + user) }
}

func rawCreds(user string) func(*packets.Packet) {
	return func(pk *packets.Packet) {
		pk.Connect.Username, pk.Connect.UsernameFlag = []byte(user), true
		pk.Connect.Password, pk.Connect.PasswordFlag = []byte("pw-"+user), true
	}
}

// publishAs publishes each payload at qos to r/ruser/<payload> (or, for a
// payload starting with "r/", to that topic) from user pub on node at.
func publishAs(t *testing.T, c *cluster, at int, qos byte, payloads ...string) {
	t.Helper()
	pub := dialV5(t, c.addr(at), fmt.Sprintf("pub-%d-%s", at, randomID()), true, 0, withCreds("pub", "pw-pub"))
	defer pub.Disconnect(&paho.Disconnect{})
	for _, p := range payloads {
		topic := "r/ruser/" + p
		if strings.HasPrefix(p, "r/") {
			topic = p
		}
		pub.send(t, topic, qos, p)
	}
}

var takeIDs atomic.Int64

func randomID() string { return fmt.Sprint(takeIDs.Add(1)) }

// queuedOffline waits until node at holds id's session offline with n
// messages in its inflight store (memory durability: the replicated queue
// has them once their PUBACK came).
func queuedOffline(t *testing.T, c *cluster, at int, id string, durability string, n int) {
	t.Helper()
	if durability != "memory" {
		return
	}
	testutil.Eventually(t, waitFor, func() bool {
		cl, ok := c.nodes[at].broker.Clients.Get(id)
		return ok && cl.Closed() && cl.State.Inflight.Len() >= n
	}, "%d messages queued for %s on n%d", n, id, at+1)
}

// notAuthorized is node i's count of messages dropped for the read ACL
// (0 while the reason is unknown).
func notAuthorized(c *cluster, i int) int64 {
	v, ok := c.nodes[i].metrics.drops.m.Load("not_authorized")
	if !ok {
		return 0
	}
	return v.(*atomic.Int64).Load()
}

// TestTakeoverQueuedACL: the audit's case. ruser's session waits offline
// with messages queued; ruser resuming it (same node or, as the load
// balancer may send it, another node) receives all of them; alice taking
// it over with clean start 0 gets session present and none of them, in
// 3.1.1 and 5, with memory and with replicated durability.
func TestTakeoverQueuedACL(t *testing.T) {
	for _, durability := range []string{"memory", "replicated"} {
		t.Run(durability, func(t *testing.T) {
			c := takeoverACLCluster(t, durability)
			for _, tc := range []struct {
				name     string
				from, to int
				v311     bool
				rm       uint16 // the v5 clients' Receive Maximum (0: none)
			}{
				{"same-node-v5", 0, 0, false, 0}, {"same-node-v311", 0, 0, true, 0},
				{"cross-node-v5", 0, 1, false, 0}, {"cross-node-v311", 0, 1, true, 0},
				// beyond it, the node holds messages back from mochi's resend (flow)
				{"same-node-v5-rm1", 0, 0, false, 1}, {"cross-node-v5-rm1", 0, 1, false, 1},
			} {
				t.Run(tc.name, func(t *testing.T) {
					id := "victim-" + durability + "-" + tc.name
					p := func(s string) string { return id + "-" + s }
					as := func(user string) []func(*paho.Connect) {
						o := []func(*paho.Connect){withCreds(user, "pw-"+user)}
						if tc.rm > 0 {
							o = append(o, func(c *paho.Connect) { c.Properties.ReceiveMaximum = &tc.rm })
						}
						return o
					}
					owner := dialV5(t, c.addr(tc.from), id, false, 3600, withCreds("ruser", "pw-ruser"))
					owner.sub(t, "r/ruser/#", 1)
					if err := owner.Disconnect(&paho.Disconnect{}); err != nil {
						t.Fatal(err)
					}
					waitOffline(t, c.nodes[tc.from], id)
					publishAs(t, c, tc.from, 1, p("a0"), p("a1"), p("a2"))
					queuedOffline(t, c, tc.from, id, durability, 3)

					// The owner itself, moving to node to: everything.
					if tc.v311 {
						back := dialV3(t, c.addr(tc.to), id, false, creds3("ruser"))
						if !back.sessionPresent {
							t.Fatal("ruser resuming: session present 0")
						}
						for _, s := range []string{"a0", "a1", "a2"} {
							back.waitPayload(t, p(s))
						}
						back.Disconnect(250)
					} else {
						back := dialV5(t, c.addr(tc.to), id, false, 3600, as("ruser")...)
						if !back.connack.SessionPresent {
							t.Fatal("ruser resuming: session present 0")
						}
						for _, s := range []string{"a0", "a1", "a2"} {
							back.waitPayload(t, p(s))
						}
						if err := back.Disconnect(&paho.Disconnect{}); err != nil {
							t.Fatal(err)
						}
					}
					waitOffline(t, c.nodes[tc.to], id)
					publishAs(t, c, tc.to, 1, p("b0"), p("b1"), p("b2"))
					queuedOffline(t, c, tc.to, id, durability, 3)

					// alice takes it over, on node from (another node
					// than the session's in the cross-node case).
					dropped := notAuthorized(c, tc.from)
					marker := "r/alice/" + id
					var got *inbox
					if tc.v311 {
						alice := dialV3(t, c.addr(tc.from), id, false, creds3("alice"))
						if !alice.sessionPresent {
							t.Fatal("alice taking over: session present 0")
						}
						alice.sub(t, marker, 1)
						got = &alice.inbox
					} else {
						alice := dialV5(t, c.addr(tc.from), id, false, 3600, as("alice")...)
						if !alice.connack.SessionPresent {
							t.Fatal("alice taking over: session present 0")
						}
						alice.sub(t, marker, 1)
						got = &alice.inbox
					}
					// The inherited messages are sent before the SUBACK
					// (mochi) or read from the session's queue before
					// the marker (replicated): once the marker is in,
					// they would be too.
					publishAs(t, c, tc.from, 1, marker)
					got.waitPayload(t, marker)
					for _, m := range got.all() {
						if strings.HasPrefix(m.topic, "r/ruser/") {
							t.Errorf("alice received %s %q, queued for ruser, which she may not read", m.topic, m.payload)
						}
					}
					if durability == "memory" {
						if d := notAuthorized(c, tc.from) - dropped; d < 3 {
							t.Errorf("dropped_total{reason=\"not_authorized\"} rose by %d, want at least 3", d)
						}
					}
				})
			}
		})
	}
}

// TestTakeoverInflightACL: the same for messages in flight to a connected
// session that is taken over live (DISCONNECT 0x8E to the old connection):
// unacknowledged QoS 1/2 PUBLISHes are resent to a new connection of the
// same user, and not to alice's; the PUBREL of a QoS 2 message the old
// connection had PUBRECed (no payload: it only completes the exchange) is
// sent to either.
func TestTakeoverInflightACL(t *testing.T) {
	for _, durability := range []string{"memory", "replicated"} {
		t.Run(durability, func(t *testing.T) {
			c := takeoverACLCluster(t, durability)
			for _, tc := range []struct {
				name     string
				from, to int
			}{{"same-node", 0, 0}, {"cross-node", 0, 1}} {
				t.Run(tc.name, func(t *testing.T) {
					id := "inflight-" + durability + "-" + tc.name
					first, _ := dialRawV5(t, c.addr(tc.from), id, resumeSession(0), rawCreds("ruser"))
					subscribeRaw(t, first, "r/ruser/#", 2)
					publishAs(t, c, tc.from, 1, id+"-p0", id+"-p1")
					publishAs(t, c, tc.from, 2, id+"-p2")
					var rel uint16
					for _, pk := range publishes(t, first, 3) {
						if pk.FixedHeader.Qos == 2 {
							rel = pk.PacketID
							first.send(t, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrec}, PacketID: rel})
						}
					}
					if rel == 0 {
						t.Fatal("no QoS 2 PUBLISH")
					}
					first.expect(t, packets.Pubrel, rel) // nothing acknowledged but the PUBREC

					// ruser again, elsewhere, while the first connection is open.
					second, ack := dialRawV5(t, c.addr(tc.to), id, resumeSession(0), rawCreds("ruser"))
					if !ack.SessionPresent {
						t.Fatal("ruser taking over: session present 0")
					}
					var pubs []string
					gotRel := false
					for len(pubs) < 2 || !gotRel {
						pk, err := second.next()
						if err != nil {
							t.Fatalf("ruser taking over: have %v, PUBREL %v: %v", pubs, gotRel, err)
						}
						switch pk.FixedHeader.Type {
						case packets.Publish:
							pubs = append(pubs, string(pk.Payload))
						case packets.Pubrel:
							gotRel = gotRel || pk.PacketID == rel
						}
					}
					slices.Sort(pubs)
					if strings.Join(pubs, ",") != id+"-p0,"+id+"-p1" {
						t.Fatalf("ruser taking over got %v, want p0 and p1", pubs)
					}

					// alice takes it over from that connection, on node from.
					dropped := notAuthorized(c, tc.from)
					alice, ack := dialRawV5(t, c.addr(tc.from), id, resumeSession(0), rawCreds("alice"))
					if !ack.SessionPresent {
						t.Fatal("alice taking over: session present 0")
					}
					marker := "r/alice/" + id
					alice.send(t, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe}, PacketID: 1,
						Filters: packets.Subscriptions{{Filter: marker, Qos: 1}}})
					gotRel, subacked, sent := false, false, false
					for {
						pk, err := alice.next()
						if err != nil {
							t.Fatalf("alice: no marker (PUBREL %v, SUBACK %v): %v", gotRel, subacked, err)
						}
						switch pk.FixedHeader.Type {
						case packets.Pubrel:
							gotRel = gotRel || pk.PacketID == rel
						case packets.Suback:
							subacked = true
						case packets.Publish:
							if pk.TopicName != marker {
								t.Errorf("alice received %s %q, in flight to ruser, which she may not read", pk.TopicName, pk.Payload)
							}
						}
						if subacked && !sent {
							sent = true
							publishAs(t, c, tc.from, 1, marker)
						}
						if pk.FixedHeader.Type == packets.Publish && pk.TopicName == marker {
							break
						}
					}
					if !gotRel {
						t.Errorf("alice did not get the PUBREL of the QoS 2 exchange ruser had PUBRECed")
					}
					if durability == "memory" || tc.from == tc.to {
						if d := notAuthorized(c, tc.from) - dropped; d < 2 {
							t.Errorf("dropped_total{reason=\"not_authorized\"} rose by %d, want at least 2", d)
						}
					}
				})
			}
		})
	}
}
