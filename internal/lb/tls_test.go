package lb

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"

	"github.com/mqlb/mqlb/internal/mqttwire"
	"github.com/mqlb/mqlb/internal/testutil"
)

// TestProxyProtocolOutCarriesClientAddress: brokers that require PROXY
// headers (go-proxyproto wrapped listeners) see the client's own address,
// for v1 and v2, and health checks still pass (they send LOCAL/UNKNOWN).
func TestProxyProtocolOutCarriesClientAddress(t *testing.T) {
	for _, v := range []string{"v1", "v2"} {
		t.Run(v, func(t *testing.T) {
			h := newHarness(t, harnessOpts{brokerOpt: []testutil.BrokerOption{testutil.WithProxyProtocol()},
				upstream: "    proxy_protocol: " + v + "\n"})
			srv := h.lb.Upstreams().Get("brokers").Server("b0")
			testutil.Eventually(t, 5*time.Second, func() bool { return srv.Health().Successes >= 2 }, "health checks pass with PROXY %s", v)
			conn, err := net.Dial("tcp", h.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			c := paho.NewClient(paho.ClientConfig{Conn: conn})
			if _, err := c.Connect(context.Background(), &paho.Connect{ClientID: "pp-" + v, KeepAlive: 30, CleanStart: true}); err != nil {
				t.Fatal(err)
			}
			b := h.brokers[h.brokerOf("pp-"+v)]
			seen := b.ConnectsOf("pp-" + v)
			if len(seen) != 1 || seen[0].Remote != conn.LocalAddr().String() {
				t.Fatalf("broker saw %+v; want remote %s (the client's address)", seen, conn.LocalAddr())
			}
		})
	}
}

// tlsListener is an extra listener block with TLS.
func tlsListener(cert, key, ca, auth string) string {
	return fmt.Sprintf("  - name: mqtts\n    address: \"127.0.0.1:0\"\n    upstream: brokers\n    tls: { cert: %q, key: %q, client_ca: %q, client_auth: %s }\n", cert, key, ca, auth)
}

// TestMutualTLSCarriesCNInProxyV2: TLS terminated at the LB with client
// certificates required; the broker behind gets PROXY v2 with the SSL TLV
// naming the certificate's CN.
func TestMutualTLSCarriesCNInProxyV2(t *testing.T) {
	ca := testutil.NewCA(t)
	srvCert := ca.Server("lb")
	h := newHarness(t, harnessOpts{brokerOpt: []testutil.BrokerOption{testutil.WithProxyProtocol()},
		upstream:  "    proxy_protocol: v2\n",
		listeners: tlsListener(srvCert.CertFile, srvCert.KeyFile, ca.CAFile(), "require")})
	addr := h.lb.ListenerAddr("mqtts")
	device := ca.Client("device-7")
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.Pool, ServerName: "localhost", Certificates: []tls.Certificate{device.TLS}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// paho.golang writes a packet in several writes (over TLS, a record
	// each) and its pinger writes a PINGREQ from another goroutine: without
	// its thread-safe conn a PINGREQ lands inside the SUBSCRIBE now and then
	// (mochi: "malformed packet: topic", 1 run in ~100 under load).
	c := paho.NewClient(paho.ClientConfig{Conn: packets.NewThreadSafeConn(conn)})
	if _, err := c.Connect(context.Background(), &paho.Connect{ClientID: "tls-dev", KeepAlive: 30, CleanStart: true}); err != nil {
		t.Fatal(err)
	}
	seen := h.brokers[h.brokerOf("tls-dev")].ConnectsOf("tls-dev")
	if len(seen) != 1 || seen[0].ProxyCN != "device-7" || !seen[0].ProxySSL || seen[0].Remote != conn.LocalAddr().String() {
		t.Fatalf("broker saw %+v; want CN device-7, SSL, remote %s", seen, conn.LocalAddr())
	}
	// Round trip over TLS through the LB.
	got := make(chan string, 1)
	c.AddOnPublishReceived(func(p paho.PublishReceived) (bool, error) { got <- string(p.Packet.Payload); return true, nil })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	roundTrip(t, ctx, c, got, "t/tls", "over tls")
	c.Disconnect(&paho.Disconnect{})
	if !strings.Contains(accessLogWait(t, h, "tls-dev"), `cert_cn="device-7"`) {
		t.Error("access log lacks the certificate CN")
	}
}

// TestProxyV2CipherOpenSSLName: behind a TLS listener, a broker gets the
// negotiated cipher in the PROXY v2 SSL TLV by OpenSSL's name, as HAProxy
// sends it (ECDHE-ECDSA-AES128-GCM-SHA256, not Go's
// TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256).
func TestProxyV2CipherOpenSSLName(t *testing.T) {
	ca := testutil.NewCA(t)
	srvCert := ca.Server("lb")
	h := newHarness(t, harnessOpts{brokers: 1, brokerOpt: []testutil.BrokerOption{testutil.WithProxyProtocol()},
		upstream: "    proxy_protocol: v2\n", listeners: tlsListener(srvCert.CertFile, srvCert.KeyFile, "", "none")})
	c, err := tls.Dial("tcp", h.lb.ListenerAddr("mqtts"), &tls.Config{RootCAs: ca.Pool, ServerName: "localhost",
		MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write(mqttwire.AppendConnect(nil, &mqttwire.Connect{Version: 4, ClientID: "cipher", CleanStart: true}))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if rp, err := mqttwire.ReadConnack(c, 4, nil); err != nil || rp.Code != 0 {
		t.Fatalf("connack %d %v", rp.Code, err)
	}
	seen := h.brokers[0].ConnectsOf("cipher")
	if len(seen) != 1 || !seen[0].ProxySSL || seen[0].ProxyCipher != "ECDHE-ECDSA-AES128-GCM-SHA256" {
		t.Fatalf("broker saw %+v; want SSL with cipher ECDHE-ECDSA-AES128-GCM-SHA256", seen)
	}
}

// accessLogWait waits for the access-log record of a closed connection.
func accessLogWait(t *testing.T, h *harness, clientID string) string {
	var log string
	testutil.Eventually(t, 5*time.Second, func() bool {
		log = h.accessLog()
		return strings.Contains(log, `client_id="`+clientID+`"`)
	}, "access log record for %s", clientID)
	return log
}

// TestTLSRefusals: no client certificate when required, plain MQTT to the
// TLS port, TLS to the plain port: closed, and no broker sees a CONNECT.
func TestTLSRefusals(t *testing.T) {
	ca := testutil.NewCA(t)
	srvCert := ca.Server("lb")
	h := newHarness(t, harnessOpts{brokers: 1, upstream: "    health_check: { type: none }\n",
		listeners: tlsListener(srvCert.CertFile, srvCert.KeyFile, ca.CAFile(), "require")})
	tlsAddr := h.lb.ListenerAddr("mqtts")
	// TLS without a client certificate.
	if c, err := tls.Dial("tcp", tlsAddr, &tls.Config{RootCAs: ca.Pool, ServerName: "localhost"}); err == nil {
		c.Write(mqttwire.AppendConnect(nil, &mqttwire.Connect{Version: 4, ClientID: "nocert", CleanStart: true}))
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadAll(c); err == nil {
			t.Error("connection without a client certificate was not refused")
		}
		c.Close()
	}
	// Plain MQTT to the TLS port, TLS to the plain port.
	for _, tc := range []struct{ addr, name string }{{tlsAddr, "plain-to-tls"}, {h.addr, "tls-to-plain"}} {
		c, err := net.Dial("tcp", tc.addr)
		if err != nil {
			t.Fatal(err)
		}
		if tc.name == "plain-to-tls" {
			c.Write(mqttwire.AppendConnect(nil, &mqttwire.Connect{Version: 4, ClientID: tc.name, CleanStart: true}))
		} else {
			go tls.Client(c, &tls.Config{InsecureSkipVerify: true}).Handshake()
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		io.Copy(io.Discard, c)
		c.Close()
	}
	testutil.Eventually(t, 5*time.Second, func() bool {
		log := h.accessLog()
		return strings.Count(log, "result=tls_error") >= 2 && strings.Contains(log, "result=not_mqtt")
	}, "access log has two tls_error and one not_mqtt:\n%s", h.accessLog())
	if n := h.brokers[0].ConnectCount(); n != 0 {
		t.Errorf("broker saw %d CONNECTs; want none", n)
	}
}
