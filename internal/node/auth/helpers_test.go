package auth

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	mqttv3 "github.com/eclipse/paho.mqtt.golang"
	mqtt "github.com/mochi-mqtt/server/v2"
	"golang.org/x/crypto/bcrypt"

	"github.com/mqlb/mqlb/internal/node/listen"
)

// startBroker runs a mochi broker with the listen identity hook and h, on a
// plain TCP listener ("tcp") plus any extra listeners; it returns the bound
// addresses by listener id.
func startBroker(t *testing.T, h mqtt.Hook, extra ...listen.Options) (*mqtt.Server, map[string]string) {
	t.Helper()
	s := mqtt.New(&mqtt.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	for _, hk := range []mqtt.Hook{listen.NewIdentityHook(), h} {
		if err := s.AddHook(hk, nil); err != nil {
			t.Fatal(err)
		}
	}
	addrs := map[string]string{}
	all := append([]listen.Options{{ID: "tcp", Type: listen.TypeTCP}}, extra...)
	for _, o := range all {
		o.Address = "127.0.0.1:0"
		o.CloseClients = listen.ClientCloser(s) // as the node does: mochi's own deadlocks against a client leaving (listen.ClientCloser)
		l, err := listen.New(o, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.AddListener(l); err != nil {
			t.Fatal(err)
		}
		addrs[o.ID] = l.Address()
	}
	if err := s.Serve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, addrs
}

// mustNew builds a Hook or fails the test.
func mustNew(t *testing.T, o Options) *Hook {
	t.Helper()
	h, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// usersFile writes lines to a users file in the test's temp dir.
func usersFile(t *testing.T, lines ...string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "users.txt")
	if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// hashLine is HashLine at bcrypt's minimum cost, to keep tests fast under -race.
func hashLine(t *testing.T, user, pw string) string {
	t.Helper()
	l, err := hashLineCost(user, pw, bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// v5 is a connected paho MQTT 5 client and the messages it receives.
type v5 struct {
	*paho.Client
	conn net.Conn
	msgs chan *paho.Publish
}

// connectV5 dials addr (over TLS when cfg is set) and sends CONNECT; the
// CONNACK is returned whether or not the server accepted.
func connectV5(t *testing.T, addr string, cfg *tls.Config, cp paho.Connect) (*v5, *paho.Connack, error) {
	t.Helper()
	return connectV5With(t, net.Dialer{Timeout: 5 * time.Second}, addr, cfg, cp)
}

// connectV5From is connectV5 over plain TCP from a local address (another
// loopback address plays another client host).
func connectV5From(t *testing.T, local, addr string, cp paho.Connect) (*v5, *paho.Connack, error) {
	t.Helper()
	return connectV5With(t, net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 5 * time.Second}, addr, nil, cp)
}

func connectV5With(t *testing.T, d net.Dialer, addr string, cfg *tls.Config, cp paho.Connect) (*v5, *paho.Connack, error) {
	t.Helper()
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if cfg != nil {
		conn = tls.Client(conn, cfg)
	}
	t.Cleanup(func() { _ = conn.Close() })
	c := &v5{conn: conn, msgs: make(chan *paho.Publish, 16)}
	c.Client = paho.NewClient(paho.ClientConfig{
		Conn: packets.NewThreadSafeConn(conn),
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){
			func(pr paho.PublishReceived) (bool, error) { c.msgs <- pr.Packet; return true, nil },
		},
	})
	cp.KeepAlive, cp.CleanStart = 30, true
	cp.UsernameFlag, cp.PasswordFlag = cp.Username != "", cp.Password != nil
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	ca, err := c.Connect(ctx, &cp)
	return c, ca, err
}

// mustV5 connects and fails the test unless the server accepts.
func mustV5(t *testing.T, addr string, cp paho.Connect) *v5 {
	t.Helper()
	c, _, err := connectV5(t, addr, nil, cp)
	if err != nil {
		t.Fatalf("connect %q: %v", cp.ClientID, err)
	}
	return c
}

// subscribe returns the SUBACK reason code for one filter.
func (c *v5) subscribe(t *testing.T, filter string) byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sa, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}})
	if sa == nil {
		t.Fatalf("subscribe %q: no SUBACK: %v", filter, err)
	}
	return sa.Reasons[0]
}

// publish1 publishes at QoS 1 and returns the PUBACK reason code.
func (c *v5) publish1(t *testing.T, topic string) byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	pr, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(topic)})
	if pr == nil {
		t.Fatalf("publish %q: no PUBACK: %v", topic, err)
	}
	return pr.ReasonCode
}

// next waits for the next message the client receives.
func (c *v5) next(t *testing.T) *paho.Publish {
	t.Helper()
	select {
	case m := <-c.msgs:
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("no message received")
		return nil
	}
}

// connectV311 connects an MQTT 3.1.1 client; it returns the client (nil when
// refused) and the CONNACK return code.
func connectV311(t *testing.T, addr, id, user, pw string) (mqttv3.Client, byte) {
	t.Helper()
	o := mqttv3.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).
		SetUsername(user).SetPassword(pw).SetProtocolVersion(4).
		SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(5 * time.Second)
	c := mqttv3.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		t.Fatal("v3.1.1 connect did not finish")
	}
	code := tok.(*mqttv3.ConnectToken).ReturnCode()
	if tok.Error() != nil {
		return nil, code
	}
	t.Cleanup(func() { c.Disconnect(0) })
	return c, code
}
