package bench

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqlb/mqlb/internal/testutil"
)

func target(t *testing.T, addr string, v5 bool) Target {
	t.Helper()
	tg, err := ParseTarget("mqtt://"+addr, v5, false, "")
	if err != nil {
		t.Fatal(err)
	}
	return tg
}

func connConfig(tg Target, clients int) ConnConfig {
	return ConnConfig{Target: tg, Clients: clients, Concurrency: 16, Timeout: D(5 * time.Second),
		KeepAlive: D(time.Minute), Prefix: "conn-"}
}

func TestConnOpensExactlyN(t *testing.T) {
	for _, v5 := range []bool{false, true} {
		b := testutil.StartMochi(t)
		cfg := connConfig(target(t, b.Addr, v5), 300)
		res, err := RunConn(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if res.Attempted != 300 || res.Connected != 300 || res.Failed != 0 || res.Latency.Count != 300 {
			t.Errorf("v5=%v: attempted %d connected %d failed %d (%v) latencies %d; want 300 connected",
				v5, res.Attempted, res.Connected, res.Failed, res.Failures, res.Latency.Count)
		}
		if n := b.ConnectCount(); n != 300 {
			t.Errorf("v5=%v: the broker accepted %d CONNECTs, want 300", v5, n)
		}
		if len(b.ConnectsOf("conn-0")) != 1 || len(b.ConnectsOf("conn-299")) != 1 {
			t.Errorf("v5=%v: client ids are not prefix+index", v5)
		}
		if res.ConnectRate <= 0 || res.TimeToAll <= 0 || res.Latency.P99 < res.Latency.P50 {
			t.Errorf("v5=%v: rate %v time %v latency %+v", v5, res.ConnectRate, res.TimeToAll, res.Latency)
		}
	}
}

func TestConnRateAndSourceAddrs(t *testing.T) {
	b := testutil.StartMochi(t)
	cfg := connConfig(target(t, b.Addr, false), 40)
	cfg.Rate = 400 // 40 connections: the last is due 97.5ms after the first
	cfg.Target.SourceAddrs = []netip.Addr{netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.3")}
	res, err := RunConn(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Connected != 40 {
		t.Fatalf("connected %d, want 40 (%v)", res.Connected, res.Failures)
	}
	if res.TimeToAll < 0.0975 {
		t.Errorf("40 connections at 400/s took %.3fs: the rate was not kept", res.TimeToAll)
	}
	from := map[string]int{}
	for _, c := range b.Connects() {
		host, _, _ := net.SplitHostPort(c.Remote)
		from[host]++
	}
	if from["127.0.0.2"] != 20 || from["127.0.0.3"] != 20 {
		t.Errorf("connections came from %v, want 20 each from 127.0.0.2 and 127.0.0.3", from)
	}
}

// denyAll refuses every CONNECT.
type denyAll struct{ mqtt.HookBase }

func (denyAll) ID() string                                              { return "deny-all" }
func (denyAll) Provides(b byte) bool                                    { return b == mqtt.OnConnectAuthenticate }
func (denyAll) OnConnectAuthenticate(*mqtt.Client, packets.Packet) bool { return false }

func TestConnCountsRefusals(t *testing.T) {
	b := testutil.StartMochi(t, testutil.WithAuthHook(new(denyAll)))
	res, err := RunConn(context.Background(), connConfig(target(t, b.Addr, false), 10))
	if err != nil {
		t.Fatal(err)
	}
	if res.Connected != 0 || res.Failed != 10 || res.Failures["refused 0x05 (not authorized)"] != 10 {
		t.Errorf("connected %d failed %d %v; want 10 refused with 0x05", res.Connected, res.Failed, res.Failures)
	}
}

func TestConnDialFailure(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	res, err := RunConn(context.Background(), connConfig(target(t, addr, false), 3))
	if err != nil {
		t.Fatal(err)
	}
	if res.Failed != 3 || res.Failures["dial: connection refused"] != 3 {
		t.Errorf("failures %v, want 3 × dial: connection refused", res.Failures)
	}
}

// TestConnHoldCountsDropped holds connections, stops the broker under them
// and interrupts the hold: every held connection counts as dropped.
func TestConnHoldCountsDropped(t *testing.T) {
	b := testutil.StartMochi(t)
	cfg := connConfig(target(t, b.Addr, false), 20)
	cfg.Hold = D(time.Minute)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan *ConnResult, 1)
	go func() { res, _ := RunConn(ctx, cfg); done <- res }()
	testutil.Eventually(t, 5*time.Second, func() bool { return b.ConnectCount() == 20 }, "20 connections")
	b.Stop()
	_, port, _ := net.SplitHostPort(b.Addr)
	testutil.Eventually(t, 5*time.Second, func() bool { return closeWaits(t, port) == 20 },
		"20 client sockets in CLOSE_WAIT (the broker closed them)")
	cancel()
	res := <-done
	if res.Connected != 20 || res.Dropped != 20 || !res.Interrupted {
		t.Errorf("connected %d dropped %d interrupted %v; want 20 dropped of 20", res.Connected, res.Dropped, res.Interrupted)
	}
}

func pubsubConfig(tg Target, client string, qos byte) PubSubConfig {
	return PubSubConfig{PubTarget: tg, SubTarget: tg, Publishers: 3, Subscribers: 4, Topics: 2, QoS: qos, Size: 100,
		Rate: 1000, Duration: D(300 * time.Millisecond), Inflight: 10, Drain: D(5 * time.Second),
		Timeout: D(5 * time.Second), Prefix: "ps-", Client: client}
}

// TestPubSubNoLoss runs small QoS 1 and 2 loads through a mochi broker with
// each client and protocol version: every expected delivery must arrive,
// once, in order.
func TestPubSubNoLoss(t *testing.T) {
	b := testutil.StartMochi(t)
	for i, tc := range []struct {
		client string
		v5     bool
		qos    byte
	}{
		{ClientLite, false, 1}, {ClientLite, true, 1}, {ClientLite, false, 2}, {ClientLite, true, 2},
		{ClientPaho, false, 1}, {ClientPaho, true, 1},
	} {
		cfg := pubsubConfig(target(t, b.Addr, tc.v5), tc.client, tc.qos)
		// Fresh client ids per case: mochi removes a client id's
		// subscriptions when its earlier connection's clean session ends,
		// which can come after the next case's subscriber under that id
		// subscribed (493 of 1,396 lost in one run of make test).
		cfg.Prefix = fmt.Sprintf("ps%d-", i)
		res, err := RunPubSub(context.Background(), cfg)
		if err != nil {
			t.Fatalf("%s v5=%v QoS %d: %v", tc.client, tc.v5, tc.qos, err)
		}
		checkComplete(t, res, 2)
	}
}

// checkComplete fails unless every published message arrived copies times,
// once each and in order.
func checkComplete(t *testing.T, res *PubSubResult, copies int64) {
	t.Helper()
	c := res.Config
	name := c.Client + " " + versionName(c.PubTarget.Version) + " QoS " + string('0'+c.QoS)
	if res.Published < 100 || res.Expected != copies*res.Published || res.Received != res.Expected {
		t.Errorf("%s: published %d expected %d received %d", name, res.Published, res.Expected, res.Received)
	}
	if res.Lost+res.Duplicated+res.OutOfOrder+res.Unexpected+res.Foreign+res.PublishErrors+res.ConnectionsLost != 0 {
		t.Errorf("%s: %+v errors %v", name, res.Counts, res.Errors)
	}
	if res.Latency.Count != uint64(res.Received) || res.SentRate <= 0 || res.ReceivedRate <= 0 {
		t.Errorf("%s: latency samples %d, rates %v / %v", name, res.Latency.Count, res.SentRate, res.ReceivedRate)
	}
}

func TestPubSubShared(t *testing.T) {
	b := testutil.StartMochi(t)
	cfg := pubsubConfig(target(t, b.Addr, true), ClientLite, 1)
	cfg.Shared = "g"
	res, err := RunPubSub(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	checkComplete(t, res, 1)
}

// TestPubSubSeparateTargets sends publishers to one broker and subscribers
// to another; the two are not bridged, so every delivery is lost.
func TestPubSubSeparateTargets(t *testing.T) {
	pubB, subB := testutil.StartMochi(t), testutil.StartMochi(t)
	cfg := pubsubConfig(target(t, pubB.Addr, false), ClientLite, 0)
	cfg.SubTarget = target(t, subB.Addr, false)
	cfg.Drain = D(0)
	res, err := RunPubSub(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Published == 0 || res.Received != 0 || res.Lost != res.Expected {
		t.Errorf("published %d received %d lost %d of %d", res.Published, res.Received, res.Lost, res.Expected)
	}
	if len(pubB.ConnectsOf("ps-p0")) != 1 || len(subB.ConnectsOf("ps-s0")) != 1 ||
		len(pubB.ConnectsOf("ps-s0")) != 0 || len(subB.ConnectsOf("ps-p0")) != 0 {
		t.Errorf("publishers went to %v, subscribers to %v", pubB.Connects(), subB.Connects())
	}
}

// closeWaits counts this machine's IPv4 TCP sockets in CLOSE_WAIT whose peer
// port is port (/proc/net/tcp: state 08 means the peer's FIN arrived).
func closeWaits(t *testing.T, port string) int {
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Skipf("no /proc/net/tcp: %v", err)
	}
	p, _ := strconv.Atoi(port)
	want := fmt.Sprintf(":%04X", p)
	n := 0
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 3 && strings.HasSuffix(f[2], want) && f[3] == "08" {
			n++
		}
	}
	return n
}

// denyIDs refuses CONNECTs whose client id starts with prefix.
type denyIDs struct {
	mqtt.HookBase
	prefix string
}

func (denyIDs) ID() string { return "deny-ids" }
func (denyIDs) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck
}
func (denyIDs) OnACLCheck(*mqtt.Client, string, bool) bool { return true }
func (d denyIDs) OnConnectAuthenticate(cl *mqtt.Client, _ packets.Packet) bool {
	return !strings.HasPrefix(cl.ID, d.prefix)
}

// TestPubSubSetupFailure: publishers that cannot connect fail the run with
// an error, and the subscribers that did connect are disconnected.
func TestPubSubSetupFailure(t *testing.T) {
	b := testutil.StartMochi(t, testutil.WithAuthHook(&denyIDs{prefix: "ps-p"}))
	for _, kind := range []string{ClientLite, ClientPaho} {
		_, err := RunPubSub(context.Background(), pubsubConfig(target(t, b.Addr, false), kind, 1))
		if err == nil || !strings.Contains(err.Error(), "ps-p") {
			t.Errorf("%s: err = %v, want a connect error naming a publisher", kind, err)
		}
		testutil.Eventually(t, 5*time.Second, func() bool { return !b.HasClient("ps-s0") && !b.HasClient("ps-s3") },
			"%s: subscribers still connected", kind)
	}
}

// TestTLS runs both modes over TLS, verifying the server with --ca.
func TestTLS(t *testing.T) {
	ca := testutil.NewCA(t)
	srv := ca.Server("broker")
	b := testutil.StartMochi(t, testutil.WithListenerWrap(func(ln net.Listener) net.Listener {
		return tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{srv.TLS}})
	}))
	tg, err := ParseTarget("mqtts://"+b.Addr, false, false, ca.CAFile())
	if err != nil {
		t.Fatal(err)
	}
	res, err := RunConn(context.Background(), connConfig(tg, 20))
	if err != nil || res.Connected != 20 {
		t.Fatalf("conn over TLS: %v, %+v", err, res)
	}
	ps, err := RunPubSub(context.Background(), pubsubConfig(tg, ClientLite, 1))
	if err != nil {
		t.Fatal(err)
	}
	checkComplete(t, ps, 2)

	untrusted, _ := ParseTarget("mqtts://"+b.Addr, false, false, "")
	res, _ = RunConn(context.Background(), connConfig(untrusted, 2))
	if res.Failed != 2 || !strings.HasPrefix(sortedReasons(res.Failures)[0], "tls: ") {
		t.Errorf("without the CA: %v, want tls failures", res.Failures)
	}
}

// TestPubSubPersistentSessionsEnded: a run with persistent subscribers ends
// their sessions, so that the next run on the same topics does not queue
// its messages for them too (nodes.sh's rounds slowed down run after run).
func TestPubSubPersistentSessionsEnded(t *testing.T) {
	b := testutil.StartMochi(t)
	for _, v5 := range []bool{false, true} {
		cfg := pubsubConfig(target(t, b.Addr, v5), ClientLite, 1)
		cfg.Persistent = true
		cfg.Prefix = fmt.Sprintf("ended-v5-%v-", v5)
		res, err := RunPubSub(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		checkComplete(t, res, 2)
		for i := range cfg.Subscribers {
			id := cfg.Prefix + "s" + strconv.Itoa(i)
			testutil.Eventually(t, 5*time.Second, func() bool {
				_, kept := b.Server.Clients.Get(id)
				return !kept
			}, "v5=%v: session %s ended after the run", v5, id)
		}
	}
}

// TestPubSubRefusesBadShareName: --shared a/b subscribed to
// $share/a/b/bench/+ (group "a", filter b/bench/+), got nothing and, at QoS
// 0, exited 0. A group name with '/', '+' or '#' is refused before any
// client connects.
func TestPubSubRefusesBadShareName(t *testing.T) {
	for _, g := range []string{"a/b", "+", "#", "g#", "x+y"} {
		cfg := pubsubConfig(target(t, "127.0.0.1:1", false), ClientLite, 0)
		cfg.Shared = g
		_, err := RunPubSub(context.Background(), cfg)
		want := fmt.Sprintf("--shared %q: a share name must not contain '/', '+' or '#'", g)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("--shared %q: err = %v, want %q", g, err, want)
		}
	}
}
