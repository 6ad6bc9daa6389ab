package proxy

import (
	"fmt"
	"runtime/debug"
	"time"
)

// finish ends a connection, exactly once, however it ended (refused,
// relayed and closed, panicked): the client socket closed, the connection
// out of the live table, the lease released with the byte counts, the
// result counted (unless it was when the client got its CONNACK), one
// access-log record, the gauge and the shutdown wait.
func (p *Proxy) finish(c *Conn) {
	if c.finished.Swap(true) {
		return
	}
	if c.client != nil { // else the relay closed it
		c.client.Close()
	}
	c.ticket.Leave()
	if c.ID != 0 { // it was listed
		p.conns.remove(c)
	}
	c.BytesIn, c.BytesOut = c.Stats.In.Load(), c.Stats.Out.Load()
	c.lease.Release(c.BytesIn, c.BytesOut)
	c.Duration = time.Since(c.Start)
	if !c.counted {
		p.metrics.result(c.Listener, c.Result)
	} else { // relayed
		p.metrics.duration.WithLabelValues(c.Upstream).Observe(c.Duration.Seconds())
	}
	c.rt.AccessLog.Write(&c.Record)
	p.active.Add(-1)
	p.wg.Done()
}

// recoverPanic keeps a bug in one connection's path from taking the process
// (and every other connection) down: the panic is logged with its stack and
// the connection finishes like any other. Once the relay owns it, closing
// it makes the relay finish it.
func (s *session) recoverPanic() {
	v := recover()
	if v == nil {
		return
	}
	c := s.c
	s.p.log.Error("panic serving a connection; closed it", "remote", c.Remote, "panic", v, "stack", string(debug.Stack()))
	if s.relayed {
		c.Close()
		return
	}
	if s.server != nil {
		s.server.Close()
	}
	c.Result, c.Reason = ResultError, fmt.Sprint("panic: ", v)
	s.p.finish(c)
}
