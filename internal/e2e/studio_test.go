package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"kumo/api"
)

// screenshotDir is where the studio tests save screenshots for a person
// to look at (git-ignored; the README names it).
const screenshotDir = "screenshots"

// axeEnv names axe-core's axe.min.js (npm package axe-core), which the
// studio test injects to check accessibility. .ci/run installs it.
const axeEnv = "KUMO_AXE_JS"

// chromiumPath returns the Chromium to drive, or skips the test when
// there is none outside CI (in CI, where .ci/run installs it, it fails).
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not installed: .ci/run installs it with apt-get install -y chromium")
	}
	t.Skip("skipping the studio's browser tests: chromium is not installed (apt-get install -y chromium)")
	return ""
}

// axeSource returns axe-core's script, or "" (with a note, or a failure
// in CI) when it is not installed.
func axeSource(t *testing.T) string {
	t.Helper()
	path := os.Getenv(axeEnv)
	if path == "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not set: .ci/run installs axe-core from npm and sets it", axeEnv)
		}
		t.Logf("%s is not set: skipping the axe-core accessibility checks (npm install axe-core, then set it to node_modules/axe-core/axe.min.js)", axeEnv)
		return ""
	}
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read axe-core: %v", err)
	}
	return string(src)
}

// tab is one browser tab of a studio test.
type tab struct {
	t   *testing.T
	ctx context.Context
	s   *server
	axe string
	// axeProbed is set once the check was shown to catch a violation.
	axeProbed bool
}

func (b *tab) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

func evalJS[T any](b *tab, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// open navigates to a studio path and waits for sel.
func (b *tab) open(path, sel string) {
	b.t.Helper()
	b.do("open "+path, chromedp.Navigate(b.s.base+path), chromedp.WaitReady(chromedp.CSS(sel)))
}

// text returns the text of the first element sel matches, or "".
func (b *tab) text(sel string) string {
	b.t.Helper()
	return evalJS[string](b, fmt.Sprintf(`(() => { const e = document.querySelector(%s); return e ? e.textContent : "" })()`, jsString(sel)))
}

// waitText waits until the element sel matches holds want.
func (b *tab) waitText(what, sel, want string, timeout time.Duration) {
	b.t.Helper()
	waitFor(b.t, timeout, what, func() (bool, string) {
		got := b.text(sel)
		return strings.Contains(got, want), fmt.Sprintf("%s holds %q, want %q", sel, got, want)
	})
}

// attr returns an attribute of the first element sel matches.
func (b *tab) attr(sel, name string) string {
	b.t.Helper()
	return evalJS[string](b, fmt.Sprintf(`(() => { const e = document.querySelector(%s); return e ? (e.getAttribute(%s) || "") : "" })()`, jsString(sel), jsString(name)))
}

// disabled reports whether the element sel matches cannot be used (it or
// a fieldset around it is disabled).
func (b *tab) disabled(sel string) bool {
	b.t.Helper()
	return evalJS[bool](b, fmt.Sprintf(`(() => { const e = document.querySelector(%s); return !!e && e.matches(':disabled') })()`, jsString(sel)))
}

func (b *tab) screenshot(name string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.MkdirAll(screenshotDir, 0o755); err != nil {
		b.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(screenshotDir, name), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// checkPage runs axe-core on the page (no serious or critical violations)
// and checks that its HTML, CSS and script stay under 100 KB.
func (b *tab) checkPage(name string) {
	b.t.Helper()
	size := evalJS[int](b, `document.documentElement.outerHTML.length`)
	for _, asset := range []string{"/studio/static/studio.css", "/studio/static/studio.js"} {
		resp, err := b.s.http.Get(b.s.base + asset)
		if err != nil {
			b.t.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		size += int(n)
	}
	if size >= 100_000 {
		b.t.Errorf("%s: HTML, CSS and script are %d bytes, want under 100 KB", name, size)
	}
	if b.axe == "" {
		return
	}
	if !evalJS[bool](b, `typeof axe !== "undefined"`) {
		evalJS[bool](b, b.axe+"\n;true")
	}
	if !b.axeProbed {
		// Prove the check can fail: an input without a label must be
		// reported.
		b.axeProbed = true
		got := evalJS[[]string](b, `(() => { const i = document.createElement("input"); i.id = "axe-probe"; document.body.appendChild(i);
			return axe.run(document, {resultTypes: ["violations"]}).then(r => { i.remove(); return r.violations.map(v => v.id) }) })()`)
		if !slices.Contains(got, "label") {
			b.t.Fatalf("axe-core did not report an input without a label (violations %v): the accessibility check cannot fail", got)
		}
	}
	bad := evalJS[[]string](b, `axe.run(document, {resultTypes: ["violations"]}).then(r => r.violations
		.filter(v => v.impact === "serious" || v.impact === "critical")
		.map(v => v.id + ": " + v.help + " at " + v.nodes.slice(0, 3).map(n => n.target.join(" ")).join(" | ")))`)
	for _, v := range bad {
		b.t.Errorf("%s: accessibility: %s", name, v)
	}
}

// apiState describes a compute's nodes and a job as the API sees them,
// for failure messages.
func apiState(t *testing.T, s *server, compute, job string) string {
	c := getCompute(t, s, compute).Properties
	j := getJob(t, s, job).Properties
	reason := ""
	if j.PendingReason != nil {
		reason = j.PendingReason.Code + ": " + j.PendingReason.Message
	}
	if j.Error != nil {
		reason = j.Error.Code + ": " + j.Error.Message
	}
	return fmt.Sprintf("compute %s, %+v, allocation %s; job %s %s", c.ProvisioningState, *c.Properties.NodeStateCounts, c.Properties.AllocationState, j.Status, reason)
}

// colorScheme makes the page see prefers-color-scheme: scheme.
func colorScheme(scheme string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}}})
		return err
	})
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// createToken makes an API token with role and returns its secret.
func createToken(t *testing.T, s *server, name, role string) string {
	t.Helper()
	status, raw := s.request(context.Background(), "POST", "/kumo/v1/tokens", api.TokenCreateRequest{Name: name, Role: api.TokenRole(role)})
	if status != http.StatusCreated {
		t.Fatalf("create %s token: %d %s", role, status, raw)
	}
	var tc api.TokenCreated
	if err := json.Unmarshal(raw, &tc); err != nil {
		t.Fatal(err)
	}
	return tc.Token
}

// TestStudioInBrowser drives the studio in a real headless Chromium
// against a real kumo up: sign in, create a cluster through the form (a
// bad name caught as one types, a size over quota refused at its field),
// watch the node-state bar change live as a job brings a node up, edit max
// nodes in place, follow and cancel a job; then a reader sees every page
// and is refused every change; requests without the cookie and a
// cross-site form post are refused. It saves screenshots and runs axe-core
// on the main pages.
func TestStudioInBrowser(t *testing.T) {
	chromium := chromiumPath(t)
	axe := axeSource(t)
	s := startServer(t, "", append([]string{"--tls", "off"}, fastNodes...)...)
	waitFor(t, 10*time.Second, "kumo up prints the studio's address", func() (bool, string) {
		return strings.Contains(s.out.String(), "Studio (web UI): "+s.base+"/studio/"), s.out.String()
	})
	if out, err := run(t, s.dir, "studio", "--no-browser"); err != nil || strings.TrimSpace(out) != s.base+"/studio/" {
		t.Errorf("kumo studio --no-browser printed %q (%v), want %s/studio/", out, err, s.base)
	}
	readerToken := createToken(t, s, "studio-reader", "reader")
	setQuota(t, s, "standardDv2Family", 2) // Standard_D3_v2 (4 vCPUs) is over it

	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromium), chromedp.Headless, chromedp.NoSandbox, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-gpu", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 800))
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(allocCtx)
	defer cancel()
	ctx, cancelAll := context.WithTimeout(ctx, 4*time.Minute)
	defer cancelAll()
	// Start the browser on ctx itself: the timeouts of later steps must
	// not end it.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	b := &tab{t: t, ctx: ctx, s: s, axe: axe}

	// Sign in: a page without a session goes to the sign-in form.
	b.open("/studio/computes", "#token")
	b.do("sign in", chromedp.SendKeys(chromedp.CSS("#token"), s.cfg.Token), chromedp.Submit(chromedp.CSS("#token")),
		chromedp.WaitReady(chromedp.CSS(`#computes tr[data-compute="local"]`)))

	// The create form: the name rule is checked as one types.
	b.do("open the form", chromedp.Click(chromedp.CSS("#new-compute")), chromedp.WaitReady(chromedp.CSS("#create")))
	b.do("type a bad name", chromedp.SendKeys(chromedp.CSS("#name"), "1x"))
	b.waitText("the live check rejects 1x", "#err-name", "2 to 16 letters", 10*time.Second)
	if b.attr("#name", "aria-invalid") != "true" {
		t.Error("a bad name is not marked aria-invalid")
	}
	evalJS[bool](b, `document.getElementById("name").value = ""; true`)
	b.do("type a good name", chromedp.SendKeys(chromedp.CSS("#name"), "web1"))
	b.waitText("the live check accepts web1", "#err-name", "free", 10*time.Second)
	if got := b.text("#region"); got != "local" {
		t.Errorf("the form's region is %q, want the workspace's, local", got)
	}

	// A size over the quota: the server refuses it at the size field.
	b.do("submit a size over quota", chromedp.SetValue(chromedp.CSS("#vmSize"), "Standard_D3_v2"),
		chromedp.SetValue(chromedp.CSS("#maxNodes"), "1"), chromedp.SetValue(chromedp.CSS("#idleSeconds"), "60"),
		chromedp.Click(chromedp.CSS("#create-submit")))
	b.waitText("the quota error at the size", "#err-vmSize", "quota", 15*time.Second)
	if b.attr("#vmSize", "aria-invalid") != "true" {
		t.Error("the refused size is not marked aria-invalid")
	}
	if status, _ := s.request(context.Background(), "GET", workspacePath+"/computes/web1", nil); status != http.StatusNotFound {
		t.Errorf("a refused create made compute web1: GET answers %d", status)
	}
	b.screenshot("compute-form-error.png")
	b.checkPage("create form with an error")

	// Create it with a size that fits: the page shows provisioning until
	// the cluster is ready.
	b.do("submit a good size", chromedp.SetValue(chromedp.CSS("#vmSize"), "Standard_D2_v2"), chromedp.Click(chromedp.CSS("#create-submit")))
	b.waitText("provisioning ends", "#provisioning", "ready", 60*time.Second)

	// The compute page follows a job without a reload: a node comes up,
	// runs the job, and the bar shows it finished. The page records every
	// label its bar shows.
	b.open("/studio/computes", `#computes tr[data-compute="web1"]`)
	bar := `#computes tr[data-compute="web1"] .nodebar`
	evalJS[bool](b, fmt.Sprintf(`(() => {
		window.studioMarker = "no reload";
		window.studioLabels = [];
		const note = () => { const e = document.querySelector(%s); const l = e ? e.dataset.label : "";
			if (window.studioLabels[window.studioLabels.length - 1] !== l) { window.studioLabels.push(l); } };
		note();
		new MutationObserver(note).observe(document.getElementById("live"), {childList: true, subtree: true});
		document.querySelector('#computes a[href="/studio/computes/web1"]').focus();
		return true })()`, jsString(bar)))
	if got := b.attr(bar, "data-label"); got != "no nodes" {
		t.Errorf("web1's bar before any job reads %q, want no nodes", got)
	}
	submitJob(t, s, "studio-job1", "web1", "echo hello-from-studio; sleep 5")
	waitFor(t, 90*time.Second, "web1's bar shows a node come up for the job", func() (bool, string) {
		seen := evalJS[[]string](b, `window.studioLabels`)
		up := slices.ContainsFunc(seen, func(l string) bool { return strings.Contains(l, "running") || strings.Contains(l, "preparing") })
		return up, fmt.Sprintf("bar showed %q; API: %s", seen, apiState(t, s, "web1", "studio-job1"))
	})
	b.screenshot("computes.png")
	b.checkPage("compute page")
	job := waitJob(t, s, "studio-job1", 90*time.Second)
	waitFor(t, 30*time.Second, "web1's bar shows the job finished", func() (bool, string) {
		got := b.attr(bar, "data-label")
		return !strings.Contains(got, "running") && !strings.Contains(got, "preparing"), fmt.Sprintf("bar %q; API: %s", got, apiState(t, s, "web1", "studio-job1"))
	})
	labels := evalJS[[]string](b, `window.studioLabels`)
	if job.Properties.Status == api.JobCompleted && !slices.Contains(labels, "1 running") {
		t.Errorf("the bar never showed the node running the job: it showed %q", labels)
	}
	t.Logf("web1's bar showed %q; the job ended %s", labels, job.Properties.Status)
	if got := evalJS[string](b, `window.studioMarker || "reloaded"`); got != "no reload" {
		t.Errorf("the compute page reloaded to show the change (marker %q)", got)
	}
	if got := evalJS[string](b, `document.activeElement.getAttribute("href") || document.activeElement.tagName`); got != "/studio/computes/web1" {
		t.Errorf("live updates moved keyboard focus from web1's link to %s", got)
	}

	// Edit max nodes in place on the compute's page.
	b.open("/studio/computes/web1", "#scale-form")
	b.do("save max nodes 3", chromedp.SetValue(chromedp.CSS("#maxNodes"), "3"), chromedp.Click(chromedp.CSS("#scale-save")))
	b.waitText("the new max shows", "#scale-now", "0–3", 15*time.Second)
	if got := *getCompute(t, s, "web1").Properties.Properties.ScaleSettings.MaxNodeCount; got != 3 {
		t.Errorf("after the in-place edit the API's maxNodeCount is %d, want 3", got)
	}
	// The node that ran the job has accrued cost since it was created.
	if c := getCompute(t, s, "web1").Properties.Properties.Cost; c == nil {
		t.Errorf("web1 ran a node but the API shows no cost")
	} else if got, want := evalJS[string](b, `document.getElementById("cost-so-far").textContent`), fmt.Sprintf("$%.2f", c.SoFar); !strings.HasPrefix(got, "$") || len(got) != len(want) {
		t.Errorf("cost so far on web1's page = %q; the API says %s", got, want)
	}
	b.screenshot("compute-detail.png")
	b.checkPage("compute detail")

	// A job's page tails its log live; cancel stops it.
	submitJob(t, s, "studio-long", "web1", "echo started-long; sleep 120")
	b.open("/studio/jobs/studio-long", "#job-status")
	b.waitText("the log tail shows the job's output", "#log", "started-long", 60*time.Second)
	b.do("cancel", chromedp.Click(chromedp.CSS("#cancel")))
	b.waitText("the job is canceled", "#job-status", "Canceled", 60*time.Second)
	if got := getJob(t, s, "studio-long").Properties.Status; got != api.JobCanceled {
		t.Errorf("after cancel the API says %s", got)
	}
	b.screenshot("job-detail.png")
	b.checkPage("job detail")

	// Dark by the system setting, and readable at phone width: the page
	// itself never scrolls sideways (wide tables scroll in their box).
	b.do("dark, phone width", colorScheme("dark"), chromedp.EmulateViewport(390, 844))
	b.open("/studio/computes", `#computes tr[data-compute="web1"]`)
	if bg := evalJS[string](b, `getComputedStyle(document.documentElement).backgroundColor`); bg != "rgb(18, 20, 23)" {
		t.Errorf("with prefers-color-scheme: dark the page background is %s, want the dark one", bg)
	}
	if w := evalJS[int](b, `document.documentElement.scrollWidth`); w > 390 {
		t.Errorf("at phone width (390 px) the page is %d px wide", w)
	}
	b.screenshot("computes-dark-phone.png")
	b.checkPage("compute page, dark, phone width")
	b.do("light, desktop", colorScheme("light"), chromedp.EmulateViewport(1280, 800))

	// The jobs list is newest first and filters by compute.
	b.open("/studio/jobs?compute=web1", "#jobs")
	rows := evalJS[[]string](b, `[...document.querySelectorAll("#jobs tbody tr")].map(r => r.dataset.job)`)
	if want := []string{"studio-long", "studio-job1"}; strings.Join(rows, ",") != strings.Join(want, ",") {
		t.Errorf("jobs on web1: got %v, want %v (newest first)", rows, want)
	}

	// A form posted from another site is refused, even though the browser
	// sends the SameSite cookie to another port of the same host.
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintf(w, `<!doctype html><title>evil</title><form id="f" method="post" action="%s/studio/computes/new">
<input name="csrf" value="forged"><input name="name" value="evil1"><input name="vmSize" value="Standard_D2_v2">
<input name="vmType" value="CPU"><input name="vmPriority" value="Dedicated"><input name="maxNodes" value="1"></form>
<script>document.getElementById("f").submit()</script>`, s.base)
	}))
	defer evil.Close()
	b.do("visit the cross-site page", chromedp.Navigate(evil.URL))
	b.waitText("the cross-site post is refused", "#page-error", "another site", 15*time.Second)
	if status, _ := s.request(context.Background(), "GET", workspacePath+"/computes/evil1", nil); status != http.StatusNotFound {
		t.Errorf("the cross-site post made compute evil1: GET answers %d", status)
	}

	// Sign out, and sign in again as a reader with the keyboard alone.
	b.open("/studio/computes", ".who button")
	b.do("sign out", chromedp.Click(chromedp.CSS(".who button")), chromedp.WaitReady(chromedp.CSS("#token")))
	for i := 0; i < 6 && evalJS[string](b, `document.activeElement ? document.activeElement.id : ""`) != "token"; i++ {
		b.do("tab", chromedp.KeyEvent("\t"))
	}
	if got := evalJS[string](b, `document.activeElement.id`); got != "token" {
		t.Fatalf("Tab does not reach the token field (focus on %q)", got)
	}
	b.do("sign in as reader", chromedp.KeyEvent(readerToken), chromedp.KeyEvent("\r"), chromedp.WaitReady(chromedp.CSS("#reader-note")))

	// The reader sees every page; every change control is disabled.
	for _, c := range []struct{ path, wait, control string }{
		{"/studio/computes", "#computes", "#new-compute"},
		{"/studio/computes/new", "#create", "#create-submit"},
		{"/studio/computes/web1", "#scale-form", "#scale-save"},
		{"/studio/computes/web1", "#delete-form", "#delete-submit"},
		{"/studio/jobs/studio-job1", "#job-status", "#cancel"},
		{"/studio/jobs", "#jobs", ""},
		{"/studio/quotas", "#usages", ""},
		{"/studio/tokens", "#tokens-denied", "#token-create"},
	} {
		b.open(c.path, c.wait)
		if c.control != "" && !b.disabled(c.control) {
			t.Errorf("reader: %s on %s is not disabled", c.control, c.path)
		}
	}
	// Refused at the studio even when the disabled control is bypassed...
	b.open("/studio/computes/web1", "#scale-form")
	status := evalJS[int](b, `fetch("/studio/computes/web1/scale", {method: "POST", body: new URLSearchParams({
		csrf: document.querySelector("input[name=csrf]").value, minNodes: "0", maxNodes: "5", idleSeconds: "60"})}).then(r => r.status)`)
	if status != http.StatusForbidden {
		t.Errorf("reader's scale POST to the studio: status %d, want 403", status)
	}
	// ...and at the API.
	req, _ := http.NewRequest("PATCH", s.base+workspacePath+"/computes/web1?api-version=2024-04-01",
		strings.NewReader(`{"properties":{"properties":{"scaleSettings":{"maxNodeCount":5}}}}`))
	req.Header.Set("Authorization", "Bearer "+readerToken)
	req.Header.Set("Content-Type", "application/json")
	if resp, err := s.http.Do(req); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("reader's PATCH at the API: %v %v, want 403", resp, err)
	} else {
		resp.Body.Close()
	}
	if got := *getCompute(t, s, "web1").Properties.Properties.ScaleSettings.MaxNodeCount; got != 3 {
		t.Errorf("a reader changed maxNodeCount to %d", got)
	}

	checkStudioRefusals(t, s)
}

// checkStudioRefusals checks, with a plain HTTP client, that the studio
// refuses requests without its cookie and changes without the session's
// CSRF token, and that its cookie is HttpOnly and SameSite=Strict.
func checkStudioRefusals(t *testing.T, s *server) {
	t.Helper()
	noRedirect := func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	anon := &http.Client{Transport: s.http.Transport, CheckRedirect: noRedirect, Timeout: 30 * time.Second}
	for _, c := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/studio/computes", http.StatusSeeOther},
		{"GET", "/studio/live?page=computes", http.StatusUnauthorized},
		{"POST", "/studio/computes/new", http.StatusUnauthorized},
		{"POST", "/studio/jobs/studio-job1/cancel", http.StatusUnauthorized},
	} {
		req, _ := http.NewRequest(c.method, s.base+c.path, strings.NewReader("name=x"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := anon.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("no cookie: %s %s answers %d, want %d", c.method, c.path, resp.StatusCode, c.want)
		}
		if c.want == http.StatusSeeOther && !strings.HasPrefix(resp.Header.Get("Location"), "/studio/signin") {
			t.Errorf("no cookie: %s %s goes to %q, want the sign-in page", c.method, c.path, resp.Header.Get("Location"))
		}
	}

	jar, _ := cookiejar.New(nil)
	signed := &http.Client{Transport: s.http.Transport, CheckRedirect: noRedirect, Jar: jar, Timeout: 30 * time.Second}
	resp, err := signed.PostForm(s.base+"/studio/signin", url.Values{"token": {s.cfg.Token}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cookie := resp.Header.Get("Set-Cookie")
	for _, want := range []string{"kumo_studio=", "HttpOnly", "SameSite=Strict", "Path=/studio"} {
		if !strings.Contains(cookie, want) {
			t.Errorf("session cookie %q lacks %s", cookie, want)
		}
	}
	if strings.Contains(cookie, s.cfg.Token) {
		t.Error("the session cookie holds the API token")
	}
	resp, err = signed.PostForm(s.base+"/studio/computes/new", url.Values{"name": {"nocsrf1"}, "vmSize": {"Standard_D2_v2"}, "vmType": {"CPU"}, "vmPriority": {"Dedicated"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("a change without the CSRF token answers %d, want 403", resp.StatusCode)
	}
	if status, _ := s.request(context.Background(), "GET", workspacePath+"/computes/nocsrf1", nil); status != http.StatusNotFound {
		t.Errorf("a post without the CSRF token made a compute: GET answers %d", status)
	}
}
