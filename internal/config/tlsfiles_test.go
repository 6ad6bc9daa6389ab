package config

import (
	"fmt"
	"strings"
	"testing"

	"github.com/mqlb/mqlb/internal/testutil"
)

// TestMissingCertFileOneError: a certificate or key file that cannot be
// read is one error at its key, not also "cannot load the certificate and
// key" for the same cause (the audit's two lines for one missing file), on
// a listener of the load balancer or a node and in mesh.tls.
func TestMissingCertFileOneError(t *testing.T) {
	ca := testutil.NewCA(t)
	srv := ca.Server("lb")
	for _, tc := range []struct {
		name, yaml, want string
		node             bool
	}{
		{"cert", tlsDoc(fmt.Sprintf("      cert: /nonexistent/server.pem\n      key: %q\n", srv.KeyFile)),
			"listeners[0].tls.cert (line 7): cannot read: open /nonexistent/server.pem: no such file or directory", false},
		{"key", tlsDoc(fmt.Sprintf("      cert: %q\n      key: /nonexistent/server.key\n", srv.CertFile)),
			"listeners[0].tls.key (line 8): cannot read: open /nonexistent/server.key: no such file or directory", false},
		{"certificates entry", tlsDoc(fmt.Sprintf("      certificates:\n        - { cert: /nonexistent/a.pem, key: %q }\n", srv.KeyFile)),
			"listeners[0].tls.certificates[0].cert (line 8): cannot read: open /nonexistent/a.pem", false},
		{"node listener", strings.Replace(minimalNode, `  - address: "127.0.0.1:0"`,
			fmt.Sprintf("  - address: \"127.0.0.1:0\"\n    tls: { cert: /nonexistent/n.pem, key: %q }", srv.KeyFile), 1),
			"listeners[0].tls.cert (line 6): cannot read: open /nonexistent/n.pem", true},
		{"mesh", minimalNode + fmt.Sprintf("  tls: { cert: /nonexistent/m.pem, key: %q, ca: %q }\n", srv.KeyFile, ca.CAFile()),
			"mesh.tls.cert (line 9): cannot read: open /nonexistent/m.pem", true},
	} {
		var err error
		if tc.node {
			_, err = ParseNode([]byte(tc.yaml))
		} else {
			_, err = Parse([]byte(tc.yaml))
		}
		if errs := flatten(err); len(errs) != 1 || !strings.Contains(errs[0].Error(), tc.want) {
			t.Errorf("%s: %d errors:\n%v\nwant one: %s", tc.name, len(errs), err, tc.want)
		}
	}
}
