// Command extauthz is an external authorizer for Envoy, Istio, nginx and Traefik
// that verifies Better Auth JWTs and applies ownership policies.
//
// Subcommands: serve, verify-jwks, verify-token, policy check, policy explain,
// policy test, policy schema, version.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run dispatches a subcommand and returns the process exit code.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	var err error
	switch args[0] {
	case "serve":
		err = cmdServe(args[1:], stderr)
	case "verify-jwks":
		err = cmdVerifyJWKS(args[1:], stdout)
	case "verify-token":
		err = cmdVerifyToken(args[1:], stdout)
	case "policy":
		err = cmdPolicy(args[1:], stdout)
	case "version":
		fmt.Fprintf(stdout, "extauthz %s (%s)\n", version, runtime.Version())
	case "help", "-h", "-help", "--help":
		usage(stdout)
	default:
		fmt.Fprintf(stderr, "extauthz: unknown command %q\n", args[0])
		usage(stderr)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errReported):
		return 1
	case errors.Is(err, errUsage):
		fmt.Fprintln(stderr, "extauthz:", err)
		return 2
	default:
		fmt.Fprintln(stderr, "extauthz:", err)
		return 1
	}
}

var errUsage = errors.New("usage")

// errReported fails a command that has already said why on its output.
var errReported = errors.New("failed")

func usageErr(format string, a ...any) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, a...))
}

func usage(w io.Writer) {
	fmt.Fprint(w, `extauthz: Better Auth JWT verification and ownership policies for Envoy, Istio, nginx and Traefik.

Usage:
  extauthz serve [--config FILE] [--grpc-addr :9001] [--http-addr :9002] [--admin-addr :9003]
  extauthz verify-jwks [--allow-insecure] URL
  extauthz verify-token (--jwks-url URL | --jwks-file FILE) --token T [--issuer I] [--audience A] [--at TIME]
  extauthz policy check FILE
  extauthz policy explain --config FILE --method M --path P [--host H] [--token T] [--jwks-file FILE] [--at TIME]
  extauthz policy test [--policy FILE] [--now TIME] [--junit FILE] [-v] FILE|DIR…
  extauthz policy schema
  extauthz version

Every serve flag can also be set as EXTAUTHZ_<FLAG> (e.g. EXTAUTHZ_GRPC_ADDR).
With no --config, BETTER_AUTH_URL alone serves a policy where every path needs a valid token.
`)
}

// envDefaults sets each flag not given on the command line from EXTAUTHZ_<NAME>.
func envDefaults(fs *flag.FlagSet) error {
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		key := "EXTAUTHZ_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(key); ok && err == nil {
			if e := f.Value.Set(v); e != nil {
				err = fmt.Errorf("%s: %w", key, e)
			}
		}
	})
	return err
}
