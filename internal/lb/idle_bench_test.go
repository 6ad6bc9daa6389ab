package lb

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mqlb/mqlb/internal/mqttwire"
	"github.com/mqlb/mqlb/internal/testutil"
)

var idleHeap = flag.String("idleheap", "", "BenchmarkIdleConnections: write a heap profile here while the connections are held")

// idleConns is how many connections BenchmarkIdleConnections holds: each
// costs this process three descriptors (the client and the LB's two).
const idleConns = 4000

// BenchmarkIdleConnections is what an idle relayed connection costs the
// load balancer: it holds idleConns MQTT connections through an in-process
// LB (balance client_id, per-IP limit on, access log to a file) to a mochi
// broker in a child process, and reports the heap bytes, heap objects,
// stack and RSS the process holds per connection (after a GC, held minus
// before). The clients are raw sockets, so nothing of theirs is on the
// heap; the broker's memory is its own process's. Run it with
// -benchtime 1x; -args -idleheap FILE (with -memprofilerate 1) writes a
// heap profile of the held connections.
func BenchmarkIdleConnections(b *testing.B) {
	h := newHarness(b, harnessOpts{servers: []string{brokerProcess(b)},
		upstream: "    balance: client_id\n    health_check: { type: none }\n",
		top:      "limits: { connect_timeout: 5s, shutdown_grace: 5s, max_connections_per_ip: 100000 }\n"})
	addr := netip.MustParseAddrPort(h.addr)
	fds := make([]int, 0, idleConns)
	hold := func(n int) { // opens n connections; the lb lists every one
		for i := range n {
			fds = append(fds, dialRaw(b, addr, fmt.Sprint("idle-", i)))
		}
		testutil.Eventually(b, 10*time.Second, func() bool { return h.lb.Connections().Len() == len(fds) }, "%d listed", len(fds))
	}
	release := func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
		fds = fds[:0]
		testutil.Eventually(b, 10*time.Second, func() bool { return h.lb.ClientConnections() == 0 }, "LB idle")
	}
	measureIdle(b, idleConns, hold, release, nil)
}

// measureIdle warms up, then in each iteration holds n connections and
// adds what they cost; settle, if set, runs between holding and measuring.
func measureIdle(b *testing.B, n int, hold func(int), release func(), settle func(before memUse)) {
	hold(200) // warm up: loops, pools, tables
	release()
	var sum memUse
	for b.Loop() {
		before := memNow()
		hold(n)
		if settle != nil {
			settle(before)
		}
		held := memNow()
		writeIdleHeap(b)
		sum = sum.add(held.sub(before))
		release()
	}
	sum.report(b, float64(b.N)*float64(n))
}

// memUse is what the process holds, after a GC.
type memUse struct{ heap, objects, stack, rss, goroutines int64 }

// report reports m per connection, for conns connections in all.
func (m memUse) report(b *testing.B, conns float64) {
	b.ReportMetric(float64(m.heap)/conns, "heap-B/conn")
	b.ReportMetric(float64(m.objects)/conns, "objects/conn")
	b.ReportMetric(float64(m.goroutines)/conns, "goroutines/conn")
	b.ReportMetric(float64(m.stack)/conns, "stack-B/conn")
	b.ReportMetric(float64(m.rss)/conns, "rss-B/conn")
}

func memNow() memUse {
	runtime.GC()
	runtime.GC() // the first may leave finalizers' objects to the second
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memUse{heap: int64(ms.HeapAlloc), objects: int64(ms.HeapObjects), stack: int64(ms.StackInuse), rss: rss(),
		goroutines: int64(runtime.NumGoroutine())}
}

func (m memUse) sub(o memUse) memUse {
	return memUse{m.heap - o.heap, m.objects - o.objects, m.stack - o.stack, m.rss - o.rss, m.goroutines - o.goroutines}
}

func (m memUse) add(o memUse) memUse {
	return memUse{m.heap + o.heap, m.objects + o.objects, m.stack + o.stack, m.rss + o.rss, m.goroutines + o.goroutines}
}

// rss is the process's resident set in bytes (/proc/self/statm), 0 where
// there is none.
func rss() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	var size, res int64
	fmt.Sscan(string(b), &size, &res)
	return res * int64(os.Getpagesize())
}

func writeIdleHeap(b *testing.B) {
	if *idleHeap == "" {
		return
	}
	f, err := os.Create(*idleHeap)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	runtime.GC()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		b.Fatal(err)
	}
}

// dialRaw connects to addr as an MQTT 3.1.1 client with no keep-alive and
// waits for CONNACK 0, on a raw socket: nothing of it is on the heap.
func dialRaw(b *testing.B, addr netip.AddrPort, id string) int {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		b.Fatal(err)
	}
	tv := unix.Timeval{Sec: 5}
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	if err := unix.Connect(fd, &unix.SockaddrInet4{Addr: addr.Addr().As4(), Port: int(addr.Port())}); err != nil {
		b.Fatal(err)
	}
	unix.Write(fd, mqttwire.AppendConnect(nil, &mqttwire.Connect{Version: 4, CleanStart: true, ClientID: id}))
	var ack [4]byte
	if n, err := unix.Read(fd, ack[:]); n != 4 || err != nil || ack[3] != 0 {
		b.Fatalf("%s: CONNACK % x (%d bytes), %v", id, ack[:max(n, 0)], n, err)
	}
	return fd
}

// brokerProcess starts TestIdleBroker in a child process (so that the
// broker's memory is not on this process's heap) and returns its address;
// it ends with the benchmark.
func brokerProcess(b *testing.B) string {
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^TestIdleBroker$")
	cmd.Env = append(os.Environ(), "MQLB_IDLE_BROKER=1")
	cmd.Stderr = os.Stderr
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { in.Close(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "broker ")
	if err != nil || !ok {
		b.Fatalf("broker process: %q, %v", line, err)
	}
	go io.Copy(io.Discard, out)
	return addr
}

// TestIdleBroker is BenchmarkIdleConnections's broker when run as its
// child process: a mochi broker that prints its address and runs until its
// standard input closes. Otherwise it is skipped.
func TestIdleBroker(t *testing.T) {
	if os.Getenv("MQLB_IDLE_BROKER") == "" {
		t.Skip("the broker process of BenchmarkIdleConnections")
	}
	br := testutil.StartMochi(t)
	fmt.Printf("broker %s\n", br.Addr)
	io.Copy(io.Discard, os.Stdin)
}
