// Package gcpace paces Go's garbage collector by a fixed headroom over the
// live heap while that heap is small (process.gc_headroom in the node's
// config).
//
// Go collects once the heap has grown by GOGC percent (100) of what the last
// collection found live. A broker node's live heap is small while its
// clients are few, and mochi-mqtt allocates for every message it moves (a
// copy of each packet it keeps in flight, the subscriber maps it copies per
// publish), so at GOGC 100 a busy node with a small heap collects many times
// a second: 12–18 % of its CPU at the QoS 1 maximum rate in
// docs/benchmarks.md. Letting the heap grow by headroom bytes instead — GOGC
// set to headroom ÷ live, between 100 and MaxPercent — spends at most
// headroom bytes more than Go's default and collects a fraction as often.
// Once the live heap is as large as the headroom, GOGC is 100 again and the
// collector behaves as Go's default.
//
// The percent is set again after every collection, from the live heap that
// collection found (runtime/metrics "/gc/heap/live:bytes").
package gcpace

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
)

// MaxPercent is the highest GOGC the pacer sets: with a live heap under
// headroom ÷ 4 the heap grows by 4 times what is live, not by the whole
// headroom (a heap that grows fast between two collections is then bounded
// by 5 times what the last one found).
const MaxPercent = 400

// DefaultPercent is Go's GOGC when the environment does not set one.
const DefaultPercent = 100

var (
	mu      sync.Mutex
	current *pacer
)

// pacer is the running pacing.
type pacer struct {
	headroom uint64
	percent  atomic.Int64 // what was last set
	stopped  atomic.Bool
}

// Start paces the collector for headroom bytes over the live heap and
// returns what stops it (GOGC goes back to 100). It does nothing, and says
// why, when headroom is 0 or the environment sets GOGC (the operator's
// choice stands); a later Start replaces an earlier one.
func Start(headroom uint64) (stop func(), why string) {
	switch {
	case headroom == 0:
		return func() {}, "process.gc_headroom is 0"
	case os.Getenv("GOGC") != "":
		return func() {}, "GOGC is set in the environment"
	}
	p := &pacer{headroom: headroom}
	mu.Lock()
	if current != nil {
		current.stopped.Store(true)
	}
	current = p
	mu.Unlock()
	p.adjust()
	p.arm()
	return p.stop, ""
}

// Percent returns the GOGC in effect.
func Percent() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int(s[0].Value.Uint64())
}

func (p *pacer) stop() {
	mu.Lock()
	defer mu.Unlock()
	if p.stopped.Swap(true) || current != p {
		return
	}
	current = nil
	debug.SetGCPercent(DefaultPercent)
}

// sentinel is an object that lives until the next collection; its cleanup
// paces the one after. It is larger than 16 bytes so the tiny allocator
// does not batch it with objects that live longer.
type sentinel struct{ _ [32]byte }

// arm asks to be called after the next collection.
func (p *pacer) arm() {
	runtime.AddCleanup(new(sentinel), (*pacer).collected, p)
}

// collected runs after a collection (on the runtime's cleanup goroutine).
func (p *pacer) collected() {
	if p.stopped.Load() {
		return
	}
	p.adjust()
	p.arm()
}

// adjust sets GOGC for the live heap the last collection found.
func (p *pacer) adjust() {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}} // once per collection: no need to keep it
	metrics.Read(s)
	live := s[0].Value.Uint64()
	want := percentFor(p.headroom, live)
	if old := p.percent.Load(); old == int64(want) {
		return
	}
	mu.Lock()
	defer mu.Unlock()
	if p.stopped.Load() {
		return
	}
	p.percent.Store(int64(want))
	debug.SetGCPercent(want)
}

// percentFor is the GOGC that lets a heap of live bytes grow by headroom,
// between DefaultPercent and MaxPercent, in steps of 10 so that small
// changes of the live heap do not move it.
func percentFor(headroom, live uint64) int {
	if live == 0 {
		return MaxPercent
	}
	pct := headroom * 100 / live
	switch {
	case pct <= DefaultPercent:
		return DefaultPercent
	case pct >= MaxPercent:
		return MaxPercent
	}
	return int(pct / 10 * 10)
}
