package proxy

import (
	"net/netip"
	"time"
)

// Record returns the connection's access-log record as of now, less how
// it ends (result, reason, CONNACK, which a connection ending may still be
// writing): what the admin API lists while it is open. What it has is set
// before the connection is listed.
func (c *Conn) Record() Record {
	r := Record{Start: c.start, Remote: c.remote(), Listener: c.listenerName(),
		ClientID: c.lease.Key.ClientID, Username: c.lease.Key.Username, Version: c.version,
		Upstream: c.upstreamName(), Retries: c.lease.Retries(), BytesIn: c.Stats.In.Load(), BytesOut: c.Stats.Out.Load(),
		Duration: time.Since(c.start)}
	if c.cert != nil {
		r.CertCN, r.Identity = c.cert.cn, c.cert.identity
	}
	if s := c.lease.Server(); s != nil {
		r.Server, r.ServerAddr = s.Name(), s.Address()
	}
	return r
}

// record is the whole access-log record, once the connection has ended.
func (c *Conn) record() Record {
	r := c.Record()
	r.Result, r.Reason, r.Connack = c.result, c.reason, c.connack
	return r
}

// ClientID returns the client identifier the connection was placed by.
func (c *Conn) ClientID() string { return c.lease.Key.ClientID }

// remote is the client's address as the record shows it.
func (c *Conn) remote() string {
	if ap := netip.AddrPortFrom(c.lease.Key.Source, c.port); ap.IsValid() {
		return ap.String()
	}
	return ""
}

func (c *Conn) listenerName() string {
	if c.listener == nil {
		return ""
	}
	return c.listener.Name
}

func (c *Conn) upstreamName() string {
	if c.upstream == nil {
		return ""
	}
	return c.upstream.Name
}

// serverName is the name of the server the connection is placed on, if any.
func (c *Conn) serverName() string {
	if s := c.lease.Server(); s != nil {
		return s.Name()
	}
	return ""
}

// setCert records the client certificate's CN and identity, when either
// is known.
func (c *Conn) setCert(cn, identity string) {
	if cn == "" && identity == "" {
		return
	}
	if c.cert == nil {
		c.cert = &certNames{}
	}
	if cn != "" {
		c.cert.cn = cn
	}
	if identity != "" {
		c.cert.identity = identity
	}
}
