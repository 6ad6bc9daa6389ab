//go:build !linux

package listener

import "net"

// ServeLoop is Serve elsewhere than Linux: handle gets *net.TCPConns.
func (l *Listener) ServeLoop(handle func(net.Conn)) error {
	return l.Serve(func(c *net.TCPConn) { handle(c) })
}
