package sim

import (
	"crypto/rand"
	"encoding/xml"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

func lower(ps string) string { return strings.ToLower(ps) }

// validMAC is xen-api helpers.ml is_valid_MAC: six colon-separated pairs
// of hex digits.
func validMAC(mac string) bool {
	parts := strings.Split(mac, ":")
	if len(parts) != 6 {
		return false
	}
	for _, p := range parts {
		if len(p) != 2 || !isHex(p[0]) || !isHex(p[1]) {
			return false
		}
	}
	return true
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

func randomMAC() string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("02:%02x:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3], b[4])
}

// lifecycle checks op on VM o in the order of xen-api
// ocaml/xapi/xapi_vm_lifecycle.ml check_operation_error: the power state
// first (allowed_power_states; VM_BAD_POWER_STATE [vm, expected, actual],
// lower case, expected states joined with ", "), then the template rules
// (check_template: a template allows clone, copy, provision and memory
// changes, and destroy unless it is a default template; else
// VM_IS_TEMPLATE [vm, op]), then provision only on templates. states are
// the allowed power states in XAPI's order.
func lifecycle(o *object, op string, states ...string) error {
	ps := o.rec.str("power_state")
	if !slices.Contains(states, ps) {
		exp := make([]string, len(states))
		for i, st := range states {
			exp[i] = lower(st)
		}
		return fail("VM_BAD_POWER_STATE", o.ref, strings.Join(exp, ", "), lower(ps))
	}
	if o.rec.flag("is_a_template") && !o.rec.flag("is_a_snapshot") {
		oc, _ := o.rec["other_config"].(map[string]string)
		isDefault := o.rec.flag("is_default_template") || oc["default_template"] == "true"
		switch op {
		case "clone", "copy", "provision", "changing_memory_limits":
		case "destroy":
			if isDefault {
				return fail("VM_IS_TEMPLATE", o.ref, op)
			}
		default:
			return fail("VM_IS_TEMPLATE", o.ref, op)
		}
	}
	if op == "provision" && !o.rec.flag("is_a_template") {
		return fail("PROVISION_ONLY_ALLOWED_ON_TEMPLATE")
	}
	return nil
}

// ocamlFloat formats f as OCaml's string_of_float does ("%.12g", with a
// trailing "." when that looks like an integer): XAPI builds error
// parameters such as VM_SHUTDOWN_TIMEOUT's with it.
func ocamlFloat(f float64) string {
	s := strconv.FormatFloat(f, 'g', 12, 64)
	if !strings.ContainsAny(s, ".eEnN") {
		s += "."
	}
	return s
}

// vmArg reads a VM ref argument and looks the VM up; d.mu held.
func (c *call) vm(i int) (*object, error) {
	ref, err := c.str(i)
	if err != nil {
		return nil, err
	}
	return c.s.db.get("VM", ref)
}

func (c *call) vmClone() (any, error) { return c.cloneVM(false) }
func (c *call) vmCopy() (any, error)  { return c.cloneVM(true) }

func (c *call) cloneVM(copyTo bool) (any, error) {
	name, err := c.str(1)
	if err != nil {
		return nil, err
	}
	d := c.s.db
	d.mu.Lock()
	defer d.mu.Unlock()
	src, err := c.vm(0)
	if err != nil {
		return nil, err
	}
	op, states := "clone", []string{"Halted"}
	if copyTo {
		op = "copy"
	}
	if src.rec.flag("is_a_snapshot") {
		states = append(states, "Suspended")
	}
	if err := lifecycle(src, op, states...); err != nil {
		return nil, err
	}
	if src.rec.flag("is_control_domain") {
		return nil, fail("OPERATION_NOT_ALLOWED", "cannot clone the control domain")
	}
	targetSR := ""
	if copyTo {
		sr, err := c.str(2)
		if err != nil {
			return nil, err
		}
		if sr != NullRef {
			if _, err := d.get("SR", sr); err != nil {
				return nil, err
			}
			targetSR = sr
		}
	}
	r := src.rec.clone()
	delete(r, "uuid")
	r["name_label"], r["is_default_template"], r["is_a_snapshot"] = name, false, false
	r["snapshot_of"], r["snapshots"], r["VBDs"], r["VIFs"] = NullRef, []string{}, []string{}, []string{}
	r["guest_metrics"], r["domid"], r["resident_on"], r["power_state"] = NullRef, int64(-1), NullRef, "Halted"
	// xapi_vm_helpers.ml copy_guest_metrics: the clone gets a copy of the
	// source's (stale) guest metrics.
	if gm := d.objs[src.rec.str("guest_metrics")]; gm != nil {
		gr := gm.rec.clone()
		delete(gr, "uuid")
		r["guest_metrics"] = d.create("VM_guest_metrics", gr)
	}
	r["current_operations"], r["start_time"] = map[string]string{}, epoch
	// xapi_vm_clone.ml copy_vm_record: a fresh mac_seed (VIF.create
	// generates MACs from it), no default_template/xensource_internal, and
	// the template's name kept as base_template_name.
	oc := r.smap("other_config") // r is a deep copy
	oc["mac_seed"] = newUUID()
	delete(oc, "default_template")
	delete(oc, "xensource_internal")
	if _, ok := oc["base_template_name"]; !ok && src.rec.flag("is_a_template") {
		oc["base_template_name"] = src.rec.str("name_label")
	}
	ref := d.create("VM", r)
	for _, vbdRef := range src.rec.set("VBDs") {
		vbd := d.objs[vbdRef]
		if vbd == nil {
			continue
		}
		vr := vbd.rec.clone()
		delete(vr, "uuid")
		vr["VM"], vr["currently_attached"] = ref, false
		if vdi := d.objs[vbd.rec.str("VDI")]; vdi != nil {
			dr := vdi.rec.clone()
			delete(dr, "uuid")
			dr["VBDs"] = []string{}
			if targetSR != "" {
				dr["SR"] = targetSR
			}
			vdiRef := d.create("VDI", dr)
			d.addToSet("SR", dr.str("SR"), "VDIs", vdiRef)
			vr["VDI"] = vdiRef
		}
		newVBD := d.create("VBD", vr)
		d.addToSet("VM", ref, "VBDs", newVBD)
		d.addToSet("VDI", vr.str("VDI"), "VBDs", newVBD)
	}
	for _, vifRef := range src.rec.set("VIFs") {
		vif := d.objs[vifRef]
		if vif == nil {
			continue
		}
		vr := vif.rec.clone()
		delete(vr, "uuid")
		vr["VM"], vr["MAC"], vr["currently_attached"], vr["MAC_autogenerated"] = ref, randomMAC(), false, true
		newVIF := d.create("VIF", vr)
		d.addToSet("VM", ref, "VIFs", newVIF)
		d.addToSet("network", vr.str("network"), "VIFs", newVIF)
	}
	return ref, nil
}

// provisionDisk is one <disk> of a template's provisioning XML, as
// xen-api's ocaml/xapi/xapi_templates.ml disk_of_xml reads it.
type provisionDisk struct {
	device, sr, vdiType string
	size                int64
	bootable            bool
}

// errProvisionParse is what XAPI reports for provisioning XML that
// disks_of_xml rejects (the exception Xapi_templates.Parse_failure, which
// exnHelper.ml turns into INTERNAL_ERROR).
var errProvisionParse = fail("INTERNAL_ERROR", "Xapi_templates.Parse_failure")

// parseProvision parses other_config:disks as XAPI does: the root must be
// <provision> without attributes, every child a <disk> without children
// and with the attributes device, size (an int64), sr and bootable; type
// is optional ("system" by default) but must be a known VDI type.
func parseProvision(spec string) ([]provisionDisk, error) {
	dec := xml.NewDecoder(strings.NewReader(spec))
	var disks []provisionDisk
	depth := 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fail("INTERNAL_ERROR", "Xml.Error: "+err.Error())
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			switch depth {
			case 1:
				if t.Name.Local != "provision" || len(t.Attr) != 0 {
					return nil, errProvisionParse
				}
			case 2:
				if t.Name.Local != "disk" {
					return nil, errProvisionParse
				}
				attrs := map[string]string{}
				for _, a := range t.Attr {
					attrs[a.Name.Local] = a.Value
				}
				var d provisionDisk
				var size string
				var ok [4]bool
				d.device, ok[0] = attrs["device"]
				size, ok[1] = attrs["size"]
				d.sr, ok[2] = attrs["sr"]
				bootable, hasBootable := attrs["bootable"]
				ok[3] = hasBootable
				if ok != [4]bool{true, true, true, true} {
					return nil, errProvisionParse
				}
				n, err := strconv.ParseInt(size, 10, 64)
				if err != nil {
					return nil, errProvisionParse
				}
				d.size, d.bootable = n, bootable == "true"
				d.vdiType = "system"
				if ty, ok := attrs["type"]; ok {
					switch ty {
					case "system", "user", "ephemeral", "suspend", "crashdump":
						d.vdiType = ty
					default:
						// string2vdi_type raises INTERNAL_ERROR inside a
						// try … with _ -> `system.
					}
				}
				disks = append(disks, d)
			default:
				return nil, errProvisionParse // a <disk> with children
			}
		case xml.EndElement:
			depth--
		case xml.CharData:
			if depth == 2 && len(strings.TrimSpace(string(t))) > 0 {
				return nil, errProvisionParse
			}
		}
	}
	return disks, nil
}

// vmProvision follows xen-api ocaml/xapi/xapi_vm.ml provision: it clears
// is_a_template first, then, if other_config has disks or postinstall
// (xapi_templates.ml get_template_record), creates a VDI and a VBD per
// disk (create_disk: the VDI is named after the device, the VBD carries
// other_config owner="", unpluggable unless the disk is a system disk)
// and removes both keys (post_install).
func (c *call) vmProvision() (any, error) {
	d := c.s.db
	d.mu.Lock()
	defer d.mu.Unlock()
	o, err := c.vm(0)
	if err != nil {
		return nil, err
	}
	if err := lifecycle(o, "provision", "Halted"); err != nil {
		return nil, err
	}
	o.rec["is_a_template"], o.rec["is_default_template"] = false, false
	d.touch(o)
	oc := maps.Clone(o.rec.smap("other_config"))
	var disks []provisionDisk
	if spec, ok := oc["disks"]; ok {
		if disks, err = parseProvision(spec); err != nil {
			return nil, err
		}
	}
	_, hasScript := oc["postinstall"]
	if len(disks) == 0 && !hasScript {
		return nil, nil
	}
	srs := make([]string, len(disks))
	for i, disk := range disks {
		for _, sr := range d.byClass["SR"] {
			if sr.rec.str("uuid") == disk.sr {
				srs[i] = sr.ref
			}
		}
		if srs[i] == "" {
			return nil, fail("UUID_INVALID", "sr", disk.sr)
		}
	}
	for i, disk := range disks {
		vr := defaults("VDI")
		vr["name_label"], vr["name_description"] = disk.device, "Created by template provisioner"
		vr["SR"], vr["virtual_size"], vr["type"] = srs[i], disk.size, disk.vdiType
		vr["sm_config"] = map[string]string{"vmhint": o.rec.str("uuid")}
		vdi := d.create("VDI", vr)
		d.addToSet("SR", srs[i], "VDIs", vdi)
		br := defaults("VBD")
		br["VM"], br["VDI"], br["userdevice"], br["bootable"] = o.ref, vdi, disk.device, disk.bootable
		br["unpluggable"], br["other_config"] = disk.vdiType != "system", map[string]string{"owner": ""}
		vbd := d.create("VBD", br)
		d.addToSet("VM", o.ref, "VBDs", vbd)
		d.addToSet("VDI", vdi, "VBDs", vbd)
	}
	delete(oc, "disks")
	delete(oc, "postinstall")
	o.rec["other_config"] = oc
	d.touch(o)
	return nil, nil
}

func (c *call) vmStart() (any, error) {
	paused, err := c.boolean(1)
	if err != nil {
		return nil, err
	}
	if _, err := c.boolean(2); err != nil {
		return nil, err
	}
	s, d := c.s, c.s.db
	d.mu.Lock()
	defer d.mu.Unlock()
	o, err := c.vm(0)
	if err != nil {
		return nil, err
	}
	if err := lifecycle(o, "start", "Halted"); err != nil {
		return nil, err
	}
	if o.rec.flag("is_control_domain") {
		return nil, fail("OPERATION_NOT_ALLOWED", "cannot start the control domain")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, fail("INTERNAL_ERROR", "simulator shutting down")
	}
	var devices []string
	for _, v := range o.rec.set("VIFs") {
		if vif := d.objs[v]; vif != nil {
			vif.rec["currently_attached"] = !paused
			devices = append(devices, vif.rec.str("device"))
			d.touch(vif)
		}
	}
	for _, b := range o.rec.set("VBDs") {
		if vbd := d.objs[b]; vbd != nil && vbd.rec.str("VDI") != NullRef {
			vbd.rec["currently_attached"] = true
			d.touch(vbd)
		}
	}
	// xapi_vm.ml start clears out any (stale) guest metrics record.
	if gm := d.objs[o.rec.str("guest_metrics")]; gm != nil {
		d.remove(gm)
	}
	o.rec["guest_metrics"] = NullRef
	s.domid++
	o.rec["domid"], o.rec["resident_on"], o.rec["start_time"] = int64(s.domid), s.hostRef, time.Now().UTC().Truncate(time.Second)
	o.rec["power_state"] = "Running"
	if paused {
		o.rec["power_state"] = "Paused"
	}
	d.touch(o)
	d.addToSet("host", s.hostRef, "resident_VMs", o.ref)
	if !paused {
		g := s.newGuest(o.ref, o.rec.str("uuid"), devices)
		g.noIP = s.takeFault(FaultNoIP, "") != nil
		g.sshdDown = s.takeFault(FaultSSHDDown, "") != nil
		g.ignoreShutdown = s.takeFault(FaultIgnoreShutdown, "") != nil
		s.guests[o.ref] = g
		s.bg.Add(1)
		go g.run()
	}
	return nil, nil
}

// halt stops a VM's guest (if it is still `only`, when given) and records
// the Halted state.
func (s *Server) halt(vm string, only *guest) bool {
	d := s.db
	d.mu.Lock()
	s.mu.Lock()
	g := s.guests[vm]
	if only != nil && g != only {
		s.mu.Unlock()
		d.mu.Unlock()
		return false
	}
	delete(s.guests, vm)
	s.mu.Unlock()
	d.mu.Unlock()
	if g != nil {
		g.stop()
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	o := d.objs[vm]
	if o == nil {
		return true
	}
	// The guest metrics stay, stale, until the next VM.start deletes them
	// (xen-api xapi_vm.ml start: delete_guest_metrics); nothing clears
	// them when the domain goes away.
	for _, v := range o.rec.set("VIFs") {
		if vif := d.objs[v]; vif != nil {
			vif.rec["currently_attached"] = false
			d.touch(vif)
		}
	}
	for _, b := range o.rec.set("VBDs") {
		if vbd := d.objs[b]; vbd != nil && vbd.rec.flag("currently_attached") {
			vbd.rec["currently_attached"] = false
			d.touch(vbd)
		}
	}
	oc := maps.Clone(o.rec.smap("other_config"))
	delete(oc, SSHPortKey)
	o.rec["other_config"] = oc
	o.rec["power_state"], o.rec["domid"], o.rec["resident_on"] = "Halted", int64(-1), NullRef
	d.touch(o)
	d.removeFromSet("host", s.hostRef, "resident_VMs", vm)
	return true
}

func (c *call) checkPower(op string, expected ...string) (*object, error) {
	d := c.s.db
	d.mu.Lock()
	defer d.mu.Unlock()
	o, err := c.vm(0)
	if err != nil {
		return nil, err
	}
	if err := lifecycle(o, op, expected...); err != nil {
		return nil, err
	}
	if o.rec.flag("is_control_domain") {
		return nil, fail("OPERATION_NOT_ALLOWED", "cannot "+op+" the control domain")
	}
	return o, nil
}

// vmHardShutdown follows xen-api xapi_vm.ml hard_shutdown: a suspended
// VM loses its suspend image (VDI.destroy of suspend_VDI) and is Halted.
func (c *call) vmHardShutdown() (any, error) {
	o, err := c.checkPower("hard_shutdown", "Paused", "Suspended", "Running")
	if err != nil {
		return nil, err
	}
	d := c.s.db
	d.mu.Lock()
	if o.rec.str("power_state") == "Suspended" {
		if vdi := d.objs[o.rec.str("suspend_VDI")]; vdi != nil {
			d.removeFromSet("SR", vdi.rec.str("SR"), "VDIs", vdi.ref)
			d.remove(vdi)
		}
		o.rec["suspend_VDI"] = NullRef
		d.touch(o)
	}
	d.mu.Unlock()
	c.s.halt(o.ref, nil)
	return nil, nil
}

// suspendSR is the SR a suspend of vm writes its image to: the VM's
// suspend_SR, else the pool's suspend_image_SR, else its default_SR ("":
// none exists). d.mu is held.
func (d *db) suspendSR(vm *object, pool string) string {
	srs := []string{vm.rec.str("suspend_SR")}
	if p := d.objs[pool]; p != nil {
		srs = append(srs, p.rec.str("suspend_image_SR"), p.rec.str("default_SR"))
	}
	for _, sr := range srs {
		if d.objs[sr] != nil {
			return sr
		}
	}
	return ""
}

// vmSuspend stops a running VM's guest and keeps its memory image in a
// VDI of type suspend (VM.suspend_VDI) on the VM's suspend_SR, else the
// pool's suspend_image_SR, else the default SR. Resume is not simulated.
func (c *call) vmSuspend() (any, error) {
	o, err := c.checkPower("suspend", "Running")
	if err != nil {
		return nil, err
	}
	s, d := c.s, c.s.db
	// The SR first: without one the VM keeps running.
	d.mu.Lock()
	sr := d.suspendSR(o, s.poolRef)
	d.mu.Unlock()
	if sr == "" {
		return nil, fail("VM_NO_SUSPEND_SR", o.ref)
	}
	s.halt(o.ref, nil)
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.objs[o.ref] != o {
		return nil, fail("HANDLE_INVALID", "VM", o.ref)
	}
	if d.objs[sr] == nil { // destroyed meanwhile
		return nil, fail("VM_NO_SUSPEND_SR", o.ref)
	}
	vr := defaults("VDI")
	vr["name_label"], vr["name_description"] = "Suspend image", "Suspend image"
	vr["SR"], vr["type"], vr["virtual_size"] = sr, "suspend", o.rec["memory_static_max"]
	vdi := d.create("VDI", vr)
	d.addToSet("SR", sr, "VDIs", vdi)
	o.rec["power_state"], o.rec["suspend_VDI"] = "Suspended", vdi
	d.touch(o)
	return nil, nil
}

func (c *call) vmCleanShutdown() (any, error) {
	o, err := c.checkPower("clean_shutdown", "Running")
	if err != nil {
		return nil, err
	}
	s := c.s
	s.mu.Lock()
	g := s.guests[o.ref]
	s.mu.Unlock()
	if g != nil && g.ignoreShutdown {
		t := time.NewTimer(s.opts.CleanShutdownTimeout)
		defer t.Stop()
		select {
		case <-g.done: // a hard_shutdown cancelled this one
			return nil, fail("TASK_CANCELLED", newRef())
		case <-t.C:
			return nil, fail("VM_SHUTDOWN_TIMEOUT", o.ref, ocamlFloat(s.opts.CleanShutdownTimeout.Seconds()))
		case <-s.closing:
			return nil, fail("INTERNAL_ERROR", "simulator shutting down")
		}
	}
	select {
	case <-time.After(s.opts.ShutdownDelay):
	case <-s.closing:
		return nil, fail("INTERNAL_ERROR", "simulator shutting down")
	}
	if g != nil && !s.halt(o.ref, g) {
		return nil, fail("TASK_CANCELLED", newRef())
	}
	if g == nil {
		s.halt(o.ref, nil)
	}
	return nil, nil
}

func (c *call) vmShutdown() (any, error) {
	if _, err := c.vmCleanShutdown(); err != nil {
		if x, ok := err.(xerr); ok && (x[0] == "VM_BAD_POWER_STATE" || x[0] == "VM_IS_TEMPLATE" || x[0] == "HANDLE_INVALID") {
			return nil, err
		}
		return c.vmHardShutdown()
	}
	return nil, nil
}

func (c *call) vmDestroy() (any, error) {
	s, d := c.s, c.s.db
	d.mu.Lock()
	o, err := c.vm(0)
	if err != nil {
		d.mu.Unlock()
		return nil, err
	}
	if err := lifecycle(o, "destroy", "Halted", "Suspended"); err != nil {
		d.mu.Unlock()
		return nil, err
	}
	if o.rec.flag("is_control_domain") {
		d.mu.Unlock()
		return nil, fail("OPERATION_NOT_ALLOWED", "cannot destroy the control domain")
	}
	// xapi_vm_helpers.ml destroy: only reachable for a non-template
	// with the other_config flag.
	if oc, _ := o.rec["other_config"].(map[string]string); oc["default_template"] == "true" {
		d.mu.Unlock()
		return nil, fail("VM_CANNOT_DELETE_DEFAULT_TEMPLATE")
	}
	// VM.destroy removes VBDs, VIFs and metrics, but not the VDIs.
	for _, b := range o.rec.set("VBDs") {
		if vbd := d.objs[b]; vbd != nil {
			d.removeFromSet("VDI", vbd.rec.str("VDI"), "VBDs", b)
			d.remove(vbd)
		}
	}
	for _, v := range o.rec.set("VIFs") {
		if vif := d.objs[v]; vif != nil {
			d.removeFromSet("network", vif.rec.str("network"), "VIFs", v)
			d.remove(vif)
		}
	}
	if gm := d.objs[o.rec.str("guest_metrics")]; gm != nil {
		d.remove(gm)
	}
	if parent := d.objs[o.rec.str("snapshot_of")]; parent != nil {
		d.removeFromSet("VM", parent.ref, "snapshots", o.ref)
	}
	uuid := o.rec.str("uuid")
	d.remove(o)
	d.mu.Unlock()
	s.removeVMDir(uuid)
	return nil, nil
}

func (c *call) vmSetMemoryLimits() (any, error) {
	var v [4]int64
	for i := range v {
		x, ok := convert(int64(0), c.arg(i+1))
		if !ok {
			return nil, c.typeErr(i + 1)
		}
		v[i] = x.(int64)
	}
	if !(v[0] <= v[2] && v[2] <= v[3] && v[3] <= v[1]) {
		return nil, fail("MEMORY_CONSTRAINT_VIOLATION", "Memory limits must satisfy: static_min <= dynamic_min <= dynamic_max <= static_max")
	}
	d := c.s.db
	d.mu.Lock()
	defer d.mu.Unlock()
	o, err := c.vm(0)
	if err != nil {
		return nil, err
	}
	if err := lifecycle(o, "changing_memory_limits", "Halted"); err != nil {
		return nil, err
	}
	o.rec["memory_static_min"], o.rec["memory_static_max"] = v[0], v[1]
	o.rec["memory_dynamic_min"], o.rec["memory_dynamic_max"] = v[2], v[3]
	d.touch(o)
	return nil, nil
}

func (c *call) vifCreate() (any, error) {
	m, err := c.structArg(0)
	if err != nil {
		return nil, err
	}
	r := defaults("VIF")
	for k, v := range m {
		def, known := r[k]
		if !known {
			continue
		}
		x, ok := convert(def, v)
		if !ok {
			return nil, fail("FIELD_TYPE_ERROR", k)
		}
		r[k] = x
	}
	// XAPI's generated dispatcher looks every constructor field without a
	// default up with my_assoc, which raises Dispatcher_FieldNotFound
	// (xen-api ocaml/idl/ocaml_backend/gen_server.ml from_ctor_record,
	// ocaml/xapi/server_helpers.ml my_assoc); exnHelper.ml reports it as
	// INTERNAL_ERROR. VIF's such fields: datamodel.ml module VIF and qos.
	for _, k := range []string{"device", "network", "VM", "MAC", "MTU", "other_config",
		"qos_algorithm_type", "qos_algorithm_params"} {
		if _, ok := m[k]; !ok {
			return nil, fail("INTERNAL_ERROR", fmt.Sprintf("Server_helpers.Dispatcher_FieldNotFound(%q)", k))
		}
	}
	d := c.s.db
	d.mu.Lock()
	defer d.mu.Unlock()
	vm, err := d.get("VM", r.str("VM"))
	if err != nil {
		return nil, err
	}
	if _, err := d.get("network", r.str("network")); err != nil {
		return nil, err
	}
	dev := r.str("device")
	if n, err := strconv.Atoi(dev); err != nil || n < 0 {
		return nil, fail("INVALID_DEVICE", dev)
	}
	// xapi_vif_helpers.ml create: MAC "" is generated only from the VM's
	// other_config mac_seed (VM.clone sets one); otherwise, and for a
	// malformed MAC, MAC_INVALID [mac].
	if _, seeded := vm.rec.smap("other_config")["mac_seed"]; r.str("MAC") == "" && seeded {
		r["MAC"], r["MAC_autogenerated"] = randomMAC(), true
	} else if !validMAC(r.str("MAC")) {
		return nil, fail("MAC_INVALID", r.str("MAC"))
	}
	for _, v := range vm.rec.set("VIFs") {
		if vif := d.objs[v]; vif != nil && vif.rec.str("device") == dev {
			return nil, fail("DEVICE_ALREADY_EXISTS", dev)
		}
	}
	r["currently_attached"] = false
	ref := d.create("VIF", r)
	d.addToSet("VM", vm.ref, "VIFs", ref)
	d.addToSet("network", r.str("network"), "VIFs", ref)
	return ref, nil
}

func (c *call) vifDestroy() (any, error) {
	return c.onObject("VIF", func(d *db, o *object, ref string) (any, error) {
		if o.rec.flag("currently_attached") {
			return nil, fail("OPERATION_NOT_ALLOWED", "VIF is currently attached to a running VM")
		}
		d.removeFromSet("VM", o.rec.str("VM"), "VIFs", ref)
		d.removeFromSet("network", o.rec.str("network"), "VIFs", ref)
		d.remove(o)
		return nil, nil
	})
}

func (c *call) vdiDestroy() (any, error) {
	return c.onObject("VDI", func(d *db, o *object, ref string) (any, error) {
		for _, b := range o.rec.set("VBDs") {
			if vbd := d.objs[b]; vbd != nil && vbd.rec.flag("currently_attached") {
				return nil, fail("VDI_IN_USE", ref, "destroy")
			}
		}
		for _, b := range o.rec.set("VBDs") {
			if vbd := d.objs[b]; vbd != nil {
				d.removeFromSet("VM", vbd.rec.str("VM"), "VBDs", b)
				d.remove(vbd)
			}
		}
		d.removeFromSet("SR", o.rec.str("SR"), "VDIs", ref)
		d.remove(o)
		return nil, nil
	})
}

func (c *call) vbdDestroy() (any, error) {
	return c.onObject("VBD", func(d *db, o *object, ref string) (any, error) {
		if o.rec.flag("currently_attached") {
			return nil, fail("OPERATION_NOT_ALLOWED", "VBD is currently attached to a running VM")
		}
		d.removeFromSet("VM", o.rec.str("VM"), "VBDs", ref)
		d.removeFromSet("VDI", o.rec.str("VDI"), "VBDs", ref)
		d.remove(o)
		return nil, nil
	})
}

func (c *call) taskDestroy() (any, error) {
	return c.onObject("task", func(d *db, o *object, ref string) (any, error) {
		d.remove(o)
		return nil, nil
	})
}

func (c *call) eventFrom() (any, error) {
	classes, err := c.strings(0)
	if err != nil {
		return nil, err
	}
	token, err := c.str(1)
	if err != nil {
		return nil, err
	}
	timeout, err := c.float(2)
	if err != nil {
		return nil, err
	}
	since, ok := parseToken(token)
	if !ok {
		return nil, fail("EVENT_FROM_TOKEN_PARSE_FAILURE", token)
	}
	f := newClassFilter(classes)
	deadline := time.Now().Add(time.Duration(timeout * float64(time.Second)))
	d := c.s.db
	for {
		d.mu.Lock()
		evs := d.eventsSince(f, since)
		// XAPI answers only when there are events or the timeout has
		// passed, for the token "" too (xapi_event.ml from: "suppressing
		// empty event.from"; from_inner waits while nothing matches).
		if len(evs) > 0 || !time.Now().Before(deadline) {
			res := map[string]any{"events": evs, "valid_ref_counts": d.refCounts(), "token": eventToken(d.gen)}
			d.mu.Unlock()
			return res, nil
		}
		ch := d.changed
		d.mu.Unlock()
		t := time.NewTimer(time.Until(deadline))
		select {
		case <-ch:
		case <-t.C:
		case <-c.ctx.Done():
			t.Stop()
			return nil, c.ctx.Err()
		case <-c.s.closing:
			t.Stop()
			return nil, fail("INTERNAL_ERROR", "simulator shutting down")
		}
		t.Stop()
	}
}

func (c *call) eventCurrentID() (any, error) {
	c.s.db.mu.Lock()
	defer c.s.db.mu.Unlock()
	return strconv.FormatUint(c.s.db.gen, 10), nil
}

// onObject runs fn, under the database lock, on the object of class whose
// reference is the call's first argument.
func (c *call) onObject(class string, fn func(d *db, o *object, ref string) (any, error)) (any, error) {
	ref, err := c.str(0)
	if err != nil {
		return nil, err
	}
	d := c.s.db
	d.mu.Lock()
	defer d.mu.Unlock()
	o, err := d.get(class, ref)
	if err != nil {
		return nil, err
	}
	return fn(d, o, ref)
}
