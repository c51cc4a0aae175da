package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"kumo/internal/provider"
	"kumo/internal/provider/kubernetes"
	"kumo/internal/provider/kubernetes/kubetest"
)

// kubeRegion is a control plane serving region k8s (the kubernetes
// provider, on a real kube-apiserver whose kubelet the test plays), a
// workspace in it and a LowPriority cluster "pool" (Standard_D2_v2, 0 to 2
// nodes, 1 s idle time) there.
type kubeRegion struct {
	sshRegion // the same helpers: submit, job, log, waitDone, waitEmpty
	cluster   *kubetest.Cluster
	kubelet   *kubetest.Kubelet
	regions   string // the regions file
}

const kubeNS = "kumo-e2e"

func startKubeRegion(t testing.TB) *kubeRegion {
	t.Helper()
	c := kubetest.Start(t)
	c.Namespace(t, kubeNS)
	kubelet := kubetest.StartKubelet(t, c.Client, kubeNS, map[string]string{"kumo": kumo})
	dir := t.TempDir()
	regions := filepath.Join(dir, "regions.yaml")
	doc := fmt.Sprintf(`regions:
  - name: k8s
    provider: kubernetes
    settings:
      kubeconfig: %q
      namespace: %s
      image: kumo-agent:test
      grace: 1s
      qps: 500
      burst: 500
    capacity: {vcpus: 8, memory_gb: 32, gpus: 0}
`, c.Kubeconfig, kubeNS)
	if err := os.WriteFile(regions, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, dir, append([]string{"--regions", regions}, fastNodes...)...)
	r := &kubeRegion{sshRegion: sshRegion{t: t, s: s, ws: strings.TrimSuffix(workspacePath, "default") + "kube"},
		cluster: c, kubelet: kubelet, regions: regions}
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		out := r.s.out.String()
		t.Logf("kumo up output (last 4 KiB):\n%s", out[max(0, len(out)-4096):])
		for _, name := range r.pods() {
			l := kubelet.Log(name)
			t.Logf("pod %s:\n%s", name, l[max(0, len(l)-2048):])
		}
	})
	if status, raw := s.request(context.Background(), "PUT", r.ws, map[string]any{"location": "k8s"}); status/100 != 2 {
		t.Fatalf("create workspace in region k8s: %d %s", status, raw)
	}
	body := map[string]any{"properties": map[string]any{"computeType": "AmlCompute", "properties": map[string]any{
		"vmSize": "Standard_D2_v2", "vmPriority": "LowPriority",
		"scaleSettings": map[string]any{"minNodeCount": 0, "maxNodeCount": 2, "nodeIdleTimeBeforeScaleDown": "PT1S"}}}}
	if status, raw := s.request(context.Background(), "PUT", r.ws+"/computes/fleet", body); status != 201 {
		t.Fatalf("create cluster: %d %s", status, raw)
	}
	return r
}

// pods returns the names of kumo's pods in the namespace that are not
// being deleted.
func (r *kubeRegion) pods() []string {
	list, err := r.cluster.Client.CoreV1().Pods(kubeNS).List(context.Background(),
		metav1.ListOptions{LabelSelector: kubernetes.LabelManagedBy + "=kumo"})
	if err != nil {
		r.t.Fatalf("list pods: %v", err)
	}
	var out []string
	for _, p := range list.Items {
		if p.DeletionTimestamp == nil {
			out = append(out, p.Name)
		}
	}
	slices.Sort(out)
	return out
}

// waitPods waits until kumo's pods number n.
func (r *kubeRegion) waitPods(n int) {
	r.t.Helper()
	waitFor(r.t, 30*time.Second, fmt.Sprintf("%d pods", n), func() (bool, string) {
		p := r.pods()
		return len(p) == n, fmt.Sprint(p)
	})
}

// TestKubernetesRegion: a region of the kubernetes provider scales a
// LowPriority cluster 0 → 2 pods as jobs queue, runs the jobs in them
// (agents started from the pods' command and Secret-sourced environment),
// and returns to 0 pods; evicting a job's pod through the Eviction API
// preempts its node and the job runs again in a new pod; a pod left by an
// earlier incarnation of the control plane is removed after a restart.
func TestKubernetesRegion(t *testing.T) {
	r := startKubeRegion(t)
	home := t.TempDir()
	os.Chmod(home, 0o777)

	// 0 → 2: each job waits until both have started, so two nodes run at once.
	both := fmt.Sprintf(`touch %[1]s/$AZUREML_RUN_ID.started; n=0; until [ $(ls %[1]s | grep -c started) = 2 ] || [ $n = 300 ]; do sleep 0.1; n=$((n+1)); done`, home)
	r.submit("j1", both)
	r.submit("j2", both)
	r.waitPods(2)
	r.waitDone("j1", "j2")
	if got := r.compute().Properties.Properties.CurrentNodeCount; got > 2 {
		t.Errorf("cluster had %d nodes, want at most 2", got)
	}
	r.waitEmpty()
	r.waitPods(0)

	// Eviction → preemption → requeue on a new pod.
	ran := filepath.Join(home, "j3.ran")
	r.submit("j3", fmt.Sprintf(`echo attempt >> %s; echo started; sleep 3; echo finished`, ran))
	var victim string
	waitFor(t, 60*time.Second, "j3 to start", func() (bool, string) {
		b, _ := os.ReadFile(ran)
		pods := r.pods()
		if len(b) > 0 && len(pods) == 1 {
			victim = pods[0]
			return true, ""
		}
		return false, fmt.Sprintf("%s %v", r.job("j3").Properties.Status, pods)
	})
	ev := &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: victim, Namespace: kubeNS}}
	if err := r.cluster.Client.PolicyV1().Evictions(kubeNS).Evict(context.Background(), ev); err != nil {
		t.Fatalf("evict pod %s: %v", victim, err)
	}
	r.waitDone("j3")
	b, _ := os.ReadFile(ran)
	if attempts := strings.Split(strings.TrimSpace(string(b)), "\n"); len(attempts) != 2 || !strings.Contains(r.log("j3"), "finished") {
		t.Errorf("j3 ran %d times (%q), log %q; want it preempted once and run again to the end", len(attempts), b, r.log("j3"))
	}
	status, raw := r.s.request(context.Background(), "GET", r.ws+"/computes/fleet/events", nil)
	if status != 200 || !strings.Contains(string(raw), "NodePreempted") {
		t.Errorf("cluster events: %d %s; want a NodePreempted event", status, raw)
	}
	r.waitEmpty()
	r.waitPods(0)

	// A pod the control plane left behind (made, then forgotten by a
	// crash) is found by its owner label and removed after a restart.
	if err := r.s.stop(); err != nil {
		t.Logf("kumo up exited: %v", err)
	}
	old, err := kubernetes.New(kubernetes.Config{Kubeconfig: r.cluster.Kubeconfig, Namespace: kubeNS,
		Dir: filepath.Join(r.s.dir, "data", "regions", "k8s")})
	if err != nil {
		t.Fatal(err)
	}
	if err := old.Create(context.Background(), []provider.Instance{{ID: "left-behind", Compute: "fleet",
		Size: provider.Size{Name: "Standard_D2_v2", VCPUs: 2, MemoryMB: 7168}, Agent: provider.AgentConfig{URL: "https://127.0.0.1:1", Credential: "x"}}}); err != nil {
		t.Fatal(err)
	}
	r.waitPods(1)
	r.s = startServer(t, r.s.dir, append([]string{"--regions", r.regions}, fastNodes...)...)
	r.waitPods(0)
	waitFor(t, 30*time.Second, "the orphan's process to stop", func() (bool, string) {
		run := r.kubelet.Running()
		return len(run) == 0, fmt.Sprint(run)
	})
}

// BenchmarkKubernetesNodeReady is BenchmarkSSHHostsNodeReady on region k8s
// (see startKubeRegion): from submitting a trivial job to a cluster at 0
// nodes until the job's process starts in the new pod: the pod and Secret
// made through the API server, the test's kubelet starting the agent from
// the pod's spec, its registration, and the dispatch. Run with
// -benchtime=20x for BENCHMARKS.md.
func BenchmarkKubernetesNodeReady(b *testing.B) {
	r := startKubeRegion(b)
	benchNodeReady(b, "k", r.runStarted, func() {
		r.waitEmpty()
		r.waitPods(0)
	})
}
