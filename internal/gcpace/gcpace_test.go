package gcpace

import (
	"runtime"
	"runtime/metrics"
	"testing"
	"time"

	"github.com/mqlb/mqlb/internal/testutil"
)

// The tests change the process's GOGC: none of them runs in parallel.

func TestPercentFor(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		headroom, live uint64
		want           int
	}{
		{64 * mib, 0, MaxPercent},
		{64 * mib, 4 * mib, MaxPercent},  // 1600 % capped
		{64 * mib, 16 * mib, MaxPercent}, // exactly 400
		{64 * mib, 20 * mib, 320},        // grows by the headroom
		{64 * mib, 23 * mib, 270},        // 278 → steps of 10
		{64 * mib, 64 * mib, 100},        // the default from here on
		{64 * mib, 1024 * mib, 100},      // never below Go's default
		{1, 1 << 40, DefaultPercent},
	} {
		if got := percentFor(c.headroom, c.live); got != c.want {
			t.Errorf("percentFor(%d MiB, %d MiB) = %d, want %d", c.headroom/mib, c.live/mib, got, c.want)
		}
	}
}

// collect runs a collection and waits for the pacer to have set want.
func collect(t *testing.T, want int) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, func() bool {
		runtime.GC()
		return Percent() == want
	}, "GOGC %d after a collection (have %d)", want, Percent())
}

func TestSmallHeapGrowsByHeadroom(t *testing.T) {
	stop, why := Start(64 << 20)
	if why != "" {
		t.Skipf("pacing off: %s", why)
	}
	t.Cleanup(stop)
	collect(t, MaxPercent) // this test binary's live heap is a few MiB
	stop()
	if got := Percent(); got != DefaultPercent {
		t.Errorf("GOGC %d after stop, want %d", got, DefaultPercent)
	}
}

var ballast [][]byte

// A live heap as large as the headroom gets Go's default; once it is
// released, the headroom again. The heap goal in between stays within the
// headroom of what is live.
func TestLargeLiveHeapBackToDefault(t *testing.T) {
	const headroom = 24 << 20
	stop, why := Start(headroom)
	if why != "" {
		t.Skipf("pacing off: %s", why)
	}
	t.Cleanup(stop)
	t.Cleanup(func() { ballast = nil })
	collect(t, MaxPercent)

	for range 16 { // 16 × 1 MiB live, 2/3 of the headroom: about 150 %
		ballast = append(ballast, make([]byte, 1<<20))
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		runtime.GC()
		p := Percent()
		return p > DefaultPercent && p < 200
	}, "GOGC between 100 and 200 with 16 MiB live and 24 MiB headroom (have %d)", Percent())
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/gc/heap/goal:bytes"}}
	metrics.Read(s)
	// Go's goal counts stacks and globals with the live heap: a MiB or two.
	if live, goal := s[0].Value.Uint64(), s[1].Value.Uint64(); goal > live+headroom+2<<20 {
		t.Errorf("heap goal %d MiB, live %d MiB: more than the %d MiB headroom over it", goal>>20, live>>20, headroom>>20)
	}

	for range 48 {
		ballast = append(ballast, make([]byte, 1<<20))
	}
	collect(t, DefaultPercent)
	ballast = nil
	collect(t, MaxPercent)
}

func TestOffLeavesGoDefault(t *testing.T) {
	stop, why := Start(0)
	defer stop()
	if why == "" {
		t.Fatal("Start(0) paced the collector")
	}
	runtime.GC()
	if got := Percent(); got != DefaultPercent {
		t.Errorf("GOGC %d with pacing off, want %d", got, DefaultPercent)
	}
}

func TestEnvironmentGOGCStands(t *testing.T) {
	t.Setenv("GOGC", "100")
	stop, why := Start(64 << 20)
	defer stop()
	if why == "" {
		t.Fatal("Start paced the collector although GOGC is set in the environment")
	}
	runtime.GC()
	if got := Percent(); got != DefaultPercent {
		t.Errorf("GOGC %d, want the environment's 100", got)
	}
}

// A second Start replaces the first: the first's stop does not undo it.
func TestStartReplaces(t *testing.T) {
	stop1, _ := Start(64 << 20)
	stop2, why := Start(64 << 20)
	if why != "" {
		t.Skipf("pacing off: %s", why)
	}
	t.Cleanup(stop2)
	stop1()
	collect(t, MaxPercent)
	stop2()
	if got := Percent(); got != DefaultPercent {
		t.Errorf("GOGC %d after the second stop, want %d", got, DefaultPercent)
	}
}
