package bench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Watched is a process on this machine whose CPU time and memory a run
// records from /proc (the proxy under test, the broker), named for the report.
type Watched struct {
	Name string `json:"name"`
	PID  int    `json:"pid"`
}

// ParseWatch reads NAME=PID[,NAME=PID...].
func ParseWatch(s string) ([]Watched, error) {
	var out []Watched
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		name, pid, ok := strings.Cut(f, "=")
		n, err := strconv.Atoi(pid)
		if !ok || err != nil || name == "" || n <= 0 {
			return nil, fmt.Errorf("--watch %q: want NAME=PID", f)
		}
		out = append(out, Watched{Name: name, PID: n})
	}
	return out, nil
}

// WatchResult is what a watched process did during the measured phase.
type WatchResult struct {
	Watched
	CPUSeconds float64 `json:"cpu_seconds"`    // user + system time spent in the phase
	SysSeconds float64 `json:"sys_seconds"`    // the system (kernel) part of it
	CPUPercent float64 `json:"cpu_percent"`    // of one core, over the phase
	RSSBefore  int64   `json:"rss_before_kib"` // VmRSS when the phase began
	RSSAfter   int64   `json:"rss_after_kib"`  // VmRSS when it ended (conn: while the connections were held)
	Error      string  `json:"error,omitempty"`
}

// procSample is one reading of a process.
type procSample struct {
	cpu time.Duration // user + system
	sys time.Duration // system alone
	rss int64         // KiB
	err error
}

// clockTick is USER_HZ, the unit of /proc/PID/stat times: 100 on every
// Linux ABI in use.
const clockTick = 10 * time.Millisecond

// sampleProc reads a process and its children (NGINX's workers under its
// master): their CPU times and RSS are added up.
func sampleProc(pid int) procSample {
	s := sampleOne(pid)
	if s.err != nil {
		return s
	}
	for _, c := range childPIDs(pid) {
		if cs := sampleOne(c); cs.err == nil { // a child may have just ended
			s.cpu += cs.cpu
			s.sys += cs.sys
			s.rss += cs.rss
		}
	}
	return s
}

// childPIDs lists the processes whose parent is pid (from /proc/*/stat).
func childPIDs(pid int) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil || n == pid {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", n))
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(stat, ')')
		f := strings.Fields(string(stat[i+1:])) // state, ppid, ...
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, n)
		}
	}
	return out
}

func sampleOne(pid int) procSample {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procSample{err: err}
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(stat, ')')
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return procSample{err: fmt.Errorf("/proc/%d/stat: short", pid)}
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	rss, err := readRSS(pid)
	return procSample{cpu: time.Duration(utime+stime) * clockTick, sys: time.Duration(stime) * clockTick, rss: rss, err: err}
}

// readRSS reads VmRSS (KiB) from /proc/PID/status.
func readRSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
}

// watcher takes readings of the watched processes and of this one at the
// start and the end of a phase.
type watcher struct {
	procs  []Watched
	before []procSample
	start  time.Time
	self   time.Duration
	busy   time.Duration // the machine's, all CPUs
}

func startWatch(procs []Watched) *watcher {
	w := &watcher{procs: procs, start: time.Now(), self: selfCPU(), busy: machineBusy()}
	for _, p := range procs {
		w.before = append(w.before, sampleProc(p.PID))
	}
	return w
}

// Usage is what the bench itself and the watched processes spent during the
// measured phase (conn: connecting and holding; pubsub: publishing and the
// drain).
type Usage struct {
	PhaseSeconds    float64       `json:"phase_s"`
	BenchCPU        float64       `json:"bench_cpu_s"`
	BenchCPUPercent float64       `json:"bench_cpu_percent"` // of one core
	Watch           []WatchResult `json:"watch,omitempty"`
	// MachineCPUPercent is the CPU time all processes spent (/proc/stat),
	// in % of one core; OtherCPUPercent is what is left of it after the
	// bench and the watched processes: other load that competed with the run.
	MachineCPUPercent float64 `json:"machine_cpu_percent"`
	OtherCPUPercent   float64 `json:"other_cpu_percent"`
}

// Find returns the watched process with this name.
func (u *Usage) Find(name string) (WatchResult, bool) {
	for _, w := range u.Watch {
		if w.Name == name && w.Error == "" {
			return w, true
		}
	}
	return WatchResult{}, false
}

// stop takes the closing readings.
func (w *watcher) stop() Usage {
	elapsed := time.Since(w.start)
	out := make([]WatchResult, len(w.procs))
	for i, p := range w.procs {
		b, a := w.before[i], sampleProc(p.PID)
		r := WatchResult{Watched: p, RSSBefore: b.rss, RSSAfter: a.rss}
		if err := errors.Join(b.err, a.err); err != nil {
			r.Error = err.Error()
		} else {
			r.CPUSeconds = (a.cpu - b.cpu).Seconds()
			r.SysSeconds = (a.sys - b.sys).Seconds()
			r.CPUPercent = 100 * r.CPUSeconds / elapsed.Seconds()
		}
		out[i] = r
	}
	u := Usage{PhaseSeconds: elapsed.Seconds(), BenchCPU: (selfCPU() - w.self).Seconds(), Watch: out}
	if elapsed > 0 {
		u.BenchCPUPercent = 100 * u.BenchCPU / elapsed.Seconds()
		u.MachineCPUPercent = 100 * (machineBusy() - w.busy).Seconds() / elapsed.Seconds()
		u.OtherCPUPercent = u.MachineCPUPercent - u.BenchCPUPercent
		for _, r := range out {
			u.OtherCPUPercent -= r.CPUPercent
		}
		u.OtherCPUPercent = max(u.OtherCPUPercent, 0)
	}
	return u
}

// machineBusy is the CPU time all CPUs spent not idle since boot, from the
// first line of /proc/stat; 0 where there is none.
func machineBusy() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 6 || f[0] != "cpu" {
		return 0
	}
	var busy int64
	for i, v := range f[1:min(len(f), 9)] { // user nice system idle iowait irq softirq steal
		n, _ := strconv.ParseInt(v, 10, 64)
		if i != 3 && i != 4 {
			busy += n
		}
	}
	return time.Duration(busy) * clockTick
}

// selfCPU is this process's user + system time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
