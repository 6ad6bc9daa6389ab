package listen

import (
	"io"
	"net"
	"testing"
)

// BenchmarkSocketWrite: 100-byte writes (a small PUBLISH) to a peer that
// reads as fast as it can, straight to the *net.TCPConn and through a
// sender: the cost a sender adds to each write mochi makes.
func BenchmarkSocketWrite(b *testing.B) {
	for _, via := range []string{"tcpconn", "sender"} {
		b.Run(via, func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			peer, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			defer peer.Close()
			c, err := ln.Accept()
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			go io.Copy(io.Discard, peer)
			var w io.Writer = c
			if via == "sender" {
				if w, err = newSender(c.(*net.TCPConn), 0, nil); err != nil {
					b.Fatal(err)
				}
			}
			p := make([]byte, 100)
			b.SetBytes(int64(len(p)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := w.Write(p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
