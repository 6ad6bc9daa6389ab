package bench

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mqlb/mqlb/internal/mqttwire"
)

// hold waits out the hold time (or ctx) once the connections are open.
func (r *connRun) hold(ctx context.Context) {
	if r.cfg.Hold.Duration <= 0 || ctx.Err() != nil {
		return
	}
	end := time.Now().Add(r.cfg.Hold.Duration)
	r.holdEnd.Store(end.UnixNano())
	t := time.NewTimer(time.Until(end))
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// snapshot returns the connections opened so far.
func (r *connRun) snapshot() []net.Conn {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]net.Conn(nil), r.held...)
}

// pinger sends a PINGREQ on every open connection each keep-alive interval,
// so that servers keep them through long holds [MQTT-3.1.2-23]. The
// PINGRESPs stay unread in the socket buffers (two bytes each).
func (r *connRun) pinger(ctx context.Context) {
	if r.cfg.KeepAlive.Duration <= 0 {
		return
	}
	t := time.NewTicker(r.cfg.KeepAlive.Duration)
	defer t.Stop()
	ping := mqttwire.AppendPingreq(nil)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, c := range r.snapshot() {
			c.SetWriteDeadline(time.Now().Add(time.Second))
			c.Write(ping) // a failed write shows up as a dropped connection
		}
	}
}

// countDropped counts held connections the server has closed or reset.
func (r *connRun) countDropped() int64 {
	var n int64
	for _, c := range r.snapshot() {
		if !alive(c) {
			n++
		}
	}
	return n
}

// alive reads what is waiting on c's socket without blocking, discarding it
// (PINGRESPs): false if the peer closed or reset the connection. For TLS the
// raw socket is read; the TLS session is not read again afterwards.
func alive(c net.Conn) bool {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	up := true
	var buf [512]byte
	err = raw.Read(func(fd uintptr) bool {
		for {
			n, _, err := unix.Recvfrom(int(fd), buf[:], unix.MSG_DONTWAIT)
			switch {
			case n > 0:
				continue
			case errors.Is(err, unix.EINTR):
				continue
			case n == 0 && err == nil: // EOF
				up = false
			case !errors.Is(err, unix.EAGAIN):
				up = false
			}
			return true
		}
	})
	return up && err == nil
}

// disconnectAll sends each held connection a DISCONNECT and closes it, a
// few at a time.
func (r *connRun) disconnectAll() {
	conns := r.snapshot()
	pkt := mqttwire.AppendDisconnect(nil, r.cfg.Target.Version, 0)
	var wg sync.WaitGroup
	const workers = 8
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(conns); i += workers {
				conns[i].SetWriteDeadline(time.Now().Add(time.Second))
				conns[i].Write(pkt)
				conns[i].Close()
			}
		})
	}
	wg.Wait()
}
