package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mqlb/mqlb/internal/testutil"
)

// TestMain lets the test binary act as the mqlb command: when MQLB_AS_MAIN
// is set it runs main with the remaining arguments.
func TestMain(m *testing.M) {
	if os.Getenv("MQLB_AS_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func mqlb(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "MQLB_AS_MAIN=1")
	return cmd
}

func TestVersion(t *testing.T) {
	out, err := mqlb("version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "mqlb ") || !strings.Contains(string(out), "go1.") {
		t.Fatalf("%v: %s", err, out)
	}
}

func TestCheckExample(t *testing.T) {
	out, err := mqlb("check", "-c", "../../examples/mqlb.yaml").CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	for _, want := range []string{"valid load balancer config", "brokers: balance client_id", "node1", "admin: 127.0.0.1:9090"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
}

func TestCheckNodeExample(t *testing.T) {
	out, err := mqlb("check", "-c", "../../examples/node.yaml").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "valid node config") || !strings.Contains(string(out), "mesh") {
		t.Fatalf("%v: %s", err, out)
	}
}

func TestCheckInvalid(t *testing.T) {
	f := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(f, []byte("listeners:\n  - { address: \"127.0.0.1:1883\", upstream: brokers }\nupstreams:\n  brokers:\n    balance: clientid\n    servers: [{ address: \"127.0.0.1:1\" }]\n"), 0o600)
	cmd := mqlb("check", "-c", f)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("exit %v, want status 1", err)
	}
	if !strings.Contains(stderr.String(), `upstreams.brokers.balance (line 5): unknown policy "clientid"`) {
		t.Errorf("stderr: %s", stderr.String())
	}
}

func TestUnknownCommand(t *testing.T) {
	err := mqlb("frobnicate").Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
		t.Fatalf("exit %v, want status 2", err)
	}
}

// logged waits until the process log has a line matching re and returns
// re's first group in it: how a process that bound port 0 reports its address.
func logged(t *testing.T, log *testutil.SyncBuffer, re string) string {
	t.Helper()
	var m []string
	rx := regexp.MustCompile(re)
	testutil.Eventually(t, 30*time.Second, func() bool { m = rx.FindStringSubmatch(log.String()); return m != nil },
		"log line %s; log:\n%s", re, log.String())
	return m[1]
}

// TestRunReloadsOnSIGHUPAndStopsOnSIGTERM runs `mqlb run` as a process.
func TestRunReloadsOnSIGHUPAndStopsOnSIGTERM(t *testing.T) {
	b := testutil.StartMochi(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "mqlb.yaml")
	write := func(policy string) {
		cfg := fmt.Sprintf("listeners: [{ name: mqtt, address: \"127.0.0.1:0\", upstream: brokers }]\n"+
			"upstreams:\n  brokers:\n    balance: %s\n    servers: [{ name: one, address: %q }]\n"+
			"admin: { address: \"127.0.0.1:0\" }\naccess_log: { path: \"off\" }\n", policy, b.Addr)
		os.WriteFile(file, []byte(cfg), 0o600)
	}
	write("client_id")
	cmd := mqlb("run", "-c", file)
	stderr := new(testutil.SyncBuffer)
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	admin := logged(t, stderr, `msg="load balancer running".* admin=(\S+)`)
	balance := func() string {
		resp, err := http.Get("http://" + admin + "/api/v1/upstreams")
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return string(body)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return strings.Contains(balance(), `"balance": "client_id"`) }, "mqlb run serving")
	write("least_conn")
	cmd.Process.Signal(syscall.SIGHUP)
	testutil.Eventually(t, 10*time.Second, func() bool { return strings.Contains(balance(), `"balance": "least_conn"`) },
		"SIGHUP applied the new policy; log:\n%s", stderr.String())
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("mqlb run exited with %v:\n%s", err, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("mqlb run did not stop on SIGTERM")
	}
}

// startSoloNode runs `mqlb node` with a config of one TCP listener and the
// admin, both on port 0, and extraConfig; it returns the config file (to
// change before a SIGHUP), the process (killed at cleanup) and its log.
func startSoloNode(t *testing.T, name, extraConfig string, env ...string) (string, *exec.Cmd, *testutil.SyncBuffer) {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(dir, "node.yaml")
	cfg := fmt.Sprintf("node: { name: %s, data_dir: %q }\nlisteners: [{ name: tcp, type: tcp, address: \"127.0.0.1:0\" }]\nadmin: { address: \"127.0.0.1:0\" }\n%s",
		name, filepath.Join(dir, "data"), extraConfig)
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := mqlb("node", "-c", file)
	cmd.Env = append(cmd.Env, env...)
	stderr := new(testutil.SyncBuffer)
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return file, cmd, stderr
}

// TestNodeRunsAndStops runs `mqlb node` as a process: healthy, serving MQTT,
// and gone cleanly on SIGTERM.
func TestNodeRunsAndStops(t *testing.T) {
	testutil.NeedCommand(t, "mosquitto_pub")
	_, cmd, stderr := startSoloNode(t, "solo", "")
	admin := logged(t, stderr, `msg="node started".* admin=(\S+)`)
	mqttAddr := logged(t, stderr, `msg=listening.* listener=tcp.* address=(\S+)`)
	testutil.Eventually(t, 30*time.Second, func() bool {
		resp, err := http.Get("http://" + admin + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}, "node healthy; log:\n%s", stderr.String())
	_, port, _ := net.SplitHostPort(mqttAddr)
	if out, err := exec.Command("mosquitto_pub", "-p", port, "-t", "n/x", "-m", "hello", "-r").CombinedOutput(); err != nil {
		t.Fatalf("publish: %v %s", err, out)
	}
	out, err := exec.Command("mosquitto_sub", "-p", port, "-t", "n/#", "-C", "1", "-W", "10").Output()
	if err != nil || strings.TrimSpace(string(out)) != "hello" {
		t.Fatalf("retained message: %q %v", out, err)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("mqlb node exited with %v:\n%s", err, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("mqlb node did not stop on SIGTERM")
	}
}
