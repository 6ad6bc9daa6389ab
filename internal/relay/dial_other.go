//go:build !linux

package relay

import (
	"errors"
	"net"
	"net/netip"
	"time"
)

// ServerConn is a connection dialled on a relay loop (Linux only).
type ServerConn struct {
	net.Conn
	owner *ClientConn
}

// ErrNoLoop is returned by Dial when no event loop can be used: dial
// through the net package instead.
var ErrNoLoop = errors.New("relay: no event loop")

// Dial is Linux-only: elsewhere it returns ErrNoLoop.
func Dial(netip.AddrPort, time.Time, bool) (*ServerConn, error) { return nil, ErrNoLoop }

func startAdopted(*net.TCPConn, *ServerConn, *Stats, Options, Done) *Relay { return nil }

func (s *ServerConn) toTCPConn() (*net.TCPConn, error) { return nil, net.ErrClosed }

// ClientConn is a client connection accepted on a relay loop (Linux only).
type ClientConn struct{ net.Conn }

// NewClientConn is Linux-only: elsewhere it returns ErrNoLoop.
func NewClientConn(int, netip.AddrPort, netip.AddrPort) (*ClientConn, error) { return nil, ErrNoLoop }

// Dial is Linux-only.
func (*ClientConn) Dial(netip.AddrPort, time.Time, bool) (*ServerConn, error) { return nil, ErrNoLoop }

// Unread is Linux-only.
func (*ClientConn) Unread([]byte) {}

// TakeUnread is Linux-only.
func (*ClientConn) TakeUnread() []byte { return nil }

// RemoteAddrPort is Linux-only.
func (*ClientConn) RemoteAddrPort() netip.AddrPort { return netip.AddrPort{} }

// LocalAddrPort is Linux-only.
func (*ClientConn) LocalAddrPort() netip.AddrPort { return netip.AddrPort{} }

// Control is Linux-only.
func (*ClientConn) Control(func(uintptr)) error { return net.ErrClosed }

// TCPConn is Linux-only.
func (*ClientConn) TCPConn() (*net.TCPConn, error) { return nil, net.ErrClosed }

func startHandover(*ClientConn, *ServerConn, *Stats, Options, Done) *Relay { return nil }
