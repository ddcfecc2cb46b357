package agentapi

// PassEnv is all of a host's environment that crosses into a sandbox: the local stack
// passes these names to each agent process it starts, and the agent passes them on to
// every command it runs. Never the environment wholesale: the edge's secrets live there.
// One list for both sides, so a name the agent means to pass (SSL_CERT_FILE for a
// custom CA, LC_CTYPE for UTF-8 file names) is not dropped by the local stack first.
var PassEnv = []string{
	"PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR",
	"SSL_CERT_FILE", "SSL_CERT_DIR",
	"GOPATH", "GOMODCACHE", "GOCACHE", "GOFLAGS", "GOPROXY",
	"npm_config_cache", "CARGO_HOME", "RUSTUP_HOME",
	"CHROME_PATH", // where browser runs find chromium (the chromium image sets it)
}

// InheritEnv returns the PassEnv names that lookup (os.LookupEnv) finds, as a map.
func InheritEnv(lookup func(string) (string, bool)) map[string]string {
	env := map[string]string{}
	for _, k := range PassEnv {
		if v, ok := lookup(k); ok {
			env[k] = v
		}
	}
	return env
}
