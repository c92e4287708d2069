package sim

import (
	"context"
	"fmt"
	"maps"
	"sort"
	"strconv"
	"strings"
	"time"

	"libbioxen/xapi/internal/wire"
)

// handler is one XAPI message.
type handler struct {
	params    []string // parameter names, the session not included
	minParams int      // fewer than len(params) allowed (parameters with defaults)
	noSession bool     // no leading session argument (login, sim.*)
	async     bool     // an Async. form exists
	sim       bool     // simulator-only: exempt from faults and pool-member mode
	fn        func(c *call) (any, error)
}

type call struct {
	s      *Server
	ctx    context.Context
	method string // canonical name
	args   []any  // without the session
	sess   *session
	h      *handler
}

func (c *call) arg(i int) any { return c.args[i] }

func (c *call) typeErr(i int) error { return fail("FIELD_TYPE_ERROR", c.h.params[i]) }

func (c *call) str(i int) (string, error) {
	switch v := c.args[i].(type) {
	case string:
		return v, nil
	case int64:
		return strconv.FormatInt(v, 10), nil
	}
	return "", c.typeErr(i)
}

func (c *call) boolean(i int) (bool, error) {
	switch v := c.args[i].(type) {
	case bool:
		return v, nil
	case string:
		if b, err := strconv.ParseBool(v); err == nil {
			return b, nil
		}
	}
	return false, c.typeErr(i)
}

func (c *call) float(i int) (float64, error) {
	switch v := c.args[i].(type) {
	case float64:
		return v, nil
	case int64:
		return float64(v), nil
	case string:
		if f, err := strconv.ParseFloat(v, 64); err == nil {
			return f, nil
		}
	}
	return 0, c.typeErr(i)
}

func (c *call) strings(i int) ([]string, error) {
	a, ok := c.args[i].([]any)
	if !ok {
		return nil, c.typeErr(i)
	}
	out := make([]string, len(a))
	for j, v := range a {
		s, ok := v.(string)
		if !ok {
			return nil, c.typeErr(i)
		}
		out[j] = s
	}
	return out, nil
}

func (c *call) structArg(i int) (map[string]any, error) {
	m, ok := c.args[i].(map[string]any)
	if !ok {
		return nil, c.typeErr(i)
	}
	return m, nil
}

// convert turns a wire value into the type of a record field's default.
func convert(def, v any) (any, bool) {
	switch def.(type) {
	case string:
		switch t := v.(type) {
		case string:
			return t, true
		case int64:
			return strconv.FormatInt(t, 10), true
		}
	case bool:
		switch t := v.(type) {
		case bool:
			return t, true
		case string:
			if b, err := strconv.ParseBool(t); err == nil {
				return b, true
			}
		}
	case int64:
		switch t := v.(type) {
		case int64:
			return t, true
		case string:
			if n, err := strconv.ParseInt(t, 10, 64); err == nil {
				return n, true
			}
		}
	case float64:
		switch t := v.(type) {
		case float64:
			return t, true
		case int64:
			return float64(t), true
		case string:
			if f, err := strconv.ParseFloat(t, 64); err == nil {
				return f, true
			}
		}
	case map[string]string:
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		out := make(map[string]string, len(m))
		for k, x := range m {
			s, ok := convert("", x)
			if !ok {
				return nil, false
			}
			out[k] = s.(string)
		}
		return out, true
	case []string:
		a, ok := v.([]any)
		if !ok {
			return nil, false
		}
		out := make([]string, len(a))
		for i, x := range a {
			s, ok := x.(string)
			if !ok {
				return nil, false
			}
			out[i] = s
		}
		return out, true
	case time.Time:
		if t, ok := v.(time.Time); ok {
			return t, true
		}
	}
	return nil, false
}

// classPrefixes are the class names for Class_method aliases, longest first
// so that VM_guest_metrics_get_networks is not read as VM.guest_metrics_….
var classPrefixes = func() []string {
	xs := append([]string{"session", "event", "system", "sim"}, classNames...)
	sort.Slice(xs, func(i, j int) bool { return len(xs[i]) > len(xs[j]) })
	return xs
}()

// canonicalMethod maps XAPI's alternative wire names (Class_method, which
// exist since 2012 for every message, e.g. event_from) to Class.method.
func canonicalMethod(name string) string {
	if strings.Contains(name, ".") {
		return name
	}
	for _, c := range classPrefixes {
		if strings.HasPrefix(name, c+"_") && len(name) > len(c)+1 {
			return c + "." + name[len(c)+1:]
		}
	}
	return name
}

// resolve finds the handler for a wire method name.
func (s *Server) resolve(wireName string) (canonical string, h *handler, async bool) {
	name := wireName
	if rest, ok := strings.CutPrefix(name, "Async."); ok {
		name, async = rest, true
	}
	name = canonicalMethod(name)
	if h := methods[name]; h != nil {
		if async && !h.async {
			return name, nil, true
		}
		return name, h, async
	}
	if async {
		return name, nil, true
	}
	return name, genericHandler(name), false
}

func (s *Server) dispatch(ctx context.Context, wireName string, params []any) (any, error) {
	method, h, async := s.resolve(wireName)
	var delay, replyDelay *Fault
	if h == nil || !h.sim { // the sim.* methods are exempt from faults, and use up none
		s.mu.Lock()
		delay = s.takeFault(FaultDelay, method)
		replyDelay = s.takeFault(FaultReplyDelay, method)
		s.mu.Unlock()
	}
	if replyDelay != nil {
		// The call has its effect (an Async call makes its task), and its
		// answer is lost on a slow network: a client that leaves first
		// never sees it.
		res, err := s.dispatchDelayed(ctx, wireName, params, h, async, delay)
		timer := time.NewTimer(replyDelay.Delay)
		defer timer.Stop()
		select {
		case <-timer.C:
			return res, err
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-s.closing:
			return nil, fail("INTERNAL_ERROR", "simulator shutting down")
		}
	}
	return s.dispatchDelayed(ctx, wireName, params, h, async, delay)
}

// dispatchDelayed runs a call, delayed when a delay fault fired.
func (s *Server) dispatchDelayed(ctx context.Context, wireName string, params []any, h *handler, async bool, delay *Fault) (any, error) {
	if delay == nil {
		return s.run(ctx, wireName, params, 0)
	}
	if async && h != nil {
		// The task is made at once and stays pending for the delay.
		return s.run(ctx, wireName, params, delay.Delay)
	}
	// Counted from here, well before a client's deadline cuts the call
	// off, so that WaitLateCalls cannot miss it.
	s.late.add(1)
	timer := time.NewTimer(delay.Delay)
	select {
	case <-timer.C:
		s.late.add(-1)
		return s.run(ctx, wireName, params, 0)
	case <-ctx.Done():
		// XAPI does not stop a call whose client went away: it still
		// runs, once its delay is over, and its result goes unseen (a
		// VM.clone cut off by the client's deadline leaves its VM).
		s.bg.Add(1)
		go func() {
			defer s.bg.Done()
			defer s.late.add(-1)
			select {
			case <-timer.C:
				s.run(context.Background(), wireName, params, 0)
			case <-s.closing:
				timer.Stop()
			}
		}()
		return nil, ctx.Err()
	case <-s.closing:
		timer.Stop()
		s.late.add(-1)
		return nil, fail("INTERNAL_ERROR", "simulator shutting down")
	}
}

// run performs a call; an Async. one's task waits taskDelay first.
func (s *Server) run(ctx context.Context, wireName string, params []any, taskDelay time.Duration) (any, error) {
	method, h, async := s.resolve(wireName)
	if h == nil {
		// XAPI session-checks an unknown call that carries a session.
		if len(params) > 0 {
			if ref, ok := params[0].(string); ok {
				if _, err := s.checkSession(ref); err != nil {
					return nil, err
				}
			}
		}
		return nil, fail("MESSAGE_METHOD_UNKNOWN", wireName)
	}
	// gen_server.ml: MESSAGE_PARAMETER_COUNT_MISMATCH [call, expected,
	// received], the call without its Async. prefix, expected the
	// parameters without a default, received the parameters less the
	// session (-1 when even the session is missing).
	min := len(h.params)
	if h.minParams > 0 {
		min = h.minParams
	}
	received := len(params)
	if !h.noSession {
		received--
	}
	if received < min || received > len(h.params) {
		return nil, fail("MESSAGE_PARAMETER_COUNT_MISMATCH", strings.TrimPrefix(wireName, "Async."), strconv.Itoa(min), strconv.Itoa(received))
	}
	args := params
	if !h.noSession {
		args = params[1:]
	}
	c := &call{s: s, ctx: ctx, method: method, args: args, h: h}
	// A pool member session-checks first (an unknown session is
	// SESSION_INVALID), then refuses a known one, and every login, with
	// HOST_IS_SLAVE (xen-api session_check.ml: Non_master_login_on_slave;
	// xapi_session.ml login).
	if !h.noSession {
		ref, _ := params[0].(string)
		sess, err := s.checkSession(ref)
		if err != nil {
			return nil, err
		}
		c.sess = sess
	}
	if !h.sim {
		s.mu.Lock()
		master := s.master
		var f *Fault
		if master == "" {
			f = s.takeFault(FaultFail, method)
		}
		s.mu.Unlock()
		if master != "" {
			return nil, fail("HOST_IS_SLAVE", master)
		}
		if f != nil {
			s.logf("fault: %s fails with %v", method, f.Error)
			if async {
				return s.asyncTask(wireName, taskDelay, func() (any, error) { return nil, xerr(f.Error) })
			}
			return nil, xerr(f.Error)
		}
	}
	if async {
		return s.asyncTask(wireName, taskDelay, func() (any, error) {
			c.ctx = context.Background()
			return h.fn(c)
		})
	}
	return h.fn(c)
}

func (s *Server) checkSession(ref string) (*session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sess := s.sessions[ref]; sess != nil {
		return sess, nil
	}
	return nil, fail("SESSION_INVALID", ref)
}

// asyncTask runs fn as an XAPI task, after delay, and returns the task
// ref at once.
func (s *Server) asyncTask(name string, delay time.Duration, fn func() (any, error)) (any, error) {
	d := s.db
	d.mu.Lock()
	r := defaults("task")
	r["name_label"], r["created"], r["resident_on"] = name, time.Now().UTC().Truncate(time.Second), s.hostRef
	ref := d.create("task", r)
	d.mu.Unlock()
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		if delay > 0 {
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-s.closing:
				t.Stop()
				return
			}
		}
		v, err := fn()
		d.mu.Lock()
		defer d.mu.Unlock()
		o := d.objs[ref]
		if o == nil {
			return
		}
		o.rec["progress"], o.rec["finished"] = float64(1), time.Now().UTC().Truncate(time.Second)
		if err != nil {
			x, ok := err.(xerr)
			if !ok {
				x = xerr{"INTERNAL_ERROR", err.Error()}
			}
			o.rec["status"], o.rec["error_info"] = "failure", []string(x)
		} else {
			if v == nil {
				v = ""
			}
			res, _ := wire.Encoder{Untyped: true}.EncodeValue(v)
			o.rec["status"], o.rec["result"] = "success", string(res)
		}
		d.touch(o)
	}()
	return ref, nil
}

// genericHandler serves the field accessors every class has.
func genericHandler(method string) *handler {
	class, op, ok := strings.Cut(method, ".")
	if !ok {
		return nil
	}
	def := defaults(class)
	if def == nil {
		return nil
	}
	def["uuid"] = ""
	switch op {
	case "get_all":
		return &handler{fn: func(c *call) (any, error) {
			c.s.db.mu.Lock()
			defer c.s.db.mu.Unlock()
			out := []string{}
			for _, o := range c.s.db.all(class) {
				out = append(out, o.ref)
			}
			return out, nil
		}}
	case "get_all_records":
		return &handler{fn: func(c *call) (any, error) {
			c.s.db.mu.Lock()
			defer c.s.db.mu.Unlock()
			out := map[string]any{}
			for _, o := range c.s.db.all(class) {
				out[o.ref] = o.rec.clone()
			}
			return out, nil
		}}
	case "get_record":
		return &handler{params: []string{"self"}, fn: func(c *call) (any, error) {
			return c.onObject(class, func(d *db, o *object, ref string) (any, error) {
				return o.rec.clone(), nil
			})
		}}
	case "get_by_uuid":
		return &handler{params: []string{"uuid"}, fn: func(c *call) (any, error) {
			u, err := c.str(0)
			if err != nil {
				return nil, err
			}
			c.s.db.mu.Lock()
			defer c.s.db.mu.Unlock()
			for _, o := range c.s.db.byClass[class] {
				if o.rec.str("uuid") == u {
					return o.ref, nil
				}
			}
			return nil, fail("UUID_INVALID", class, u)
		}}
	case "get_by_name_label":
		if !byNameLabel[class] {
			return nil
		}
		return &handler{params: []string{"label"}, fn: func(c *call) (any, error) {
			l, err := c.str(0)
			if err != nil {
				return nil, err
			}
			c.s.db.mu.Lock()
			defer c.s.db.mu.Unlock()
			out := []string{}
			for _, o := range c.s.db.all(class) {
				if o.rec.str("name_label") == l {
					out = append(out, o.ref)
				}
			}
			return out, nil
		}}
	}
	if field, ok := strings.CutPrefix(op, "get_"); ok {
		if _, ok := def[field]; !ok {
			return nil
		}
		return &handler{params: []string{"self"}, fn: func(c *call) (any, error) {
			return c.onObject(class, func(d *db, o *object, ref string) (any, error) {
				return o.rec.clone()[field], nil
			})
		}}
	}
	if field, ok := strings.CutPrefix(op, "set_"); ok && writable[class][field] {
		return &handler{params: []string{"self", "value"}, fn: func(c *call) (any, error) {
			v, ok := convert(def[field], c.arg(1))
			if !ok {
				return nil, c.typeErr(1)
			}
			return c.onObject(class, func(d *db, o *object, ref string) (any, error) {
				if def[field] == NullRef && v != NullRef && d.objs[v.(string)] == nil {
					return nil, fail("HANDLE_INVALID", field, v.(string))
				}
				if class == "VM" && field == "is_a_template" && v == true && o.rec.str("power_state") != "Halted" {
					return nil, fail("VM_BAD_POWER_STATE", ref, "halted", strings.ToLower(o.rec.str("power_state")))
				}
				o.rec[field] = v
				if class == "VM" && field == "is_a_template" && v == false {
					o.rec["is_default_template"] = false
				}
				d.touch(o)
				return nil, nil
			})
		}}
	}
	if field, ok := strings.CutPrefix(op, "add_to_"); ok && writable[class][field] {
		if _, isMap := def[field].(map[string]string); !isMap {
			return nil
		}
		return &handler{params: []string{"self", "key", "value"}, fn: func(c *call) (any, error) {
			k, err := c.str(1)
			if err != nil {
				return nil, err
			}
			v, err := c.str(2)
			if err != nil {
				return nil, err
			}
			return c.onObject(class, func(d *db, o *object, ref string) (any, error) {
				m := o.rec.smap(field)
				if _, dup := m[k]; dup {
					return nil, fail("MAP_DUPLICATE_KEY", class, field, o.rec.str("uuid"), k)
				}
				m = maps.Clone(m)
				m[k] = v
				o.rec[field] = m
				d.touch(o)
				return nil, nil
			})
		}}
	}
	if field, ok := strings.CutPrefix(op, "remove_from_"); ok && writable[class][field] {
		if _, isMap := def[field].(map[string]string); !isMap {
			return nil
		}
		return &handler{params: []string{"self", "key"}, fn: func(c *call) (any, error) {
			k, err := c.str(1)
			if err != nil {
				return nil, err
			}
			return c.onObject(class, func(d *db, o *object, ref string) (any, error) {
				m := maps.Clone(o.rec.smap(field))
				delete(m, k) // removing a missing key is not an error in XAPI
				o.rec[field] = m
				d.touch(o)
				return nil, nil
			})
		}}
	}
	return nil
}

// listMethods answers system.listMethods.
func (s *Server) listMethods() []string {
	out := make([]string, 0, 512)
	for name, h := range methods {
		out = append(out, name)
		if h.async {
			out = append(out, "Async."+name)
		}
	}
	for _, class := range classNames {
		def := defaults(class)
		def["uuid"] = ""
		out = append(out, class+".get_all", class+".get_all_records", class+".get_record", class+".get_by_uuid")
		if byNameLabel[class] {
			out = append(out, class+".get_by_name_label")
		}
		for f, v := range def {
			out = append(out, class+".get_"+f)
			if writable[class][f] {
				out = append(out, class+".set_"+f)
				if _, ok := v.(map[string]string); ok {
					out = append(out, class+".add_to_"+f, class+".remove_from_"+f)
				}
			}
		}
	}
	sort.Strings(out)
	return out
}

var methods map[string]*handler

func init() {
	methods = map[string]*handler{
		"session.login_with_password": {params: []string{"uname", "pwd", "version", "originator"}, minParams: 2, noSession: true, fn: (*call).login},
		"session.logout":              {fn: (*call).logout},
		"session.get_this_host":       {params: []string{"self"}, fn: (*call).sessionThisHost},
		"session.get_uuid":            {params: []string{"self"}, fn: (*call).sessionUUID},

		"VM.clone":          {params: []string{"vm", "new_name"}, async: true, fn: (*call).vmClone},
		"VM.copy":           {params: []string{"vm", "new_name", "sr"}, async: true, fn: (*call).vmCopy},
		"VM.provision":      {params: []string{"vm"}, async: true, fn: (*call).vmProvision},
		"VM.start":          {params: []string{"vm", "start_paused", "force"}, async: true, fn: (*call).vmStart},
		"VM.clean_shutdown": {params: []string{"vm"}, async: true, fn: (*call).vmCleanShutdown},
		"VM.hard_shutdown":  {params: []string{"vm"}, async: true, fn: (*call).vmHardShutdown},
		"VM.shutdown":       {params: []string{"vm"}, async: true, fn: (*call).vmShutdown},
		"VM.suspend":        {params: []string{"vm"}, async: true, fn: (*call).vmSuspend},
		"VM.destroy":        {params: []string{"self"}, async: true, fn: (*call).vmDestroy},
		"VM.set_memory_limits": {params: []string{"self", "static_min", "static_max", "dynamic_min", "dynamic_max"},
			async: true, fn: (*call).vmSetMemoryLimits},

		"VIF.create":  {params: []string{"args"}, async: true, fn: (*call).vifCreate},
		"VIF.destroy": {params: []string{"self"}, async: true, fn: (*call).vifDestroy},
		"VDI.destroy": {params: []string{"self"}, async: true, fn: (*call).vdiDestroy},
		"VBD.destroy": {params: []string{"self"}, async: true, fn: (*call).vbdDestroy},

		"task.destroy": {params: []string{"self"}, fn: (*call).taskDestroy},

		"event.from":           {params: []string{"classes", "token", "timeout"}, fn: (*call).eventFrom},
		"event.get_current_id": {fn: (*call).eventCurrentID},

		"sim.set_fault":       {params: []string{"fault"}, noSession: true, sim: true, fn: (*call).simSetFault},
		"sim.clear_faults":    {noSession: true, sim: true, fn: (*call).simClearFaults},
		"sim.list_faults":     {noSession: true, sim: true, fn: (*call).simListFaults},
		"sim.stats":           {noSession: true, sim: true, fn: (*call).simStats},
		"sim.expire_sessions": {noSession: true, sim: true, fn: (*call).simExpireSessions},
		"sim.set_pool_member": {params: []string{"master"}, noSession: true, sim: true, fn: (*call).simSetPoolMember},
	}
}

func (c *call) login() (any, error) {
	user, err := c.str(0)
	if err != nil {
		return nil, err
	}
	pw, err := c.str(1)
	if err != nil {
		return nil, err
	}
	originator := ""
	if len(c.args) > 3 {
		if originator, err = c.str(3); err != nil {
			return nil, err
		}
	}
	s := c.s
	if user != s.opts.Username || pw != s.opts.Password {
		if s.opts.AuthFailDelay > 0 {
			select {
			case <-time.After(s.opts.AuthFailDelay):
			case <-c.ctx.Done():
			case <-s.closing:
			}
		}
		return nil, fail("SESSION_AUTHENTICATION_FAILED", user, "Authentication failure")
	}
	sess := &session{ref: newRef(), uuid: newUUID(), user: user, originator: originator, created: time.Now()}
	s.mu.Lock()
	s.sessions[sess.ref] = sess
	s.mu.Unlock()
	return sess.ref, nil
}

func (c *call) logout() (any, error) {
	c.s.mu.Lock()
	delete(c.s.sessions, c.sess.ref)
	c.s.mu.Unlock()
	return nil, nil
}

func (c *call) sessionThisHost() (any, error) {
	ref, err := c.str(0)
	if err != nil {
		return nil, err
	}
	if _, err := c.s.checkSession(ref); err != nil {
		return nil, fail("HANDLE_INVALID", "session", ref)
	}
	return c.s.hostRef, nil
}

func (c *call) sessionUUID() (any, error) {
	ref, err := c.str(0)
	if err != nil {
		return nil, err
	}
	sess, err := c.s.checkSession(ref)
	if err != nil {
		return nil, fail("HANDLE_INVALID", "session", ref)
	}
	return sess.uuid, nil
}

func (c *call) simSetFault() (any, error) {
	m, err := c.structArg(0)
	if err != nil {
		return nil, err
	}
	f := Fault{}
	f.Kind, _ = m["kind"].(string)
	f.Method, _ = m["method"].(string)
	switch e := m["error"].(type) {
	case string:
		f.Error = strings.Split(e, ",")
	case []any:
		for _, x := range e {
			f.Error = append(f.Error, fmt.Sprint(x))
		}
	}
	if d, ok := convert(float64(0), m["delay"]); ok {
		f.Delay = time.Duration(d.(float64) * float64(time.Second))
	}
	if n, ok := convert(int64(0), m["count"]); ok {
		f.Count = int(n.(int64))
	}
	id, err := c.s.SetFault(f)
	if err != nil {
		return nil, fail("INVALID_VALUE", "fault", err.Error())
	}
	return strconv.Itoa(id), nil
}

func (c *call) simClearFaults() (any, error) { c.s.ClearFaults(); return nil, nil }

func (c *call) simListFaults() (any, error) {
	out := []map[string]any{}
	for _, f := range c.s.Faults() {
		out = append(out, map[string]any{"id": f.ID, "kind": f.Kind, "method": f.Method, "error": f.Error,
			"delay": f.Delay.Seconds(), "count": f.Count})
	}
	return out, nil
}

func (c *call) simStats() (any, error) {
	st := c.s.Stats()
	return map[string]any{"vms": st.VMs, "running_vms": st.RunningVMs, "templates": st.Templates,
		"vdis": st.VDIs, "vbds": st.VBDs, "vifs": st.VIFs, "guest_metrics": st.GuestMetrics,
		"tasks": st.Tasks, "sessions": st.Sessions, "sshd": st.SSHD, "sshd_pids": st.SSHDPids}, nil
}

func (c *call) simExpireSessions() (any, error) { return c.s.ExpireSessions(), nil }

func (c *call) simSetPoolMember() (any, error) {
	m, err := c.str(0)
	if err != nil {
		return nil, err
	}
	if err := c.s.SetPoolMember(m); err != nil {
		return nil, fail("INVALID_VALUE", "master", err.Error())
	}
	return nil, nil
}
