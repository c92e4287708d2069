package xcpng

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"

	"libbioxen/core"
	"libbioxen/packages"
	"libbioxen/sshsession"
)

type installRequest struct {
	Package  string          `json:"package"`
	Home     string          `json:"home"`
	Catalogs []string        `json:"catalogs"`
	Repos    []packages.Repo `json:"default_repos"`
}

// DefaultInstallTimeout bounds InstallPackage when its ctx has no deadline,
// and is the deadline the C ABI's bioxen_vm_install_package gives it: the
// local resolution, the copies and the remote luarocks runs together. It
// is the timeout packages gives a luarocks run.
const DefaultInstallTimeout = 10 * time.Minute

// installTimeout is DefaultInstallTimeout; tests shorten it.
var installTimeout = DefaultInstallTimeout

// installCleanupTimeout bounds the removal of the copied rocks in the VM,
// done even when the install ran out of time.
const installCleanupTimeout = 30 * time.Second

// InstallPackage installs a package and its dependencies in the VM from the
// library's repositories: the dependency chain is resolved locally (an
// install into a staging environment, locked with sha256), each rock is
// copied over SSH and installed there with `luarocks install
// --deps-mode=none`; success is luarocks' exit status.
//
// ctx bounds the whole call; without a deadline DefaultInstallTimeout
// does. Every remote command is bounded by it on both sides: locally (the
// SSH call gives up and kills the remote process group at the deadline)
// and remotely (it runs under `timeout -s KILL`, see sshsession.Run), so a
// VM that accepts a command and never ends it cannot hang the call.
func (e *Engine) InstallPackage(ctx context.Context, request []byte) ([]byte, error) {
	var req installRequest
	if err := json.Unmarshal(request, &req); err != nil || req.Package == "" {
		return nil, core.Errorf(core.ErrInvalid, "install_package", "bad request")
	}
	if e.conn == nil {
		return nil, core.Errorf(core.ErrClosed, "install_package", "the VM is not running")
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, installTimeout)
		defer cancel()
	}
	conn := e.conn
	run := func(ctx context.Context, cmd string, stdin []byte) (*sshsession.ExecResult, error) {
		// ctx has a deadline: Run puts cmd under a remote kill for it.
		return conn.Run(ctx, cmd, stdin, sshsession.Limits{})
	}
	// The staging directory first: a VM that does not answer fails the call
	// before the local resolution.
	dir := fmt.Sprintf("/tmp/bioxen-rocks-%d", time.Now().UnixNano())
	if res, err := run(ctx, "mkdir -p "+dir, nil); err != nil {
		return nil, core.Wrap(core.CodeOf(err), "install_package", "creating "+dir+" in the VM", err)
	} else if res.ExitStatus != 0 {
		return nil, core.Errorf(core.ErrEngine, "install_package", "creating %s in the VM failed (exit %d): %s", dir, res.ExitStatus, e.vmOutput(res))
	}
	defer func() {
		cleanup := func() {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), installCleanupTimeout)
			defer cancel()
			if _, err := run(cctx, "rm -rf "+dir, nil); err != nil {
				core.Logf(core.LevelWarn, "xcpng VM %q: install_package: removing %s: %v", e.opts.Name, dir, err)
			}
		}
		if ctx.Err() != nil {
			// Out of time: do not hold the caller past its deadline for
			// the cleanup (bounded by installCleanupTimeout on its own).
			go cleanup()
			return
		}
		cleanup()
	}()
	m, err := packages.Open(packages.Config{Home: req.Home, Catalogs: req.Catalogs, DefaultRepos: req.Repos})
	if err != nil {
		return nil, err
	}
	staging, err := m.Env("xcpng-staging", true)
	if err != nil {
		return nil, err
	}
	if _, err := staging.Install(ctx, req.Package, ""); err != nil {
		return nil, err
	}
	lf, err := staging.Lock(ctx)
	if err != nil {
		return nil, err
	}
	var installed []string
	for _, p := range lf.Packages {
		// The lock names its repository without credentials: fetch from
		// the configured one it stands for.
		repo, err := m.ResolveLockRepo(p.Repo)
		if err != nil {
			return nil, err
		}
		data, err := repo.Fetch(ctx, p.Rock)
		if err != nil {
			return nil, err
		}
		target := dir + "/" + p.Rock
		q, err := sshsession.ShellQuote(target)
		if err != nil {
			return nil, err
		}
		res, err := run(ctx, "cat > "+q, data)
		if err != nil {
			return nil, core.Wrap(core.CodeOf(err), "install_package", "copying "+p.Rock+" to the VM", err)
		}
		if res.ExitStatus != 0 {
			return nil, core.Errorf(core.ErrEngine, "install_package", "copying %s to the VM failed (exit %d): %s", p.Rock, res.ExitStatus, e.vmOutput(res))
		}
		res, err = run(ctx, fmt.Sprintf(`luarocks --lua-version=%s --tree="%s" install --deps-mode=none %s`, e.luaVersion(), remoteTree, q), nil)
		if err != nil {
			return nil, core.Wrap(core.CodeOf(err), "install_package", "installing "+p.Rock+" in the VM", err)
		}
		if res.ExitStatus != 0 {
			return nil, core.Errorf(core.ErrEngine, "install_package", "luarocks in the VM failed to install %s (exit %d): %s", p.Rock, res.ExitStatus, e.vmOutput(res))
		}
		installed = append(installed, p.Name+" "+p.Version)
	}
	return json.Marshal(map[string]any{"result": map[string]any{"installed": installed}})
}

// vmOutput is the tail of what a failed command in the VM wrote, fit for
// an error: the passwords redacted (the VM may echo them), then the last
// 800 bytes, cut on a UTF-8 boundary. A stream cut short by Run's cap
// first loses what could be the start of a password at its end.
func (e *Engine) vmOutput(res *sshsession.ExecResult) string {
	secrets := []string{e.cfg.Password, e.cfg.VMPassword}
	clean := func(b []byte, truncated bool) string {
		s := string(b)
		if truncated {
			n := 0
			for _, secret := range secrets {
				n = max(n, len(secret)-1)
			}
			i := max(0, len(s)-n)
			for i > 0 && !utf8.RuneStart(s[i]) {
				i--
			}
			s = s[:i] + "…"
		}
		for _, secret := range secrets {
			s = core.Redact(s, secret)
		}
		return s
	}
	s := clean(res.Stderr, res.StderrTruncated) + clean(res.Stdout, res.StdoutTruncated)
	if len(s) > 800 {
		i := len(s) - 800
		for i < len(s) && !utf8.RuneStart(s[i]) {
			i++
		}
		s = "…" + s[i:]
	}
	return s
}
