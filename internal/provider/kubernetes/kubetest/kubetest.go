// Package kubetest runs a real Kubernetes API server for tests of the
// kubernetes provider: etcd and kube-apiserver on 127.0.0.1 with a token
// of the test's, and a [Kubelet] that plays the part of the cluster's
// kubelets (there is no scheduler or kubelet): it starts each pod's
// command as a process on this host, with the pod's environment resolved
// as a kubelet would (Secret references included), and reports the pod
// Running, then Succeeded or Failed; it stops the process when the pod is
// deleted.
//
// The binaries come from the environment: KUMO_KUBE_APISERVER (built by
// scripts/kube-apiserver.sh) and KUMO_ETCD (Debian's etcd-server, or etcd
// on PATH). Without them a test skips, unless CI is set, when it fails.
package kubetest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	k8s "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Cluster is a running etcd and kube-apiserver.
type Cluster struct {
	URL        string        // https://127.0.0.1:PORT
	Token      string        // a bearer token of group system:masters
	Kubeconfig string        // a kubeconfig file for URL and Token
	Client     k8s.Interface // a client with high QPS and burst
	dir        string
}

// Binaries returns the kube-apiserver and etcd to use, skipping the test
// when either is missing and CI is unset.
func Binaries(t testing.TB) (apiserver, etcd string) {
	t.Helper()
	apiserver = os.Getenv("KUMO_KUBE_APISERVER")
	etcd = os.Getenv("KUMO_ETCD")
	if etcd == "" {
		etcd, _ = exec.LookPath("etcd")
	}
	missing := ""
	if _, err := os.Stat(apiserver); apiserver == "" || err != nil {
		missing = "KUMO_KUBE_APISERVER (build it with scripts/kube-apiserver.sh)"
	} else if _, err := os.Stat(etcd); etcd == "" || err != nil {
		missing = "KUMO_ETCD or etcd on PATH (apt-get install etcd-server)"
	}
	if missing != "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("needs %s", missing)
		}
		t.Skipf("needs %s", missing)
	}
	return apiserver, etcd
}

// Start starts etcd and kube-apiserver in the test's own directories on
// free ports of 127.0.0.1, waits until the server is ready, and stops
// both at cleanup.
func Start(t testing.TB) *Cluster {
	t.Helper()
	apiserver, etcd := Binaries(t)
	dir := t.TempDir()
	c := &Cluster{dir: dir, Token: randHex(16)}

	ports := freePorts(t, 3)
	clientURL := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	peerURL := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	run(t, dir, "etcd", etcd, "--name=kumo", "--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls="+clientURL, "--advertise-client-urls="+clientURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=kumo="+peerURL, "--listen-metrics-urls=", "--log-level=warn")

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalECPrivateKey(key)
	saKey := filepath.Join(dir, "sa.pem")
	writeFile(t, saKey, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}))
	tokens := filepath.Join(dir, "tokens.csv")
	writeFile(t, tokens, []byte(c.Token+",kumo-test,kumo-test,system:masters\n"))
	c.URL = "https://127.0.0.1:" + strconv.Itoa(ports[2])
	run(t, dir, "kube-apiserver", apiserver,
		"--etcd-servers="+clientURL, "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
		"--secure-port="+strconv.Itoa(ports[2]), "--cert-dir="+filepath.Join(dir, "certs"),
		"--token-auth-file="+tokens, "--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc", "--service-account-key-file="+saKey,
		"--service-account-signing-key-file="+saKey, "--service-cluster-ip-range=10.96.0.0/24",
		"--disable-admission-plugins=ServiceAccount", "--enable-priority-and-fairness=false",
		"--profiling=false", "--v=0")

	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	deadline := time.Now().Add(90 * time.Second)
	for {
		req, _ := http.NewRequest("GET", c.URL+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+c.Token)
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("kube-apiserver not ready after 90s: %v; log:\n%s", err, tail(filepath.Join(dir, "kube-apiserver.log")))
		}
		time.Sleep(100 * time.Millisecond) // an external process: poll
	}
	hc.CloseIdleConnections()

	c.Kubeconfig = filepath.Join(dir, "kubeconfig")
	writeFile(t, c.Kubeconfig, []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: test
  cluster: {server: %q, insecure-skip-tls-verify: true}
users:
- name: test
  user: {token: %q}
contexts:
- name: test
  context: {cluster: test, user: test}
current-context: test
`, c.URL, c.Token)))
	rc := &rest.Config{Host: c.URL, BearerToken: c.Token, QPS: 1000, Burst: 1000,
		TLSClientConfig: rest.TLSClientConfig{Insecure: true}}
	c.Client, err = k8s.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	// The default namespace is made by the server shortly after it is ready.
	for {
		_, err := c.Client.CoreV1().Namespaces().Get(context.Background(), "default", metav1.GetOptions{})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("namespace default never appeared: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return c
}

// Namespace makes a namespace of the given name.
func (c *Cluster) Namespace(t testing.TB, name string) {
	t.Helper()
	_, err := c.Client.CoreV1().Namespaces().Create(context.Background(),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
}

// run starts a server process in its own process group, output to
// dir/name.log, and stops it (SIGTERM, then SIGKILL) at cleanup.
func run(t testing.TB, dir, name, bin string, args ...string) {
	t.Helper()
	logPath := filepath.Join(dir, name+".log")
	log, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		log.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		log.Close()
		if t.Failed() {
			t.Logf("%s log (tail):\n%s", name, tail(logPath))
		}
	})
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	return string(b[max(0, len(b)-3000):])
}

func writeFile(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// freePorts returns n ports of 127.0.0.1 that were free a moment ago.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var ls []net.Listener
	var out []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return out
}

// Kubelet plays the cluster's kubelets for the pods of one namespace. See
// the package doc.
type Kubelet struct {
	t      testing.TB
	client k8s.Interface
	ns     string
	dir    string
	// Commands maps a container's command[0] to an executable of this
	// host ("kumo" to the kumo binary under test).
	commands map[string]string

	mu    sync.Mutex
	procs map[types.UID]*proc
	stop  chan struct{}
	done  chan struct{}
}

// proc is a pod's running process.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	dir  string
}

// StartKubelet starts a Kubelet for namespace ns; commands maps container
// command names to executables. Each pod's process runs in a directory of
// its own (standing for the container's working directory, whatever the
// spec says), with only the pod's environment and PATH. It stops every
// process it started at cleanup.
func StartKubelet(t testing.TB, client k8s.Interface, ns string, commands map[string]string) *Kubelet {
	k := &Kubelet{t: t, client: client, ns: ns, dir: t.TempDir(), commands: commands,
		procs: map[types.UID]*proc{}, stop: make(chan struct{}), done: make(chan struct{})}
	go k.loop()
	t.Cleanup(k.Stop)
	return k
}

// Stop stops the kubelet and every process it started.
func (k *Kubelet) Stop() {
	select {
	case <-k.stop:
		return
	default:
	}
	close(k.stop)
	<-k.done
	k.mu.Lock()
	defer k.mu.Unlock()
	for uid, p := range k.procs {
		p.kill()
		delete(k.procs, uid)
	}
}

// Log returns the output of the pod's process, if it started.
func (k *Kubelet) Log(podName string) string {
	b, _ := os.ReadFile(filepath.Join(k.dir, podName, "container.log"))
	return string(b)
}

// Running returns the names of the pods whose processes run.
func (k *Kubelet) Running() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []string
	for _, p := range k.procs {
		select {
		case <-p.done:
		default:
			out = append(out, p.name)
		}
	}
	return out
}

func (k *Kubelet) loop() {
	defer close(k.done)
	tick := time.NewTicker(50 * time.Millisecond) // the API server is another process: poll it
	defer tick.Stop()
	for {
		k.sync()
		select {
		case <-k.stop:
			return
		case <-tick.C:
		}
	}
}

// sync makes the processes match the pods.
func (k *Kubelet) sync() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	list, err := k.client.CoreV1().Pods(k.ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return // the server may be stopping; try again
	}
	live := map[types.UID]bool{}
	for i := range list.Items {
		pod := &list.Items[i]
		k.mu.Lock()
		p := k.procs[pod.UID]
		k.mu.Unlock()
		if pod.DeletionTimestamp != nil {
			if p != nil {
				p.kill()
			}
			continue
		}
		live[pod.UID] = true
		switch {
		case p == nil && pod.Status.Phase == corev1.PodPending:
			k.start(ctx, pod)
		case p != nil && pod.Status.Phase == corev1.PodRunning:
			select {
			case <-p.done:
				k.finish(ctx, pod, p)
			default:
			}
		}
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	for uid, p := range k.procs {
		if !live[uid] {
			p.kill()
			delete(k.procs, uid)
		}
	}
}

// start resolves the pod's environment and starts its first container's
// command; a Secret not there yet is waited for (the next sync tries
// again), as a kubelet does.
func (k *Kubelet) start(ctx context.Context, pod *corev1.Pod) {
	if len(pod.Spec.Containers) == 0 || len(pod.Spec.Containers[0].Command) == 0 {
		return
	}
	c := pod.Spec.Containers[0]
	env := []string{"PATH=" + os.Getenv("PATH")}
	secrets := map[string]*corev1.Secret{}
	for _, e := range c.Env {
		v := e.Value
		if e.ValueFrom != nil {
			ref := e.ValueFrom.SecretKeyRef
			if ref == nil {
				return // only Secret references are played
			}
			s, ok := secrets[ref.Name]
			if !ok {
				var err error
				s, err = k.client.CoreV1().Secrets(k.ns).Get(ctx, ref.Name, metav1.GetOptions{})
				if err != nil {
					return
				}
				secrets[ref.Name] = s
			}
			b, ok := s.Data[ref.Key]
			if !ok {
				return
			}
			v = string(b)
		}
		env = append(env, e.Name+"="+v)
	}
	argv := append([]string(nil), c.Command...)
	argv = append(argv, c.Args...)
	if exe, ok := k.commands[argv[0]]; ok {
		argv[0] = exe
	}
	dir := filepath.Join(k.dir, pod.Name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return
	}
	log, err := os.OpenFile(filepath.Join(dir, "container.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return
	}
	defer log.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = dir, env, log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	p := &proc{name: pod.Name, cmd: cmd, done: make(chan struct{}), dir: dir}
	if err := cmd.Start(); err != nil {
		k.setStatus(ctx, pod, corev1.PodFailed, "StartError", err.Error())
		return
	}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	k.mu.Lock()
	k.procs[pod.UID] = p
	k.mu.Unlock()
	k.setStatus(ctx, pod, corev1.PodRunning, "", "")
}

// finish reports an ended process's pod Succeeded or Failed.
func (k *Kubelet) finish(ctx context.Context, pod *corev1.Pod, p *proc) {
	if p.err == nil {
		k.setStatus(ctx, pod, corev1.PodSucceeded, "", "")
		return
	}
	k.setStatus(ctx, pod, corev1.PodFailed, "Error", p.err.Error())
}

func (k *Kubelet) setStatus(ctx context.Context, pod *corev1.Pod, phase corev1.PodPhase, reason, msg string) {
	now := metav1.Now()
	pod = pod.DeepCopy()
	pod.Status.Phase, pod.Status.Reason, pod.Status.Message = phase, reason, msg
	pod.Status.PodIP, pod.Status.HostIP = "127.0.0.1", "127.0.0.1"
	pod.Status.PodIPs = []corev1.PodIP{{IP: "127.0.0.1"}}
	if pod.Status.StartTime == nil {
		pod.Status.StartTime = &now
	}
	state := corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}}
	if phase != corev1.PodRunning {
		state = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: reason, Message: msg, FinishedAt: now}}
	}
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: pod.Spec.Containers[0].Name, Image: pod.Spec.Containers[0].Image,
		State: state, Ready: phase == corev1.PodRunning}}
	_, err := k.client.CoreV1().Pods(k.ns).UpdateStatus(ctx, pod, metav1.UpdateOptions{})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		k.t.Logf("kubetest: update status of pod %s: %v", pod.Name, err)
	}
}

// kill stops a pod's container as a kubelet does: SIGTERM to its main
// process alone, and once that has exited, or after 5 s, SIGKILL to every
// process left in it (here its session and every process descended from
// its main process, which a container's cgroup would hold). A job the
// node runs gets its SIGTERM from the agent, as in a real pod, not from
// the kubelet behind the agent's back.
func (p *proc) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	pids := descendants(p.cmd.Process.Pid)
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
	}
	for _, pid := range pids {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// descendants returns pid and the processes descended from it, from /proc.
func descendants(root int) []int {
	parent := map[int]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) > 1 {
			parent[pid], _ = strconv.Atoi(f[1])
		}
	}
	out := []int{root}
	for changed := true; changed; {
		changed = false
		for pid, pp := range parent {
			if containsInt(out, pp) && !containsInt(out, pid) {
				out = append(out, pid)
				changed = true
			}
		}
	}
	return out
}

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
