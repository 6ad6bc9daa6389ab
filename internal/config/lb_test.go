package config

import (
	"strings"
	"testing"
)

const minimal = `
listeners:
  - name: mqtt
    address: "127.0.0.1:1883"
    upstream: brokers
upstreams:
  brokers:
    servers:
      - { name: node1, address: "127.0.0.1:18831" }
      - address: "127.0.0.1:18832"
`

func TestParseDefaults(t *testing.T) {
	c, err := Parse([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	u := c.Upstreams["brokers"]
	if u.Balance != "client_id" || u.ConnectRetries != 2 || u.HealthCheck.Type != "mqtt" || u.HealthCheck.Fall != 3 {
		t.Errorf("defaults not applied: %+v", u)
	}
	if u.Servers[1].Name != "127.0.0.1:18832" || u.Servers[1].Weight != 1 {
		t.Errorf("server defaults: %+v", u.Servers[1])
	}
	if c.Admin.Address != "127.0.0.1:9090" || c.Limits.MaxConnectPacket != 262144 {
		t.Errorf("admin/limits defaults: %+v %+v", c.Admin, c.Limits)
	}
	if c.Process.Scheduling != "batch" {
		t.Errorf("process.scheduling: %q, want batch", c.Process.Scheduling)
	}
}

func TestParseKeepsExplicitZero(t *testing.T) {
	c, err := Parse([]byte(minimal + "    connect_retries: 0\n    load_factor: 0\nadmin:\n  address: \"\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if u := c.Upstreams["brokers"]; u.ConnectRetries != 0 || u.LoadFactor != 0 {
		t.Errorf("explicit zero overwritten: retries=%d factor=%v", u.ConnectRetries, u.LoadFactor)
	}
	if c.Admin.Address != "" {
		t.Errorf("admin.address: %q, want disabled", c.Admin.Address)
	}
}

func TestParseErrorsNamePathAndLine(t *testing.T) {
	for _, tc := range []struct{ name, yaml, want string }{
		{"unknown policy", minimal + "    balance: clientid\n",
			`upstreams.brokers.balance (line 11): unknown policy "clientid"; want one of client_id, least_conn`},
		{"unknown key", minimal + "    balanse: client_id\n",
			`upstreams.brokers.balanse (line 11): unknown key; want one of auth, balance,`},
		{"server name with a slash", strings.Replace(minimal, "name: node1", "name: a/b", 1),
			`upstreams.brokers.servers[0].name (line 9): want a name of letters, digits, '.', '_', '-'`},
		{"server name ..", strings.Replace(minimal, "name: node1", `name: ".."`, 1),
			`upstreams.brokers.servers[0].name (line 9): want a name`},
		{"server address with a space", strings.Replace(minimal, `"127.0.0.1:18831"`, `"host with space:1883"`, 1),
			`upstreams.brokers.servers[0].address (line 9): want host:port, got "host with space:1883": the host has a space`},
		{"dangling upstream", strings.Replace(minimal, "upstream: brokers", "upstream: brokerz", 1),
			`listeners[0].upstream (line 5): upstream "brokerz" is not defined; have: brokers`},
		{"bad duration", minimal + "    health_check: { interval: 5 }\n",
			`upstreams.brokers.health_check.interval (line 11): want a duration such as 5s`},
		{"bad int", minimal + "limits: { max_connections: lots }\n",
			`limits.max_connections (line 11): want a whole number, got "lots"`},
		{"bad address", strings.Replace(minimal, `"127.0.0.1:18831"`, `"127.0.0.1"`, 1),
			`upstreams.brokers.servers[0].address (line 9): want host:port`},
		{"duplicate key", minimal + "admin: {token: a, token: b}\n",
			`admin.token (line 11): duplicate key`},
		{"trusted required", strings.Replace(minimal, "upstream: brokers", "upstream: brokers\n    proxy_protocol: { accept: true }", 1),
			`listeners[0].proxy_protocol.trusted (line 6): list the CIDRs`},
		{"tls missing file", strings.Replace(minimal, "upstream: brokers", "upstream: brokers\n    tls: { cert: /nonexistent.pem, key: /nonexistent.key }", 1),
			`listeners[0].tls.cert (line 6): cannot read`},
		{"wrong shape", minimal + "listeners: {a: b}\n", `duplicate key`},
		{"yaml syntax", "listeners: [\n", `yaml:`},
		{"scheduling policy", minimal + "process: { scheduling: fifo }\n",
			`process.scheduling (line 11): unknown value "fifo"; want one of batch, normal`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v\nwant it to contain %q", err, tc.want)
			}
		})
	}
}

func TestParseReportsEveryError(t *testing.T) {
	_, err := Parse([]byte(minimal + "    balance: nope\nlog: { level: loud }\n"))
	if err == nil {
		t.Fatal("want errors")
	}
	for _, want := range []string{"upstreams.brokers.balance", "log.level (line 12)"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}
