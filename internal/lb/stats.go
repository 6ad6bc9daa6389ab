package lb

import (
	"slices"
	"strings"

	"github.com/mqlb/mqlb/internal/admin"
	"github.com/mqlb/mqlb/internal/config"
)

var _ admin.Stats = (*LB)(nil)

// Listeners implements admin.Stats.
func (l *LB) Listeners() []admin.ListenerInfo {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []admin.ListenerInfo
	for _, lc := range l.cfg.Listeners {
		li := admin.ListenerInfo{Name: lc.Name, Upstream: lc.Upstream, Address: lc.Address,
			TLS: lc.TLS != nil, ProxyProtocol: lc.ProxyProtocol != nil && lc.ProxyProtocol.Accept}
		if ln := l.listeners[listenKey(lc)]; ln != nil {
			li.Address = ln.Addr().String()
		}
		if lc.WebSocket != nil {
			li.WebSocket = lc.WebSocket.Path
		}
		out = append(out, li)
	}
	slices.SortFunc(out, func(a, b admin.ListenerInfo) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Limits implements admin.Stats.
func (l *LB) Limits() config.Limits {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cfg.Limits
}

// Results implements admin.Stats.
func (l *LB) Results(f func(listener, result string, n uint64)) { l.proxy.Results(f) }

// ServerBytes implements admin.Stats.
func (l *LB) ServerBytes() map[[2]string][2]int64 { return l.proxy.ServerBytes() }

// ClientConnections implements admin.Stats.
func (l *LB) ClientConnections() int64 { return l.proxy.Active() }

// SetNodes tells the admin API which broker nodes to show (mqlb up); call
// before Run.
func (l *LB) SetNodes(nodes []admin.Node) {
	if l.admin != nil {
		l.admin.SetNodes(nodes)
	}
}
