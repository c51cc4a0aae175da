package studio

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"kumo/api"
)

// nodeStates are the node states the bar shows, in its order.
var nodeStates = []string{"idle", "running", "preparing", "unusable", "leaving", "preempted"}

// bar is a node-state bar: one segment per state with nodes.
type bar struct {
	Segs  []seg
	Total int32
	Label string // the counts in words, for screen readers and the title
}

// seg is one state's part of a bar, in percent of its width.
type seg struct {
	State string
	Count int32
	X, W  float64
}

func newBar(c *api.NodeStateCounts) bar {
	var counts []int32
	if c != nil {
		counts = []int32{c.IdleNodeCount, c.RunningNodeCount, c.PreparingNodeCount, c.UnusableNodeCount, c.LeavingNodeCount, c.PreemptedNodeCount}
	} else {
		counts = make([]int32, len(nodeStates))
	}
	var b bar
	for _, n := range counts {
		b.Total += n
	}
	var x float64
	var words []string
	for i, n := range counts {
		if n == 0 {
			continue
		}
		w := 100 * float64(n) / float64(b.Total)
		b.Segs = append(b.Segs, seg{State: nodeStates[i], Count: n, X: x, W: w})
		words = append(words, fmt.Sprintf("%d %s", n, nodeStates[i]))
		x += w
	}
	b.Label = "no nodes"
	if len(words) > 0 {
		b.Label = strings.Join(words, ", ")
	}
	return b
}

// sizeInfo is a VM size as the pages show it.
type sizeInfo struct {
	Name         string
	GPU          bool
	VCPUs, GPUs  int32
	GPUModel     string
	MemoryGB     float64
	Price, LowPr float64 // USD per hour; 0 when unknown
	HasPrice     bool
}

// sizes returns the region's VM sizes, by lower-case name and in the
// API's order. They do not change while kumo runs, so the first answer is
// kept.
func (s *Studio) sizes(r *http.Request, u *user) (map[string]sizeInfo, []sizeInfo, error) {
	s.sizeMu.Lock()
	m, all := s.sizeMap, s.sizeList
	s.sizeMu.Unlock()
	if m != nil {
		return m, all, nil
	}
	var list api.VMSizeList
	if err := s.call(r, u, "GET", s.locPath+"/vmSizes", nil, nil, &list); err != nil {
		return nil, nil, err
	}
	m = map[string]sizeInfo{}
	all = nil
	for _, z := range list.Value {
		si := sizeInfo{Name: z.Name, GPU: z.GPUs > 0, VCPUs: z.VCPUs, GPUs: z.GPUs, GPUModel: z.GPUModel, MemoryGB: z.MemoryGB}
		if z.EstimatedVMPrices != nil {
			for _, p := range z.EstimatedVMPrices.Values {
				switch p.VMTier {
				case "Standard":
					si.Price, si.HasPrice = p.RetailPrice, true
				case "LowPriority":
					si.LowPr = p.RetailPrice
				}
			}
		}
		m[strings.ToLower(z.Name)] = si
		all = append(all, si)
	}
	s.sizeMu.Lock()
	s.sizeMap, s.sizeList = m, all
	s.sizeMu.Unlock()
	return m, all, nil
}

// computeRow is one compute as the list and the detail page show it.
type computeRow struct {
	Name       string
	Local      bool // the built-in compute "local"
	Type       string
	Size       sizeInfo
	Priority   string
	State      string
	Allocation string
	Bar        bar
	Min, Max   int32
	Idle       string
	Queued     int32
	Running    int32
	Reasons    []reason
	Cost       float64 // USD per hour for the nodes it has now
	SoFar      float64 // USD its nodes accrued since it was created
	HasCost    bool
}

// reason is a pending reason and how many queued jobs it holds.
type reason struct {
	Code, Message string
	Jobs          int
}

func rowOf(c api.ComputeResource, sizes map[string]sizeInfo) computeRow {
	row := computeRow{Name: c.Name, Type: "CPU"}
	p := c.Properties
	if p == nil || p.Properties == nil {
		return row
	}
	row.State = string(p.ProvisioningState)
	a := p.Properties
	if a.VMSize != nil {
		row.Size = sizes[strings.ToLower(*a.VMSize)]
		if row.Size.Name == "" {
			row.Size.Name = *a.VMSize
		}
	}
	if row.Size.GPU {
		row.Type = "GPU"
	}
	if a.VMPriority != nil {
		row.Priority = *a.VMPriority
	}
	row.Allocation = string(a.AllocationState)
	row.Bar = newBar(a.NodeStateCounts)
	if ss := a.ScaleSettings; ss != nil {
		if ss.MinNodeCount != nil {
			row.Min = *ss.MinNodeCount
		}
		if ss.MaxNodeCount != nil {
			row.Max = *ss.MaxNodeCount
		}
		if ss.NodeIdleTimeBeforeScaleDown != nil {
			row.Idle = *ss.NodeIdleTimeBeforeScaleDown
		}
	}
	row.Queued, row.Running = a.QueuedJobCount, a.RunningJobCount
	seen := map[string]int{}
	for _, q := range a.QueuedJobs {
		if q.PendingReason == nil {
			continue
		}
		if i, ok := seen[q.PendingReason.Code]; ok {
			row.Reasons[i].Jobs++
			continue
		}
		seen[q.PendingReason.Code] = len(row.Reasons)
		row.Reasons = append(row.Reasons, reason{Code: q.PendingReason.Code, Message: q.PendingReason.Message, Jobs: 1})
	}
	if c := a.Cost; c != nil {
		row.Cost, row.SoFar, row.HasCost = c.PerHour, c.SoFar, true
	} else if row.Size.HasPrice {
		price := row.Size.Price
		if strings.EqualFold(row.Priority, string(api.PriorityLowPriority)) {
			price = row.Size.LowPr
		}
		row.Cost, row.HasCost = price*float64(a.CurrentNodeCount), true
	}
	return row
}

// localRow is the built-in compute "local", which runs jobs on the
// control plane's host and has no nodes.
func (s *Studio) localRow(r *http.Request, u *user) (computeRow, error) {
	row := computeRow{Name: "local", Local: true, Type: "Host", Priority: "Dedicated", State: "Succeeded", Allocation: "Steady", Bar: newBar(nil)}
	var queued, running api.JobList
	if err := s.call(r, u, "GET", s.wsPath+"/jobs?compute=local&status=Queued&$top=100", nil, nil, &queued); err != nil {
		return row, err
	}
	if err := s.call(r, u, "GET", s.wsPath+"/jobs?compute=local&status=Preparing,Running,Finalizing&$top=100", nil, nil, &running); err != nil {
		return row, err
	}
	row.Queued, row.Running = int32(len(queued.Value)), int32(len(running.Value))
	seen := map[string]int{}
	for _, j := range queued.Value {
		pr := j.Properties.PendingReason
		if pr == nil {
			continue
		}
		if i, ok := seen[pr.Code]; ok {
			row.Reasons[i].Jobs++
			continue
		}
		seen[pr.Code] = len(row.Reasons)
		row.Reasons = append(row.Reasons, reason{Code: pr.Code, Message: pr.Message, Jobs: 1})
	}
	return row, nil
}

type computesData struct {
	Rows     []computeRow
	States   []string
	Location string
}

func (s *Studio) loadComputes(r *http.Request, u *user, _ url.Values) (*view, error) {
	sizes, _, err := s.sizes(r, u)
	if err != nil {
		return nil, err
	}
	var list api.ComputeList
	if err := s.call(r, u, "GET", s.wsPath+"/computes", nil, nil, &list); err != nil {
		return nil, err
	}
	d := &computesData{States: nodeStates, Location: s.loc}
	for _, c := range list.Value {
		d.Rows = append(d.Rows, rowOf(c, sizes))
	}
	local, err := s.localRow(r, u)
	if err != nil {
		return nil, err
	}
	d.Rows = append(d.Rows, local)
	return &view{Title: "Compute clusters", Nav: "computes", Data: d}, nil
}

func (s *Studio) computesPage(w http.ResponseWriter, r *http.Request, u *user) error {
	return s.livePage(w, r, u, "computes", url.Values{})
}

// computeNameRE is the rule the form shows and checks as one types; the
// API checks it again and is the authority.
var computeNameRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9-]{1,15}$`)

// createForm is the create form's values, as typed.
type createForm struct {
	Name, VMType, Priority, VMSize, MinNodes, MaxNodes, IdleSeconds string
	SSH                                                             bool
	AdminUser, SSHKey                                               string
}

type newComputeData struct {
	Form     createForm
	Errors   map[string]string
	Sizes    []sizeInfo
	Location string
	Rule     string
	Pattern  string
}

func (s *Studio) newComputeView(r *http.Request, u *user, f createForm, errs map[string]string) (*view, error) {
	_, all, err := s.sizes(r, u)
	if err != nil {
		return nil, err
	}
	return &view{Title: "New compute cluster", Nav: "computes", Data: &newComputeData{Form: f, Errors: errs, Sizes: all,
		Location: s.loc, Rule: "2 to 16 letters, digits and hyphens (-), starting with a letter",
		Pattern: `[A-Za-z][A-Za-z0-9\-]{1,15}`}}, nil
}

func (s *Studio) newComputePage(w http.ResponseWriter, r *http.Request, u *user) error {
	v, err := s.newComputeView(r, u, createForm{VMType: "CPU", Priority: "Dedicated", MinNodes: "0", MaxNodes: "4", IdleSeconds: "120"}, nil)
	if err != nil {
		return asPage(err)
	}
	s.render(w, r, u, http.StatusOK, "compute_new", v)
	return nil
}

func (s *Studio) createCompute(w http.ResponseWriter, r *http.Request, u *user) error {
	pf := r.PostForm
	f := createForm{Name: strings.TrimSpace(pf.Get("name")), VMType: pf.Get("vmType"), Priority: pf.Get("vmPriority"), VMSize: pf.Get("vmSize"),
		MinNodes: strings.TrimSpace(pf.Get("minNodes")), MaxNodes: strings.TrimSpace(pf.Get("maxNodes")), IdleSeconds: strings.TrimSpace(pf.Get("idleSeconds")),
		SSH: pf.Get("ssh") == "on", AdminUser: strings.TrimSpace(pf.Get("adminUser")), SSHKey: strings.TrimSpace(pf.Get("sshKey"))}
	errs := map[string]string{}
	again := func(status int) error {
		v, err := s.newComputeView(r, u, f, errs)
		if err != nil {
			return asPage(err)
		}
		s.render(w, r, u, status, "compute_new", v)
		return nil
	}
	// Whole numbers only: the API decides what range is allowed.
	num := func(field, val string) *int32 {
		if val == "" {
			return nil
		}
		n, err := strconv.ParseInt(val, 10, 32)
		if err != nil {
			errs[field] = "Enter a whole number."
			return nil
		}
		v := int32(n)
		return &v
	}
	min, max, idle := num("minNodes", f.MinNodes), num("maxNodes", f.MaxNodes), num("idleSeconds", f.IdleSeconds)
	if sizes, _, err := s.sizes(r, u); err == nil {
		if z, ok := sizes[strings.ToLower(f.VMSize)]; ok && z.GPU != (f.VMType == "GPU") {
			errs["vmSize"] = fmt.Sprintf("Size %s is not a %s size: choose one from the list for the virtual machine type.", z.Name, f.VMType)
		}
	}
	if len(errs) > 0 {
		return again(http.StatusBadRequest)
	}
	loc := s.loc
	ap := &api.AmlComputeProperties{VMSize: &f.VMSize, VMPriority: &f.Priority,
		ScaleSettings: &api.ScaleSettings{MinNodeCount: min, MaxNodeCount: max}}
	if idle != nil {
		d := fmt.Sprintf("PT%dS", *idle)
		ap.ScaleSettings.NodeIdleTimeBeforeScaleDown = &d
	}
	remote := string(api.RemoteLoginDisabled)
	if f.SSH {
		remote = string(api.RemoteLoginEnabled)
		creds := &api.UserAccountCredentials{AdminUserName: &f.AdminUser}
		if pw := pf.Get("password"); pw != "" {
			creds.AdminUserPassword = &pw
		}
		if f.SSHKey != "" {
			creds.AdminUserSSHPublicKey = &f.SSHKey
		}
		ap.UserAccountCredentials = creds
	}
	ap.RemoteLoginPortPublicAccess = &remote
	body := api.ComputeResource{Location: &loc, Properties: &api.ComputeProperties{ComputeType: api.ComputeTypeAmlCompute, Properties: ap}}
	hdr := http.Header{"If-None-Match": {"*"}} // never overwrite a compute of the same name
	err := s.call(r, u, "PUT", s.wsPath+"/computes/"+url.PathEscape(f.Name), hdr, body, nil)
	if err != nil {
		var ae *apiError
		if errors.As(err, &ae) && ae.Status == http.StatusPreconditionFailed {
			errs["name"] = fmt.Sprintf("A compute named %q already exists in this workspace.", f.Name)
			return again(http.StatusConflict)
		}
		if !errors.As(err, &ae) {
			return err
		}
		errs = fieldErrors(err)
		return again(ae.Status)
	}
	http.Redirect(w, r, Prefix+"/computes/"+url.PathEscape(f.Name)+"?created=1", http.StatusSeeOther)
	return nil
}

// checkName answers the form's live name check as JSON: whether the name
// follows the rule and is free.
func (s *Studio) checkName(w http.ResponseWriter, r *http.Request, u *user) error {
	name := r.URL.Query().Get("name")
	out := struct {
		OK      bool   `json:"ok"`
		Message string `json:"message"`
	}{OK: true}
	switch {
	case !computeNameRE.MatchString(name):
		out.OK, out.Message = false, "The name must be 2 to 16 letters, digits and hyphens (-), starting with a letter."
	default:
		err := s.call(r, u, "GET", s.wsPath+"/computes/"+url.PathEscape(name), nil, nil, nil)
		var ae *apiError
		switch {
		case err == nil:
			out.OK, out.Message = false, fmt.Sprintf("A compute named %q already exists.", name)
		case errors.As(err, &ae) && ae.Status == http.StatusNotFound:
			out.Message = "The name is free."
		default:
			return err
		}
	}
	return writeJSON(w, out)
}

// maxEventsShown bounds the events a compute's page lists.
const maxEventsShown = 50

// nodeRow is one node on the detail page.
type nodeRow struct {
	ID, State, Job, SSH, Note, Reason string
}

type computeData struct {
	Row        computeRow
	Errors     []string // provisioning and allocation errors
	Nodes      []nodeRow
	Events     []api.ComputeEvent
	Queue      []queuedRow
	Created    bool // just created: show provisioning progress
	Ready      bool
	Scale      scaleForm
	FormErrors map[string]string
}

type queuedRow struct {
	Position      int
	Name          string
	Code, Message string
}

// scaleForm is the detail page's in-place scale settings.
type scaleForm struct {
	MinNodes, MaxNodes, IdleSeconds string
}

func (s *Studio) loadCompute(r *http.Request, u *user, q url.Values) (*view, error) {
	name := q.Get("name")
	sizes, _, err := s.sizes(r, u)
	if err != nil {
		return nil, err
	}
	cp := s.wsPath + "/computes/" + url.PathEscape(name)
	var c api.ComputeResource
	if err := s.call(r, u, "GET", cp, nil, nil, &c); err != nil {
		return nil, err
	}
	d := &computeData{Row: rowOf(c, sizes), Created: q.Get("created") == "1"}
	d.Ready = d.Row.State == string(api.ProvisioningSucceeded)
	var admin string
	if p := c.Properties; p != nil {
		for _, e := range p.ProvisioningErrors {
			if e.Error != nil {
				d.Errors = append(d.Errors, e.Error.Message)
			}
		}
		if a := p.Properties; a != nil {
			for _, e := range a.Errors {
				if e.Error != nil {
					d.Errors = append(d.Errors, e.Error.Message)
				}
			}
			if a.UserAccountCredentials != nil && a.UserAccountCredentials.AdminUserName != nil {
				admin = *a.UserAccountCredentials.AdminUserName
			}
			for i, qj := range a.QueuedJobs {
				row := queuedRow{Position: i + 1, Name: qj.Name}
				if qj.PendingReason != nil {
					row.Code, row.Message = qj.PendingReason.Code, qj.PendingReason.Message
				}
				d.Queue = append(d.Queue, row)
			}
		}
	}
	var nodes api.NodeList
	if err := s.call(r, u, "GET", cp+"/listNodes", nil, nil, &nodes); err != nil {
		return nil, err
	}
	for _, n := range nodes.Nodes {
		row := nodeRow{ID: n.NodeID, State: string(n.NodeState), Note: n.Note, Reason: n.Reason}
		if n.RunID != nil {
			row.Job = *n.RunID
		}
		if admin != "" && n.Port > 0 && n.PublicIPAddress != "" {
			row.SSH = fmt.Sprintf("ssh -p %d %s@%s", n.Port, admin, n.PublicIPAddress)
		}
		d.Nodes = append(d.Nodes, row)
	}
	var evs api.ComputeEventList
	if err := s.call(r, u, "GET", cp+"/events", nil, nil, &evs); err != nil {
		return nil, err
	}
	d.Events = evs.Value // oldest first
	if len(d.Events) > maxEventsShown {
		d.Events = d.Events[len(d.Events)-maxEventsShown:]
	}
	slices.Reverse(d.Events) // newest first
	d.Scale = scaleForm{MinNodes: strconv.Itoa(int(d.Row.Min)), MaxNodes: strconv.Itoa(int(d.Row.Max)), IdleSeconds: idleSeconds(d.Row.Idle)}
	return &view{Title: "Compute " + name, Nav: "computes", Data: d}, nil
}

// idleSeconds turns an ISO 8601 duration such as PT2M into seconds, or
// returns it as is when it is not that simple.
func idleSeconds(iso string) string {
	rest, ok := strings.CutPrefix(strings.ToUpper(iso), "PT")
	if !ok {
		return iso
	}
	total := 0
	for _, unit := range []struct {
		suffix string
		secs   int
	}{{"H", 3600}, {"M", 60}, {"S", 1}} {
		if i := strings.Index(rest, unit.suffix); i >= 0 {
			n, err := strconv.Atoi(rest[:i])
			if err != nil {
				return iso
			}
			total += n * unit.secs
			rest = rest[i+1:]
		}
	}
	if rest != "" {
		return iso
	}
	return strconv.Itoa(total)
}

func (s *Studio) computePage(w http.ResponseWriter, r *http.Request, u *user) error {
	q := url.Values{"name": {r.PathValue("name")}}
	if r.URL.Query().Get("created") == "1" {
		q.Set("created", "1")
	}
	return s.livePage(w, r, u, "compute", q)
}

func (s *Studio) scaleCompute(w http.ResponseWriter, r *http.Request, u *user) error {
	name := r.PathValue("name")
	pf := r.PostForm
	f := scaleForm{MinNodes: strings.TrimSpace(pf.Get("minNodes")), MaxNodes: strings.TrimSpace(pf.Get("maxNodes")), IdleSeconds: strings.TrimSpace(pf.Get("idleSeconds"))}
	errs := map[string]string{}
	status := http.StatusBadRequest
	num := func(field, val string) *int32 {
		n, err := strconv.ParseInt(val, 10, 32)
		if err != nil {
			errs[field] = "Enter a whole number."
			return nil
		}
		v := int32(n)
		return &v
	}
	ss := &api.ScaleSettings{MinNodeCount: num("minNodes", f.MinNodes), MaxNodeCount: num("maxNodes", f.MaxNodes)}
	if idle := num("idleSeconds", f.IdleSeconds); idle != nil {
		d := fmt.Sprintf("PT%dS", *idle)
		ss.NodeIdleTimeBeforeScaleDown = &d
	}
	if len(errs) == 0 {
		body := api.ClusterUpdateParameters{Properties: &api.ClusterUpdateProperties{Properties: &api.ScaleSettingsInformation{ScaleSettings: ss}}}
		err := s.call(r, u, "PATCH", s.wsPath+"/computes/"+url.PathEscape(name), nil, body, nil)
		if err == nil {
			http.Redirect(w, r, Prefix+"/computes/"+url.PathEscape(name)+"#scale", http.StatusSeeOther)
			return nil
		}
		ae, ok := err.(*apiError)
		if !ok {
			return err
		}
		errs, status = fieldErrors(err), ae.Status
	}
	v, err := s.loadCompute(r, u, url.Values{"name": {name}})
	if err != nil {
		return asPage(err)
	}
	d := v.Data.(*computeData)
	d.Scale, d.FormErrors = f, errs
	s.withLive(v, "compute", url.Values{"name": {name}})
	s.render(w, r, u, status, "compute", v)
	return nil
}

func (s *Studio) deleteCompute(w http.ResponseWriter, r *http.Request, u *user) error {
	name := r.PathValue("name")
	if r.PostForm.Get("confirm") != name {
		v, err := s.loadCompute(r, u, url.Values{"name": {name}})
		if err != nil {
			return asPage(err)
		}
		v.Data.(*computeData).FormErrors = map[string]string{"confirm": fmt.Sprintf("Type the compute's name, %s, to confirm the delete.", name)}
		s.withLive(v, "compute", url.Values{"name": {name}})
		s.render(w, r, u, http.StatusBadRequest, "compute", v)
		return nil
	}
	if err := s.call(r, u, "DELETE", s.wsPath+"/computes/"+url.PathEscape(name), nil, nil, nil); err != nil {
		return asPage(err)
	}
	http.Redirect(w, r, Prefix+"/computes", http.StatusSeeOther)
	return nil
}
