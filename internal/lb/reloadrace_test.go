package lb

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mqlb/mqlb/internal/config"
	"github.com/mqlb/mqlb/internal/mqttwire"
)

// TestReloadRenamingUpstreamUnderConnects: reloads that rename the
// listener's upstream, back and forth, while 500 clients connect (ten
// times each, to hit the moment between two swaps often). Every
// connection sees one config generation: no panic, every client gets its
// CONNACK. (The one broker, in-process under -race beside the rest of a
// test run, is given 9 s to answer: a CONNACK later than the default 3 s
// is the machine's, and this test is about the reloads.)
func TestReloadRenamingUpstreamUnderConnects(t *testing.T) {
	h := newHarness(t, harnessOpts{brokers: 1, upstream: "    health_check: { type: none }\n"})
	var cfgs []*config.Config
	for _, name := range []string{"red", "blue"} {
		f := filepath.Join(t.TempDir(), name+".yaml")
		yaml := fmt.Sprintf("listeners:\n  - { name: mqtt, address: %q, upstream: %s }\n"+
			"upstreams:\n  %s:\n    health_check: { type: none }\n    connack_timeout: 9s\n    servers: [{ name: b0, address: %q }]\n"+
			"admin: { address: \"127.0.0.1:0\" }\naccess_log: { path: %q }\n", "127.0.0.1:0", name, name, h.brokers[0].Addr, h.access)
		os.WriteFile(f, []byte(yaml), 0o600)
		cfg, err := config.Load(f)
		if err != nil {
			t.Fatal(err)
		}
		cfgs = append(cfgs, cfg)
	}
	stop := make(chan struct{})
	var reloads atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := h.lb.Apply(cfgs[i%2]); err != nil {
				t.Errorf("reload: %v", err)
				return
			}
			reloads.Add(1)
		}
	}()
	const rounds = 10 // connections per client
	var wg sync.WaitGroup
	var failed atomic.Int64
	var errMu sync.Mutex
	var firstErr error
	for i := range 500 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range rounds {
				if err := connectOnce(h.addr, fmt.Sprint("renamed-", i, "-", j)); err != nil {
					failed.Add(1)
					errMu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					errMu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-done
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d of %d connections got no CONNACK 0 during %d reloads; first: %v\nrefusals:\n%s", n, 500*rounds, reloads.Load(), firstErr,
			grepLines(h.accessLog(), "reason=\"no server"))
	}
	t.Logf("%d reloads while 500 clients connected %d times each", reloads.Load(), rounds)
}

// connectOnce connects as id, expects CONNACK 0 and closes.
func connectOnce(addr, id string) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(mqttwire.AppendConnect(nil, &mqttwire.Connect{Version: 4, CleanStart: true, ClientID: id, KeepAlive: 30})); err != nil {
		return err
	}
	b := make([]byte, 4)
	if _, err := io.ReadFull(c, b); err != nil {
		return fmt.Errorf("%s: %w", id, err)
	}
	if string(b) != "\x20\x02\x00\x00" {
		return fmt.Errorf("%s: CONNACK % x", id, b)
	}
	return nil
}
