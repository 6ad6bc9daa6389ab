package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/mqlb/mqlb/internal/certinfo"
	"github.com/mqlb/mqlb/internal/config"
	"github.com/mqlb/mqlb/internal/node"
)

// cmdCheck validates config files (load balancer or node, told apart by
// their sections) named as arguments or with -c, and prints what each would
// run; every problem in a file is reported at once.
func cmdCheck(_ context.Context, args []string) error {
	fs := newFlags("check", "mqlb check [-c] FILE...")
	file := fs.String("c", "", "config file (load balancer or node); the same as naming it as an argument")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	files := fs.Args()
	if err := flagAfterFiles(args, files); err != nil {
		return err
	}
	if *file != "" {
		files = append([]string{*file}, files...)
	}
	if len(files) == 0 {
		files = []string{"mqlb.yaml"}
	}
	var failed error
	for _, f := range files {
		if err := checkFile(f); err != nil {
			if _, ok := err.(exitCode); !ok {
				fmt.Fprintf(os.Stderr, "mqlb check: %v\n", err)
			}
			failed = exitCode(1)
		}
	}
	return failed
}

// flagAfterFiles refuses a flag after the file names (flag parsing stops
// at the first file: it would be taken for a file), unless "--" ended the
// flags.
func flagAfterFiles(args, files []string) error {
	if len(files) == 0 || len(args) > len(files) && args[len(args)-len(files)-1] == "--" {
		return nil
	}
	for _, f := range files[1:] {
		if strings.HasPrefix(f, "-") {
			return usageError("check", "%q after the file names: flags come first (mqlb check [-c FILE] FILE...)", f)
		}
	}
	return nil
}

func checkFile(file string) error {
	if isNodeConfig(file) {
		return checkNode(file)
	}
	cfg, err := config.Load(file)
	if err != nil {
		return configError(file, err)
	}
	fmt.Printf("%s: valid load balancer config\n", file)
	printSummary(os.Stdout, cfg)
	warnCerts(file, cfg.CertSources())
	return nil
}

// warnCerts prints a warning for every served certificate that is expired or
// not yet valid (the config is still valid: the file may be renewed in time)
// or that none of its listener's tls.ciphers can use (TLS 1.3 clients still
// connect).
func warnCerts(file string, srcs []certinfo.Source) {
	for _, p := range certinfo.Problems(certinfo.LoadAll(srcs), time.Now()) {
		fmt.Fprintf(os.Stderr, "%s: warning: %s\n", file, p.Text)
	}
}

// isNodeConfig tells a node config (it has a mesh or node section) from a
// load balancer config.
func isNodeConfig(file string) bool {
	b, err := os.ReadFile(file)
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "mesh:") || strings.HasPrefix(line, "node:") {
			return true
		}
	}
	return false
}

func printSummary(w io.Writer, c *config.Config) {
	fmt.Fprintln(w, "listeners:")
	for _, l := range c.Listeners {
		var extra []string
		if l.WebSocket != nil {
			extra = append(extra, "WebSocket, path "+l.WebSocket.Path)
		}
		if l.TLS != nil {
			extra = append(extra, "TLS (client certificates: "+l.TLS.ClientAuth+")")
			if n := l.TLS.CertCount(); n > 1 {
				extra = append(extra, fmt.Sprintf("%d certificates chosen by SNI", n))
			}
			if l.TLS.Identity != nil {
				extra = append(extra, l.TLS.Identity.Summary())
			}
		}
		if l.ProxyProtocol != nil && l.ProxyProtocol.Accept {
			extra = append(extra, "PROXY from "+strings.Join(l.ProxyProtocol.Trusted, ","))
		}
		fmt.Fprintf(w, "  %-10s %-22s → %s %s\n", l.Name, l.Address, l.Upstream, strings.Join(extra, ", "))
	}
	fmt.Fprintln(w, "upstreams:")
	for _, name := range c.UpstreamNames() {
		u := c.Upstreams[name]
		h := u.HealthCheck
		fmt.Fprintf(w, "  %s: balance %s, proxy_protocol %s, connect_retries %d, health %s every %s (timeout %s, rise %d, fall %d)\n",
			name, u.Balance, u.ProxyProtocol, u.ConnectRetries, h.Type, h.Interval, h.Timeout, h.Rise, h.Fall)
		if u.Auth != nil {
			fmt.Fprintf(w, "    %s\n", u.Auth.Summary())
		}
		if r := u.Rebalance; r.Rate > 0 || u.SlowStart > 0 || u.MaxConnectRate > 0 {
			fmt.Fprintf(w, "    rebalance %g/s (tolerance %g, min_age %s), slow_start %s, max_connect_rate %g/s per server\n",
				r.Rate, r.Tolerance, r.MinAge, u.SlowStart, u.MaxConnectRate)
		}
		for _, s := range u.Servers {
			fmt.Fprintf(w, "    %-12s %-22s weight %d %s\n", s.Name, s.Address, s.Weight, s.State)
		}
	}
	l := c.Limits
	fmt.Fprintf(w, "limits: connect_timeout %s, max_connect_packet %d, max_connections %d, connect_rate_per_ip %g\n",
		l.ConnectTimeout, l.MaxConnectPacket, l.MaxConnections, l.ConnectRatePerIP)
	fmt.Fprintf(w, "access_log: %s (%s)\n", c.AccessLog.Path, c.AccessLog.Format)
	admin := "off"
	if c.Admin.Address != "" {
		admin = c.Admin.Address
		if c.Admin.Token != "" {
			admin += " (token set)"
		}
	}
	fmt.Fprintf(w, "admin: %s\n", admin)
}

// checkNode validates a broker node config and prints what it would run.
func checkNode(file string) error {
	cfg, err := config.LoadNode(file)
	if err != nil {
		return configError(file, err)
	}
	// What the node loads at start beyond the config file (users files, JWT
	// keys, connection strings), by the node's own code, contacting no store.
	if err := node.CheckAuth(cfg.Auth); err != nil {
		return configError(file, err)
	}
	fmt.Printf("%s: valid node config\n%s", file, cfg.Summary())
	warnCerts(file, cfg.CertSources())
	return nil
}
