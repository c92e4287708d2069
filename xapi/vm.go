package xapi

import (
	"context"
	"encoding/xml"
	"errors"
	"net"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"libbioxen/core"
)

// ErrTemplateNotFound is in the chain of Provision's error when no template
// has the requested name.
var ErrTemplateNotFound = errors.New("template not found")

// ProvisionSpec says what VM to create.
type ProvisionSpec struct {
	// Template is the template's name_label (or UUID). Snapshots and
	// non-templates with the same name are ignored.
	Template string
	// Name is the new VM's name_label.
	Name        string
	Description string
	// OtherConfig entries are merged into the VM's other_config.
	OtherConfig map[string]string
	// SR is the UUID of the SR to create the VM's disks on, as `xe
	// vm-install sr-uuid=` takes it: the template is then copied there
	// (VM.copy) instead of cloned, and every disk of its provisioning XML
	// goes there. Default: VM.clone, and the provisioned disks go to the
	// pool's default SR.
	SR string
	// Network is the network (ref or name_label) for the VIF created when
	// the template has none; default: the management PIF's network, else
	// the first guest network.
	Network string
}

// VM is a VM handled by this client.
type VM struct {
	c    *Client
	Ref  string
	UUID string
	Name string
	// IP and SSHPort are filled by WaitIP.
	IP      string
	SSHPort int
}

// VM returns a handle on an existing VM.
func (c *Client) VM(ref string) *VM { return &VM{c: c, Ref: ref} }

func (c *Client) callString(ctx context.Context, method string, args ...any) (string, error) {
	v, err := c.Call(ctx, method, args...)
	return AsString(v), err
}

func (c *Client) callRecord(ctx context.Context, method string, args ...any) (map[string]any, error) {
	v, err := c.Call(ctx, method, args...)
	return AsRecord(v), err
}

var uuidRe = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// FindTemplate returns the ref of the template named name (is_a_template
// true, is_a_snapshot false), or of the template with that UUID.
func (c *Client) FindTemplate(ctx context.Context, name string) (string, error) {
	const op = "xapi find template"
	if name == "" {
		return "", core.Errorf(core.ErrInvalid, op, "no template name given")
	}
	var refs []string
	if uuidRe.MatchString(name) {
		ref, err := c.callString(ctx, "VM.get_by_uuid", name)
		if err == nil {
			refs = []string{ref}
		} else if !IsFailure(err, "UUID_INVALID") {
			return "", err
		}
	}
	if refs == nil {
		v, err := c.Call(ctx, "VM.get_by_name_label", name)
		if err != nil {
			return "", err
		}
		refs = AsStrings(v)
	}
	var found []string
	for _, ref := range refs {
		rec, err := c.callRecord(ctx, "VM.get_record", ref)
		if IsFailure(err, "HANDLE_INVALID") {
			continue // deleted meanwhile
		}
		if err != nil {
			return "", err
		}
		if AsBool(rec["is_a_template"]) && !AsBool(rec["is_a_snapshot"]) {
			found = append(found, ref)
		}
	}
	switch len(found) {
	case 0:
		return "", core.Wrap(core.ErrInvalid, op, "no template named "+strconv.Quote(name), ErrTemplateNotFound)
	case 1:
		return found[0], nil
	}
	return "", core.Errorf(core.ErrInvalid, op, "%d templates are named %q; give a UUID", len(found), name)
}

// DefaultSR returns the ref and UUID of the pool's default SR.
func (c *Client) DefaultSR(ctx context.Context) (ref, uuid string, err error) {
	v, err := c.Call(ctx, "pool.get_all")
	if err != nil {
		return "", "", err
	}
	pools := AsStrings(v)
	if len(pools) == 0 {
		return "", "", core.Errorf(core.ErrEngine, "xapi default SR", "XAPI reports no pool")
	}
	ref, err = c.callString(ctx, "pool.get_default_SR", pools[0])
	if err != nil {
		return "", "", err
	}
	if IsNullRef(ref) {
		return "", "", core.Errorf(core.ErrInvalid, "xapi default SR", "the pool has no default SR; give one")
	}
	uuid, err = c.callString(ctx, "SR.get_uuid", ref)
	return ref, uuid, err
}

// PoolNetwork picks the network for a new VIF: the management PIF's
// network, else the first network that is not host-internal.
func (c *Client) PoolNetwork(ctx context.Context) (string, error) {
	v, err := c.Call(ctx, "PIF.get_all_records")
	if err != nil {
		return "", err
	}
	pifs := AsRecord(v)
	keys := make([]string, 0, len(pifs))
	for k := range pifs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		rec := AsRecord(pifs[k])
		if AsBool(rec["management"]) && !IsNullRef(AsString(rec["network"])) {
			return AsString(rec["network"]), nil
		}
	}
	v, err = c.Call(ctx, "network.get_all")
	if err != nil {
		return "", err
	}
	for _, ref := range AsStrings(v) {
		oc, err := c.Call(ctx, "network.get_other_config", ref)
		if err != nil {
			return "", err
		}
		m := AsStringMap(oc)
		if m["is_host_internal_management_network"] == "true" || m["is_guest_installer_network"] == "true" {
			continue
		}
		return ref, nil
	}
	return "", core.Errorf(core.ErrInvalid, "xapi pool network", "the pool has no network for a VIF")
}

func (c *Client) findNetwork(ctx context.Context, name string) (string, error) {
	if strings.HasPrefix(name, "OpaqueRef:") {
		return name, nil
	}
	v, err := c.Call(ctx, "network.get_by_name_label", name)
	if err != nil {
		return "", err
	}
	refs := AsStrings(v)
	if len(refs) == 0 {
		return "", core.Errorf(core.ErrInvalid, "xapi network", "no network named %q", name)
	}
	return refs[0], nil
}

// maxDisksXML bounds a template's disks XML (other_config "disks"). A
// template's is about 100 bytes a disk; encoding/xml spends ~50 bytes of
// heap on each attribute (`a="" ` is 5 bytes) and disk, so the 256 MiB a
// response may hold took gigabytes (30 MiB: 1.4 GiB).
const maxDisksXML = 64 << 10

type provisionDisk struct {
	Attrs []xml.Attr `xml:",any,attr"`
}

type provisionDoc struct {
	XMLName xml.Name        `xml:"provision"`
	Disks   []provisionDisk `xml:"disk"`
}

// rewriteDisks points every disk of a provisioning XML at the SR whose
// UUID sr returns, as `xe vm-install` does (xen-api
// ocaml/xapi-cli-server/cli_util.ml rewrite_provisioning_xml replaces
// each disk's sr attribute, empty or not); a disk without one gets one,
// since XAPI's parser requires it. sr is called only when there is a
// disk.
func rewriteDisks(doc string, sr func() (string, error)) (string, bool, error) {
	if len(doc) > maxDisksXML {
		return "", false, core.Errorf(core.ErrInvalid, "xapi provision", "the template's disks XML is %d bytes, over the %d byte limit", len(doc), maxDisksXML)
	}
	var p provisionDoc
	if err := xml.Unmarshal([]byte(doc), &p); err != nil {
		return "", false, core.Wrap(core.ErrInvalid, "xapi provision", "cannot parse the template's disks XML", err)
	}
	changed, uuid := false, ""
	for i := range p.Disks {
		d := &p.Disks[i]
		at := -1
		for j, a := range d.Attrs {
			if a.Name.Local == "sr" {
				at = j
			}
		}
		if uuid == "" {
			var err error
			if uuid, err = sr(); err != nil {
				return "", false, err
			}
		}
		switch {
		case at < 0:
			d.Attrs = append(d.Attrs, xml.Attr{Name: xml.Name{Local: "sr"}, Value: uuid})
		case d.Attrs[at].Value != uuid:
			d.Attrs[at].Value = uuid
		default:
			continue
		}
		changed = true
	}
	if !changed {
		return doc, false, nil
	}
	out, err := xml.Marshal(p)
	if err != nil {
		return "", false, core.Wrap(core.ErrInvalid, "xapi provision", "cannot write the disks XML", err)
	}
	return string(out), true, nil
}

// Provision creates a halted VM from a template, like `xe vm-install`
// (xen-api ocaml/xapi-cli-server/cli_operations.ml vm_install_real):
// VM.clone (VM.copy to spec.SR when one is given) as a task, name and
// other_config, every disk of the disks XML pointed at spec.SR or the
// pool's default SR, VM.provision (which also clears is_a_template and
// runs a template's post-install script), and a VIF on the pool network
// when the template has none (which xe leaves to the caller). On failure
// everything it created is removed.
func (c *Client) Provision(ctx context.Context, spec ProvisionSpec) (_ *VM, err error) {
	const op = "xapi provision"
	if spec.Name == "" {
		return nil, core.Errorf(core.ErrInvalid, op, "no VM name given")
	}
	tmpl, err := c.FindTemplate(ctx, spec.Template)
	if err != nil {
		return nil, err
	}
	// The clone or copy runs as a task: one that the deadline cuts off
	// is waited for and its VM removed (see runTask).
	undo := func(cctx context.Context, ref string) { c.cleanupWithin(cctx, &VM{c: c, Ref: ref, Name: spec.Name}) }
	var ref string
	if spec.SR != "" {
		sr, err := c.callString(ctx, "SR.get_by_uuid", spec.SR)
		if err != nil {
			return nil, err
		}
		ref, err = c.runTask(ctx, undo, "VM.copy", tmpl, spec.Name, sr)
		if err != nil {
			return nil, err
		}
	} else if ref, err = c.runTask(ctx, undo, "VM.clone", tmpl, spec.Name); err != nil {
		return nil, err
	}
	if err := checkRef(op, "VM", ref); err != nil {
		return nil, err
	}
	vm := &VM{c: c, Ref: ref, Name: spec.Name}
	defer func() {
		if err != nil {
			c.cleanup(ctx, vm)
		}
	}()
	if vm.UUID, err = c.callString(ctx, "VM.get_uuid", ref); err != nil {
		return nil, err
	}
	if spec.Description != "" {
		if _, err = c.Call(ctx, "VM.set_name_description", ref, spec.Description); err != nil {
			return nil, err
		}
	}
	v, err := c.Call(ctx, "VM.get_other_config", ref)
	if err != nil {
		return nil, err
	}
	oc := AsStringMap(v)
	for k, val := range spec.OtherConfig {
		oc[k] = val
	}
	if disks, ok := oc["disks"]; ok {
		rewritten, changed, err := rewriteDisks(disks, func() (string, error) {
			if spec.SR != "" {
				return spec.SR, nil
			}
			_, uuid, err := c.DefaultSR(ctx)
			return uuid, err
		})
		if err != nil {
			return nil, err
		}
		if changed {
			oc["disks"] = rewritten
		}
	}
	if _, err = c.Call(ctx, "VM.set_other_config", ref, oc); err != nil {
		return nil, err
	}
	if _, err = c.runTask(ctx, nil, "VM.provision", ref); err != nil {
		return nil, err
	}
	v, err = c.Call(ctx, "VM.get_VIFs", ref)
	if err != nil {
		return nil, err
	}
	if len(AsStrings(v)) == 0 {
		var network string
		if spec.Network != "" {
			network, err = c.findNetwork(ctx, spec.Network)
		} else {
			network, err = c.PoolNetwork(ctx)
		}
		if err != nil {
			return nil, err
		}
		if _, err = c.Call(ctx, "VIF.create", map[string]any{
			"device": "0", "network": network, "VM": ref, "MAC": "", "MTU": "1500",
			"other_config": map[string]string{}, "qos_algorithm_type": "", "qos_algorithm_params": map[string]string{},
		}); err != nil {
			return nil, err
		}
	}
	core.Logf(core.LevelInfo, "xapi: provisioned VM %s (%s) from template %q", vm.Name, c.quoteServer(vm.UUID), spec.Template)
	return vm, nil
}

// cleanup removes a half-created VM with its disks, within
// cleanupContext(ctx): it outlives the caller's ctx (which may have
// expired).
func (c *Client) cleanup(ctx context.Context, vm *VM) {
	cctx, cancel := c.cleanupContext(ctx)
	defer cancel()
	c.cleanupWithin(cctx, vm)
}

// cleanupWithin removes a half-created VM with its disks within ctx, a
// cleanup context already.
func (c *Client) cleanupWithin(ctx context.Context, vm *VM) {
	if err := vm.Destroy(ctx); err != nil && !IsFailure(err, "HANDLE_INVALID") {
		core.Logf(core.LevelWarn, "xapi: cleanup of VM %s failed: %v", c.quoteServer(vm.Ref), err)
	}
}

// cleanupContext is the context for cleaning up after a call on ctx
// failed or was cut off: it outlives ctx, for CleanupTimeout from now but
// no later than CleanupTimeout past ctx's deadline. The cleanups that
// follow one cut-off call (the wait for a cut-off task, then the removal
// of the VM) so end together by the deadline plus CleanupTimeout; each
// taking a CleanupTimeout of its own, a server that never ends a task and
// never answers held Launch for the deadline plus twice CleanupTimeout.
func (c *Client) cleanupContext(ctx context.Context) (context.Context, context.CancelFunc) {
	end := time.Now().Add(c.opts.CleanupTimeout)
	if dl, ok := ctx.Deadline(); ok && dl.Add(c.opts.CleanupTimeout).Before(end) {
		end = dl.Add(c.opts.CleanupTimeout)
	}
	return context.WithDeadline(context.WithoutCancel(ctx), end)
}

// Launch provisions a VM, starts it and waits for its IP, all bounded by
// ctx. If any step fails, the VM and everything created for it (VDIs,
// VIFs) are removed before Launch returns.
func (c *Client) Launch(ctx context.Context, spec ProvisionSpec) (*VM, error) {
	vm, err := c.Provision(ctx, spec)
	if err != nil {
		return nil, err
	}
	if err := vm.Start(ctx); err != nil {
		c.cleanup(ctx, vm)
		return nil, err
	}
	if _, err := vm.WaitIP(ctx); err != nil {
		c.cleanup(ctx, vm)
		return nil, err
	}
	return vm, nil
}

// Start boots the VM: VM.start(vm, false, false), as a task. When ctx
// ends first, Start waits for the task to end (until CleanupTimeout past
// ctx's deadline) before it returns ctx's error, so that the VM can then
// be destroyed: XAPI refuses to while the start runs, and finishes a
// start whose client went away.
func (v *VM) Start(ctx context.Context) error {
	_, err := v.c.runTask(ctx, nil, "VM.start", v.Ref, false, false)
	return err
}

// PowerState returns "Halted", "Paused", "Running" or "Suspended".
func (v *VM) PowerState(ctx context.Context) (string, error) {
	return v.c.callString(ctx, "VM.get_power_state", v.Ref)
}

// PickIP chooses the guest address from VM_guest_metrics.networks: IPv4
// from the keys "<dev>/ipv4/<n>" and "<dev>/ip" (lowest device first, the
// device is not always 0), empty and unparsable values skipped, 127.x
// skipped unless allowLoopback; a global IPv6 address only when there is
// no IPv4 one.
func PickIP(networks map[string]string, allowLoopback bool) string {
	type cand struct {
		dev, idx int
		ip       string
	}
	var v4, v6 []cand
	for k, val := range networks {
		// At most 4 parts: the keys used have 2 or 3, and a server's key
		// of millions of slashes made as many strings.
		parts := strings.SplitN(k, "/", 4)
		dev, err := strconv.Atoi(parts[0])
		if err != nil {
			continue
		}
		ip := net.ParseIP(strings.TrimSpace(val))
		if ip == nil || ip.IsUnspecified() {
			continue
		}
		switch {
		case len(parts) == 2 && parts[1] == "ip", len(parts) == 3 && parts[1] == "ipv4":
			if ip.To4() == nil || (ip.IsLoopback() && !allowLoopback) {
				continue
			}
			idx := -1 // "<dev>/ip" ranks with ipv4/0
			if len(parts) == 3 {
				idx, _ = strconv.Atoi(parts[2])
			}
			v4 = append(v4, cand{dev, idx, ip.String()})
		case len(parts) == 3 && parts[1] == "ipv6":
			if ip.To4() != nil || ip.IsLinkLocalUnicast() || (ip.IsLoopback() && !allowLoopback) {
				continue
			}
			idx, _ := strconv.Atoi(parts[2])
			v6 = append(v6, cand{dev, idx, ip.String()})
		}
	}
	less := func(cs []cand) func(i, j int) bool {
		return func(i, j int) bool {
			if cs[i].dev != cs[j].dev {
				return cs[i].dev < cs[j].dev
			}
			return cs[i].idx < cs[j].idx
		}
	}
	sort.Slice(v4, less(v4))
	sort.Slice(v6, less(v6))
	if len(v4) > 0 {
		return v4[0].ip
	}
	if len(v6) > 0 {
		return v6[0].ip
	}
	return ""
}

// lookupIP reads the guest metrics once.
func (v *VM) lookupIP(ctx context.Context) (string, error) {
	gm, err := v.c.callString(ctx, "VM.get_guest_metrics", v.Ref)
	if err != nil || IsNullRef(gm) {
		return "", err
	}
	nets, err := v.c.Call(ctx, "VM_guest_metrics.get_networks", gm)
	if IsFailure(err, "HANDLE_INVALID") {
		return "", nil // replaced meanwhile
	}
	if err != nil {
		return "", err
	}
	return PickIP(AsStringMap(nets), v.c.opts.AllowLoopbackIP), nil
}

// WaitIP's pacing: rounds (guest metrics, power state, event.from) start
// at least minPollInterval apart, and up to maxPollInterval apart while
// event.from returns nothing new at once, or when polling without events.
const (
	minPollInterval = 250 * time.Millisecond
	maxPollInterval = 2 * time.Second
)

// WaitIP waits until the guest agent reports an IP address and returns it,
// bounded by ctx's deadline (Options.CallTimeout if it has none). It
// watches the VM and its guest metrics with event.from (rounds paced at
// 250 ms to 2 s when it answers at once), falling back to polling with
// backoff if events fail. It also reads the SSH port (see
// Options.SSHPortKey) into v.SSHPort.
func (v *VM) WaitIP(ctx context.Context) (string, error) {
	const op = "xapi wait for IP"
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, v.c.opts.CallTimeout)
		defer cancel()
	}
	expired := func(err error) error {
		return core.Wrap(core.ErrTimeout, op, "the guest reported no IP address before the deadline", err)
	}
	pause := func(d time.Duration) error {
		if d <= 0 {
			return nil
		}
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return expired(ctx.Err())
		case <-t.C:
			return nil
		}
	}
	token, useEvents, backoff := "", true, minPollInterval
	for {
		// The power state first: XAPI keeps a halted VM's guest metrics,
		// stale, until its next start (xen-api xapi_vm.ml start:
		// delete_guest_metrics), so an address alone does not mean the VM
		// runs.
		ps, err := v.PowerState(ctx)
		if ctx.Err() != nil {
			return "", expired(ctx.Err())
		}
		if err != nil {
			return "", err
		}
		if ps != "Running" {
			return "", core.Errorf(core.ErrEngine, op, "the VM is %s, not Running", v.c.quoteServer(ps))
		}
		ip, err := v.lookupIP(ctx)
		if ctx.Err() != nil {
			return "", expired(ctx.Err())
		}
		if err != nil {
			return "", err
		}
		if ip != "" {
			v.IP = ip
			v.SSHPort = 22
			if oc, err := v.c.Call(ctx, "VM.get_other_config", v.Ref); err == nil {
				if p, err := strconv.Atoi(AsStringMap(oc)[v.c.opts.SSHPortKey]); err == nil && p > 0 && p < 65536 {
					v.SSHPort = p
				}
			}
			return ip, nil
		}
		if useEvents {
			wait := 30.0
			if dl, ok := ctx.Deadline(); ok {
				if rem := time.Until(dl).Seconds() - 0.2; rem < wait {
					wait = max(rem, 0.05)
				}
			}
			gm, _ := v.c.callString(ctx, "VM.get_guest_metrics", v.Ref)
			classes := []string{"vm/" + v.Ref}
			if !IsNullRef(gm) {
				classes = append(classes, "vm_guest_metrics/"+gm)
			}
			asked := time.Now()
			res, err := v.c.Call(ctx, "event.from", classes, token, wait)
			if ctx.Err() != nil {
				return "", expired(ctx.Err())
			}
			if err == nil {
				rec := AsRecord(res)
				events, _ := rec["events"].([]any)
				next := AsString(rec["token"])
				// The next round waits until backoff has passed since
				// event.from was asked: it normally blocks until something
				// changes, but a server answering at once must not make
				// this loop spin. The backoff grows while the answers
				// bring nothing new.
				if err := pause(backoff - time.Since(asked)); err != nil {
					return "", err
				}
				if len(events) == 0 && next == token {
					backoff = min(backoff*2, maxPollInterval)
				} else {
					backoff = minPollInterval
				}
				token = next
				continue
			}
			if FailureOf(err) == nil {
				return "", err
			}
			core.Logf(core.LevelDebug, "xapi: event.from failed (%v); polling instead", err)
			useEvents = false
		}
		if err := pause(backoff); err != nil {
			return "", err
		}
		backoff = min(backoff*2, maxPollInterval)
	}
}

// Shutdown stops the VM: VM.clean_shutdown bounded by cleanTimeout, then
// VM.hard_shutdown if the guest did not comply. A halted VM is left as is.
func (v *VM) Shutdown(ctx context.Context, cleanTimeout time.Duration) error {
	ps, err := v.PowerState(ctx)
	if err != nil {
		return err
	}
	switch ps {
	case "Halted":
		return nil
	case "Running":
		cctx, cancel := context.WithTimeout(ctx, cleanTimeout)
		_, err := v.c.Call(cctx, "VM.clean_shutdown", v.Ref)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return err
		}
		core.Logf(core.LevelInfo, "xapi: clean shutdown of %s failed (%v); forcing it", v.c.quoteServer(v.Ref), err)
	}
	_, err = v.c.Call(ctx, "VM.hard_shutdown", v.Ref)
	if f := FailureOf(err); f != nil && f.Code == "VM_BAD_POWER_STATE" && len(f.Params) > 2 && strings.EqualFold(f.Params[2], "halted") {
		return nil
	}
	return err
}

// Destroy removes the VM and its disks: hard shutdown unless it is
// halted (for a suspended VM this destroys its suspend image, which
// VM.destroy would leave behind: xen-api xapi_vm.ml hard_shutdown,
// xapi_vm_helpers.ml destroy), collect the VDIs of its Disk VBDs,
// VM.destroy (which removes VBDs, VIFs and metrics), then VDI.destroy for
// each VDI no other VM uses.
func (v *VM) Destroy(ctx context.Context) error {
	ps, err := v.PowerState(ctx)
	if err != nil {
		return err
	}
	if ps == "Running" || ps == "Paused" || ps == "Suspended" {
		if _, err := v.c.Call(ctx, "VM.hard_shutdown", v.Ref); err != nil && !IsFailure(err, "VM_BAD_POWER_STATE") {
			return err
		}
	}
	vbds, err := v.c.Call(ctx, "VM.get_VBDs", v.Ref)
	if err != nil {
		return err
	}
	var vdis []string
	for _, vbd := range AsStrings(vbds) {
		rec, err := v.c.callRecord(ctx, "VBD.get_record", vbd)
		if IsFailure(err, "HANDLE_INVALID") {
			continue
		}
		if err != nil {
			return err
		}
		if AsString(rec["type"]) == "Disk" && !IsNullRef(AsString(rec["VDI"])) {
			vdis = append(vdis, AsString(rec["VDI"]))
		}
	}
	if _, err := v.c.Call(ctx, "VM.destroy", v.Ref); err != nil {
		return err
	}
	var first error
	for _, vdi := range vdis {
		others, err := v.c.Call(ctx, "VDI.get_VBDs", vdi)
		if IsFailure(err, "HANDLE_INVALID") {
			continue
		}
		if err == nil && len(AsStrings(others)) > 0 {
			core.Logf(core.LevelInfo, "xapi: keeping VDI %s, still used by another VM", v.c.quoteServer(vdi))
			continue
		}
		if err == nil {
			_, err = v.c.Call(ctx, "VDI.destroy", vdi)
		}
		if err != nil && !IsFailure(err, "HANDLE_INVALID") && first == nil {
			first = err
		}
	}
	return first
}

// VMInfo summarises a VM for ListVMs.
type VMInfo struct {
	Ref         string
	UUID        string
	Name        string
	PowerState  string
	OtherConfig map[string]string
}

// ListVMs lists the pool's VMs: no templates, snapshots or control domains.
func (c *Client) ListVMs(ctx context.Context) ([]VMInfo, error) {
	v, err := c.Call(ctx, "VM.get_all_records")
	if err != nil {
		return nil, err
	}
	var out []VMInfo
	for ref, r := range AsRecord(v) {
		rec := AsRecord(r)
		if AsBool(rec["is_a_template"]) || AsBool(rec["is_a_snapshot"]) || AsBool(rec["is_control_domain"]) {
			continue
		}
		out = append(out, VMInfo{Ref: ref, UUID: AsString(rec["uuid"]), Name: AsString(rec["name_label"]),
			PowerState: AsString(rec["power_state"]), OtherConfig: AsStringMap(rec["other_config"])})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].UUID < out[j].UUID
	})
	return out, nil
}
