package testutil

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Mosquitto is a mosquitto broker process started for a test.
type Mosquitto struct {
	Addr string
	cmd  *exec.Cmd
	out  *SyncBuffer
	once sync.Once
	stop func()
}

// NeedCommand skips the test when name is not on PATH, saying how to get it.
func NeedCommand(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s not found on PATH in CI (apt-get install -y mosquitto mosquitto-clients)", name)
		}
		t.Skipf("%s not found on PATH (apt-get install -y mosquitto mosquitto-clients)", name)
	}
	return p
}

// StartMosquitto runs mosquitto on a loopback port with anonymous access
// and stops it when the test ends. extra is appended to its config file.
// mosquitto cannot bind port 0 and say which port it got, so it is given a
// port that was free and started again on another if that one was taken.
func StartMosquitto(t testing.TB, extra string) *Mosquitto {
	t.Helper()
	bin := NeedCommand(t, "mosquitto")
	for range 5 {
		if m := startMosquitto(t, bin, freeAddr(t), extra); m != nil {
			return m
		}
	}
	t.Fatal("mosquitto found its port taken five times")
	return nil
}

// startMosquitto returns nil when the port was taken before mosquitto bound it.
func startMosquitto(t testing.TB, bin, addr, extra string) *Mosquitto {
	_, port, _ := net.SplitHostPort(addr)
	conf := filepath.Join(t.TempDir(), "mosquitto.conf")
	body := fmt.Sprintf("listener %s 127.0.0.1\nallow_anonymous true\npersistence false\n%s\n", port, extra)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	m := &Mosquitto{Addr: addr, out: new(SyncBuffer)}
	m.cmd = exec.Command(bin, "-c", conf)
	m.cmd.Stdout, m.cmd.Stderr = m.out, m.out
	if err := m.cmd.Start(); err != nil {
		t.Fatalf("start mosquitto: %v", err)
	}
	exited := make(chan struct{})
	go func() { m.cmd.Wait(); close(exited) }()
	m.stop = func() { m.cmd.Process.Kill(); <-exited }
	t.Cleanup(m.Stop)
	if !WaitFor(10*time.Second, func() bool {
		select {
		case <-exited:
			return true
		default:
			return dialOK(addr)
		}
	}) {
		t.Fatalf("mosquitto did not listen on %s: %s", addr, m.out.String())
	}
	select {
	case <-exited:
		if strings.Contains(m.out.String(), "in use") {
			return nil
		}
		t.Fatalf("mosquitto exited: %s", m.out.String())
	default:
	}
	return m
}

// Stop kills the process and waits for it. Safe to call twice.
func (m *Mosquitto) Stop() {
	m.once.Do(m.stop)
}

// Signal sends sig to the process (SIGSTOP to hang it, SIGKILL to kill it
// as kill -9 does).
func (m *Mosquitto) Signal(sig os.Signal) error { return m.cmd.Process.Signal(sig) }

// Output returns what mosquitto printed so far.
func (m *Mosquitto) Output() string { return m.out.String() }

// SyncBuffer is a bytes.Buffer safe for one writer and concurrent readers
// (a process's output read while it runs).
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
