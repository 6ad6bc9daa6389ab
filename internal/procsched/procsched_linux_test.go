//go:build linux

package procsched

import (
	"os"
	"runtime"
	"strconv"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// policies returns every thread's policy, by thread id.
func policies(t *testing.T) map[int]string {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]string{}
	for _, e := range ents {
		tid, _ := strconv.Atoi(e.Name())
		if p, err := Of(tid); err == nil {
			out[tid] = p
		}
	}
	return out
}

// lockedThreads starts n goroutines each locked to a thread of its own
// (new threads when no idle one is left) and returns their thread ids and
// a func that lets them go.
func lockedThreads(n int) ([]int, func()) {
	var wg sync.WaitGroup
	tids := make([]int, n)
	done := make(chan struct{})
	wg.Add(n)
	for i := range n {
		go func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			tids[i] = unix.Gettid()
			wg.Done()
			<-done
		}()
	}
	wg.Wait()
	return tids, func() { close(done) }
}

// TestSetEveryThread: every thread is moved, those already there and
// those the runtime starts afterwards (they inherit it), and back again;
// a thread under a policy set outside mqlb is left alone.
func TestSetEveryThread(t *testing.T) {
	before, release := lockedThreads(4)
	defer release()
	t.Cleanup(func() { Set(Normal) })

	r, err := Set(Batch)
	if err != nil {
		t.Fatal(err)
	}
	if r.Set < 5 || r.Foreign != 0 {
		t.Errorf("Set(batch): %+v; want every thread (at least 5) set", r)
	}
	after, release2 := lockedThreads(8) // at least some of them new threads
	defer release2()
	all := policies(t)
	for tid, p := range all {
		if p != "batch" {
			t.Errorf("thread %d: policy %s after Set(batch)", tid, p)
		}
	}
	for _, tid := range append(before, after...) {
		if all[tid] != "batch" {
			t.Errorf("locked thread %d: policy %q", tid, all[tid])
		}
	}

	// A thread the operator put under SCHED_IDLE stays there.
	idle := after[0]
	attr, err := unix.SchedGetAttr(idle, 0)
	if err != nil {
		t.Fatal(err)
	}
	attr.Policy = unix.SCHED_IDLE
	if err := unix.SchedSetAttr(idle, attr, 0); err != nil {
		t.Skipf("cannot set SCHED_IDLE here: %v", err)
	}
	r, err = Set(Normal)
	if err != nil {
		t.Fatal(err)
	}
	if r.Foreign != 1 {
		t.Errorf("Set(normal): %+v; want the SCHED_IDLE thread left alone", r)
	}
	for tid, p := range policies(t) {
		want := "normal"
		if tid == idle {
			want = strconv.Itoa(unix.SCHED_IDLE)
		}
		if p != want {
			t.Errorf("thread %d: policy %s after Set(normal), want %s", tid, p, want)
		}
	}
	attr.Policy = unix.SCHED_NORMAL
	unix.SchedSetAttr(idle, attr, 0)
}

// TestSetKeepsNice: a thread's nice value survives the move.
func TestSetKeepsNice(t *testing.T) {
	tids, release := lockedThreads(1)
	defer release()
	t.Cleanup(func() { Set(Normal) })
	attr, err := unix.SchedGetAttr(tids[0], 0)
	if err != nil {
		t.Fatal(err)
	}
	attr.Nice = 5
	if err := unix.SchedSetAttr(tids[0], attr, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := Set(Batch); err != nil {
		t.Fatal(err)
	}
	got, err := unix.SchedGetAttr(tids[0], 0)
	if err != nil {
		t.Fatal(err)
	}
	if got.Policy != unix.SCHED_BATCH || got.Nice != 5 {
		t.Errorf("policy %d nice %d; want batch (%d) and nice 5", got.Policy, got.Nice, unix.SCHED_BATCH)
	}
}

func TestSetRefusesUnknown(t *testing.T) {
	if _, err := Set("fifo"); err == nil {
		t.Error("Set(fifo): no error")
	}
}
