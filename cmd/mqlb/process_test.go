package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/mqlb/mqlb/internal/testutil"
)

// proc is an mqlb process under test with its output captured; it is
// killed at cleanup.
type proc struct {
	cmd            *exec.Cmd
	stdout, stderr *testutil.SyncBuffer
	done           chan error
}

// start runs the mqlb binary (this test binary as main) with args.
func start(t *testing.T, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: mqlb(args...), stdout: new(testutil.SyncBuffer), stderr: new(testutil.SyncBuffer), done: make(chan error, 1)}
	// Its temporary files (mqlb up's data directory) go where the test's
	// go: the kill at cleanup leaves them no chance to remove themselves.
	p.cmd.Env = append(p.cmd.Env, "TMPDIR="+t.TempDir())
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

// logged waits until the process's log matches re and returns the first
// submatch (or the whole match).
func (p *proc) logged(t *testing.T, timeout time.Duration, re string) string {
	t.Helper()
	rx := regexp.MustCompile(re)
	var m []string
	testutil.Eventually(t, timeout, func() bool {
		m = rx.FindStringSubmatch(p.stderr.String())
		return m != nil
	}, "log never matched %s:\n%s", re, p.stderr)
	return m[len(m)-1]
}

// exited waits for the process to end and returns its exit code, or fails.
func (p *proc) exited(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case err := <-p.done:
		p.done <- err // for Cleanup
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(timeout):
		t.Fatalf("still running after %v:\n%s", timeout, p.stderr)
		return -1
	}
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(f, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}
