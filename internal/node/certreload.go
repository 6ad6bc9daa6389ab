package node

import (
	"crypto/tls"
	"fmt"
	"slices"
	"strings"

	"github.com/mochi-mqtt/server/v2/listeners"

	"github.com/mqlb/mqlb/internal/config"
	"github.com/mqlb/mqlb/internal/node/listen"
)

// tlsListeners are the node's TLS listeners (tls, wss) as package listen
// made them, by name, and the listeners' config as served.
type tlsListeners struct {
	byName  map[string]listeners.Listener // set by start
	running []config.NodeListener         // n.cfg's, with the tls sections reloads applied; under Node.reloadMu
}

// tlsReload is what a reload changes of the listeners' TLS, built before
// anything changes: each TLS listener's new config.
type tlsReload struct {
	running []config.NodeListener  // the listeners' config once applied
	configs map[string]*tls.Config // by listener name
}

// planTLS reads again the certificate, key and client CA files of each
// running TLS listener that next keeps (same name, a tls section in both)
// — at next's paths, which a reload applies (config.TLS.Reloaded), and
// even when they are unchanged: certificates are rotated in place — and
// builds the listeners' new TLS configs. It changes nothing; a file that
// cannot be read or used is the error, naming the listener and the file.
func (n *Node) planTLS(next *config.Node) (tlsReload, error) {
	p := tlsReload{running: slices.Clone(n.tls.running), configs: map[string]*tls.Config{}}
	for i, cur := range p.running {
		j := slices.IndexFunc(next.Listeners, func(l config.NodeListener) bool { return l.Name == cur.Name })
		if cur.TLS == nil || j < 0 || next.Listeners[j].TLS == nil || n.tls.byName[cur.Name] == nil {
			continue // a listener added, removed or changed to plain: on restart only
		}
		t := cur.TLS.Reloaded(next.Listeners[j].TLS)
		tc, err := t.ServerConfig()
		if err != nil {
			return tlsReload{}, fmt.Errorf("listener %s: %w; its certificates stay", cur.Name, err)
		}
		p.running[i].TLS, p.configs[cur.Name] = t, tc
	}
	return p, nil
}

// applyTLS gives the listeners their new TLS configs for the handshakes
// from now on (the connections made go on), then warns about the
// certificates they serve — expired, not yet valid, unusable with
// tls.ciphers — as at start, and exports their expiry.
func (n *Node) applyTLS(p tlsReload) {
	var names []string
	for i, l := range p.running {
		tc := p.configs[l.Name]
		if tc == nil {
			continue
		}
		if err := listen.SetTLS(n.tls.byName[l.Name], tc); err != nil {
			n.log.Error("TLS certificates not reloaded", "listener", l.Name, "error", err)
			p.running[i] = n.tls.running[i]
			continue
		}
		names = append(names, l.Name)
	}
	n.tls.running = p.running
	if len(names) > 0 {
		n.log.Info("TLS certificates reloaded: new handshakes use them, connections made go on", "listeners", strings.Join(names, ", "))
	}
	n.metrics.certs.Check((&config.Node{Listeners: n.tls.running}).CertSources(), n.log)
}
