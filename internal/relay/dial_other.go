//go:build !linux

package relay

import (
	"errors"
	"net"
	"net/netip"
	"time"
)

// ServerConn is a connection dialled on a relay loop (Linux only).
type ServerConn struct{ net.Conn }

// ErrNoLoop is returned by Dial when no event loop can be used: dial
// through the net package instead.
var ErrNoLoop = errors.New("relay: no event loop")

// Dial is Linux-only: elsewhere it returns ErrNoLoop.
func Dial(netip.AddrPort, time.Time, bool) (*ServerConn, error) { return nil, ErrNoLoop }

func startAdopted(*net.TCPConn, *ServerConn, *Stats, Options, Done) *Relay { return nil }

func (s *ServerConn) toTCPConn() (*net.TCPConn, error) { return nil, net.ErrClosed }
