//go:build linux

package procsched

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// Set puts every thread of the process under p. A thread's nice value is
// kept. Threads under a policy other than normal or batch (chrt -f, -r,
// -i, -d: the operator's choice) are left as they are and counted.
//
// Threads inherit the policy of the thread that starts them, so threads
// the Go runtime starts later follow; threads started while Set runs are
// found by going over /proc/self/task again until a pass finds none new.
func Set(p Policy) (Result, error) {
	want, err := policyOf(p)
	if err != nil {
		return Result{}, err
	}
	var r Result
	seen := map[int]bool{}
	for {
		ents, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return r, err
		}
		found := 0
		for _, e := range ents {
			tid, err := strconv.Atoi(e.Name())
			if err != nil || seen[tid] {
				continue
			}
			seen[tid] = true
			found++
			switch err := setThread(tid, want); {
			case errors.Is(err, unix.ESRCH): // ended meanwhile
			case errors.Is(err, errForeign):
				r.Foreign++
			case err != nil:
				return r, fmt.Errorf("thread %d: %w", tid, err)
			default:
				r.Set++
			}
		}
		if found == 0 {
			return r, nil
		}
	}
}

var errForeign = errors.New("policy set outside mqlb")

// setThread moves one thread between SCHED_OTHER and SCHED_BATCH, keeping
// its nice value and flags.
func setThread(tid int, policy uint32) error {
	attr, err := unix.SchedGetAttr(tid, 0)
	if err != nil {
		return err
	}
	if attr.Policy != unix.SCHED_NORMAL && attr.Policy != unix.SCHED_BATCH {
		return errForeign
	}
	if attr.Policy == policy {
		return nil
	}
	attr.Policy = policy
	return unix.SchedSetAttr(tid, attr, 0)
}

// Of returns the policy of thread tid: "normal", "batch", or another
// policy's number.
func Of(tid int) (string, error) {
	attr, err := unix.SchedGetAttr(tid, 0)
	if err != nil {
		return "", err
	}
	switch attr.Policy {
	case unix.SCHED_NORMAL:
		return string(Normal), nil
	case unix.SCHED_BATCH:
		return string(Batch), nil
	}
	return strconv.Itoa(int(attr.Policy)), nil
}

func policyOf(p Policy) (uint32, error) {
	switch p {
	case Normal:
		return unix.SCHED_NORMAL, nil
	case Batch:
		return unix.SCHED_BATCH, nil
	}
	return 0, fmt.Errorf("scheduling policy %q: want normal or batch", p)
}
