package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mqlb/mqlb/internal/mqttwire"
)

// ConnConfig is a connection ramp: Clients connections opened at Rate per
// second, at most Concurrency of them in flight, held for Hold, then closed
// with a DISCONNECT.
type ConnConfig struct {
	Target      Target    `json:"target"`
	Clients     int       `json:"clients"`
	Rate        float64   `json:"rate"` // connects per second; 0: as fast as possible
	Concurrency int       `json:"concurrency"`
	Hold        Duration  `json:"hold"`
	Timeout     Duration  `json:"timeout"`    // dial to CONNACK, per connection
	KeepAlive   Duration  `json:"keep_alive"` // in the CONNECT; PINGREQs are sent at this interval while connected
	Prefix      string    `json:"client_id_prefix"`
	Watch       []Watched `json:"watch,omitempty"`
	// Progress gets the live status line (a terminal); nil for none.
	Progress io.Writer `json:"-"`
}

func (c *ConnConfig) check() error {
	switch {
	case c.Clients <= 0:
		return errors.New("--clients must be at least 1")
	case c.Rate < 0:
		return errors.New("--rate must not be negative")
	case c.Concurrency <= 0:
		return errors.New("--concurrency must be at least 1")
	case c.Timeout.Duration <= 0:
		return errors.New("--timeout must be positive")
	case c.KeepAlive.Duration < 0 || c.KeepAlive.Duration > 65535*time.Second:
		return errors.New("--keepalive must be between 0 and 65535s")
	}
	return nil
}

// ConnResult is the outcome of a connection ramp.
type ConnResult struct {
	Mode      string           `json:"mode"` // "conn"
	Config    ConnConfig       `json:"config"`
	Start     time.Time        `json:"start"`
	Attempted int64            `json:"attempted"`
	Connected int64            `json:"connected"`
	Failed    int64            `json:"failed"`
	Failures  map[string]int64 `json:"failures,omitempty"` // by reason
	// TimeToAll is from the first dial to the last CONNACK that accepted.
	TimeToAll   float64 `json:"time_to_all_s"`
	ConnectRate float64 `json:"connect_rate"` // Connected / TimeToAll
	Latency     Latency `json:"connect_latency"`
	// Dropped counts held connections the server had closed by the end of the hold.
	Dropped int64 `json:"dropped_during_hold"`
	Usage
	Interrupted bool `json:"interrupted,omitempty"`
}

// connRun is the state of one ramp.
type connRun struct {
	cfg     ConnConfig
	dialers []*net.Dialer
	start   time.Time
	hist    Histogram
	fails   tally

	attempted, connected, failed, inflight atomic.Int64
	last                                   atomic.Int64 // since start, of the latest accepting CONNACK
	holdEnd                                atomic.Int64 // Unix ns; 0 while connecting

	mu   sync.Mutex
	held []net.Conn
}

// RunConn runs a connection ramp. It returns early, with Interrupted set,
// when ctx ends.
func RunConn(ctx context.Context, cfg ConnConfig) (*ConnResult, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	r := &connRun{cfg: cfg, dialers: cfg.Target.dialers(), start: time.Now()}
	w := startWatch(cfg.Watch)
	prog := startProgress(cfg.Progress, r.progressLine)
	defer prog.stop()
	pingCtx, stopPing := context.WithCancel(ctx)
	defer stopPing()
	go r.pinger(pingCtx)

	r.connectAll(ctx)
	res := r.result()
	r.hold(ctx)
	stopPing()
	res.Dropped = r.countDropped()
	res.Usage = w.stop()
	prog.stop()
	r.disconnectAll()
	res.Interrupted = ctx.Err() != nil
	return res, nil
}

// connectAll opens the connections: a pacer hands out indexes at the rate,
// Concurrency workers connect them.
func (r *connRun) connectAll(ctx context.Context) {
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range min(r.cfg.Concurrency, r.cfg.Clients) {
		wg.Go(func() {
			for i := range jobs {
				r.connectOne(ctx, i)
			}
		})
	}
	p := newPacer(r.cfg.Rate, r.start)
	for i := range r.cfg.Clients {
		if !p.wait(ctx, i) {
			break
		}
		select {
		case jobs <- i:
		case <-ctx.Done():
		}
	}
	close(jobs)
	wg.Wait()
}

func (r *connRun) connectOne(ctx context.Context, i int) {
	r.attempted.Add(1)
	r.inflight.Add(1)
	defer r.inflight.Add(-1)
	start := time.Now()
	c, err := r.handshake(ctx, i, start)
	if err != nil {
		if ctx.Err() == nil { // an interrupted run's cut attempts are no failures
			r.failed.Add(1)
			r.fails.add(reason(err))
		}
		return
	}
	now := time.Now()
	r.hist.Record(now.Sub(start))
	r.connected.Add(1)
	storeMax(&r.last, int64(now.Sub(r.start)))
	r.mu.Lock()
	r.held = append(r.held, c)
	r.mu.Unlock()
}

// handshake dials, writes a CONNECT and reads the CONNACK, all before the
// timeout; it returns the connection only if the CONNACK accepted it.
func (r *connRun) handshake(ctx context.Context, i int, start time.Time) (net.Conn, error) {
	t := &r.cfg.Target
	deadline := start.Add(r.cfg.Timeout.Duration)
	c, err := t.dial(ctx, r.dialers[i%len(r.dialers)], deadline)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	c.SetDeadline(deadline)
	pkt := mqttwire.AppendConnect(make([]byte, 0, 64), &mqttwire.Connect{
		Version: t.Version, CleanStart: true, ClientID: fmt.Sprintf("%s%d", r.cfg.Prefix, i),
		KeepAlive: uint16(r.cfg.KeepAlive.Seconds()), Username: t.Username, HasUsername: t.Username != "",
		Password: []byte(t.Password), HasPassword: t.Password != "",
	})
	if _, err = c.Write(pkt); err == nil {
		var rp mqttwire.Reply // bytes after the CONNACK do not matter: held connections are not read
		if rp, err = mqttwire.ReadConnack(c, t.Version, nil); err == nil && rp.Size == 0 {
			err = errors.New("server asked for enhanced authentication (AUTH)")
		} else if err == nil && rp.Code != 0 {
			err = &refusedError{code: rp.Code, version: t.Version}
		}
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

func (r *connRun) result() *ConnResult {
	last := time.Duration(r.last.Load())
	res := &ConnResult{
		Mode: "conn", Config: r.cfg, Start: r.start,
		Attempted: r.attempted.Load(), Connected: r.connected.Load(), Failed: r.failed.Load(),
		Failures: r.fails.snapshot(), TimeToAll: last.Seconds(), Latency: r.hist.Summary(),
	}
	if last > 0 {
		res.ConnectRate = float64(res.Connected) / last.Seconds()
	}
	return res
}

func (r *connRun) progressLine(elapsed time.Duration) string {
	if end := r.holdEnd.Load(); end != 0 {
		left := time.Until(time.Unix(0, end)).Round(time.Second)
		return fmt.Sprintf("holding %s connections, %v left  failed %s",
			commas(r.connected.Load()), max(left, 0), commas(r.failed.Load()))
	}
	n := r.connected.Load()
	return fmt.Sprintf("connected %s/%d  %s/s  in flight %d  failed %s", commas(n), r.cfg.Clients,
		commas(int64(float64(n)/elapsed.Seconds())), r.inflight.Load(), commas(r.failed.Load()))
}

// pacer spaces events at a rate from a start time; it never sleeps to catch
// up, so a late event goes at once and the average rate holds.
type pacer struct {
	start time.Time
	every time.Duration // 0: no pacing
}

func newPacer(rate float64, start time.Time) pacer {
	if rate <= 0 {
		return pacer{start: start}
	}
	return pacer{start: start, every: time.Duration(float64(time.Second) / rate)}
}

// wait returns when event i is due, or false when ctx ends first.
func (p pacer) wait(ctx context.Context, i int) bool {
	d := time.Until(p.start.Add(time.Duration(i) * p.every))
	if p.every == 0 || d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// storeMax raises a to v if v is larger.
func storeMax(a *atomic.Int64, v int64) {
	for old := a.Load(); v > old && !a.CompareAndSwap(old, v); old = a.Load() {
	}
}
