//go:build !linux

package relay

import "net"

// startSplice is Linux-only; elsewhere TCP pairs use the goroutine relay.
func startSplice(*net.TCPConn, *net.TCPConn, *Stats, Options, Done) *Relay { return nil }

func waitReadable(*net.TCPConn) error { return nil }
