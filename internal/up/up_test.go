package up

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/mqlb/mqlb/internal/testutil"
)

// TestUpDeliversAcrossNodes runs the system and checks, with mosquitto's
// clients, that a subscriber gets messages published through the load
// balancer and straight to any node, and that Ctrl-C (ctx) stops it all
// without a warning or an error logged on the way.
func TestUpDeliversAcrossNodes(t *testing.T) {
	testutil.NeedCommand(t, "mosquitto_sub")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logs := new(testutil.SyncBuffer)
	log := slog.New(slog.NewTextHandler(io.MultiWriter(os.Stderr, logs), &slog.HandlerOptions{Level: slog.LevelWarn}))
	sys, err := Start(ctx, Options{Listen: "127.0.0.1:0", Admin: "127.0.0.1:0", Log: log})
	if err != nil {
		t.Fatal(err)
	}
	var desc bytes.Buffer
	sys.Describe(&desc)
	for _, want := range []string{"load balancer  mqtt://127.0.0.1:", "node3", "mosquitto_sub"} {
		if !strings.Contains(desc.String(), want) {
			t.Errorf("description lacks %q:\n%s", want, desc.String())
		}
	}
	done := make(chan error, 1)
	go func() { done <- sys.Run(ctx) }()
	lbAddr := sys.LB.ListenerAddr("mqtt")
	targets := []string{lbAddr}
	for _, n := range sys.Nodes {
		targets = append(targets, n.ListenerAddr("mqtt"))
	}
	// One subscriber through the LB, one straight on node 1.
	subs := []*subscriber{subscribe(t, lbAddr, "up-sub-lb"), subscribe(t, targets[1], "up-sub-n1")}
	for i, addr := range targets {
		publish(t, addr, fmt.Sprint("up-pub-", i), fmt.Sprint("a/", i), fmt.Sprint("msg-", i))
	}
	for _, s := range subs {
		for i := range targets {
			testutil.Eventually(t, 10*time.Second, func() bool { return strings.Contains(s.out.String(), fmt.Sprint("a/", i, " msg-", i)) },
				"%s got the message published via %s:\n%s", s.id, targets[i], s.out.String())
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("mqlb up did not stop")
	}
	if _, err := net.DialTimeout("tcp", lbAddr, time.Second); err == nil {
		t.Error("load balancer still listening after stop")
	}
	if _, err := os.Stat(sys.opt.DataDir); !os.IsNotExist(err) {
		t.Errorf("temporary data directory left behind: %v", err)
	}
	if l := logs.String(); l != "" {
		t.Errorf("warnings or errors logged by a healthy run and a clean stop:\n%s", l)
	}
}

type subscriber struct {
	id  string
	cmd *exec.Cmd
	out *testutil.SyncBuffer
}

// subscribe starts mosquitto_sub on a/# and waits until its subscription is
// in place (a probe message arrives).
func subscribe(t *testing.T, addr, id string) *subscriber {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	s := &subscriber{id: id, out: new(testutil.SyncBuffer)}
	s.cmd = exec.Command("mosquitto_sub", "-h", host, "-p", port, "-i", id, "-t", "a/#", "-t", "probe/"+id, "-q", "1", "-v")
	s.cmd.Stdout = s.out
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.cmd.Process.Kill(); s.cmd.Wait() })
	testutil.Eventually(t, 20*time.Second, func() bool {
		publish(t, addr, id+"-probe", "probe/"+id, "ready")
		return strings.Contains(s.out.String(), "probe/"+id)
	}, "%s subscribed", id)
	return s
}

func publish(t *testing.T, addr, id, topic, msg string) {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	if b, err := exec.Command("mosquitto_pub", "-h", host, "-p", port, "-i", id, "-t", topic, "-m", msg, "-q", "1").CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub via %s: %v %s", addr, err, b)
	}
}
