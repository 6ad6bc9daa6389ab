package testutil

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// Redis is a redis-server process started for a test, listening only on a
// unix socket in a temporary directory (no TCP port to race for).
type Redis struct {
	Socket string
	cmd    *exec.Cmd
	out    *SyncBuffer
	once   sync.Once
}

// StartRedis runs redis-server without persistence and stops it when the
// test ends.
func StartRedis(t testing.TB) *Redis {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("redis-server not found in CI (apt-get install -y redis-server)")
		}
		t.Skip("redis-server not found (apt-get install -y redis-server)")
	}
	dir, err := os.MkdirTemp("", "mqlb-redis-")
	if err != nil {
		t.Fatal(err)
	}
	r := &Redis{Socket: filepath.Join(dir, "redis.sock"), out: new(SyncBuffer)}
	r.cmd = exec.Command(bin, "--port", "0", "--unixsocket", r.Socket, "--unixsocketperm", "700",
		"--save", "", "--appendonly", "no", "--dir", dir, "--daemonize", "no")
	r.cmd.Stdout, r.cmd.Stderr = r.out, r.out
	if err := r.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		t.Fatalf("start redis-server: %v", err)
	}
	t.Cleanup(func() {
		r.Stop()
		os.RemoveAll(dir)
	})
	if !WaitFor(10*time.Second, func() bool {
		c, err := net.Dial("unix", r.Socket)
		if err == nil {
			c.Close()
		}
		return err == nil
	}) {
		t.Fatalf("redis-server did not listen on %s: %s", r.Socket, r.out.String())
	}
	return r
}

// Stop kills the process and waits for it. Safe to call twice.
func (r *Redis) Stop() {
	r.once.Do(func() {
		_ = r.cmd.Process.Kill()
		_ = r.cmd.Wait()
	})
}

// Pid is the redis-server process's id (to SIGSTOP it, playing a server
// that hangs).
func (r *Redis) Pid() int { return r.cmd.Process.Pid }
