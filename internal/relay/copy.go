package relay

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
)

// bufSize fits one TLS record.
const bufSize = 16 << 10

var bufPool = sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}

// copyBuffered copies src to dst through pooled buffers until src's EOF (nil)
// or an error. When src is a TCP socket it first waits for data, so a waiting
// connection holds no buffer (a TLS source may hold decrypted bytes of its
// own, so there the buffer is taken before the read).
func copyBuffered(dst, src net.Conn, n *atomic.Int64) error {
	tc, _ := src.(*net.TCPConn)
	for {
		if tc != nil {
			if err := waitReadable(tc); err != nil {
				return err
			}
		}
		bp := bufPool.Get().(*[]byte)
		k, rerr := src.Read(*bp)
		if k > 0 {
			_, werr := dst.Write((*bp)[:k])
			n.Add(int64(k))
			if werr != nil {
				bufPool.Put(bp)
				return werr
			}
		}
		bufPool.Put(bp)
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}
