package kubernetes_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"

	"kumo/internal/provider"
	"kumo/internal/provider/kubernetes"
	"kumo/internal/provider/kubernetes/kubetest"
	"kumo/internal/provider/providertest"
)

func TestPodName(t *testing.T) {
	ids := []string{"n-1", "N-1", "n_1", "n.1", strings.Repeat("a", 128), strings.Repeat("a", 127) + "b", "x"}
	seen := map[string]string{}
	for _, id := range ids {
		name := kubernetes.PodName(id)
		if errs := validation.IsDNS1123Label(name); len(errs) > 0 {
			t.Errorf("PodName(%q) = %q: not a DNS label: %v", id, name, errs)
		}
		if other, ok := seen[name]; ok {
			t.Errorf("PodName(%q) = PodName(%q) = %q", id, other, name)
		}
		seen[name] = id
		if again := kubernetes.PodName(id); again != name {
			t.Errorf("PodName(%q) = %q, then %q", id, name, again)
		}
	}
}

// agentStub stands for kumo agent in the conformance tests: it prints what
// it got from the pod's Secret and waits.
func agentStub(t *testing.T) string {
	path := filepath.Join(t.TempDir(), "agent")
	script := "#!/bin/sh\necho \"credential=$KUMO_AGENT_CREDENTIAL node=$KUMO_NODE_ID args=$*\"\nexec sleep 600\n"
	if err := os.WriteFile(path, []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	return path
}

var owners atomic.Int64

// env is a namespace of the test's kube-apiserver with a kubelet playing
// its nodes, the agent being agentStub.
type env struct {
	c       *kubetest.Cluster
	ns      string
	kubelet *kubetest.Kubelet
}

// TestProvider runs the provider's tests against one kube-apiserver, each
// in a namespace of its own.
func TestProvider(t *testing.T) {
	c := kubetest.Start(t)
	stub := agentStub(t)
	tests := []struct {
		name string
		run  func(*testing.T, *env)
	}{
		{"conformance", testConformance},
		{"pod spec", testPodSpec},
		{"eviction", testEviction},
		{"owners", testOwners},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns := fmt.Sprintf("kumo-%d", i)
			c.Namespace(t, ns)
			tt.run(t, &env{c: c, ns: ns, kubelet: kubetest.StartKubelet(t, c.Client, ns, map[string]string{"kumo": stub})})
		})
	}
}

// newProvider returns a provider on e's namespace with an owner of its
// own, so it starts empty.
func (e *env) newProvider(t *testing.T, mod func(*kubernetes.Config)) *kubernetes.Provider {
	cfg := kubernetes.Config{Kubeconfig: e.c.Kubeconfig, Namespace: e.ns, Owner: fmt.Sprintf("test-%d", owners.Add(1)),
		Image: "kumo-agent:test", Grace: time.Second}
	if mod != nil {
		mod(&cfg)
	}
	p, err := kubernetes.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func testConformance(t *testing.T, e *env) {
	providertest.Run(t, func(t *testing.T) provider.Provider { return e.newProvider(t, nil) })
}

func instance(id string, size provider.Size, preemptible bool) provider.Instance {
	return provider.Instance{ID: id, Compute: "gpu-cluster", Size: size, Preemptible: preemptible,
		Agent: provider.AgentConfig{URL: "https://10.0.0.1:8443", Credential: "cred-" + id, Env: map[string]string{"EXTRA": "1"}}}
}

func waitFor(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; last: %s", what, last)
		}
		time.Sleep(20 * time.Millisecond) // the API server is another process: poll
	}
}

func states(t *testing.T, p provider.Provider) map[string]provider.State {
	t.Helper()
	got, err := p.List(context.Background())
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	out := map[string]provider.State{}
	for _, s := range got {
		out[s.ID] = s.State
	}
	return out
}

// testPodSpec: the size becomes requests and limits (nvidia.com/gpu for
// GPUs), a preemptible node gets the spot selector and toleration, the
// pods carry the owner labels, and the credential reaches the agent
// through the Secret, never the pod spec.
func testPodSpec(t *testing.T, e *env) {
	c, kubelet := e.c, e.kubelet
	tol := []corev1.Toleration{{Key: "kubernetes.azure.com/scalesetpriority", Operator: corev1.TolerationOpEqual, Value: "spot", Effect: corev1.TaintEffectNoSchedule}}
	sel := map[string]string{"kubernetes.azure.com/scalesetpriority": "spot"}
	p := e.newProvider(t, func(cfg *kubernetes.Config) { cfg.SpotTolerations, cfg.SpotNodeSelector = tol, sel })
	ctx := context.Background()
	gpu := provider.Size{Name: "Standard_NC6", VCPUs: 6, MemoryMB: 56 * 1024, GPUs: 1}
	cpu := provider.Size{Name: "Standard_D2_v2", VCPUs: 2, MemoryMB: 7 * 1024}
	if err := p.Create(ctx, []provider.Instance{instance("Gpu_1", gpu, true), instance("cpu-1", cpu, false)}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		id          string
		size        provider.Size
		preemptible bool
		want        corev1.ResourceList
	}{
		{"Gpu_1", gpu, true, corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("6"), corev1.ResourceMemory: resource.MustParse("56Gi"), "nvidia.com/gpu": resource.MustParse("1")}},
		{"cpu-1", cpu, false, corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourceMemory: resource.MustParse("7Gi")}},
	}
	for _, tt := range tests {
		pod, err := c.Client.CoreV1().Pods(e.ns).Get(ctx, kubernetes.PodName(tt.id), metav1.GetOptions{})
		if err != nil {
			t.Fatalf("pod of %s: %v", tt.id, err)
		}
		res := pod.Spec.Containers[0].Resources
		for name, want := range tt.want {
			if got := res.Requests[name]; got.Cmp(want) != 0 {
				t.Errorf("%s: request %s = %s, want %s", tt.id, name, got.String(), want.String())
			}
			if got := res.Limits[name]; got.Cmp(want) != 0 {
				t.Errorf("%s: limit %s = %s, want %s", tt.id, name, got.String(), want.String())
			}
		}
		if len(res.Limits) != len(tt.want) {
			t.Errorf("%s: limits %v, want only %v", tt.id, res.Limits, tt.want)
		}
		wantLabels := map[string]string{kubernetes.LabelManagedBy: "kumo", kubernetes.LabelOwner: p.Owner(),
			kubernetes.LabelCompute: "gpu-cluster", kubernetes.LabelNode: tt.id}
		if tt.preemptible {
			wantLabels[kubernetes.LabelPreemptible] = "true"
		}
		if diff := cmp.Diff(wantLabels, pod.Labels); diff != "" {
			t.Errorf("%s: labels (-want +got):\n%s", tt.id, diff)
		}
		var wantSel map[string]string
		var wantTol []corev1.Toleration
		if tt.preemptible {
			wantSel, wantTol = sel, tol
		}
		if diff := cmp.Diff(wantSel, pod.Spec.NodeSelector); diff != "" {
			t.Errorf("%s: node selector (-want +got):\n%s", tt.id, diff)
		}
		// The API server adds tolerations of its own (not-ready, unreachable).
		spot := slices.DeleteFunc(slices.Clone(pod.Spec.Tolerations), func(t corev1.Toleration) bool {
			return strings.HasPrefix(t.Key, "node.kubernetes.io/")
		})
		if diff := cmp.Diff(wantTol, spot, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("%s: tolerations (-want +got):\n%s", tt.id, diff)
		}
		spec, _ := json.Marshal(pod)
		if strings.Contains(string(spec), "cred-"+tt.id) {
			t.Errorf("%s: the credential is in the pod: %s", tt.id, spec)
		}
		secret, err := c.Client.CoreV1().Secrets(e.ns).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil || string(secret.Data["credential"]) != "cred-"+tt.id {
			t.Errorf("%s: secret %v, %v; want the credential in it", tt.id, secret, err)
		} else if len(secret.OwnerReferences) != 1 || secret.OwnerReferences[0].UID != pod.UID {
			t.Errorf("%s: secret owners %v, want the pod", tt.id, secret.OwnerReferences)
		}
		waitFor(t, tt.id+"'s agent to start", func() (bool, string) {
			l := kubelet.Log(pod.Name)
			return strings.Contains(l, "credential=cred-"+tt.id+" node="+tt.id+" args=agent --node-id="+tt.id+" "), l
		})
	}
	if err := p.Delete(ctx, []string{"Gpu_1", "cpu-1"}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"Gpu_1", "cpu-1"} {
		if _, err := c.Client.CoreV1().Secrets(e.ns).Get(ctx, kubernetes.PodName(id), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("secret of %s after Delete: %v, want not found", id, err)
		}
	}
}

// testEviction: evicting pods through the Eviction API makes the
// preemptible one a preemption notice and both Stopped; kumo's Delete then
// releases them. Pods on a node tainted as going away, or being deleted,
// are noticed too.
func testEviction(t *testing.T, e *env) {
	c, kubelet := e.c, e.kubelet
	p := e.newProvider(t, nil)
	ctx := context.Background()
	size := providertest.Size
	if err := p.Create(ctx, []provider.Instance{instance("spot", size, true), instance("dedicated", size, false),
		instance("doomed", size, true), instance("orphaned", size, true)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "pods running", func() (bool, string) {
		s := states(t, p)
		return len(s) == 4 && s["spot"] == provider.StateRunning && s["dedicated"] == provider.StateRunning &&
			s["doomed"] == provider.StateRunning && s["orphaned"] == provider.StateRunning, fmt.Sprint(s)
	})
	if got, err := p.Preempted(ctx); err != nil || len(got) != 0 {
		t.Fatalf("Preempted before any eviction = %v, %v; want none", got, err)
	}

	// A node being drained by the cluster autoscaler.
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "spot-node-1"}, Spec: corev1.NodeSpec{
		Taints: []corev1.Taint{{Key: "ToBeDeletedByClusterAutoscaler", Effect: corev1.TaintEffectNoSchedule}}}}
	if _, err := c.Client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.Client.CoreV1().Pods(e.ns).Bind(ctx, &corev1.Binding{ObjectMeta: metav1.ObjectMeta{Name: kubernetes.PodName("doomed")},
		Target: corev1.ObjectReference{Kind: "Node", Name: node.Name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// A node being deleted (a finalizer of the test's keeps it visible).
	gone := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "spot-node-2", Finalizers: []string{"kumo.test/keep"}}}
	if _, err := c.Client.CoreV1().Nodes().Create(ctx, gone, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Client.CoreV1().Nodes().Patch(ctx, gone.Name, types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`), metav1.PatchOptions{})
	})
	if err := c.Client.CoreV1().Pods(e.ns).Bind(ctx, &corev1.Binding{ObjectMeta: metav1.ObjectMeta{Name: kubernetes.PodName("orphaned")},
		Target: corev1.ObjectReference{Kind: "Node", Name: gone.Name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.Client.CoreV1().Nodes().Delete(ctx, gone.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"spot", "dedicated"} {
		ev := &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: kubernetes.PodName(id), Namespace: e.ns}}
		if err := c.Client.PolicyV1().Evictions(e.ns).Evict(ctx, ev); err != nil {
			t.Fatalf("evict %s: %v", id, err)
		}
	}
	got, err := p.Preempted(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, pr := range got {
		ids = append(ids, pr.ID)
	}
	if want := []string{"doomed", "orphaned", "spot"}; !slices.Equal(ids, want) {
		t.Errorf("Preempted = %v, want %v (the evicted preemptible pod, and those on a draining or deleted node)", got, want)
	}
	s := states(t, p)
	if s["spot"] != provider.StateStopped || s["dedicated"] != provider.StateStopped || s["doomed"] != provider.StateRunning {
		t.Errorf("List after eviction = %v, want spot and dedicated Stopped, doomed still Running", s)
	}
	waitFor(t, "the evicted pods' processes to stop", func() (bool, string) {
		r := kubelet.Running()
		slices.Sort(r)
		return slices.Equal(r, []string{kubernetes.PodName("doomed"), kubernetes.PodName("orphaned")}), fmt.Sprint(r)
	})

	if err := p.Delete(ctx, []string{"spot", "dedicated", "doomed", "orphaned"}); err != nil {
		t.Fatal(err)
	}
	if s := states(t, p); len(s) != 0 {
		t.Errorf("List after Delete = %v, want none", s)
	}
	if got, err := p.Preempted(ctx); err != nil || len(got) != 0 {
		t.Errorf("Preempted after Delete = %v, %v; want none", got, err)
	}
	for _, id := range []string{"spot", "dedicated"} {
		waitFor(t, "pod "+id+" to be gone", func() (bool, string) {
			_, err := c.Client.CoreV1().Pods(e.ns).Get(ctx, kubernetes.PodName(id), metav1.GetOptions{})
			return apierrors.IsNotFound(err), fmt.Sprint(err)
		})
	}
}

// testOwners: a new provider value with the same directory (a restarted
// control plane) finds and deletes the pods of the old one; a control
// plane of another owner in the same namespace sees none of them.
func testOwners(t *testing.T, e *env) {
	dir := t.TempDir()
	mk := func(dir string) *kubernetes.Provider {
		return e.newProvider(t, func(cfg *kubernetes.Config) { cfg.Owner, cfg.Dir = "", dir })
	}
	first := mk(dir)
	ctx := context.Background()
	if err := first.Create(ctx, []provider.Instance{instance("a", providertest.Size, false), instance("b", providertest.Size, false)}); err != nil {
		t.Fatal(err)
	}
	again := mk(dir)
	if again.Owner() != first.Owner() {
		t.Fatalf("owner after restart = %q, want %q", again.Owner(), first.Owner())
	}
	if s := states(t, again); len(s) != 2 {
		t.Errorf("List after restart = %v, want a and b", s)
	}
	other := mk(t.TempDir())
	if s := states(t, other); len(s) != 0 {
		t.Errorf("another owner's List = %v, want none", s)
	}
	if err := other.Delete(ctx, []string{"a"}); err != nil {
		t.Fatal(err)
	}
	if err := again.Delete(ctx, []string{"b"}); err != nil {
		t.Fatal(err)
	}
	if s := states(t, first); len(s) != 1 || s["a"] == "" {
		t.Errorf("List = %v, want only a (another owner's Delete leaves it)", s)
	}
}
