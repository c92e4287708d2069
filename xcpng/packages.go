package xcpng

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

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

// InstallPackage installs a package and its dependencies in the VM from the
// library's repositories: the dependency chain is resolved locally (an
// install into a staging environment, locked with sha256), each rock is
// copied over SSH and installed there with `luarocks install
// --deps-mode=none`; success is luarocks' exit status.
func (e *Engine) InstallPackage(ctx context.Context, request []byte) ([]byte, error) {
	var req installRequest
	if err := json.Unmarshal(request, &req); err != nil || req.Package == "" {
		return nil, core.Errorf(core.ErrInvalid, "install_package", "bad request")
	}
	if e.conn == nil {
		return nil, core.Errorf(core.ErrClosed, "install_package", "the VM is not running")
	}
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
	dir := fmt.Sprintf("/tmp/bioxen-rocks-%d", time.Now().UnixNano())
	run := func(cmd string, stdin []byte) (*sshsession.ExecResult, error) {
		wrapped, err := sshsession.RemoteKillWrap(cmd, 10*time.Minute)
		if err != nil {
			return nil, err
		}
		return e.conn.Run(ctx, wrapped, stdin, sshsession.Limits{})
	}
	if _, err := run("mkdir -p "+dir, nil); err != nil {
		return nil, err
	}
	defer run("rm -rf "+dir, nil)
	var installed []string
	for _, p := range lf.Packages {
		data, err := packages.Repo{Name: p.Repo, URL: p.Repo}.Fetch(ctx, p.Rock)
		if err != nil {
			return nil, err
		}
		target := dir + "/" + p.Rock
		q, _ := sshsession.ShellQuote(target)
		if res, err := run("cat > "+q, data); err != nil || res.ExitStatus != 0 {
			return nil, core.Errorf(core.ErrConnection, "install_package", "copying %s to the VM failed: %v", p.Rock, err)
		}
		res, err := run(fmt.Sprintf(`luarocks --lua-version=%s --tree="%s" install --deps-mode=none %s`, e.luaVersion(), remoteTree, q), nil)
		if err != nil {
			return nil, err
		}
		if res.ExitStatus != 0 {
			return nil, core.Errorf(core.ErrEngine, "install_package", "luarocks in the VM failed to install %s (exit %d): %s", p.Rock, res.ExitStatus, lastBytes(res.Stderr, res.Stdout))
		}
		installed = append(installed, p.Name+" "+p.Version)
	}
	return json.Marshal(map[string]any{"result": map[string]any{"installed": installed}})
}

func lastBytes(bufs ...[]byte) string {
	var all []byte
	for _, b := range bufs {
		all = append(all, b...)
	}
	if len(all) > 800 {
		all = all[len(all)-800:]
	}
	return string(all)
}
