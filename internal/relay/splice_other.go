//go:build !linux

package relay

import (
	"crypto/tls"
	"net"
	"syscall"
)

// startSplice is Linux-only; elsewhere TCP pairs use the goroutine relay.
func startSplice(*net.TCPConn, *net.TCPConn, *Stats, Options, Done) *Relay { return nil }

func waitReadable(*net.TCPConn) error { return nil }

// startTLS is Linux-only; elsewhere TLS pairs use the goroutine relay.
func startTLS(*tls.Conn, *Socket, *net.TCPConn, *Stats, Options, Done) *Relay { return nil }

func readNow(_ syscall.RawConn, c *net.TCPConn, p []byte) (int, error) { return c.Read(p) }
