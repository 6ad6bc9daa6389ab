package relay

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
)

// bufSize fits one TLS record; smallBufSize is what a TLS or WebSocket
// source is read with while it may be idle.
const (
	bufSize      = 16 << 10
	smallBufSize = 1 << 10
)

var (
	bufPool      = sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}
	smallBufPool = sync.Pool{New: func() any { b := make([]byte, smallBufSize); return &b }}
)

// copyBuffered copies src to dst through pooled buffers until src's EOF (nil)
// or an error. When src is a TCP socket it first waits for data, so a waiting
// connection holds no buffer. A TLS or WebSocket source may hold decrypted or
// framed bytes of its own, so a buffer must be taken before the read: a small
// one after a read that small (an idle device's last packet is a PINGREQ or a
// small PUBLISH), the full-size one after a larger read (a busy connection;
// the switch splits one write in two, once per burst).
func copyBuffered(dst, src net.Conn, n *atomic.Int64) error {
	tc, _ := src.(*net.TCPConn)
	small := tc == nil
	for {
		if tc != nil {
			if err := waitReadable(tc); err != nil {
				return err
			}
		}
		pool := &bufPool
		if small {
			pool = &smallBufPool
		}
		bp := pool.Get().(*[]byte)
		k, rerr := src.Read(*bp)
		if k > 0 {
			_, werr := dst.Write((*bp)[:k])
			n.Add(int64(k))
			if werr != nil {
				pool.Put(bp)
				return werr
			}
		}
		if tc == nil {
			small = k < smallBufSize
		}
		pool.Put(bp)
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}
