package bench

import (
	"context"
	"sync"
	"time"
)

// publishAll runs every publisher for the duration, then waits (up to the
// drain time) for their outstanding acknowledgements.
func (r *pubsubRun) publishAll(ctx context.Context) {
	start := time.Unix(0, r.start.Load())
	end := start.Add(r.cfg.Duration.Duration)
	var wg sync.WaitGroup
	for p, c := range r.pubs {
		wg.Go(func() {
			r.publisher(ctx, p, c, start, end)
			fctx, cancel := context.WithTimeout(ctx, max(r.cfg.Drain.Duration, time.Second))
			defer cancel()
			c.flush(fctx) // errors were counted by onAckError
		})
	}
	wg.Wait()
}

// publisher publishes messages 0, 1, 2... until end. A message that could
// not be handed over is retried with the same sequence number, so that the
// stream stays gapless; a publisher whose connection was lost stops.
func (r *pubsubRun) publisher(ctx context.Context, p int, c client, start, end time.Time) {
	topic := r.topic(r.rt.pubTopic(p))
	pace := newPacer(r.cfg.Rate, start)
	for seq := 0; pace.wait(ctx, seq); {
		now := time.Now()
		if now.After(end) {
			return
		}
		payload := appendPayload(make([]byte, 0, r.cfg.Size),
			stamp{Run: r.run, Pub: uint32(p), Seq: uint64(seq), Sent: now.UnixNano()}, r.cfg.Size)
		if err := c.publish(ctx, topic, r.cfg.QoS, payload); err != nil {
			if ctx.Err() != nil {
				return
			}
			r.pubErrors.Add(1)
			r.errs.add("publish: " + reason(err))
			if r.lost.Load() > 0 {
				return
			}
			continue
		}
		r.published[p].Add(1)
		r.sent.Add(1)
		seq++
	}
}

// drain waits until every expected delivery has arrived, the drain time has
// passed, or ctx ends.
func (r *pubsubRun) drain(ctx context.Context) {
	var expected int64
	for p := range r.published {
		expected += r.published[p].Load() * r.rt.copies(p)
	}
	t := time.NewTimer(r.cfg.Drain.Duration)
	defer t.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for r.fresh.Load() < expected {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			return
		case <-tick.C:
		}
	}
}

// disconnectAll ends every client; losses reported from now on are ours.
func (r *pubsubRun) disconnectAll() {
	r.closing.Store(true)
	var wg sync.WaitGroup
	for _, c := range append(r.pubs, r.subs...) {
		if c != nil {
			wg.Go(c.disconnect)
		}
	}
	wg.Wait()
	r.endSessions()
}

// endSessions discards the persistent subscribers' sessions with one clean
// connection each: a later run on the same topics (bench/N) would otherwise
// also queue its messages for them, and the broker's work would grow with
// every run (bench/nodes.sh runs several rounds against one cluster).
func (r *pubsubRun) endSessions() {
	if !r.cfg.Persistent {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.Timeout.Duration)
	defer cancel()
	_ = parallel(len(r.subs), func(i int) error {
		cc := r.clientConfig(&r.cfg.SubTarget, "s", i)
		cc.persistent, cc.onMessage = false, nil
		c, err := connectClient(ctx, cc)
		if err == nil {
			c.disconnect()
		}
		return nil // best effort: the run's result stands
	})
}

// result accounts the run once publishing and the drain are over. The
// receivers are locked while they are read, so late deliveries wait.
func (r *pubsubRun) result(publishTime time.Duration) *PubSubResult {
	published := make([]int64, len(r.published))
	for p := range r.published {
		published[p] = r.published[p].Load()
	}
	res := &PubSubResult{
		Mode: "pubsub", Config: r.cfg, Start: time.Unix(0, r.start.Load()),
		Counts:        account(r.rt, published, r.receivers),
		PublishErrors: r.pubErrors.Load(), ConnectionsLost: r.lost.Load(), Errors: r.errs.snapshot(),
		PublishSeconds: publishTime.Seconds(), ReceiveSeconds: time.Duration(r.lastRecv.Load()).Seconds(),
		Latency: r.hist.Summary(),
	}
	if res.PublishSeconds > 0 {
		res.SentRate = float64(res.Published) / res.PublishSeconds
	}
	if res.ReceiveSeconds > 0 {
		res.ReceivedRate = float64(res.Received) / res.ReceiveSeconds
	}
	return res
}
