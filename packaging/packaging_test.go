package packaging

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tunnelrelay/tunnel/internal/config"
	"github.com/tunnelrelay/tunnel/internal/testutil/fixture"
	"github.com/tunnelrelay/tunnel/internal/testutil/samples"
)

// Units and the binaries they run.
var units = []struct {
	file, binary, configFile string
}{
	{"tunnel-server.service", "tunnel-server", config.ServerFile},
	{"tunnel-agent.service", "tunnel-agent", config.AgentFile},
}

// unit is a parsed systemd unit file: each key's values in order, by
// section. Enough of the format for these files: no line continuations.
type unit map[string]map[string][]string

func parseUnit(t *testing.T, file string) unit {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	u := unit{}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[]")
			u[section] = map[string][]string{}
		default:
			key, value, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s: bad line %q", file, line)
			}
			u[section][key] = append(u[section][key], value)
		}
	}
	return u
}

// get returns the last value of key in [Service] (systemd's rule for
// single-valued keys), or "".
func (u unit) get(key string) string {
	v := u["Service"][key]
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

// execConfig returns the binary and the --config path of ExecStart.
func (u unit) execConfig(t *testing.T) (binary, configPath string) {
	t.Helper()
	args := strings.Fields(u.get("ExecStart"))
	for i, a := range args {
		if a == "--config" && i+1 < len(args) {
			return args[0], args[i+1]
		}
	}
	t.Fatalf("ExecStart %q has no --config", u.get("ExecStart"))
	return "", ""
}

// sysusers returns the users the sysusers.d files declare, with their home
// directories.
func sysusers(t *testing.T) map[string]string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("sysusers.d", "*.conf"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no sysusers.d files (%v)", err)
	}
	users := map[string]string{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(data), "\n") {
			if f := strings.Fields(line); len(f) >= 5 && f[0] == "u" {
				users[f[1]] = f[4]
			}
		}
	}
	return users
}

// TestSampleConfigs: the sample configs load with the project's loader at
// the paths the units give them, and what they name fits the units'
// sandbox.
func TestSampleConfigs(t *testing.T) {
	server := parseUnit(t, "tunnel-server.service")
	agent := parseUnit(t, "tunnel-agent.service")

	t.Run("server", func(t *testing.T) {
		_, path := server.execConfig(t)
		if filepath.Base(path) != config.ServerFile {
			t.Errorf("the unit's config %s is not a %s", path, config.ServerFile)
		}
		data, err := os.ReadFile(config.ServerFile)
		if err != nil {
			t.Fatal(err)
		}
		// Loaded as if installed where the unit looks for it.
		cfg, err := config.ParseServer(path, data, nil)
		if err != nil {
			t.Fatal(err)
		}
		state := "/var/lib/" + server.get("StateDirectory")
		if filepath.Dir(cfg.Server.Database) != state {
			t.Errorf("server.database %s is outside the unit's StateDirectory %s, which is all the server may write",
				cfg.Server.Database, state)
		}
		drain := cfg.Limits.DrainTimeout.Duration + 5*time.Second // and the admin endpoint's shutdown
		if stop := parseSeconds(t, server.get("TimeoutStopSec")); stop <= drain {
			t.Errorf("TimeoutStopSec %v does not cover a drain of %v", stop, drain)
		}
		// Every commented key is valid too, and [limits] shows the defaults.
		cfg, err = config.ParseServer(path, uncomment(data), nil)
		if err != nil {
			t.Fatalf("with its commented keys: %v", err)
		}
		if cfg.Limits != config.DefaultServer().Limits {
			t.Errorf("the commented [limits] %+v are not the defaults %+v", cfg.Limits, config.DefaultServer().Limits)
		}
	})

	t.Run("agent", func(t *testing.T) {
		_, path := agent.execConfig(t)
		if path != "/etc/"+config.AgentFile {
			t.Errorf("the unit's config %s is not where tunnel-agent looks without --config, /etc/%s", path, config.AgentFile)
		}
		raw, err := os.ReadFile(config.AgentFile)
		if err != nil {
			t.Fatal(err)
		}
		if got := samples.Placeholders(raw); len(got) != 3 {
			t.Errorf("placeholders %q, want the server's CA, the agent's key and a target's CA", got)
		}
		// As it is, the sample must not run: its secrets are placeholders.
		_, err = config.ParseAgent(path, raw, nil)
		for _, key := range []string{"server.ca", "agent.key", "targets[2].tls_ca"} {
			if err == nil || !strings.Contains(err.Error(), key) {
				t.Errorf("loading the sample with placeholders: %v; want an error naming %s", err, key)
			}
		}
		cfg, err := config.ParseAgent(path, samples.Fill(t, raw), nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(cfg.Targets) == 0 {
			t.Error("the sample declares no target")
		}
		// "with every key": each key of the agent config is in the sample.
		for _, key := range tomlKeys(reflect.TypeOf(config.Agent{})) {
			if !regexp.MustCompile(`(?m)^#? ?` + regexp.QuoteMeta(key) + ` = `).Match(raw) {
				t.Errorf("the sample has no %s key", key)
			}
		}
		if cfg.Agent.DrainTimeout.Duration != config.DefaultDrainTimeout {
			t.Errorf("the sample's drain_timeout %v is not the default %v", cfg.Agent.DrainTimeout, config.DefaultDrainTimeout)
		}
		if stop := parseSeconds(t, agent.get("TimeoutStopSec")); stop <= cfg.Agent.DrainTimeout.Duration {
			t.Errorf("TimeoutStopSec %v does not cover the agent's drain of %v", stop, cfg.Agent.DrainTimeout)
		}
	})

	t.Run("users", func(t *testing.T) {
		users := sysusers(t)
		for _, u := range []unit{server, agent} {
			user := u.get("User")
			if _, ok := users[user]; !ok || u.get("Group") != user {
				t.Errorf("User=%s Group=%s: want a user of sysusers.d and its group (have %v)", user, u.get("Group"), users)
			}
		}
		if home, state := users[server.get("User")], "/var/lib/"+server.get("StateDirectory"); home != state {
			t.Errorf("tunnel-server's home %s is not its state directory %s", home, state)
		}
	})
}

// uncomment returns data with every commented-out key = value line
// uncommented.
func uncomment(data []byte) []byte {
	return regexp.MustCompile(`(?m)^# ?([a-z_]+ = )`).ReplaceAll(data, []byte("$1"))
}

func parseSeconds(t *testing.T, s string) time.Duration {
	t.Helper()
	d, err := time.ParseDuration(s)
	if err != nil {
		n, err2 := strconv.Atoi(s)
		if err2 != nil {
			t.Fatalf("duration %q: %v", s, err)
		}
		d = time.Duration(n) * time.Second
	}
	return d
}

// envRequireSystemd turns missing systemd tools into a failure (CI sets it).
const envRequireSystemd = "TUNNEL_REQUIRE_SYSTEMD"

// systemdAnalyze returns the path of systemd-analyze, skipping the test
// where there is none (outside Linux, or without systemd installed) unless
// CI requires it.
func systemdAnalyze(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("systemd-analyze")
	if err != nil {
		fixture.Unavailable(t, "packaging", envRequireSystemd, "systemd-analyze not installed: "+err.Error())
	}
	return path
}

// buildBinaries builds tunnel-server and tunnel-agent into a new directory.
func buildBinaries(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("go", "build", "-o", dir+string(filepath.Separator), "../cmd/tunnel-server", "../cmd/tunnel-agent")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return dir
}

// installUnits writes copies of the units into a new directory, with
// ExecStart's binary replaced by the one in binDir (verify insists that it
// exists), and returns their paths.
func installUnits(t *testing.T, binDir string) []string {
	t.Helper()
	dir := t.TempDir()
	var paths []string
	for _, u := range units {
		data, err := os.ReadFile(u.file)
		if err != nil {
			t.Fatal(err)
		}
		binary, _ := parseUnit(t, u.file).execConfig(t)
		data = bytes.ReplaceAll(data, []byte("ExecStart="+binary+" "), []byte("ExecStart="+filepath.Join(binDir, u.binary)+" "))
		path := filepath.Join(dir, u.file)
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, path)
	}
	return paths
}

// TestUnitsVerify: systemd-analyze verify accepts both units without a
// single warning, and their exposure stays low.
func TestUnitsVerify(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("systemd units are for Linux")
	}
	analyze := systemdAnalyze(t)
	paths := installUnits(t, buildBinaries(t))

	verify := func(paths ...string) string {
		cmd := exec.Command(analyze, append([]string{"verify"}, paths...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return string(out) + err.Error()
		}
		return string(out)
	}
	// verify exits 0 on a misspelled key or a bad value, only warning: any
	// output at all fails.
	if out := verify(paths...); out != "" {
		t.Errorf("systemd-analyze verify:\n%s", out)
	}
	t.Run("catches a typo", func(t *testing.T) {
		data, err := os.ReadFile(paths[1])
		if err != nil {
			t.Fatal(err)
		}
		bad := filepath.Join(t.TempDir(), filepath.Base(paths[1]))
		if err := os.WriteFile(bad, bytes.Replace(data, []byte("\nRestart="), []byte("\nRestrat="), 1), 0o644); err != nil {
			t.Fatal(err)
		}
		if out := verify(bad); !strings.Contains(out, "Restrat") {
			t.Errorf("verify of a unit with a misspelled key said %q", out)
		}
	})

	// systemd-analyze security scores the sandbox from 0 (tight) to 10;
	// --offline works without a running systemd.
	exposure := regexp.MustCompile(`Overall exposure level for (\S+): ([0-9.]+)`)
	for _, path := range paths {
		out, _ := exec.Command(analyze, "security", "--offline=true", "--no-pager", path).CombinedOutput()
		m := exposure.FindSubmatch(out)
		if m == nil {
			t.Logf("systemd-analyze security %s gave no score here:\n%s", filepath.Base(path), out)
			continue
		}
		score, _ := strconv.ParseFloat(string(m[2]), 64)
		t.Logf("systemd-analyze security: %s exposure %.1f", m[1], score)
		if score > 2.0 {
			t.Errorf("%s: exposure %.1f, more than 2.0:\n%s", m[1], score, out)
		}
	}
}

// TestSysusers: systemd-sysusers creates the units' users from the
// sysusers.d files, in a scratch root.
func TestSysusers(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("sysusers.d is for Linux")
	}
	sysusersBin, err := exec.LookPath("systemd-sysusers")
	if err != nil {
		fixture.Unavailable(t, "packaging", envRequireSystemd, "systemd-sysusers not installed: "+err.Error())
	}
	root := t.TempDir()
	confDir := filepath.Join(root, "etc", "sysusers.d")
	if err := os.MkdirAll(confDir, 0o755); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join("sysusers.d", "*.conf"))
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(confDir, filepath.Base(f)), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command(sysusersBin, "--root="+root).CombinedOutput(); err != nil {
		t.Fatalf("systemd-sysusers: %v\n%s", err, out)
	}
	passwd, err := os.ReadFile(filepath.Join(root, "etc", "passwd"))
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range units {
		user := parseUnit(t, u.file).get("User")
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(user) + `:x:\d+:\d+:[^:]*:[^:]*:/usr/sbin/nologin$`).Match(passwd) {
			t.Errorf("no login-less user %s in the passwd systemd-sysusers wrote:\n%s", user, passwd)
		}
	}
}

// tomlKeys lists the keys of a config struct's sections, by their toml
// names, descending into sections and arrays of tables.
func tomlKeys(typ reflect.Type) []string {
	var keys []string
	for f := range typ.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if name == "" || name == "-" {
			continue
		}
		ft := f.Type
		if ft.Kind() == reflect.Slice {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct && ft.NumField() > 0 && ft.Field(0).Tag.Get("toml") != "" {
			keys = append(keys, tomlKeys(ft)...)
			continue
		}
		keys = append(keys, name)
	}
	return keys
}
