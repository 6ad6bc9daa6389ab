package deploy_test

import (
	"debug/elf"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/mqlb/mqlb/internal/testutil"
)

// No container engine or Kubernetes cluster runs here: these tests check
// what can be checked without one — the manifests parse with the expected
// kinds and fields, every shipped config passes mqlb check, the compose
// configs start the real binary, the binary the Dockerfile builds is static,
// and systemd-analyze verifies the units.

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// mqlbBinary builds cmd/mqlb as the Dockerfile does (CGO_ENABLED=0), once.
func mqlbBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "mqlb-deploy-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "mqlb")
		cmd := exec.Command("go", "build", "-trimpath", "-o", binPath, "./cmd/mqlb")
		cmd.Dir = ".."
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// docs reads every YAML document of a file.
func docs(t *testing.T, file string) []map[string]any {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	dec := yaml.NewDecoder(f)
	for {
		var d map[string]any
		if err := dec.Decode(&d); err != nil {
			if err.Error() == "EOF" {
				return out
			}
			t.Fatalf("%s: %v", file, err)
		}
		out = append(out, d)
	}
}

// dig walks a decoded document by keys (strings) and indexes (ints).
func dig(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			s, ok := v.([]any)
			if !ok || k >= len(s) {
				return nil
			}
			v = s[k]
		}
	}
	return v
}

// rewrite makes a shipped config usable here: the admin token and data
// directories in temporary places.
func rewrite(t *testing.T, config, dir string) string {
	token := filepath.Join(dir, "token")
	os.WriteFile(token, []byte("test-token\n"), 0o600)
	meshToken := filepath.Join(dir, "mesh-token")
	os.WriteFile(meshToken, []byte("0123456789abcdef0123456789abcdef\n"), 0o600)
	r := strings.NewReplacer("/run/secrets/admin_token", token, "/var/run/secrets/mqlb/token", token,
		"/run/secrets/mesh_token", meshToken, "/var/run/secrets/mqlb-mesh/token", meshToken, "/var/lib/mqlb", filepath.Join(dir, "data"))
	return r.Replace(config)
}

// check runs mqlb check on a config.
func check(t *testing.T, name, config string) {
	t.Helper()
	dir := t.TempDir()
	f := filepath.Join(dir, filepath.Base(name))
	os.WriteFile(f, []byte(rewrite(t, config, dir)), 0o600)
	out, err := exec.Command(mqlbBinary(t), "check", f).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "valid ") {
		t.Errorf("mqlb check %s: %v\n%s", name, err, out)
	}
}

func TestKubernetesManifests(t *testing.T) {
	byKind := map[string][]map[string]any{}
	for _, f := range []string{"kubernetes/nodes.yaml", "kubernetes/lb.yaml", "kubernetes/secret.example.yaml"} {
		for _, d := range docs(t, f) {
			if dig(d, "apiVersion") == nil || dig(d, "metadata", "name") == nil {
				t.Errorf("%s: a document without apiVersion or metadata.name: %v", f, d)
			}
			k, _ := d["kind"].(string)
			byKind[k] = append(byKind[k], d)
		}
	}
	for kind, n := range map[string]int{"StatefulSet": 1, "Deployment": 1, "Service": 2, "PodDisruptionBudget": 2, "ConfigMap": 2, "Secret": 2} {
		if len(byKind[kind]) != n {
			t.Errorf("%d %s, want %d", len(byKind[kind]), kind, n)
		}
	}
	sts, dep := byKind["StatefulSet"][0], byKind["Deployment"][0]
	headless := false
	for _, s := range byKind["Service"] {
		if dig(s, "metadata", "name") == dig(sts, "spec", "serviceName") && dig(s, "spec", "clusterIP") == "None" {
			headless = true
		}
	}
	if !headless {
		t.Errorf("the StatefulSet's serviceName %v is not a headless Service", dig(sts, "spec", "serviceName"))
	}
	if dig(sts, "spec", "volumeClaimTemplates", 0, "spec", "resources", "requests", "storage") == nil {
		t.Error("the StatefulSet has no persistent volume claim template")
	}
	for _, w := range []map[string]any{sts, dep} {
		name := dig(w, "metadata", "name")
		pod := dig(w, "spec", "template")
		live := "/healthz"
		if w["kind"] == "StatefulSet" { // nodes: alive whatever their peers do
			live = "/livez"
		}
		for probe, path := range map[string]string{"readinessProbe": "/healthz", "livenessProbe": live} {
			if got := dig(pod, "spec", "containers", 0, probe, "httpGet", "path"); got != path {
				t.Errorf("%s: %s is on %v, want %s", name, probe, got, path)
			}
		}
		if dig(pod, "metadata", "annotations", "prometheus.io/scrape") != "true" || dig(pod, "metadata", "annotations", "prometheus.io/port") == nil {
			t.Errorf("%s: no Prometheus scrape annotations", name)
		}
		if dig(pod, "spec", "containers", 0, "securityContext", "runAsNonRoot") != true {
			t.Errorf("%s: not runAsNonRoot", name)
		}
		if dig(pod, "spec", "volumes", 1, "secret", "secretName") != dig(byKind["Secret"][0], "metadata", "name") {
			t.Errorf("%s: the admin token is not mounted from the Secret", name)
		}
		if w["kind"] == "StatefulSet" && dig(pod, "spec", "volumes", 2, "secret", "secretName") != dig(byKind["Secret"][1], "metadata", "name") {
			t.Errorf("%s: the mesh token is not mounted from its Secret", name)
		}
		covered := false
		for _, pdb := range byKind["PodDisruptionBudget"] {
			if fmt.Sprint(dig(pdb, "spec", "selector", "matchLabels")) == fmt.Sprint(dig(w, "spec", "selector", "matchLabels")) {
				covered = true
			}
		}
		if !covered {
			t.Errorf("%s: no PodDisruptionBudget selects its pods", name)
		}
	}
	// Every config in the ConfigMaps passes mqlb check.
	nodeFiles := 0
	for _, cm := range byKind["ConfigMap"] {
		for name, config := range dig(cm, "data").(map[string]any) {
			check(t, name, config.(string))
			if strings.HasPrefix(name, "mqlb-node-") {
				nodeFiles++
			}
		}
	}
	if replicas := dig(sts, "spec", "replicas"); replicas != nodeFiles {
		t.Errorf("%v node replicas but %d node configs", replicas, nodeFiles)
	}
}

func TestComposeFile(t *testing.T) {
	d := docs(t, "compose/compose.yaml")[0]
	services, _ := d["services"].(map[string]any)
	lbs, nodes := 0, 0
	for name, s := range services {
		cmd := fmt.Sprint(dig(s, "command"))
		switch {
		case strings.HasPrefix(cmd, "[run "):
			lbs++
		case strings.HasPrefix(cmd, "[node "):
			nodes++
		}
		vol, _ := dig(s, "volumes", 0).(string)
		src, _, _ := strings.Cut(vol, ":")
		b, err := os.ReadFile(filepath.Join("compose", src))
		if err != nil {
			t.Errorf("service %s: config %s: %v", name, src, err)
			continue
		}
		check(t, src, string(b))
	}
	if lbs != 2 || nodes != 3 {
		t.Errorf("%d load balancers and %d nodes, want 2 and 3", lbs, nodes)
	}
	if dig(d, "secrets", "mesh_token", "file") == nil {
		t.Error("no mesh_token secret")
	}
	if dig(d, "secrets", "admin_token", "file") == nil {
		t.Error("no admin_token secret")
	}
}

var (
	anyAddr    = regexp.MustCompile(`"0\.0\.0\.0:\d+"`)
	lbRunning  = regexp.MustCompile(`"msg":"load balancer running".*"admin":"([^"]+)"`)
	nodeReady  = regexp.MustCompile(`"msg":"node started".*"admin":"([^"]+)"`)
	peersLine  = regexp.MustCompile(`(?m)^\s*(peers|advertise):.*$`)
	meshListen = regexp.MustCompile(`(?m)^(\s*listen:) .*$`)
)

// TestComposeConfigsStart starts the real binary on the compose configs,
// rewritten to loopback port 0 (and, for a node, without peers), and waits
// for its /healthz.
func TestComposeConfigsStart(t *testing.T) {
	bin := mqlbBinary(t)
	for _, tc := range []struct {
		file, cmd string
		ready     *regexp.Regexp
	}{
		{"compose/config/lb.yaml", "run", lbRunning},
		{"compose/config/node1.yaml", "node", nodeReady},
	} {
		t.Run(tc.file, func(t *testing.T) {
			b, err := os.ReadFile(tc.file)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			config := anyAddr.ReplaceAllString(rewrite(t, string(b), dir), `"127.0.0.1:0"`)
			config = meshListen.ReplaceAllString(peersLine.ReplaceAllString(config, ""), `$1 ""`)
			f := filepath.Join(dir, "config.yaml")
			os.WriteFile(f, []byte(config), 0o600)
			cmd := exec.Command(bin, tc.cmd, "-c", f)
			logs := new(testutil.SyncBuffer)
			cmd.Stdout, cmd.Stderr = logs, logs
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { cmd.Process.Kill(); cmd.Wait() }()
			var admin string
			testutil.Eventually(t, 60*time.Second, func() bool {
				if m := tc.ready.FindStringSubmatch(logs.String()); m != nil {
					admin = m[1]
				}
				return admin != ""
			}, "mqlb %s never ready:\n%s\nconfig:\n%s", tc.cmd, logs, config)
			testutil.Eventually(t, 30*time.Second, func() bool {
				resp, err := http.Get("http://" + admin + "/healthz")
				if err != nil {
					return false
				}
				resp.Body.Close()
				return resp.StatusCode == 200
			}, "healthz:\n%s", logs)
		})
	}
}

// TestBinaryIsStatic: the Dockerfile's build (CGO_ENABLED=0) gives a binary
// with no dynamic loader, so it runs in distroless/static.
func TestBinaryIsStatic(t *testing.T) {
	f, err := elf.Open(mqlbBinary(t))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Fatal("the binary needs a dynamic loader")
		}
	}
	b, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	if strings.Count(df, "\nFROM ") < 2 || !strings.Contains(df, "CGO_ENABLED=0") || !regexp.MustCompile(`\nUSER (65532|nonroot)`).MatchString(df) {
		t.Errorf("Dockerfile: want multi-stage, CGO_ENABLED=0 and a non-root USER")
	}
}

// TestSystemdSyscallFilterErrors: a unit that filters system calls makes a
// filtered call fail with an error. systemd's default kills the process
// with SIGSYS, and mqlb run calls sched_setattr (in @resources) at start
// for process.scheduling: the service died at once and looped on restarts.
func TestSystemdSyscallFilterErrors(t *testing.T) {
	for _, unit := range []string{"mqlb.service", "mqlb-node@.service"} {
		b, err := os.ReadFile(filepath.Join("systemd", unit))
		if err != nil {
			t.Fatal(err)
		}
		s := string(b)
		if strings.Contains(s, "\nSystemCallFilter=") && !strings.Contains(s, "\nSystemCallErrorNumber=EPERM") {
			t.Errorf("%s filters system calls without SystemCallErrorNumber=EPERM: a filtered call kills the process", unit)
		}
		if strings.Contains(s, "\nDynamicUser=yes") && strings.Contains(s, "ConfigurationDirectoryMode=0750") {
			t.Errorf("%s: the dynamic user cannot read a root-owned /etc/mqlb with mode 0750", unit)
		}
	}
}

// TestSystemdUnits runs systemd-analyze verify on the units, with ExecStart
// pointing at a real binary; any complaint fails.
func TestSystemdUnits(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed")
	}
	bin := mqlbBinary(t)
	dir := t.TempDir()
	for src, dst := range map[string]string{"mqlb.service": "mqlb.service", "mqlb-node@.service": "mqlb-node@node1.service"} {
		b, err := os.ReadFile(filepath.Join("systemd", src))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, dst), []byte(strings.ReplaceAll(string(b), "/usr/local/bin/mqlb", bin)), 0o644)
		cmd := exec.Command(sa, "verify", "./"+dst)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil || len(strings.TrimSpace(string(out))) > 0 {
			t.Errorf("systemd-analyze verify %s: %v\n%s", src, err, out)
		}
	}
}
