package config

import (
	"strings"
	"testing"
)

// TestNodeSecurityKeys: the defaults of the limits issue 11 added, explicit
// zeros kept, and errors that name the key and line.
func TestNodeSecurityKeys(t *testing.T) {
	n, err := ParseNode([]byte(minimalNode))
	if err != nil {
		t.Fatal(err)
	}
	if q := n.MQTT; q.MaxPacketSize != 1<<20 || q.MaxSubscriptionsPerClient != 1000 || q.MaxQueuedBytes != 32<<20 {
		t.Errorf("defaults: max_packet_size %d, max_subscriptions_per_client %d, max_queued_bytes %d",
			q.MaxPacketSize, q.MaxSubscriptionsPerClient, q.MaxQueuedBytes)
	}
	n, err = ParseNode([]byte(minimalNode + "mqtt: { max_packet_size: 0, max_subscriptions_per_client: 0 }\n"))
	if err != nil {
		t.Fatal(err)
	}
	if q := n.MQTT; q.MaxPacketSize != 0 || q.MaxSubscriptionsPerClient != 0 || q.MaxQueuedBytes != 2*268_435_455 {
		t.Errorf("explicit zeros (no limit) not kept, or max_queued_bytes not twice the largest packet: %+v", q)
	}
	n, err = ParseNode([]byte(minimalNode + "mqtt: { max_packet_size: 33554432 }\n"))
	if err != nil {
		t.Fatal(err)
	}
	if q := n.MQTT; q.MaxQueuedBytes != 64<<20 {
		t.Errorf("max_queued_bytes %d with 32 MiB packets, want twice that", q.MaxQueuedBytes)
	}
	for _, tc := range []struct{ name, yaml, want string }{
		{"short token", minimalNode + "  token: abc\n", `mesh.token (line 9): want at least 32 characters`},
		{"tls files", minimalNode + "  tls: { cert: /nonexistent/c.pem, key: /nonexistent/k.pem }\n",
			`mesh.tls.cert (line 9): cannot read`},
		{"tls ca", minimalNode + "  tls: { cert: /nonexistent/c.pem, key: /nonexistent/k.pem }\n",
			`mesh.tls.ca (line 9): a file is required`},
		{"subscriptions", minimalNode + "mqtt:\n  max_subscriptions_per_client: -1\n",
			`mqtt.max_subscriptions_per_client (line 10): want 0 (no limit) or more, got -1`},
		{"queued bytes zero", minimalNode + "mqtt:\n  max_queued_bytes: 0\n",
			`mqtt.max_queued_bytes (line 10): want at least 1048576 bytes`},
		{"queued bytes below a packet", minimalNode + "mqtt:\n  max_packet_size: 65536\n  max_queued_bytes: 65535\n",
			`mqtt.max_queued_bytes (line 11): want at least 65536 bytes`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseNode([]byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v\nwant it to contain %q", err, tc.want)
			}
		})
	}
}

// TestNodeSummaryHidesSecrets: mqlb check says whether routes are
// protected, never the token or a route URL's password.
func TestNodeSummaryHidesSecrets(t *testing.T) {
	yaml := strings.Replace(minimalNode, `"127.0.0.1:6223"`, `"nats-route://mqlb:supersecret@127.0.0.1:6223"`, 1)
	n, err := ParseNode([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	if s := n.Summary(); strings.Contains(s, "supersecret") || !strings.Contains(s, "routes OPEN") {
		t.Errorf("summary:\n%s", s)
	}
	n.Mesh.Token = strings.Repeat("t0ken", 8)
	if s := n.Summary(); strings.Contains(s, n.Mesh.Token) || !strings.Contains(s, "token set, no TLS") {
		t.Errorf("summary with a token:\n%s", s)
	}
}
