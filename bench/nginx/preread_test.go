// Package nginx holds the NGINX side of bench/compare.sh: the njs preread
// function (mqtt.js) that reads the MQTT client id, tested here through a
// real NGINX in front of real brokers.
package nginx

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mqlb/mqlb/internal/mqttwire"
	"github.com/mqlb/mqlb/internal/testutil"
)

const modules = "/usr/lib/nginx/modules"

// startNginx runs NGINX with mqtt.js in front of the brokers and returns
// its address and directory (access.log, error.log).
func startNginx(t *testing.T, brokers ...string) (addr, dir string) {
	t.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		bin = "/usr/sbin/nginx"
	}
	for _, f := range []string{bin, modules + "/ngx_stream_module.so", modules + "/ngx_stream_js_module.so"} {
		if _, err := os.Stat(f); err != nil {
			msg := "needs nginx with its stream and njs modules (apt-get install -y nginx libnginx-mod-stream libnginx-mod-stream-js): " + err.Error()
			if os.Getenv("CI") != "" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
	}
	js, err := filepath.Abs("mqtt.js")
	if err != nil {
		t.Fatal(err)
	}
	dir = t.TempDir()
	// NGINX cannot report a port 0 listener, so it inherits one bound here,
	// as in its binary upgrade: the NGINX variable names the descriptor, and
	// the listen directive with the same address takes it over.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lnFile, err := ln.(*net.TCPListener).File()
	ln.Close() // the duplicate in lnFile keeps the socket listening
	if err != nil {
		t.Fatal(err)
	}
	defer lnFile.Close()
	addr = ln.Addr().String()
	var servers strings.Builder
	for _, b := range brokers {
		fmt.Fprintf(&servers, "        server %s;\n", b)
	}
	conf := fmt.Sprintf(`daemon off;
worker_processes 2;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log info;
load_module %[2]s/ngx_stream_module.so;
load_module %[2]s/ngx_stream_js_module.so;
events { worker_connections 256; }
stream {
    js_import mqtt from %[3]s;
    js_set $mqtt_client_id mqtt.getClientId;
    log_format mqtt '$status $upstream_addr $mqtt_client_id';
    upstream brokers {
        hash $mqtt_client_id consistent;
%[4]s    }
    server {
        listen %[5]s;
        preread_timeout 5s;
        js_preread mqtt.preread;
        proxy_pass brokers;
        access_log %[1]s/access.log mqtt;
    }
}
`, dir, modules, js, servers.String(), addr)
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	out := new(testutil.SyncBuffer)
	cmd := exec.Command(bin, "-p", dir, "-e", filepath.Join(dir, "error.log"), "-c", path)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.ExtraFiles = []*os.File{lnFile} // descriptor 3
	cmd.Env = append(os.Environ(), "NGINX=3;")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // the workers go with the master
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	})
	if !testutil.WaitFor(10*time.Second, func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	}) {
		t.Fatalf("nginx did not listen on %s: %s", addr, out.String())
	}
	return addr, dir
}

// send writes pkt in chunks (separate segments: NGINX's preread sees the
// CONNECT grow) and returns the first four bytes of the answer, or nil when
// NGINX closed the connection without one.
func send(t *testing.T, addr string, pkt []byte, chunks int) []byte {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	step := max(1, (len(pkt)+chunks-1)/chunks)
	for len(pkt) > 0 {
		k := min(step, len(pkt))
		if _, err := c.Write(pkt[:k]); err != nil {
			return nil // closed early: refused
		}
		pkt = pkt[k:]
		if len(pkt) > 0 {
			time.Sleep(20 * time.Millisecond) // stimulus: a CONNECT split across reads
		}
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4)
	n, err := io.ReadFull(c, buf)
	if n == 0 && (err == io.EOF || isReset(err)) {
		return nil
	}
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return buf
}

func isReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection reset")
}

func fileHas(path, s string) bool {
	b, _ := os.ReadFile(path)
	return strings.Contains(string(b), s)
}

// TestPrereadReadsClientID: 3.1, 3.1.1 and 5.0 CONNECTs, whole or split
// across reads, reach a broker and NGINX logs their client id; one client
// id always goes to the same broker (hash consistent on it).
func TestPrereadReadsClientID(t *testing.T) {
	b1, b2 := testutil.StartMochi(t), testutil.StartMochi(t)
	addr, dir := startNginx(t, b1.Addr, b2.Addr)
	cases := []struct {
		name   string
		c      mqttwire.Connect
		chunks int
	}{
		{"v31 (MQIsdp)", mqttwire.Connect{Version: mqttwire.V31, ClientID: "old-31", CleanStart: true, KeepAlive: 30}, 4},
		{"v311 whole", mqttwire.Connect{Version: mqttwire.V311, ClientID: "whole-311", CleanStart: true, KeepAlive: 30}, 1},
		{"v311 byte by byte", mqttwire.Connect{Version: mqttwire.V311, ClientID: "bytes-311", CleanStart: true, KeepAlive: 30}, 1000},
		{"v5 with properties, split", mqttwire.Connect{Version: mqttwire.V5, ClientID: "split-5", CleanStart: true, SessionExpiry: 60}, 5},
		{"v5 utf-8 id, byte by byte", mqttwire.Connect{Version: mqttwire.V5, ClientID: "gerät-5", CleanStart: true}, 1000},
		{"v311 long id", mqttwire.Connect{Version: mqttwire.V311, ClientID: strings.Repeat("L", 300), CleanStart: true}, 3},
		{"v311 with username and password", mqttwire.Connect{Version: mqttwire.V311, ClientID: "user-311", CleanStart: true,
			Username: "u", HasUsername: true, Password: []byte("p"), HasPassword: true}, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := send(t, addr, mqttwire.AppendConnect(nil, &tc.c), tc.chunks)
			if got == nil || got[0] != 0x20 {
				t.Fatalf("answer % x, want a CONNACK", got)
			}
			b1n, b2n := len(b1.ConnectsOf(tc.c.ClientID)), len(b2.ConnectsOf(tc.c.ClientID))
			if b1n+b2n != 1 {
				t.Fatalf("brokers saw %d and %d CONNECTs from %q, want one", b1n, b2n, tc.c.ClientID)
			}
			want := " " + tc.c.ClientID
			if tc.c.ClientID == "gerät-5" {
				want = ` ger\xC3\xA4t-5` // NGINX escapes non-ASCII bytes in logs
			}
			testutil.Eventually(t, 5*time.Second, func() bool { return fileHas(filepath.Join(dir, "access.log"), want+"\n") },
				"access log has no line ending in %q", want)
		})
	}
	// Stickiness: every reconnect of an id lands on the broker it hashed to.
	for i := range 6 {
		id := fmt.Sprintf("sticky-%d", i)
		for range 3 {
			if got := send(t, addr, mqttwire.AppendConnect(nil, &mqttwire.Connect{Version: mqttwire.V311, ClientID: id, CleanStart: true}), 1); got == nil || got[0] != 0x20 {
				t.Fatalf("%s: answer % x", id, got)
			}
		}
		if n1, n2 := len(b1.ConnectsOf(id)), len(b2.ConnectsOf(id)); n1*n2 != 0 || n1+n2 != 3 {
			t.Errorf("%s: %d CONNECTs on broker 1 and %d on broker 2, want all 3 on one", id, n1, n2)
		}
	}
}

// TestPrereadRefusesNonMQTT: what is not a valid CONNECT never reaches a
// broker, as HAProxy's mqtt_is_valid rule.
func TestPrereadRefusesNonMQTT(t *testing.T) {
	b := testutil.StartMochi(t)
	addr, dir := startNginx(t, b.Addr)
	valid := mqttwire.AppendConnect(nil, &mqttwire.Connect{Version: mqttwire.V311, ClientID: "ok", CleanStart: true})
	cases := map[string][]byte{
		"http":              []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
		"subscribe":         {0x82, 0x06, 0, 1, 0, 1, 'a', 0},
		"flags in byte 1":   append([]byte{0x11}, valid[1:]...),
		"5-byte length":     {0x10, 0xff, 0xff, 0xff, 0xff, 0x7f},
		"reserved flag":     {0x10, 0x0e, 0, 4, 'M', 'Q', 'T', 'T', 4, 3, 0, 30, 0, 2, 'i', 'd'},
		"unknown level":     {0x10, 0x0e, 0, 4, 'M', 'Q', 'T', 'T', 9, 2, 0, 30, 0, 2, 'i', 'd'},
		"id beyond packet":  {0x10, 0x0e, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 30, 0, 9, 'i', 'd'},
		"bad protocol name": {0x10, 0x0e, 0, 4, 'M', 'Q', 'X', 'X', 4, 2, 0, 30, 0, 2, 'i', 'd'},
	}
	for name, pkt := range cases {
		t.Run(name, func(t *testing.T) {
			if got := send(t, addr, pkt, 1); got != nil {
				t.Fatalf("answer % x; want the connection closed", got)
			}
		})
	}
	if n := b.ConnectCount(); n != 0 {
		t.Fatalf("the broker accepted %d CONNECTs; none of these may reach it", n)
	}
	testutil.Eventually(t, 5*time.Second, func() bool { return fileHas(filepath.Join(dir, "error.log"), "mqtt: refused") },
		"error log says nothing about refusals")
	// A client that closes mid-CONNECT is refused too, and a valid one passes.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.Write(valid[:5])
	c.(*net.TCPConn).CloseWrite()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if rest, err := io.ReadAll(c); err != nil && !isReset(err) || len(rest) != 0 {
		t.Fatalf("half a CONNECT then EOF: read % x, %v; want a plain close", rest, err)
	}
	c.Close()
	if got := send(t, addr, valid, 1); got == nil || got[0] != 0x20 {
		t.Fatalf("valid CONNECT: answer % x", got)
	}
}
