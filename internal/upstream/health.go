package upstream

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	proxyproto "github.com/pires/go-proxyproto"

	"github.com/mqlb/mqlb/internal/config"
	"github.com/mqlb/mqlb/internal/mqttwire"
)

// checks runs one goroutine per server of an upstream.
type checks struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func (c *checks) stop() {
	c.cancel()
	c.wg.Wait()
}

func startChecks(u *Upstream) *checks {
	ctx, cancel := context.WithCancel(context.Background())
	c := &checks{cancel: cancel}
	if u.cfg.HealthCheck.Type == "none" {
		return c
	}
	for _, s := range u.Servers {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			u.checkLoop(ctx, s)
		}()
	}
	return c
}

// checkLoop checks s at once and then every interval, with ±10% jitter so
// many LBs (or servers) do not check in lockstep. Checks start on that
// schedule whatever they last: a broker that accepts TCP and never answers
// (hung, SIGSTOPped) costs each check its timeout, and is still marked down
// within interval × fall.
func (u *Upstream) checkLoop(ctx context.Context, s *Server) {
	hc := u.cfg.HealthCheck
	for {
		start := time.Now()
		if s.admin.Load() != adminDisabled {
			err := u.checkOnce(ctx, s)
			if ctx.Err() != nil {
				return
			}
			d := time.Since(start)
			s.report(err, hc.Rise, hc.Fall, true, d)
			if u.onCheck != nil {
				u.onCheck(s, d, err)
			}
		}
		jitter := time.Duration(rand.Int64N(int64(hc.Interval)/5+1)) - hc.Interval.D()/10
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(start.Add(hc.Interval.D() + jitter))):
		}
	}
}

func (u *Upstream) checkOnce(ctx context.Context, s *Server) error {
	hc := u.cfg.HealthCheck
	ctx, cancel := context.WithTimeout(ctx, hc.Timeout.D())
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", s.addr)
	if err != nil {
		return err
	}
	defer c.Close()
	deadline, _ := ctx.Deadline()
	c.SetDeadline(deadline)
	hdr, err := localProxyHeader(u.cfg.ProxyProtocol)
	if err != nil {
		return err
	}
	if hc.Type == "tcp" {
		if len(hdr) > 0 {
			_, err = c.Write(hdr)
		}
		return err
	}
	hc.ClientID = checkClientID(hc, s.name)
	return proxyHint(mqttCheck(c, hdr, hc), u.cfg.ProxyProtocol)
}

// checkClientID is the check's client id for server name: "{server}" in
// the configured id is replaced by the server's name, so that the checks of
// the nodes of one cluster do not take each other's session over (the same
// client id connecting to another node is a session takeover). MQTT 3.1
// allows 23 bytes at most: longer ids are cut there.
func checkClientID(hc config.HealthCheck, name string) string {
	id := strings.ReplaceAll(hc.ClientID, "{server}", name)
	if hc.ProtocolVersion == 3 && len(id) > 23 {
		n := 23
		for n > 0 && !utf8.RuneStart(id[n]) {
			n--
		}
		id = id[:n]
	}
	return id
}

// mqttCheck does CONNECT → CONNACK (accepted) → DISCONNECT. A refusing
// CONNACK is a failure that names the code.
func mqttCheck(c net.Conn, hdr []byte, hc config.HealthCheck) error {
	v := byte(hc.ProtocolVersion)
	req := &mqttwire.Connect{Version: v, CleanStart: true, KeepAlive: 10, ClientID: hc.ClientID,
		Username: hc.Username, HasUsername: hc.Username != "", Password: []byte(hc.Password), HasPassword: hc.Password != ""}
	rp, err := mqttHandshake(c, mqttwire.AppendConnect(hdr, req), v)
	switch {
	case err != nil:
		return err
	case rp.Size == 0:
		return errors.New("answered AUTH: a check cannot do enhanced authentication")
	case rp.Code != 0:
		return fmt.Errorf("CONNACK refused with code 0x%02x", rp.Code)
	}
	_, err = c.Write(mqttwire.AppendDisconnect(nil, v, 0))
	return err
}

// localProxyHeader is the header a check sends when the upstream expects
// PROXY: v1 "UNKNOWN" or v2 LOCAL, meaning "this is the proxy itself".
func localProxyHeader(mode string) ([]byte, error) {
	switch mode {
	case "v1":
		return []byte("PROXY UNKNOWN\r\n"), nil
	case "v2":
		h := &proxyproto.Header{Version: 2, Command: proxyproto.LOCAL, TransportProtocol: proxyproto.UNSPEC}
		return h.Format()
	}
	return nil, nil
}
