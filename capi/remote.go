package main

/*
#include <stdlib.h>
#include "bioxen.h"
*/
import "C"

import (
	"context"
	"encoding/json"
	"math"
	"time"

	"libbioxen/core"
	"libbioxen/sshsession"
	"libbioxen/xapi"
	"libbioxen/xcpng"
)

// remoteRequest is the JSON request of bioxen_remote; see bioxen.h.
type remoteRequest struct {
	Op string `json:"op"`
	// XAPI
	URL             string `json:"url"`
	Username        string `json:"username"`
	Password        string `json:"password"`
	CAFile          string `json:"ca_file"`
	Fingerprint     string `json:"fingerprint"`
	Insecure        bool   `json:"insecure"`
	AllowLoopbackIP bool   `json:"allow_loopback_ip"`
	SSHPortKey      string `json:"ssh_port_key"`
	Template        string `json:"template"`
	Name            string `json:"name"`
	Ref             string `json:"ref"`
	// SSH
	Host            string   `json:"host"`
	Port            int      `json:"port"`
	User            string   `json:"user"`
	KeyFiles        []string `json:"key_files"`
	KnownHosts      string   `json:"known_hosts"`
	TrustOnFirstUse bool     `json:"trust_on_first_use"`
	Command         string   `json:"command"`
	Stdin           string   `json:"stdin"`
	// Both
	TimeoutSeconds float64 `json:"timeout"`
	// xcpng_check_config
	Config json.RawMessage `json:"config"`
}

func (r *remoteRequest) ctx() (context.Context, context.CancelFunc) {
	d := 5 * time.Minute
	switch {
	case r.TimeoutSeconds >= float64(math.MaxInt64)/float64(time.Second):
		// Past what a time.Duration holds (about 292 years): converting
		// it gave a negative duration, a deadline already passed.
		return context.WithCancel(context.Background())
	case r.TimeoutSeconds > 0:
		d = time.Duration(r.TimeoutSeconds * float64(time.Second))
	}
	return context.WithTimeout(context.Background(), d)
}

// remoteOps are the ops runRemote knows (besides xcpng_check_config).
var remoteOps = map[string]bool{"ssh_run": true, "xapi_login": true, "xapi_vms": true, "xapi_find_template": true,
	"xapi_launch": true, "xapi_start": true, "xapi_shutdown": true, "xapi_destroy": true, "xapi_power_state": true}

func runRemote(req *remoteRequest) (any, error) {
	if req.Op == "xcpng_check_config" {
		// Checked as the engine will read it, so a typo fails when the VM
		// object is made, not minutes later at start.
		if err := xcpng.CheckConfig(req.Config); err != nil {
			return nil, err
		}
		return map[string]any{"ok": true}, nil
	}
	if !remoteOps[req.Op] {
		// Before connecting: a misspelt op logged in (sending the
		// password) and then failed (found by review, red team).
		return nil, core.Errorf(core.ErrInvalid, "remote", "unknown op %q", req.Op)
	}
	ctx, cancel := req.ctx()
	defer cancel()
	switch req.Op {
	case "ssh_run":
		conn, err := sshsession.Dial(ctx, sshsession.Config{Host: req.Host, Port: req.Port, User: req.User,
			Password: req.Password, KeyFiles: req.KeyFiles, KnownHostsFile: req.KnownHosts, TrustOnFirstUse: req.TrustOnFirstUse})
		if err != nil {
			return nil, err
		}
		defer conn.Close()
		// Run puts the command under a remote kill for the context's deadline.
		res, err := conn.Run(ctx, req.Command, []byte(req.Stdin), sshsession.Limits{})
		if err != nil {
			return nil, err
		}
		return map[string]any{"exit_status": res.ExitStatus, "signal": res.Signal, "stdout": string(res.Stdout), "stderr": string(res.Stderr)}, nil
	}
	client, err := xapi.New(xapi.Options{URL: req.URL, Username: req.Username, Password: xapi.Secret(req.Password),
		CAFile: req.CAFile, Fingerprint: req.Fingerprint, Insecure: req.Insecure,
		AllowLoopbackIP: req.AllowLoopbackIP, SSHPortKey: req.SSHPortKey})
	if err != nil {
		return nil, err
	}
	// Logging out is part of the call: within its deadline (with a
	// context of its own it took up to 60 s more than a timeout of 3 s).
	defer client.Close(ctx)
	if err := client.Login(ctx); err != nil {
		return nil, err
	}
	switch req.Op {
	case "xapi_login":
		return map[string]any{"ok": true}, nil
	case "xapi_vms":
		return client.ListVMs(ctx)
	case "xapi_find_template":
		ref, err := client.FindTemplate(ctx, req.Template)
		if err != nil {
			return nil, err
		}
		return map[string]string{"ref": ref}, nil
	case "xapi_launch":
		vm, err := client.Launch(ctx, xapi.ProvisionSpec{Template: req.Template, Name: req.Name})
		if err != nil {
			return nil, err
		}
		return map[string]any{"ref": vm.Ref, "uuid": vm.UUID, "name": vm.Name, "ip": vm.IP, "ssh_port": vm.SSHPort}, nil
	case "xapi_start":
		// Boot a halted VM (a running one is left as it is) and wait for
		// its address, as xapi_launch does after provisioning.
		vm := client.VM(req.Ref)
		st, err := vm.PowerState(ctx)
		if err != nil {
			return nil, err
		}
		if st != "Running" {
			if err := vm.Start(ctx); err != nil {
				return nil, err
			}
		}
		if _, err := vm.WaitIP(ctx); err != nil {
			return nil, err
		}
		return map[string]any{"ref": vm.Ref, "ip": vm.IP, "ssh_port": vm.SSHPort}, nil
	case "xapi_shutdown":
		return nil, client.VM(req.Ref).Shutdown(ctx, 60*time.Second)
	case "xapi_destroy":
		vm := client.VM(req.Ref)
		if st, err := vm.PowerState(ctx); err == nil && st != "Halted" {
			if err := vm.Shutdown(ctx, 60*time.Second); err != nil {
				return nil, err
			}
		}
		return nil, vm.Destroy(ctx)
	case "xapi_power_state":
		st, err := client.VM(req.Ref).PowerState(ctx)
		return map[string]string{"power_state": st}, err
	}
	return nil, core.Errorf(core.ErrInvalid, "remote", "unknown op %q", req.Op)
}

//export bioxenGoRemote
func bioxenGoRemote(reqJSON *C.char, n C.size_t, out **C.char, outLen *C.size_t) (status C.int) {
	defer guard(&status)
	return jsonCall(reqJSON, n, out, outLen, "remote", runRemote)
}

//export bioxenGoVMInstallPackage
func bioxenGoVMInstallPackage(h C.bioxen_vm, reqJSON *C.char, n C.size_t, out **C.char, outLen *C.size_t) (status C.int) {
	defer guard(&status)
	clearOut(out, outLen)
	if reqJSON == nil || out == nil || outLen == nil {
		return fail(core.Errorf(core.ErrInvalid, "install_package", "NULL argument"))
	}
	vm, st := lookup(h)
	if vm == nil {
		return st
	}
	// The C call has no deadline of its own: bound it (xcpng documents the
	// default; the engine would apply it too).
	ctx, cancel := context.WithTimeout(context.Background(), xcpng.DefaultInstallTimeout)
	defer cancel()
	req, err := cCopy(reqJSON, n, maxRequestBytes, "install_package", "request")
	if err != nil {
		return fail(err)
	}
	data, err := vm.InstallPackage(ctx, req)
	if err != nil {
		return fail(err)
	}
	*out, *outLen = cbytes(data)
	return C.BIOXEN_OK
}
