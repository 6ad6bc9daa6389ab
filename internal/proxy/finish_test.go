package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mqlb/mqlb/internal/config"
	"github.com/mqlb/mqlb/internal/listener"
	"github.com/mqlb/mqlb/internal/mqttwire"
	"github.com/mqlb/mqlb/internal/rebalance"
	"github.com/mqlb/mqlb/internal/testutil"
	"github.com/mqlb/mqlb/internal/upstream"
)

// rawBroker answers each CONNECT by client id: "refuse-*" gets CONNACK
// 0x05, "vanish-*" a close before any CONNACK, anyone else CONNACK 0 and
// then an echo of what it sends.
func rawBroker(t *testing.T) string {
	return testutil.Serve(t, func(c net.Conn) { go serveRaw(c) })
}

func serveRaw(c net.Conn) {
	defer c.Close()
	cn, _, err := mqttwire.ReadConnect(c, nil, 1<<16)
	switch {
	case err != nil || strings.HasPrefix(cn.ClientID, "vanish-"):
		return
	case strings.HasPrefix(cn.ClientID, "refuse-"):
		c.Write(mqttwire.AppendConnack(nil, cn.Version, false, mqttwire.Code3NotAuthorized))
		return
	}
	c.Write(mqttwire.AppendConnack(nil, cn.Version, false, 0))
	io.Copy(c, c)
}

// newTestProxy is a proxy with one listener ("k") in front of addr.
func newTestProxy(t *testing.T, addr string) (*Proxy, string, string) {
	dir := t.TempDir()
	access := filepath.Join(dir, "access.log")
	cfg, err := config.Parse([]byte("listeners: [{ name: l, address: \"127.0.0.1:0\", upstream: u }]\n" +
		"upstreams:\n  u:\n    connect_retries: 0\n    health_check: { type: none }\n    servers: [{ name: s, address: \"" + addr + "\" }]\n" +
		"access_log: { path: \"" + access + "\" }\n"))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	ups, err := upstream.Build(cfg, nil, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	set, _ := listener.NewSettings(cfg.Listeners[0])
	alog, err := OpenAccessLog(cfg.AccessLog)
	if err != nil {
		t.Fatal(err)
	}
	rt, err := NewRuntime(ups, map[string]*listener.Settings{"k": set}, cfg.Limits, alog, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := New(rt, NewMetrics(), log)
	ln, err := listener.Listen("127.0.0.1:0", "l", log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go ln.Serve(func(c *net.TCPConn) { p.Handle("k", c) })
	return p, ln.Addr().String(), access
}

// TestEveryConnectionFinishesOnce: however a connection ends, it is
// finished exactly once: one access-log line, one count, its server
// released, and nothing left in any gauge.
func TestEveryConnectionFinishesOnce(t *testing.T) {
	p, addr, access := newTestProxy(t, rawBroker(t))
	dial := func(b []byte) net.Conn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write(b)
		return c
	}
	connect := func(id string) []byte {
		return mqttwire.AppendConnect(nil, &mqttwire.Connect{Version: mqttwire.V311, ClientID: id, CleanStart: true, KeepAlive: 30})
	}
	answer := func(c net.Conn) { io.ReadAll(c); c.Close() } // until the load balancer closes
	ends := map[string]func(){
		"not_mqtt":          func() { answer(dial([]byte("GET / HTTP/1.1\r\n\r\n"))) },
		"refused_by_server": func() { answer(dial(connect("refuse-1"))) },
		"no_server":         func() { answer(dial(connect("vanish-1"))) },
		"ok": func() {
			c := dial(connect("relay-1"))
			io.ReadFull(c, make([]byte, 4))
			c.Write([]byte{0xc0, 0}) // PINGREQ, echoed by the raw broker
			io.ReadFull(c, make([]byte, 2))
			c.Close()
		},
	}
	for _, end := range ends {
		end()
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return p.Active() == 0 }, "%d connections still active", p.Active())
	counts := map[string]uint64{}
	p.metrics.Results(func(_, r string, n uint64) { counts[r] += n })
	lines := logLines(t, access)
	for result := range ends {
		if counts[result] != 1 {
			t.Errorf("%s counted %d times", result, counts[result])
		}
		if n := strings.Count(lines, "result="+result); n != 1 {
			t.Errorf("%s: %d access-log lines", result, n)
		}
	}
	if n := strings.Count(lines, "\n"); n != len(ends) {
		t.Errorf("%d access-log lines for %d connections:\n%s", n, len(ends), lines)
	}
	s := p.Runtime().Upstreams.Get("u").Server("s")
	if in, out := s.ClosedBytes(); s.Active() != 0 || in == 0 || out == 0 {
		t.Errorf("server: %d active, bytes %d/%d after every connection ended", s.Active(), in, out)
	}
	if p.Pending() != 0 || p.Conns().Len() != 0 {
		t.Errorf("pending %d, listed %d", p.Pending(), p.Conns().Len())
	}
}

func logLines(t *testing.T, file string) string {
	var b strings.Builder
	testutil.Eventually(t, 5*time.Second, func() bool {
		f, err := os.Open(file)
		if err != nil {
			return false
		}
		defer f.Close()
		b.Reset()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			b.WriteString(sc.Text() + "\n")
		}
		return true
	}, "access log")
	return b.String()
}

// TestCloseByServer: closing the movable connections of an upstream (what
// a rebalancer or an evacuation does) closes both sides of each, and each
// then finishes, its lease released, logged with the reason it was closed
// for.
func TestCloseByServer(t *testing.T) {
	p, addr, access := newTestProxy(t, rawBroker(t))
	var clients []net.Conn
	for _, id := range []string{"a", "b", "c"} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write(mqttwire.AppendConnect(nil, &mqttwire.Connect{Version: mqttwire.V311, ClientID: id, CleanStart: true, KeepAlive: 30}))
		if _, err := io.ReadFull(c, make([]byte, 4)); err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	s := p.Runtime().Upstreams.Get("u").Server("s")
	testutil.Eventually(t, 5*time.Second, func() bool { return len(p.Conns().Movable("u")) == 3 }, "3 movable connections")
	for _, c := range p.Conns().Movable("u") {
		if c.Server != "s" || c.Key.ClientID == "" {
			t.Errorf("movable connection on %q keyed %+v", c.Server, c.Key)
		}
		c.Close(rebalance.ReasonEvacuated)
	}
	for _, c := range clients {
		if _, err := c.Read(make([]byte, 1)); err != io.EOF {
			t.Errorf("client read %v after it was closed, want EOF", err)
		}
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return p.Active() == 0 && s.Active() == 0 }, "all finished")
	b, _ := os.ReadFile(access)
	if n := strings.Count(string(b), `reason="evacuated"`); n != 3 {
		t.Errorf("%d of 3 connections closed by an evacuation logged reason=\"evacuated\":\n%s", n, b)
	}
}

// TestCloseReasons: a connection the load balancer closes is logged with
// why: CloseFor's reason (an admin kick), and "closed" for a close without
// one (the end of the shutdown grace).
func TestCloseReasons(t *testing.T) {
	p, addr, access := newTestProxy(t, rawBroker(t))
	var clients []net.Conn
	for _, id := range []string{"kick", "stay"} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write(mqttwire.AppendConnect(nil, &mqttwire.Connect{Version: mqttwire.V311, ClientID: id, CleanStart: true, KeepAlive: 30}))
		if _, err := io.ReadFull(c, make([]byte, 4)); err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return p.Conns().Len() == 2 }, "2 connections relayed")
	for _, c := range p.Conns().List("kick") {
		c.CloseFor(ReasonKicked)
	}
	if _, err := clients[0].Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("kicked client read %v, want EOF", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // no grace: close the rest at once
	p.Shutdown(ctx)
	want := map[string]string{"kick": `reason="kicked"`, "stay": `reason="closed"`}
	b, _ := os.ReadFile(access)
	for id, reason := range want {
		var line string
		for _, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, `client_id="`+id+`"`) {
				line = l
			}
		}
		if !strings.Contains(line, reason) {
			t.Errorf("%s logged as %q; want %s", id, line, reason)
		}
	}
}

// TestHandleAfterShutdown: a connection accepted just before its listener
// closed can reach Handle after Shutdown began to wait (the race detector
// saw the WaitGroup added to while waited on). It is closed unserved, and
// nothing is counted.
func TestHandleAfterShutdown(t *testing.T) {
	p, _, _ := newTestProxy(t, rawBroker(t))
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	lc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	c.Write(mqttwire.AppendConnect(nil, &mqttwire.Connect{Version: mqttwire.V311, ClientID: "late", CleanStart: true, KeepAlive: 30}))
	p.Handle("k", lc)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 4)); n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("client read %d, %v; want the connection closed unanswered (EOF or reset)", n, err)
	}
	if p.Active() != 0 {
		t.Errorf("%d connections active", p.Active())
	}
}
