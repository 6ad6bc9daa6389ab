package proxy

import (
	"github.com/mqlb/mqlb/internal/lbauth"
)

// authorize runs the runtime's authentication gate (certificate identity,
// authentication service) on the inspected CONNECT. A rewritten CONNECT
// replaces the one read, and the record shows what the server will see.
func (s *session) authorize() bool {
	if s.c.rt.Auth == nil {
		return true
	}
	v := s.c.rt.Auth.Admit(s.p.ctx, &lbauth.Conn{Listener: s.set.Name, Upstream: s.u.Name, Remote: s.cl.Remote,
		TLS: s.cl.TLS, Connect: &s.connect, Packet: s.data[:s.connect.Size]})
	s.c.setCert("", v.Identity)
	if !v.OK {
		s.refuse(v.Refusal, v.Result)
		if v.Err != nil {
			s.c.reason = v.Err.Error()
		}
		return false
	}
	if v.Packet != nil {
		s.data = append(v.Packet, s.data[s.connect.Size:]...)
		s.connect.ClientID, s.connect.Username = v.ClientID, v.Username
		s.connect.HasUsername = s.connect.HasUsername || v.Username != ""
		s.connect.Size = len(v.Packet)
		s.c.lease.Key.ClientID, s.c.lease.Key.Username = v.ClientID, v.Username
	}
	return true
}
