//go:build !linux

package listener

import "net"

// listenConfig leaves TCP keep-alive to Go's per-connection defaults.
var listenConfig net.ListenConfig
