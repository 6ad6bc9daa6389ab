// Package procsched sets the Linux scheduling policy of every thread of
// this process (process.scheduling in the load balancer's config).
//
// Under SCHED_BATCH a thread that wakes does not preempt the one running:
// it runs when a CPU is free or at the scheduler's next tick. A load
// balancer's threads wake for every few packets; on cores it shares with a
// broker (mqlb up, a benchmark, a small machine), each wake of a normal
// thread can push the broker off its CPU, and both then do less per wake.
// On cores of its own nothing changes: a woken thread finds an idle CPU.
// docs/benchmarks.md has the measurements.
package procsched

// Policy names a scheduling policy: "normal" (SCHED_OTHER) or "batch"
// (SCHED_BATCH).
type Policy string

const (
	Normal Policy = "normal"
	Batch  Policy = "batch"
)

// Result is what Set did.
type Result struct {
	Set     int // threads now under the policy
	Foreign int // threads left under a policy set outside mqlb (real-time, idle, deadline)
}
