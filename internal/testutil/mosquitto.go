package testutil

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
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

// StartMosquitto runs mosquitto on a free loopback port with anonymous access
// and stops it when the test ends. extra is appended to its config file.
func StartMosquitto(t testing.TB, extra string) *Mosquitto {
	t.Helper()
	bin := NeedCommand(t, "mosquitto")
	addr := FreeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	dir := t.TempDir()
	conf := filepath.Join(dir, "mosquitto.conf")
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
	t.Cleanup(m.Stop)
	if !WaitFor(10*time.Second, func() bool { return dialOK(addr) }) {
		t.Fatalf("mosquitto did not listen on %s: %s", addr, m.out.String())
	}
	return m
}

// Stop kills the process and waits for it. Safe to call twice.
func (m *Mosquitto) Stop() {
	m.once.Do(func() {
		_ = m.cmd.Process.Kill()
		_ = m.cmd.Wait()
	})
}

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
