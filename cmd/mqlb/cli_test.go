package main

import (
	"bytes"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mqlb/mqlb/internal/testutil"
)

// run runs mqlb with args and returns its stdout, stderr and exit status.
func runMQLB(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := mqlb(args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// A command that should have refused its flags may start everything instead.
	stop := time.AfterFunc(30*time.Second, func() { cmd.Process.Kill() })
	defer stop.Stop()
	err := cmd.Wait()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return o.String(), e.String(), code
}

// TestHelpToStdout is issue 12 item 7: help that was asked for goes to
// stdout with status 0.
func TestHelpToStdout(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"--help"}, {"help"}, {"help", "check"}, {"help", "up"}, {"run", "-h"}, {"node", "--help"}, {"check", "-h"}, {"bench", "-h"}, {"bench", "conn", "-h"}} {
		out, errOut, code := runMQLB(t, args...)
		if code != 0 || !strings.Contains(out, "usage: mqlb") || errOut != "" {
			t.Errorf("mqlb %s: exit %d, stdout %q, stderr %q", strings.Join(args, " "), code, out, errOut)
		}
	}
	if out, _, _ := runMQLB(t, "help", "up"); !strings.Contains(out, "-nodes") {
		t.Errorf("help up lacks its flags: %s", out)
	}
	// Help nobody asked for is an error: stderr, status 2.
	for _, args := range [][]string{{}, {"run", "-x"}, {"bench"}, {"bench", "nope"}, {"bench", "--bogus-flag"}} {
		out, errOut, code := runMQLB(t, args...)
		if code != 2 || out != "" || !strings.Contains(errOut, "usage: mqlb") {
			t.Errorf("mqlb %s: exit %d, stdout %q, stderr %q", strings.Join(args, " "), code, out, errOut)
		}
	}
	// A flag where the mode belongs is named as such, not as a mode.
	if _, errOut, _ := runMQLB(t, "bench", "--clients", "5"); !strings.Contains(errOut, "--clients before the mode") {
		t.Errorf("mqlb bench --clients 5: stderr %q", errOut)
	}
}

func TestVersionFlag(t *testing.T) {
	for _, args := range [][]string{{"--version"}, {"version"}} {
		out, _, code := runMQLB(t, args...)
		if code != 0 || !strings.HasPrefix(out, "mqlb ") || !strings.Contains(out, "go1.") {
			t.Errorf("mqlb %s: exit %d %q", args[0], code, out)
		}
	}
}

// TestCheckFileArgument: mqlb check FILE reads FILE (it used to read
// mqlb.yaml whatever the argument), and several files are checked in turn.
func TestCheckFileArgument(t *testing.T) {
	out, errOut, code := runMQLB(t, "check", "../../examples/mqlb.yaml")
	if code != 0 || !strings.Contains(out, "examples/mqlb.yaml: valid load balancer config") {
		t.Fatalf("exit %d: %s %s", code, out, errOut)
	}
	bad := writeFile(t, "bad.yaml", "listeners: [{ address: \"127.0.0.1:0\", upstream: nope }]\n")
	out, errOut, code = runMQLB(t, "check", "../../examples/node.yaml", bad)
	if code != 1 || !strings.Contains(out, "valid node config") || !strings.Contains(errOut, `listeners[0].upstream (line 1): upstream "nope" is not defined`) {
		t.Fatalf("exit %d: %s %s", code, out, errOut)
	}
}

// TestCheckEveryErrorAndSyntaxLine: one pass reports every problem; a YAML
// syntax error names the line it is on.
func TestCheckEveryErrorAndSyntaxLine(t *testing.T) {
	f := writeFile(t, "many.yaml", "listeners:\n  - { address: \"127.0.0.1:1883\", upstream: brokers, nam: x }\nupstreams:\n  brokers:\n    balance: clientid\n"+
		"    servers: [{ address: \"127.0.0.1:1\" }]\nlimits: { max_connect_packet: 2 }\n")
	_, errOut, code := runMQLB(t, "check", f)
	for _, want := range []string{"listeners[0].nam (line 2): unknown key", "upstreams.brokers.balance (line 5)", "limits.max_connect_packet (line 7)"} {
		if code != 1 || !strings.Contains(errOut, want) {
			t.Errorf("exit %d, stderr lacks %q:\n%s", code, want, errOut)
		}
	}
	f = writeFile(t, "syntax.yaml", "listeners:\n  - address: \"127.0.0.1:1883\"\n    upstream: brokers\n   bogus: 1\nupstreams: {}\n")
	if _, errOut, code := runMQLB(t, "check", "-c", f); code != 1 || !strings.Contains(errOut, "line 4: yaml: did not find expected '-' indicator") {
		t.Errorf("exit %d: %s", code, errOut)
	}
}

// TestUpFlagsCheckedFirst: bad flags are refused in the user's terms before
// any node starts.
func TestUpFlagsCheckedFirst(t *testing.T) {
	for args, want := range map[string]string{
		"--nodes 0":                    "--nodes 0: want 1 to 64 broker nodes",
		"--listen bogus":               `--listen "bogus": want HOST:PORT`,
		"--admin 127.0.0.1:70000":      `--admin "127.0.0.1:70000": port "70000"`,
		"--node-port 65535 --nodes 3":  "--node-port 65535",
		"--log-level loud":             `--log-level "loud"`,
		"--admin 0.0.0.0:9090":         `--admin "0.0.0.0:9090": mqlb up serves its admin API without a token, so only on loopback`,
		"--listen 127.0.0.1:0 surplus": `unexpected argument "surplus"`,
	} {
		out, errOut, code := runMQLB(t, append([]string{"up"}, strings.Fields(args)...)...)
		if code != 2 || !strings.Contains(errOut, want) || strings.Contains(errOut, "node") && strings.Contains(errOut, "started") || out != "" {
			t.Errorf("mqlb up %s: exit %d, stdout %q, stderr %q; want %q", args, code, out, errOut, want)
		}
	}
}

// TestCheckWarnsAboutCertificates is issue 11 item 9 in mqlb check: the
// config is valid (status 0) but an expired server certificate is warned
// about.
func TestCheckWarnsAboutCertificates(t *testing.T) {
	ca := testutil.NewCA(t)
	expired := ca.ServerValid("old.example", time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour))
	f := writeFile(t, "tls.yaml", fmt.Sprintf("listeners:\n  - { name: mqtts, address: \"127.0.0.1:0\", upstream: u, tls: { cert: %q, key: %q } }\n"+
		"upstreams: { u: { servers: [{ address: \"127.0.0.1:1\" }] } }\n", expired.CertFile, expired.KeyFile))
	out, errOut, code := runMQLB(t, "check", f)
	if code != 0 || !strings.Contains(out, "valid load balancer config") ||
		!strings.Contains(errOut, `warning: certificate "old.example"`) || !strings.Contains(errOut, "of listener mqtts expired") {
		t.Errorf("exit %d\nstdout %s\nstderr %s", code, out, errOut)
	}
}

// TestCheckCertificates: mqlb check says what is wrong with an entry of
// tls.certificates at its key path, as the load balancer would refuse it,
// and warns about an expired certificate in the list as about cert.
func TestCheckCertificates(t *testing.T) {
	ca := testutil.NewCA(t)
	a, b := ca.ServerFor("a.example", "a.example"), ca.ServerFor("b.example", "b.example")
	expired := ca.ServerValid("old.example", time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour))
	doc := func(second testutil.Issued, key string) string {
		return fmt.Sprintf("listeners:\n  - name: mqtts\n    address: \"127.0.0.1:0\"\n    upstream: u\n    tls:\n      cert: %q\n      key: %q\n"+
			"      certificates:\n        - { cert: %q, key: %q }\nupstreams: { u: { servers: [{ address: \"127.0.0.1:1\" }] } }\n",
			a.CertFile, a.KeyFile, second.CertFile, key)
	}
	_, errOut, code := runMQLB(t, "check", writeFile(t, "bad.yaml", doc(b, a.KeyFile)))
	if want := "listeners[0].tls.certificates[0].cert (line 9): cannot load the certificate and key: tls: private key does not match public key"; code != 1 || !strings.Contains(errOut, want) {
		t.Errorf("mismatched pair: exit %d\nstderr %s\nwant %s", code, errOut, want)
	}
	out, errOut, code := runMQLB(t, "check", writeFile(t, "old.yaml", doc(expired, expired.KeyFile)))
	if code != 0 || !strings.Contains(out, "valid load balancer config") || !strings.Contains(errOut, `warning: certificate "old.example"`) {
		t.Errorf("expired in certificates: exit %d\nstdout %s\nstderr %s", code, out, errOut)
	}
}

// TestCheckWarnsAboutCiphers: tls.ciphers with no suite the certificate's
// key can use (ECDSA suites, an RSA certificate) is valid, as an expired
// certificate is, but warned about, on a load balancer's listener and a
// node's.
func TestCheckWarnsAboutCiphers(t *testing.T) {
	ca := testutil.NewCA(t)
	rsa := ca.ServerRSA("rsa.example")
	tlsYAML := fmt.Sprintf("{ cert: %q, key: %q, ciphers: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256] }", rsa.CertFile, rsa.KeyFile)
	for kind, doc := range map[string]string{
		"load balancer": "listeners:\n  - { name: mqtts, address: \"127.0.0.1:0\", upstream: u, tls: " + tlsYAML + " }\n" +
			"upstreams: { u: { servers: [{ address: \"127.0.0.1:1\" }] } }\n",
		"node": "node: { name: n1 }\nlisteners:\n  - { name: mqtts, address: \"127.0.0.1:0\", tls: " + tlsYAML + " }\n" +
			"mesh: { listen: \"127.0.0.1:0\", peers: [\"127.0.0.1:6223\"] }\n",
	} {
		out, errOut, code := runMQLB(t, "check", writeFile(t, "ciphers.yaml", doc))
		want := `warning: certificate "rsa.example" (serial `
		if code != 0 || !strings.Contains(out, "valid "+kind+" config") || !strings.Contains(errOut, want) ||
			!strings.Contains(errOut, "of listener mqtts has an RSA key, which none of tls.ciphers (TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256) can use") {
			t.Errorf("%s: exit %d\nstdout %s\nstderr %s", kind, code, out, errOut)
		}
	}
}

// TestStrayArgumentsRefused: Go's flag parsing stops at the first argument
// that is not a flag, so every flag after a stray word was ignored (the
// audit's `bench conn foo --url … --clients 2` ran 100 connections against
// the default URL). Each command refuses it with exit status 2.
func TestStrayArgumentsRefused(t *testing.T) {
	f := writeFile(t, "lb.yaml", "listeners: [{ name: mqtt, address: \"127.0.0.1:0\", upstream: u }]\n"+
		"upstreams: { u: { servers: [{ name: a, address: \"127.0.0.1:1\" }] } }\n")
	for _, tc := range []struct {
		args []string
		want string
	}{
		// The flags before the stray word aim at a closed port, should it run.
		{[]string{"bench", "conn", "--url", "mqtt://127.0.0.1:1", "--clients", "1", "foo", "--clients", "2"},
			`mqlb bench conn: unexpected argument "foo" (mqlb bench conn takes flags only)`},
		{[]string{"bench", "pubsub", "--url", "mqtt://127.0.0.1:1", "--duration", "1s", "foo", "--qos", "1"},
			`mqlb bench pubsub: unexpected argument "foo" (mqlb bench pubsub takes flags only)`},
		{[]string{"bench", "report", t.TempDir(), "--targets", "a,b"},
			`mqlb bench report: unexpected argument "--targets" after DIR (flags come before it)`},
		{[]string{"bench", "report"}, "mqlb bench report: want the results directory"},
		{[]string{"version", "extra"}, `mqlb version: unexpected argument "extra"`},
		{[]string{"check", f, "-c", f}, `mqlb check: "-c" after the file names: flags come first`},
	} {
		out, errOut, code := runMQLB(t, tc.args...)
		if code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("mqlb %s: exit %d, stdout %q, stderr %q; want exit 2 and %q", strings.Join(tc.args, " "), code, out, errOut, tc.want)
		}
	}
	// The way out the errors name: mqlb help bench conn is bench conn's help.
	if out, _, code := runMQLB(t, "help", "bench", "conn"); code != 0 || !strings.Contains(out, "-concurrency int") {
		t.Errorf("mqlb help bench conn: exit %d:\n%s", code, out)
	}
}

// TestBenchSharedGroupChecked: --shared "" (no group) and --shared a/b
// (group "a" of $share/a/b/bench/+) are refused with exit 2, not run with
// nothing shared or nothing delivered.
func TestBenchSharedGroupChecked(t *testing.T) {
	for g, want := range map[string]string{
		"":    `invalid value "" for flag -shared: a share name has at least one character`,
		"a/b": `invalid value "a/b" for flag -shared: a share name must not contain '/', '+' or '#'`,
	} {
		// A closed port, should it run.
		out, errOut, code := runMQLB(t, "bench", "pubsub", "--url", "mqtt://127.0.0.1:1", "--duration", "1s", "--shared", g)
		if code != 2 || !strings.Contains(errOut, want) {
			t.Errorf("--shared %q: exit %d, stdout %q, stderr %q; want exit 2 and %q", g, code, out, errOut, want)
		}
	}
}

// TestCheckSummaryListenerKinds: the load balancer's summary says a
// listener speaks WebSocket and on which path (it printed "ws
// 127.0.0.1:8083 → brokers" as for plain MQTT), and how many certificates
// a TLS listener chooses from by SNI; a node's summary says the latter too.
func TestCheckSummaryListenerKinds(t *testing.T) {
	ca := testutil.NewCA(t)
	a, b, c := ca.ServerFor("a.example", "a.example"), ca.ServerFor("b.example", "b.example"), ca.ServerFor("c.example", "c.example")
	tlsBlock := fmt.Sprintf("{ cert: %q, key: %q, certificates: [{ cert: %q, key: %q }, { cert: %q, key: %q }] }",
		a.CertFile, a.KeyFile, b.CertFile, b.KeyFile, c.CertFile, c.KeyFile)
	lb := writeFile(t, "lb.yaml", "listeners:\n"+
		"  - { name: ws, address: \"127.0.0.1:8083\", upstream: u, websocket: { path: /live } }\n"+
		"  - { name: mqtts, address: \"127.0.0.1:8883\", upstream: u, tls: "+tlsBlock+" }\n"+
		"upstreams: { u: { servers: [{ name: s, address: \"127.0.0.1:1\" }] } }\n")
	out, errOut, code := runMQLB(t, "check", lb)
	for _, want := range []string{
		`(?m)^  ws +127\.0\.0\.1:8083 +→ u WebSocket, path /live$`,
		`(?m)^  mqtts +127\.0\.0\.1:8883 +→ u TLS \(client certificates: none\), 3 certificates chosen by SNI$`,
	} {
		if code != 0 || !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("load balancer: exit %d, stdout lacks %s:\n%s%s", code, want, out, errOut)
		}
	}
	node := writeFile(t, "node.yaml", fmt.Sprintf("node: { name: n1, data_dir: %q }\n", t.TempDir())+
		"listeners:\n  - { name: mqtts, type: tls, address: \"127.0.0.1:8883\", tls: "+tlsBlock+" }\n")
	out, errOut, code = runMQLB(t, "check", node)
	if want := "listener mqtts: tls 127.0.0.1:8883, 3 certificates chosen by SNI"; code != 0 || !strings.Contains(out, want) {
		t.Errorf("node: exit %d, stdout lacks %q:\n%s%s", code, want, out, errOut)
	}
}
