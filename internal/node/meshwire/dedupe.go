package meshwire

import (
	"sync"
	"time"
)

// ReplayWindow remembers which messages of each origin a node has delivered,
// so one mesh message that matches several of the node's NATS subscriptions
// (say "a/+" and "a/#") is delivered into the local broker once. NATS hands a
// node the copies of one message back to back, so a sliding window over
// sequence numbers (as IPsec's anti-replay window) is exact without keeping
// every id: a sequence above the top moves the window, one inside it is
// checked against its bit. One below it is not a copy (its copies came back
// to back) but a message that came late: the origin numbers a publish when
// mochi takes it (OnPublish) and sends it after delivering it locally
// (OnPublished), so a publisher's goroutine paused in between lets others
// send thousands of later numbers first. It is fresh the first time; the
// last few such sequences are remembered so its other copies are not.
type ReplayWindow struct {
	mu      sync.Mutex
	origins map[string]*window
	swept   time.Time
}

const (
	windowBits  = 4096             // how far behind the newest sequence a copy may arrive
	originIdle  = 10 * time.Minute // forget an origin (a node instance) silent this long
	sweepPeriod = time.Minute
)

type window struct {
	top  uint64 // highest sequence seen
	bits [windowBits / 64]uint64
	late [lateKept]uint64 // the last sequences that came below the window
	next int              // where the next one goes in late
	seen time.Time
}

// lateKept is how many late sequences a window remembers: their copies come
// back to back, so a few cover them.
const lateKept = 16

// NewReplayWindow returns an empty window.
func NewReplayWindow() *ReplayWindow {
	return &ReplayWindow{origins: map[string]*window{}, swept: time.Now()}
}

// Fresh reports whether id has not been seen before, and records it.
func (r *ReplayWindow) Fresh(id MsgID, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now.Sub(r.swept) > sweepPeriod {
		r.sweep(now)
	}
	w := r.origins[id.Origin]
	if w == nil {
		w = &window{}
		r.origins[id.Origin] = w
	}
	w.seen = now
	return w.record(id.Seq)
}

func (w *window) record(seq uint64) bool {
	switch {
	case seq > w.top:
		w.slide(seq - w.top)
		w.top = seq
		w.set(0)
		return true
	case w.top-seq >= windowBits:
		return w.recordLate(seq)
	default:
		off := w.top - seq
		if w.get(off) {
			return false
		}
		w.set(off)
		return true
	}
}

// recordLate records a sequence below the window: fresh unless it is one of
// the last late ones.
func (w *window) recordLate(seq uint64) bool {
	for _, s := range w.late {
		if s == seq {
			return false
		}
	}
	w.late[w.next] = seq
	w.next = (w.next + 1) % lateKept
	return true
}

// slide shifts the window by n positions (bit i = sequence top-i).
func (w *window) slide(n uint64) {
	if n >= windowBits {
		w.bits = [windowBits / 64]uint64{}
		return
	}
	words, shift := int(n/64), n%64
	for i := len(w.bits) - 1; i >= 0; i-- {
		var v uint64
		if j := i - words; j >= 0 {
			v = w.bits[j] << shift
			if shift > 0 && j > 0 {
				v |= w.bits[j-1] >> (64 - shift)
			}
		}
		w.bits[i] = v
	}
}

func (w *window) get(off uint64) bool { return w.bits[off/64]&(1<<(off%64)) != 0 }
func (w *window) set(off uint64)      { w.bits[off/64] |= 1 << (off % 64) }

func (r *ReplayWindow) sweep(now time.Time) {
	r.swept = now
	for o, w := range r.origins {
		if now.Sub(w.seen) > originIdle {
			delete(r.origins, o)
		}
	}
}
