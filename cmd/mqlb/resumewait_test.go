package main

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/mqlb/mqlb/internal/testutil"
)

// registryLeader returns the node leading the session registry's stream, as
// node p's admin API reports it ("" while none).
func registryLeader(p *nodeProc) string {
	resp, err := http.Get("http://" + p.admin + "/api/v1/cluster")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var c struct {
		Store []struct {
			Bucket, Leader string
		}
	}
	if json.NewDecoder(resp.Body).Decode(&c) != nil {
		return ""
	}
	for _, s := range c.Store {
		if strings.HasSuffix(s.Bucket, "_sessions") {
			return s.Leader
		}
	}
	return ""
}

// connectOnce makes one MQTT 5 connection attempt (no retry) to addr and
// returns the CONNACK, or the error that kept it from arriving.
func connectOnce(t *testing.T, addr, id string, clean bool) (*paho.Client, *paho.Connack, error) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := paho.NewClient(paho.ClientConfig{ClientID: id, Conn: conn})
	t.Cleanup(func() { conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	expiry := uint32(600)
	ca, err := c.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: clean, KeepAlive: 30,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}})
	return c, ca, err
}

// A client resuming its session while the session registry elects a new
// leader (its leader's node was killed) is held until the registry answers
// and then accepted with its session, instead of being refused with
// "server unavailable" and left to its reconnect backoff.
func TestResumeWaitsForRegistryElection(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	c := startDurableCluster(t, "replicated")
	var leader string
	testutil.Eventually(t, 30*time.Second, func() bool { leader = registryLeader(c.nodes[0]); return leader != "" },
		"session registry has a leader")
	var killed, other *nodeProc
	for _, p := range c.nodes {
		switch {
		case p.name == leader:
			killed = p
		case other == nil:
			other = p
		}
	}
	if killed == nil {
		t.Fatalf("registry leader %q is not one of the nodes", leader)
	}

	cl, _, err := connectOnce(t, other.tcp, "resume-wait", true)
	if err != nil {
		t.Fatalf("first connect: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cl.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "resume/wait", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	if err := cl.Disconnect(&paho.Disconnect{}); err != nil {
		t.Fatal(err)
	}

	killed.kill()
	start := time.Now()
	_, ca, err := connectOnce(t, other.tcp, "resume-wait", false)
	took := time.Since(start)
	if err != nil || ca == nil || ca.ReasonCode != 0 {
		code := -1
		if ca != nil {
			code = int(ca.ReasonCode)
		}
		t.Fatalf("resuming while the registry's leader (%s) was gone: CONNACK %#x after %v, error %v; want success once a new leader is elected",
			leader, code, took.Round(time.Millisecond), err)
	}
	if !ca.SessionPresent {
		t.Errorf("resumed without its session (session present 0) after %v", took)
	}
	t.Logf("registry leader %s killed: resumed with session present after %v", leader, took.Round(time.Millisecond))
}
