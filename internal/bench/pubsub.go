package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mqlb/mqlb/internal/topic"
)

// PubSubConfig is a publish/subscribe run: Subscribers subscribe (each to
// topic bench/{i mod Topics}, or all to $share/Shared/bench/+), then
// Publishers publish Size-byte messages to bench/{i mod Topics} at Rate each
// for Duration; deliveries are then awaited for up to Drain.
type PubSubConfig struct {
	PubTarget   Target    `json:"pub_target"`
	SubTarget   Target    `json:"sub_target"`
	Publishers  int       `json:"publishers"`
	Subscribers int       `json:"subscribers"`
	QoS         byte      `json:"qos"`
	Size        int       `json:"size"`
	Rate        float64   `json:"rate"` // messages per second per publisher; 0: as fast as possible
	Duration    Duration  `json:"duration"`
	Topics      int       `json:"topics"`
	Shared      string    `json:"shared,omitempty"` // shared subscription group
	Inflight    int       `json:"inflight"`         // unacknowledged QoS 1/2 publishes per publisher (3.1.1)
	Drain       Duration  `json:"drain"`
	Timeout     Duration  `json:"timeout"` // connect, subscribe, acknowledgement
	Prefix      string    `json:"client_id_prefix"`
	Client      string    `json:"client"`               // ClientLite (default) or ClientPaho
	Persistent  bool      `json:"persistent,omitempty"` // subscribers with persistent sessions
	Watch       []Watched `json:"watch,omitempty"`
	Progress    io.Writer `json:"-"`
}

func (c *PubSubConfig) check() error {
	switch {
	case c.Publishers < 1 || c.Subscribers < 0:
		return errors.New("--publishers must be at least 1 and --subscribers at least 0")
	case c.QoS > 2:
		return errors.New("--qos must be 0, 1 or 2")
	case c.Size < HeaderSize || c.Size > 256<<20:
		return fmt.Errorf("--size must be between %d (the bench header) and 268435456", HeaderSize)
	case c.Rate < 0 || c.Duration.Duration <= 0 || c.Drain.Duration < 0 || c.Timeout.Duration <= 0:
		return errors.New("--rate, --drain must not be negative; --duration, --timeout must be positive")
	case c.Topics < 1:
		return errors.New("--topics must be at least 1")
	case c.Inflight < 1 || c.Inflight > 65535:
		return errors.New("--inflight must be between 1 and 65535")
	case c.Client != ClientLite && c.Client != ClientPaho:
		return fmt.Errorf("--client must be %s or %s", ClientLite, ClientPaho)
	}
	if c.Shared != "" {
		if err := topic.ValidShareName(c.Shared); err != nil {
			return fmt.Errorf("--shared %q: %w", c.Shared, err)
		}
	}
	return nil
}

// PubSubResult is the outcome of a pub/sub run.
type PubSubResult struct {
	Mode   string       `json:"mode"` // "pubsub"
	Config PubSubConfig `json:"config"`
	Start  time.Time    `json:"start"`
	Counts
	PublishErrors   int64            `json:"publish_errors"`
	ConnectionsLost int64            `json:"connections_lost"`
	Errors          map[string]int64 `json:"errors,omitempty"` // by reason
	PublishSeconds  float64          `json:"publish_s"`
	// ReceiveSeconds is from the first publish to the last delivery.
	ReceiveSeconds float64 `json:"receive_s"`
	SentRate       float64 `json:"sent_per_s"`
	ReceivedRate   float64 `json:"received_per_s"`
	Latency        Latency `json:"latency"` // publish to delivery, all deliveries
	Usage
	Interrupted bool `json:"interrupted,omitempty"`
}

// pubsubRun is the state of one run.
type pubsubRun struct {
	cfg       PubSubConfig
	rt        routing
	run       uint32
	pubs      []client
	subs      []client
	receivers []*receiver
	published []atomic.Int64
	hist      Histogram
	errs      tally
	start     atomic.Int64 // Unix ns of the first publish (read by the delivery handlers)

	sent, received, fresh, pubErrors, lost atomic.Int64
	lastRecv                               atomic.Int64 // since start
	closing                                atomic.Bool
}

// RunPubSub runs a pub/sub benchmark. An error means the clients could not be
// set up; problems during the run are counted in the result.
func RunPubSub(ctx context.Context, cfg PubSubConfig) (*PubSubResult, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	r := &pubsubRun{cfg: cfg, run: rand.Uint32(), published: make([]atomic.Int64, cfg.Publishers),
		rt: routing{pubs: cfg.Publishers, subs: cfg.Subscribers, topics: cfg.Topics, shared: cfg.Shared != ""}}
	defer r.disconnectAll()
	if err := r.connectAll(ctx); err != nil {
		return nil, err
	}
	w := startWatch(cfg.Watch)
	var sent, recv rateMeter
	prog := startProgress(cfg.Progress, func(el time.Duration) string {
		s, n := r.sent.Load(), r.received.Load()
		return fmt.Sprintf("sent %s/s  received %s/s  total %s → %s  errors %s",
			commas(int64(sent.rate(s, el))), commas(int64(recv.rate(n, el))), commas(s), commas(n),
			commas(r.pubErrors.Load()+r.lost.Load()))
	})
	defer prog.stop()
	start := time.Now()
	r.start.Store(start.UnixNano())
	r.publishAll(ctx)
	pubDone := time.Since(start)
	r.drain(ctx)
	prog.stop()
	res := r.result(pubDone)
	res.Usage = w.stop()
	res.Interrupted = ctx.Err() != nil
	return res, nil
}

// connectAll connects and subscribes every subscriber, then connects the
// publishers.
func (r *pubsubRun) connectAll(ctx context.Context) error {
	r.receivers = make([]*receiver, r.cfg.Subscribers)
	r.subs = make([]client, r.cfg.Subscribers)
	err := parallel(r.cfg.Subscribers, func(i int) error {
		r.receivers[i] = newReceiver(r.cfg.Publishers)
		c, err := connectClient(ctx, r.clientConfig(&r.cfg.SubTarget, "s", i))
		if err != nil {
			return err
		}
		r.subs[i] = c
		return c.subscribe(ctx, r.filter(i), r.cfg.QoS)
	})
	if err != nil {
		return err
	}
	r.pubs = make([]client, r.cfg.Publishers)
	return parallel(r.cfg.Publishers, func(i int) error {
		c, err := connectClient(ctx, r.clientConfig(&r.cfg.PubTarget, "p", i))
		r.pubs[i] = c
		return err
	})
}

func (r *pubsubRun) clientConfig(t *Target, role string, i int) clientConfig {
	cc := clientConfig{kind: r.cfg.Client, target: t, id: r.cfg.Prefix + role + strconv.Itoa(i), timeout: r.cfg.Timeout.Duration,
		inflight: r.cfg.Inflight, onLost: r.onLost, onAckError: r.onAckError}
	if role == "s" {
		cc.onMessage = r.onMessage(r.receivers[i])
		cc.persistent = r.cfg.Persistent
	}
	return cc
}

func (r *pubsubRun) topic(i int) string { return "bench/" + strconv.Itoa(i) }

func (r *pubsubRun) filter(sub int) string {
	if r.rt.shared {
		return "$share/" + r.cfg.Shared + "/bench/+"
	}
	return r.topic(r.rt.subTopic(sub))
}

func (r *pubsubRun) onLost(err error) {
	if r.closing.Load() {
		return
	}
	r.lost.Add(1)
	r.errs.add("connection lost: " + reason(err))
}

func (r *pubsubRun) onAckError(err error) {
	r.pubErrors.Add(1)
	r.errs.add("not acknowledged: " + reason(err))
}

// onMessage returns the delivery handler of one subscriber.
func (r *pubsubRun) onMessage(rec *receiver) func([]byte) {
	return func(payload []byte) {
		now := time.Now()
		st, err := parsePayload(payload, r.run, r.cfg.Publishers)
		if err != nil {
			rec.recordForeign()
			return
		}
		r.hist.Record(now.Sub(time.Unix(0, st.Sent)))
		r.received.Add(1)
		if rec.record(int(st.Pub), st.Seq) {
			r.fresh.Add(1)
		}
		storeMax(&r.lastRecv, now.UnixNano()-r.start.Load())
	}
}

// parallel runs f(0..n-1) concurrently and returns their errors joined.
func parallel(n int, f func(i int) error) error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = f(i) })
	}
	wg.Wait()
	return errors.Join(errs...)
}
