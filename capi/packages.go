package main

/*
#include <stdlib.h>
#include "bioxen.h"
*/
import "C"

import (
	"context"
	"encoding/json"

	"libbioxen/core"
	"libbioxen/packages"
)

// pkgRequest is the JSON request of bioxen_packages; see bioxen.h.
type pkgRequest struct {
	Op         string             `json:"op"`
	Home       string             `json:"home"`
	Luarocks   string             `json:"luarocks"`
	Catalogs   []string           `json:"catalogs"`
	Repos      []packages.Repo    `json:"default_repos"`
	Env        string             `json:"env"`
	Package    string             `json:"package"`
	Version    string             `json:"version"`
	Query      string             `json:"query"`
	Name       string             `json:"name"`
	URL        string             `json:"url"`
	Index      *int               `json:"index"`
	Path       string             `json:"path"`
	LuaVersion string             `json:"lua_version"`
	Create     bool               `json:"create"`
	Lock       *packages.LockFile `json:"lock"`
	// AllowBuildCommands: packages.Config.AllowBuildCommands.
	AllowBuildCommands bool `json:"allow_build_commands"`
}

func runPackages(req *pkgRequest) (any, error) {
	m, err := packages.Open(packages.Config{Home: req.Home, Luarocks: req.Luarocks, Catalogs: req.Catalogs, DefaultRepos: req.Repos,
		AllowBuildCommands: req.AllowBuildCommands})
	if err != nil {
		return nil, err
	}
	ctx := context.Background()
	env := func(create bool) (*packages.Env, error) {
		name := req.Env
		if name == "" {
			name = "default"
		}
		return m.Env(name, create)
	}
	// changeEnv opens the environment of a change (install, update,
	// install_lock), creating it; undo removes it again if it was created
	// here, so that a change that fails leaves no new, empty environment.
	changeEnv := func() (e *packages.Env, undo func(), err error) {
		_, err = env(false)
		existed := err == nil
		if e, err = env(true); err != nil {
			return nil, nil, err
		}
		undo = func() {
			if !existed {
				if err := m.RemoveEnv(e.Name); err != nil {
					core.Logf(core.LevelWarn, "packages: removing environment %q after a failed change: %v", e.Name, err)
				}
			}
		}
		return e, undo, nil
	}
	switch req.Op {
	case "catalog":
		return map[string]any{"packages": m.Catalog().Packages, "profiles": m.Catalog().Profiles, "sources": m.Catalog().Sources}, nil
	case "search":
		matches, errs := m.Search(ctx, req.Query)
		var warnings []string
		for _, e := range errs {
			warnings = append(warnings, e.Error())
		}
		return map[string]any{"matches": matches, "warnings": warnings}, nil
	case "repos":
		return m.ReposRedacted(), nil
	case "add_repo", "move_repo":
		idx := -1
		if req.Index != nil {
			idx = *req.Index
		}
		var err error
		if req.Op == "add_repo" {
			err = m.AddRepo(req.Name, req.URL, idx)
		} else {
			err = m.MoveRepo(req.Name, idx)
		}
		if err != nil {
			return nil, err
		}
		return m.ReposRedacted(), nil
	case "remove_repo":
		if err := m.RemoveRepo(req.Name); err != nil {
			return nil, err
		}
		return m.ReposRedacted(), nil
	case "envs":
		return m.EnvNames(), nil
	case "create_env":
		e, err := env(true)
		if err != nil {
			return nil, err
		}
		return map[string]string{"name": e.Name, "tree": e.Tree()}, nil
	case "remove_env":
		return nil, m.RemoveEnv(req.Env)
	case "paths":
		e, err := env(req.Create)
		if err != nil {
			return nil, err
		}
		p, cp, err := e.Paths(req.LuaVersion)
		if err != nil {
			return nil, err
		}
		return map[string]string{"path": p, "cpath": cp, "tree": e.Tree()}, nil
	case "install", "update":
		e, undo, err := changeEnv()
		if err != nil {
			return nil, err
		}
		inst, err := e.Install(ctx, req.Package, req.Version)
		if err != nil {
			undo()
			return nil, err
		}
		return inst, nil
	case "remove":
		e, err := env(false)
		if err != nil {
			return nil, err
		}
		return nil, e.Remove(ctx, req.Package)
	case "list":
		e, err := env(req.Create)
		if err != nil {
			return nil, err
		}
		return e.List(ctx)
	case "lock":
		e, err := env(false)
		if err != nil {
			return nil, err
		}
		lf, err := e.Lock(ctx)
		if err != nil {
			return nil, err
		}
		if req.Path != "" {
			if err := packages.WriteLockFile(req.Path, lf); err != nil {
				return nil, err
			}
		}
		return lf, nil
	case "install_lock":
		lf := req.Lock
		if lf == nil {
			if lf, err = packages.ReadLockFile(req.Path); err != nil {
				return nil, err
			}
		}
		e, undo, err := changeEnv()
		if err != nil {
			return nil, err
		}
		inst, err := e.InstallLock(ctx, lf)
		if err != nil {
			undo()
			return nil, err
		}
		return inst, nil
	case "health":
		// A query: an unknown environment is not created ("create" asks).
		e, err := env(req.Create)
		if err != nil {
			return nil, err
		}
		return e.Health(ctx), nil
	}
	return nil, core.Errorf(core.ErrInvalid, "packages", "unknown op %q", req.Op)
}

//export bioxenGoPackages
func bioxenGoPackages(reqJSON *C.char, n C.size_t, out **C.char, outLen *C.size_t) (status C.int) {
	defer guard(&status)
	return jsonCall(reqJSON, n, out, outLen, "packages", runPackages)
}

// maxRequestBytes bounds a JSON request (as the default source limit).
const maxRequestBytes = core.DefaultMaxSourceBytes

// jsonCall is the body of the JSON-request functions: decode the request,
// run it, and hand {"result": ...} back in C memory (freed with bioxen_free).
// A bad request is reported without echoing it (it may hold passwords).
func jsonCall[T any](reqJSON *C.char, n C.size_t, out **C.char, outLen *C.size_t, op string, run func(*T) (any, error)) C.int {
	clearOut(out, outLen)
	if reqJSON == nil || out == nil || outLen == nil {
		return fail(core.Errorf(core.ErrInvalid, op, "NULL argument"))
	}
	body, err := cView(reqJSON, n, maxRequestBytes, op, "request")
	if err != nil {
		return fail(err)
	}
	var req T
	if err := json.Unmarshal(body, &req); err != nil {
		return fail(core.Errorf(core.ErrInvalid, op, "bad request JSON"))
	}
	res, err := run(&req)
	if err != nil {
		return fail(err)
	}
	data, err := json.Marshal(map[string]any{"result": res})
	if err != nil {
		return fail(core.Wrap(core.ErrGeneric, op, "encoding the response", err))
	}
	*out, *outLen = cbytes(data)
	return C.BIOXEN_OK
}

// clearOut sets the response out-parameters that are not NULL to NULL and
// 0, first thing: on every failure the caller finds no response (a NULL
// request left its values there, which it then freed).
func clearOut(out **C.char, outLen *C.size_t) {
	if out != nil {
		*out = nil
	}
	if outLen != nil {
		*outLen = 0
	}
}
