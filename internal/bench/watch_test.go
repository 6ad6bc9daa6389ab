package bench

import (
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/mqlb/mqlb/internal/testutil"
)

// TestWatchCountsChildren: a watched process's children (NGINX's workers
// under its master) are counted with it: the CPU a child spends shows in
// the parent's reading.
func TestWatchCountsChildren(t *testing.T) {
	cmd := exec.Command("sh", "-c", `(i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; exec sleep 60) & exec sleep 60`)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Skipf("no sh: %v", err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() { syscall.Kill(-pid, syscall.SIGKILL); cmd.Wait() })
	testutil.Eventually(t, 20*time.Second, func() bool {
		return len(childPIDs(pid)) == 1 && sampleProc(pid).cpu >= 100*time.Millisecond
	}, "children %v, cpu with children %v", childPIDs(pid), sampleProc(pid).cpu)
	if one, all := sampleOne(pid), sampleProc(pid); all.rss <= one.rss || all.cpu <= one.cpu || all.sys > all.cpu {
		t.Errorf("with children: rss %d KiB, cpu %v (sys %v); alone: %d KiB, %v", all.rss, all.cpu, all.sys, one.rss, one.cpu)
	}
}
