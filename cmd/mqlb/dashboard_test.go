package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	mqtt3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/mqlb/mqlb/internal/testutil"
)

// chromium returns a browser context for headless Chromium, or skips (fails
// in CI) without one.
func chromium(t *testing.T) (context.Context, *consoleErrors) {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("chromium not installed (.ci/run installs Debian's chromium)")
		}
		t.Skip("chromium not installed")
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path), chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1400, 1800),
		chromedp.Flag("headless", true), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.NoDefaultBrowserCheck,
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelA() })
	errs := &consoleErrors{}
	if err := chromedp.Listen(ctx, errs.listen); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	if err := chromedp.Do(ctx); err != nil { // starts the browser; chromedp enables the log and runtime domains
		t.Fatalf("start chromium: %v", err)
	}
	return ctx, errs
}

// consoleErrors collects what the page logs as errors or throws.
type consoleErrors struct {
	mu   sync.Mutex
	list []string
}

func (c *consoleErrors) listen(ev any) {
	var msg string
	switch e := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		if e.Type == runtime.ConsoleAPICalledTypeError {
			for _, a := range e.Args {
				msg += string(a.Value) + " " + a.Description
			}
		}
	case *runtime.EventExceptionThrown:
		msg = e.ExceptionDetails.Text
		if e.ExceptionDetails.Exception != nil {
			msg += " " + e.ExceptionDetails.Exception.Description
		}
	case *log.EventEntryAdded:
		if e.Entry.Level == log.EntryLevelError {
			msg = e.Entry.Text + " " + e.Entry.URL
		}
	}
	if msg != "" {
		c.mu.Lock()
		c.list = append(c.list, msg)
		c.mu.Unlock()
	}
}

func (c *consoleErrors) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.list, "\n")
}

// eval evaluates a JavaScript expression in the page, with a time limit.
func eval[T any](ctx context.Context, js string) (T, error) {
	tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return chromedp.Run(tctx, chromedp.Evaluate[T](js))
}

// text returns the text of the first element matching the CSS selector, or "".
func text(ctx context.Context, sel string) string {
	s, _ := eval[string](ctx, fmt.Sprintf(`(document.querySelector(%q) || {}).textContent || ""`, sel))
	return s
}

// clickRow clicks a button in a table the dashboard re-renders every few
// seconds and waits for the confirmation it opens. The click is one
// evaluation in the page: a CDP click looks the node up first, and a
// re-render in between failed it ("Could not find node with given id").
func clickRow(t *testing.T, ctx context.Context, sel string) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, func() bool {
		clicked, _ := eval[bool](ctx, fmt.Sprintf(`(b => b ? (b.click(), true) : false)(document.querySelector(%q))`, sel))
		return clicked && exists(ctx, "dialog[open] #confirm-ok")
	}, "clicked %s", sel)
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS("#confirm-ok"))); err != nil {
		t.Fatal(err)
	}
}

func exists(ctx context.Context, sel string) bool {
	ok, _ := eval[bool](ctx, fmt.Sprintf(`document.querySelector(%q) !== null`, sel))
	return ok
}

// TestDashboard loads the dashboard of `mqlb up` in headless Chromium: no
// console errors, live numbers that follow clients connecting, charts, the
// cluster view, a token that survives a reload, and a drain done by
// clicking (and confirming) that reaches the load balancer.
func TestDashboard(t *testing.T) {
	ctx, errs := chromium(t)
	s := startUp(t)
	url := "http://" + s.admin + "/ui/"
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 20*time.Second, func() bool { return exists(ctx, `tr[data-server="cluster/node2"]`) }, "servers shown; console: %s", errs)

	// Live numbers: the client count follows clients connecting.
	clients := func() int { n, _ := strconv.Atoi(strings.TrimPrefix(text(ctx, "#sum-clients b"), "-")); return n }
	before := clients()
	for i := range 5 {
		testutil.ConnectRaw(t, s.lb, fmt.Sprint("dash-", i))
	}
	traffic(t, s.lb)
	testutil.Eventually(t, 20*time.Second, func() bool { return clients() >= before+5 }, "client count rises by 5 from %d: %q", before, text(ctx, "#summary"))
	testutil.Eventually(t, 20*time.Second, func() bool { return strings.Contains(text(ctx, "#conns"), "dash-3") }, "clients listed")

	// Bytes per second follow the traffic.
	testutil.Eventually(t, 20*time.Second, func() bool {
		b := text(ctx, "#sum-bytes b")
		return b != "" && !strings.HasPrefix(b, "0 B")
	}, "traffic shown: %q", text(ctx, "#summary"))

	// Charts: a line per server once there are two samples.
	testutil.Eventually(t, 20*time.Second, func() bool {
		return exists(ctx, "#chart-active svg polyline") && exists(ctx, "#chart-connects svg polyline")
	}, "charts drawn")
	// The cluster view under mqlb up: every node, healthy, with the
	// session queue stream beside the buckets.
	testutil.Eventually(t, 20*time.Second, func() bool {
		c := text(ctx, "#cluster")
		return strings.Count(c, "✓ ok") == 3 && strings.Contains(c, "node3") && strings.Contains(c, "queue: R")
	}, "cluster view: %q", text(ctx, "#cluster"))

	// The token survives a reload of the page.
	if err := chromedp.Do(ctx, chromedp.SetValue(chromedp.CSS("#token"), "t0ken"),
		chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
			_, err := chromedp.Evaluate[bool](`document.getElementById("token").dispatchEvent(new Event("change"))`)(ctx, t)
			return err
		}),
		chromedp.Reload(), chromedp.WaitReady(chromedp.CSS("#token"))); err != nil {
		t.Fatal(err)
	}
	if tok, err := chromedp.Run(ctx, chromedp.Value(chromedp.CSS("#token"))); err != nil || tok != "t0ken" {
		t.Errorf("token after reload: %q %v", tok, err)
	}
	testutil.Eventually(t, 20*time.Second, func() bool { return exists(ctx, `tr[data-server="cluster/node2"] button[data-action="drain"]`) }, "drain button")
	// Only the actions that apply: an up server can be drained or disabled, not enabled.
	if exists(ctx, `tr[data-server="cluster/node2"] button[data-action="enable"]`) {
		t.Error("enable offered for a server that is up")
	}

	// Drain node2 by clicking, then confirming.
	clickRow(t, ctx, `tr[data-server="cluster/node2"] button[data-action="drain"]`)
	state := func() string {
		var ups upstreamsJSON
		getJSON(t, "http://"+s.admin+"/api/v1/upstreams", &ups)
		for _, sv := range ups.Upstreams[0].Servers {
			if sv.Name == "node2" {
				return sv.State
			}
		}
		return ""
	}
	if st := state(); st != "up" {
		t.Fatalf("node2 is %s before the confirmation", st)
	}
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#confirm-ok"), chromedp.NodeVisible)); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return state() == "drain" }, "node2 drained by the click")
	testutil.Eventually(t, 10*time.Second, func() bool { return exists(ctx, `tr.drain[data-server="cluster/node2"] button[data-action="enable"]`) }, "dashboard shows the drain")

	// The nodes' sessions, searchable, and a kick on the node that holds one.
	kick := `#node-clients tr[data-client="dash-4"] button`
	testutil.Eventually(t, 20*time.Second, func() bool { return exists(ctx, kick) }, "node sessions listed: %q", text(ctx, "#node-clients"))
	clickRow(t, ctx, kick)
	if q := text(ctx, "#confirm-text"); !strings.Contains(q, "dash-4") {
		t.Fatalf("the kick asks about another client: %q", q)
	}
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#confirm-ok"), chromedp.NodeVisible)); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		var res struct {
			Nodes []struct {
				Data struct {
					Clients []struct{ Connected bool }
				}
			}
		}
		getJSON(t, "http://"+s.admin+"/api/v1/clients?q=dash-4", &res)
		for _, n := range res.Nodes {
			for _, c := range n.Data.Clients {
				if c.Connected {
					return false
				}
			}
		}
		return true
	}, "dash-4 disconnected by its node")

	// A server that is down shows why (the last check's error), not "0 failures".
	if code, body := testutil.HTTP(t, "POST", "http://"+s.admin+"/api/v1/upstreams/cluster/servers", `{"name":"gone","address":"127.0.0.1:1"}`); code != 201 {
		t.Fatalf("add a server: %d %s", code, body)
	}
	testutil.Eventually(t, 20*time.Second, func() bool {
		return strings.Contains(text(ctx, `tr.down[data-server="cluster/gone"]`), "failed: ")
	}, "down server shows its failing check: %q", text(ctx, `tr[data-server="cluster/gone"]`))

	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(t.ArtifactDir(), "dashboard.png")
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", shot)
	if os.Getenv("MQLB_UPDATE_DOCS") != "" { // refresh the README's picture
		os.WriteFile("../../docs/dashboard.png", png, 0o644)
	}
	if e := errs.String(); e != "" {
		t.Errorf("console errors:\n%s", e)
	}
}

// traffic publishes through the load balancer to a subscriber, about 20
// messages a second, until the test ends.
func traffic(t *testing.T, addr string) {
	t.Helper()
	connect := func(id string) mqtt3.Client {
		o := mqtt3.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetAutoReconnect(false).SetConnectRetry(false)
		c := mqtt3.NewClient(o)
		if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("%s: connect: %v", id, tok.Error())
		}
		t.Cleanup(func() { c.Disconnect(50) })
		return c
	}
	sub, pub := connect("dash-sub"), connect("dash-pub")
	if tok := sub.Subscribe("dash/#", 0, nil); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	done := make(chan struct{})
	stopped := make(chan struct{})
	t.Cleanup(func() { close(done); <-stopped })
	payload := strings.Repeat("x", 512)
	go func() {
		defer close(stopped)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				pub.Publish("dash/t", 0, false, payload)
			}
		}
	}()
}

// dashboardRun opens the dashboard of a `mqlb run` with one server in
// headless Chromium, once the server is shown; it returns the admin address.
func dashboardRun(t *testing.T) (context.Context, *consoleErrors, string) {
	ctx, errs := chromium(t)
	b := testutil.StartMochi(t)
	admin := startRun(t, stickyConfig(b.Addr))
	if err := chromedp.Do(ctx, chromedp.Navigate("http://"+admin+"/ui/")); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 20*time.Second, func() bool { return exists(ctx, `tr[data-server="brokers/a"]`) }, "servers shown; console: %s", errs)
	return ctx, errs, admin
}

// TestDashboardCSP: the dashboard works under its Content-Security-Policy
// (default-src 'self'): nothing it does is blocked, which Chromium would
// say on the console.
func TestDashboardCSP(t *testing.T) {
	ctx, errs, admin := dashboardRun(t)
	resp, err := http.Get("http://" + admin + "/ui/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Fatalf("/ui/ CSP %q", csp)
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		l := text(ctx, "#limits")
		return strings.Contains(l, "max_connections_per_ip ∞") && strings.Contains(l, "max_pending 10000") && strings.Contains(l, "shutdown_grace")
	}, "every limit shown: %q", text(ctx, "#limits"))
	// Two polls later (the history moves on by 4 s), still nothing blocked.
	last := func() float64 {
		v, _ := eval[float64](ctx, `samples.length ? samples[samples.length - 1].t : 0`)
		return v
	}
	t0 := last()
	testutil.Eventually(t, 20*time.Second, func() bool { return last() > t0+4500 }, "dashboard polls on")
	if e := errs.String(); e != "" {
		t.Errorf("console errors:\n%s", e)
	}
}

// TestDashboardKeepsActionError: an action the API refuses shows why, and
// the message stays through the polls that follow, until the next action.
func TestDashboardKeepsActionError(t *testing.T) {
	ctx, _, _ := dashboardRun(t)
	// Add a server with a bad address: the API answers 400 and says why.
	testutil.Eventually(t, 10*time.Second, func() bool {
		ok, _ := eval[bool](ctx, `(f => f ? (f.querySelector('input[placeholder="name"]').value = "bad",
			f.querySelector('input[placeholder="host:port"]').value = "nohostport", f.querySelector("button").click(), true) : false)(document.querySelector(".addform"))`)
		return ok && exists(ctx, "dialog[open] #confirm-ok")
	}, "add form submitted")
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#confirm-ok"), chromedp.NodeVisible)); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return strings.Contains(text(ctx, "#err"), "400") }, "error shown: %q", text(ctx, "#err"))
	// Two more polls (the history moves on by 4 s): the error is still there.
	last := func() float64 {
		v, _ := eval[float64](ctx, `samples.length ? samples[samples.length - 1].t : 0`)
		return v
	}
	t0 := last()
	testutil.Eventually(t, 20*time.Second, func() bool { return last() > t0+4500 }, "dashboard polls on")
	if e := text(ctx, "#err"); !strings.Contains(e, "400") || !strings.Contains(e, "address") {
		t.Fatalf("the refused action's error was cleared by a refresh: %q", e)
	}
	// The next action that succeeds clears it.
	clickRow(t, ctx, `tr[data-server="brokers/a"] button[data-action="drain"]`)
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#confirm-ok"), chromedp.NodeVisible)); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return text(ctx, "#err") == "" }, "error cleared by the next action: %q", text(ctx, "#err"))
}

// TestDashboardRemovedServer: a server removed while it relays a client is
// a "removed" row of the servers table with its connection, and its
// evacuate button closes it.
func TestDashboardRemovedServer(t *testing.T) {
	ctx, errs := chromium(t)
	b1, b2 := testutil.StartMochi(t), testutil.StartMochi(t)
	admin := startRun(t, stickyConfig(b1.Addr, b2.Addr))
	c := testutil.ConnectRaw(t, mqttAddr(t, admin), "dash-rm")
	var list struct {
		Connections []struct{ Server string } `json:"connections"`
	}
	getJSON(t, "http://"+admin+"/api/v1/connections?client_id=dash-rm", &list)
	gone := list.Connections[0].Server
	if code, body := testutil.HTTP(t, "DELETE", "http://"+admin+"/api/v1/upstreams/brokers/servers/"+gone, ""); code != 200 {
		t.Fatalf("remove %s: %d %s", gone, code, body)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate("http://"+admin+"/ui/")); err != nil {
		t.Fatal(err)
	}
	row := `tr.removed[data-server="brokers/` + gone + `"]`
	testutil.Eventually(t, 20*time.Second, func() bool {
		tx := text(ctx, row)
		return strings.Contains(tx, "removed") && strings.Contains(tx, "1")
	}, "removed row shown: %q; console: %s", text(ctx, row), errs)
	clickRow(t, ctx, row+` button[data-action="evacuate"]`)
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#confirm-ok"), chromedp.NodeVisible)); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return closedByPeer(c) }, "client of the removed server evacuated")
	testutil.Eventually(t, 10*time.Second, func() bool { return !exists(ctx, row) }, "removed row gone once evacuated")
	if e := errs.String(); e != "" {
		t.Errorf("console errors:\n%s", e)
	}
}
