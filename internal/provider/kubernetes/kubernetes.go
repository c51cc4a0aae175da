// Package kubernetes is a [provider.Provider] whose nodes are pods of a
// Kubernetes cluster: each node is one pod running `kumo agent` in a
// namespace. Kubernetes is the engine here: kumo asks its API for pods and
// reads back what the cluster did with them; the cluster's scheduler
// places them, its kubelets run them, and it evicts them.
//
// A node's pod is named from its instance ID (see [PodName]) and carries
// labels saying who owns it: [LabelManagedBy], [LabelOwner] (the control
// plane's identity, [Config.Owner]), [LabelCompute] and [LabelNode]; the
// exact ID, size and creation time are annotations. List selects pods by
// the owner label, so a control plane that restarts finds what it left
// (and deletes the pods no node record claims), and two control planes can
// share a namespace.
//
// The VM size becomes the container's CPU and memory requests and limits,
// and nvidia.com/gpu for GPU sizes. A preemptible instance (a LowPriority
// cluster's node) gets [Config.SpotNodeSelector] and [Config.SpotTolerations],
// so it lands on the cluster's spot nodes.
//
// The node credential and the control plane's CA certificate reach the pod
// in a Secret of the same name (owned by the pod, so the cluster's garbage
// collector removes it with the pod), read by the agent from the
// environment through secretKeyRef: never in the pod spec.
//
// Each pod carries the finalizer [Finalizer], so that a deletion kumo did
// not ask for (an eviction through the Eviction API, a drain, a node going
// away, someone's kubectl delete) leaves the pod visible as terminating:
// the provider reports it as a preemption for preemptible pods (and the
// pod as Stopped), until the control plane deletes the node, which removes
// the finalizer. A pod whose node is being deleted, or tainted as going
// away ([Config.TerminationTaints]), is reported the same way ahead of
// time. Deleting a node is deleting its pod.
package kubernetes

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	k8s "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"kumo/internal/provider"
)

var (
	_ provider.Provider           = (*Provider)(nil)
	_ provider.PreemptionNotifier = (*Provider)(nil)
)

// Labels, annotations and the finalizer kumo puts on its pods.
const (
	LabelManagedBy    = "app.kubernetes.io/managed-by" // always "kumo"
	LabelOwner        = "kumo.io/owner"                // Config.Owner: which control plane
	LabelCompute      = "kumo.io/compute"              // the cluster (compute) name
	LabelNode         = "kumo.io/node"                 // the instance ID, or its hash when not a valid label value
	LabelPreemptible  = "kumo.io/preemptible"          // "true" on a LowPriority cluster's pods
	AnnotationID      = "kumo.io/node-id"              // the exact instance ID
	AnnotationCompute = "kumo.io/compute"              // the exact compute name
	AnnotationSize    = "kumo.io/size"                 // the size, as JSON
	AnnotationCreated = "kumo.io/created"              // when Create made it, RFC 3339
	Finalizer         = "kumo.io/release"              // removed only by kumo's Delete
)

// Environment variables the pod's agent reads its secrets from (see
// `kumo agent`): they come from the node's Secret through secretKeyRef.
const (
	EnvCredential = "KUMO_AGENT_CREDENTIAL"
	EnvCA         = "KUMO_AGENT_CA"
)

// Secret keys.
const (
	secretCredential = "credential"
	secretCA         = "ca.pem"
)

// Defaults for zero fields of [Config].
const (
	DefaultNamespace    = "default"
	DefaultImage        = "kumo-agent:latest"
	DefaultAgentCommand = "kumo"
	DefaultGrace        = 10 * time.Second
	DefaultQPS          = 50
	DefaultBurst        = 100
	// DefaultWorkDir is the agent's work directory in the container.
	DefaultWorkDir = "/var/lib/kumo"
)

// DefaultTerminationTaints are taint keys that say a Kubernetes node is
// about to go away: the cluster autoscaler's, and the out-of-service
// taint of a node shutting down.
var DefaultTerminationTaints = []string{
	"ToBeDeletedByClusterAutoscaler",
	"DeletionCandidateOfClusterAutoscaler",
	"node.kubernetes.io/out-of-service",
}

// Config configures a [Provider].
type Config struct {
	// Client reaches the cluster; nil means one made from Kubeconfig.
	Client k8s.Interface
	// Kubeconfig is the kubeconfig file's path; "" means the in-cluster
	// configuration when kumo runs in a pod, else the usual loading rules
	// (KUBECONFIG, ~/.kube/config). Context picks a context; "" means the
	// file's current one.
	Kubeconfig, Context string
	// QPS and Burst limit the client's requests; 0 means DefaultQPS and
	// DefaultBurst.
	QPS   float32
	Burst int

	Namespace string // where the pods go; "" means DefaultNamespace
	// Owner names the control plane in the pods' LabelOwner, so that it
	// finds its own pods after a restart; a valid label value. "" means an
	// identity generated once and kept in Dir/owner.
	Owner string
	// Dir keeps the generated owner identity; required when Owner is "".
	Dir string

	Image           string // the agent image; "" means DefaultImage
	ImagePullPolicy string // "Always", "IfNotPresent", "Never"; "" means the cluster's default
	AgentCommand    string // the kumo executable in the image; "" means DefaultAgentCommand (found on PATH)
	// ControlPlaneURL is what agents in pods connect to; "" means the URL
	// each instance's AgentConfig carries.
	ControlPlaneURL string
	// Grace is the pods' termination grace period; 0 means DefaultGrace.
	Grace time.Duration

	// SpotNodeSelector and SpotTolerations are added to preemptible pods;
	// nil means none.
	SpotNodeSelector map[string]string
	SpotTolerations  []corev1.Toleration
	// TerminationTaints are taint keys on a Kubernetes node that announce
	// its removal; nil means DefaultTerminationTaints.
	TerminationTaints []string
}

// Provider runs nodes as pods. Its methods are safe for concurrent use; it
// holds no state between calls but its client.
type Provider struct {
	cfg    Config
	client k8s.Interface
}

// New checks cfg and returns a Provider. It makes the client but does not
// contact the cluster.
func New(cfg Config) (*Provider, error) {
	cfg.Namespace = cmp.Or(cfg.Namespace, DefaultNamespace)
	cfg.Image = cmp.Or(cfg.Image, DefaultImage)
	cfg.AgentCommand = cmp.Or(cfg.AgentCommand, DefaultAgentCommand)
	cfg.Grace = cmp.Or(cfg.Grace, DefaultGrace)
	if cfg.TerminationTaints == nil {
		cfg.TerminationTaints = DefaultTerminationTaints
	}
	if errs := validation.IsDNS1123Label(cfg.Namespace); len(errs) > 0 {
		return nil, fmt.Errorf("namespace: %s", strings.Join(errs, "; "))
	}
	switch cfg.ImagePullPolicy {
	case "", "Always", "IfNotPresent", "Never":
	default:
		return nil, fmt.Errorf("image_pull_policy: %q is not Always, IfNotPresent or Never", cfg.ImagePullPolicy)
	}
	if cfg.Grace < 0 {
		return nil, errors.New("grace: must not be negative")
	}
	if cfg.Owner == "" {
		owner, err := loadOwner(cfg.Dir)
		if err != nil {
			return nil, err
		}
		cfg.Owner = owner
	}
	if errs := validation.IsValidLabelValue(cfg.Owner); len(errs) > 0 || cfg.Owner == "" {
		return nil, fmt.Errorf("owner: %q is not a label value: %s", cfg.Owner, strings.Join(errs, "; "))
	}
	p := &Provider{cfg: cfg, client: cfg.Client}
	if p.client == nil {
		rc, err := restConfig(cfg.Kubeconfig, cfg.Context)
		if err != nil {
			return nil, fmt.Errorf("kubeconfig: %w", err)
		}
		rc.QPS = cmp.Or(cfg.QPS, DefaultQPS)
		rc.Burst = cmp.Or(cfg.Burst, DefaultBurst)
		rc.UserAgent = "kumo"
		if p.client, err = k8s.NewForConfig(rc); err != nil {
			return nil, fmt.Errorf("kubernetes client: %w", err)
		}
	}
	return p, nil
}

func restConfig(path, context string) (*rest.Config, error) {
	if path == "" && context == "" {
		if rc, err := rest.InClusterConfig(); err == nil {
			return rc, nil
		}
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if path != "" {
		rules.ExplicitPath = path
	}
	return clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules,
		&clientcmd.ConfigOverrides{CurrentContext: context}).ClientConfig()
}

// loadOwner returns the identity kept in dir/owner, making one if there is
// none.
func loadOwner(dir string) (string, error) {
	if dir == "" {
		return "", errors.New("kubernetes provider: no owner and no directory to keep one")
	}
	path := filepath.Join(dir, "owner")
	if b, err := os.ReadFile(path); err == nil {
		return strings.TrimSpace(string(b)), nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("kubernetes provider: %w", err)
	}
	var b [6]byte
	rand.Read(b[:])
	owner := "kumo-" + hex.EncodeToString(b[:])
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("kubernetes provider: %w", err)
	}
	if err := os.WriteFile(path, []byte(owner+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("kubernetes provider: %w", err)
	}
	return owner, nil
}

// Factory builds a Provider from params: DataDir is Config.Dir; settings
// are "kubeconfig", "context", "namespace", "owner", "image",
// "image_pull_policy", "agent_command", "control_plane_url", "grace" (a
// Go duration), "qps", "burst", "spot_node_selector" (a JSON object),
// "spot_tolerations" (a JSON array of Kubernetes tolerations) and
// "termination_taints" (a JSON array of taint keys).
func Factory(p provider.Params) (provider.Provider, error) {
	cfg := Config{Dir: p.DataDir}
	for k, v := range p.Settings {
		var err error
		switch k {
		case "kubeconfig":
			cfg.Kubeconfig = v
		case "context":
			cfg.Context = v
		case "namespace":
			cfg.Namespace = v
		case "owner":
			cfg.Owner = v
		case "image":
			cfg.Image = v
		case "image_pull_policy":
			cfg.ImagePullPolicy = v
		case "agent_command":
			cfg.AgentCommand = v
		case "control_plane_url":
			cfg.ControlPlaneURL = v
		case "grace":
			cfg.Grace, err = time.ParseDuration(v)
		case "qps":
			var f float64
			f, err = strconv.ParseFloat(v, 32)
			cfg.QPS = float32(f)
		case "burst":
			cfg.Burst, err = strconv.Atoi(v)
		case "spot_node_selector":
			err = strictJSON(v, &cfg.SpotNodeSelector)
		case "spot_tolerations":
			err = strictJSON(v, &cfg.SpotTolerations)
		case "termination_taints":
			err = strictJSON(v, &cfg.TerminationTaints)
		default:
			err = errors.New("unknown setting")
		}
		if err != nil {
			return nil, fmt.Errorf("setting %s: %w", k, err)
		}
	}
	return New(cfg)
}

func strictJSON(s string, v any) error {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// Owner returns the control plane's identity on its pods.
func (p *Provider) Owner() string { return p.cfg.Owner }

// Namespace returns the namespace of the pods.
func (p *Provider) Namespace() string { return p.cfg.Namespace }

// PodName returns the name of instance id's pod (and Secret): "kumo-",
// the ID in lower case with characters a name may not hold replaced by
// '-', cut to fit, and 10 hex digits of the ID's SHA-256, so that IDs
// differing only in case or in those characters get different pods.
func PodName(id string) string {
	var b strings.Builder
	for _, c := range strings.ToLower(id) {
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' {
			b.WriteRune(c)
		} else {
			b.WriteByte('-')
		}
	}
	sum := sha256.Sum256([]byte(id))
	stem := b.String()
	if len(stem) > 40 {
		stem = stem[:40]
	}
	return "kumo-" + stem + "-" + hex.EncodeToString(sum[:5])
}

// labelValue returns s if it is a valid label value, else a hash of it.
func labelValue(s string) string {
	if len(validation.IsValidLabelValue(s)) == 0 {
		return s
	}
	sum := sha256.Sum256([]byte(s))
	return "h-" + hex.EncodeToString(sum[:12])
}

func (p *Provider) selector() string {
	return LabelManagedBy + "=kumo," + LabelOwner + "=" + p.cfg.Owner
}

// pod returns the pod of instance in.
func (p *Provider) pod(in provider.Instance, now time.Time) (*corev1.Pod, error) {
	size, err := json.Marshal(in.Size)
	if err != nil {
		return nil, err
	}
	name := PodName(in.ID)
	env := []corev1.EnvVar{}
	for _, k := range slices.Sorted(maps.Keys(in.Agent.Env)) {
		env = append(env, corev1.EnvVar{Name: k, Value: in.Agent.Env[k]})
	}
	for _, kv := range [][2]string{{"KUMO_NODE_ID", in.ID}, {"KUMO_COMPUTE", in.Compute}, {"KUMO_VM_SIZE", in.Size.Name},
		{"KUMO_VCPUS", strconv.Itoa(in.Size.VCPUs)}, {"KUMO_MEMORY_MB", strconv.FormatInt(in.Size.MemoryMB, 10)}} {
		env = slices.DeleteFunc(env, func(e corev1.EnvVar) bool { return e.Name == kv[0] })
		env = append(env, corev1.EnvVar{Name: kv[0], Value: kv[1]})
	}
	secretEnv := func(envName, key string) corev1.EnvVar {
		return corev1.EnvVar{Name: envName, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: name}, Key: key}}}
	}
	env = append(env, secretEnv(EnvCredential, secretCredential))
	if in.Agent.CAFile != "" {
		env = append(env, secretEnv(EnvCA, secretCA))
	}
	res := corev1.ResourceList{}
	if in.Size.VCPUs > 0 {
		res[corev1.ResourceCPU] = *resource.NewQuantity(int64(in.Size.VCPUs), resource.DecimalSI)
	}
	if in.Size.MemoryMB > 0 {
		res[corev1.ResourceMemory] = *resource.NewQuantity(in.Size.MemoryMB<<20, resource.BinarySI)
	}
	if in.Size.GPUs > 0 {
		res["nvidia.com/gpu"] = *resource.NewQuantity(int64(in.Size.GPUs), resource.DecimalSI)
	}
	grace := int64(p.cfg.Grace / time.Second)
	no := false
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:      name,
			Namespace: p.cfg.Namespace,
			Labels: map[string]string{LabelManagedBy: "kumo", LabelOwner: p.cfg.Owner,
				LabelCompute: labelValue(in.Compute), LabelNode: labelValue(in.ID)},
			Annotations: map[string]string{AnnotationID: in.ID, AnnotationCompute: in.Compute,
				AnnotationSize: string(size), AnnotationCreated: now.Format(time.RFC3339Nano)},
			Finalizers: []string{Finalizer},
		},
		Spec: corev1.PodSpec{
			RestartPolicy:                 corev1.RestartPolicyNever,
			TerminationGracePeriodSeconds: &grace,
			AutomountServiceAccountToken:  &no,
			EnableServiceLinks:            &no,
			Containers: []corev1.Container{{
				Name:            "agent",
				Image:           p.cfg.Image,
				ImagePullPolicy: corev1.PullPolicy(p.cfg.ImagePullPolicy),
				Command: []string{p.cfg.AgentCommand, "agent", "--node-id=" + in.ID, "--work-dir=work",
					"--url=" + cmp.Or(p.cfg.ControlPlaneURL, in.Agent.URL)},
				WorkingDir: DefaultWorkDir,
				Env:        env,
				Resources:  corev1.ResourceRequirements{Requests: res, Limits: res},
			}},
		},
	}
	if in.Preemptible {
		pod.Labels[LabelPreemptible] = "true"
		if len(p.cfg.SpotNodeSelector) > 0 {
			pod.Spec.NodeSelector = p.cfg.SpotNodeSelector
		}
		pod.Spec.Tolerations = p.cfg.SpotTolerations
	}
	return pod, nil
}

// Create makes a pod and its Secret for each instance whose pod does not
// exist yet. The pod is made first; the Secret, owned by it, after (the
// kubelet waits for it), and a pod whose Secret could not be made is
// deleted again.
func (p *Provider) Create(ctx context.Context, instances []provider.Instance) error {
	var errs []error
	seen := map[string]bool{}
	for _, in := range instances {
		if seen[in.ID] {
			continue
		}
		seen[in.ID] = true
		err := ctx.Err()
		if err == nil && !provider.ValidID(in.ID) {
			err = errors.New("invalid instance ID")
		}
		if err == nil {
			err = p.create(ctx, in)
		}
		if err != nil {
			errs = append(errs, &provider.InstanceError{ID: in.ID, Err: err})
		}
	}
	return errors.Join(errs...)
}

func (p *Provider) create(ctx context.Context, in provider.Instance) error {
	secret := map[string][]byte{secretCredential: []byte(in.Agent.Credential)}
	if in.Agent.CAFile != "" {
		ca, err := os.ReadFile(in.Agent.CAFile)
		if err != nil {
			return fmt.Errorf("read CA file: %w", err)
		}
		secret[secretCA] = ca
	}
	for k := range in.Agent.Env {
		if k == EnvCredential || k == EnvCA || len(validation.IsEnvVarName(k)) > 0 {
			return fmt.Errorf("agent environment: invalid name %q", k)
		}
	}
	pod, err := p.pod(in, time.Now().UTC())
	if err != nil {
		return err
	}
	pods := p.client.CoreV1().Pods(p.cfg.Namespace)
	made, err := pods.Create(ctx, pod, metav1.CreateOptions{})
	switch {
	case apierrors.IsAlreadyExists(err):
		return nil
	case err != nil:
		return fmt.Errorf("create pod: %w", err)
	}
	yes := true
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: p.cfg.Namespace, Labels: pod.Labels,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Pod", Name: made.Name, UID: made.UID, Controller: &yes}}},
		Type: corev1.SecretTypeOpaque,
		Data: secret,
	}
	if _, err := p.client.CoreV1().Secrets(p.cfg.Namespace).Create(ctx, s, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		p.release(context.WithoutCancel(ctx), pod.Name)
		return fmt.Errorf("create secret: %w", err)
	}
	return nil
}

// Delete deletes the instances' pods (with their finalizer removed and
// the configured grace period) and Secrets. It does not wait for the
// containers to stop: a pod being deleted by kumo is no longer listed.
func (p *Provider) Delete(ctx context.Context, ids []string) error {
	var errs []error
	for _, id := range slices.Compact(slices.Sorted(slices.Values(ids))) {
		if !provider.ValidID(id) {
			continue
		}
		if err := p.release(ctx, PodName(id)); err != nil {
			errs = append(errs, &provider.InstanceError{ID: id, Err: err})
		}
	}
	return errors.Join(errs...)
}

// release removes pod name's finalizer and deletes it and its Secret.
func (p *Provider) release(ctx context.Context, name string) error {
	pods := p.client.CoreV1().Pods(p.cfg.Namespace)
	pod, err := pods.Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return fmt.Errorf("get pod: %w", err)
	case pod.Labels[LabelOwner] != p.cfg.Owner:
		return nil // another control plane's pod of the same name
	default:
		if i := slices.Index(pod.Finalizers, Finalizer); i >= 0 {
			patch, _ := json.Marshal([]map[string]any{
				{"op": "test", "path": "/metadata/finalizers/" + strconv.Itoa(i), "value": Finalizer},
				{"op": "remove", "path": "/metadata/finalizers/" + strconv.Itoa(i)},
			})
			if _, err := pods.Patch(ctx, name, types.JSONPatchType, patch, metav1.PatchOptions{}); err != nil && !apierrors.IsNotFound(err) {
				return fmt.Errorf("remove finalizer: %w", err)
			}
		}
		grace := int64(p.cfg.Grace / time.Second)
		uid := pod.UID
		err := pods.Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &grace, Preconditions: &metav1.Preconditions{UID: &uid}})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete pod: %w", err)
		}
	}
	err = p.client.CoreV1().Secrets(p.cfg.Namespace).Delete(ctx, name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete secret: %w", err)
	}
	return nil
}

// owned returns the pods of this control plane that kumo has not deleted,
// by instance ID.
func (p *Provider) owned(ctx context.Context) (map[string]*corev1.Pod, error) {
	list, err := p.client.CoreV1().Pods(p.cfg.Namespace).List(ctx, metav1.ListOptions{LabelSelector: p.selector()})
	if err != nil {
		return nil, fmt.Errorf("list pods: %w", err)
	}
	out := map[string]*corev1.Pod{}
	for i := range list.Items {
		pod := &list.Items[i]
		id := pod.Annotations[AnnotationID]
		if id == "" || pod.DeletionTimestamp != nil && !slices.Contains(pod.Finalizers, Finalizer) {
			continue // not kumo's node, or kumo released it
		}
		out[id] = pod
	}
	return out, nil
}

// List reports the pods of this control plane: Starting while Pending,
// Running while the pod runs, Stopped once it ended or is being deleted by
// someone other than kumo (evicted, drained), Failed when it could not
// start (its image cannot be pulled, its Secret is missing).
func (p *Provider) List(ctx context.Context) ([]provider.InstanceStatus, error) {
	pods, err := p.owned(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]provider.InstanceStatus, 0, len(pods))
	for id, pod := range pods {
		st := provider.InstanceStatus{ID: id, Compute: pod.Annotations[AnnotationCompute], Address: pod.Status.PodIP,
			Note: "pod " + p.cfg.Namespace + "/" + pod.Name}
		json.Unmarshal([]byte(pod.Annotations[AnnotationSize]), &st.Size)
		st.Created, _ = time.Parse(time.RFC3339Nano, pod.Annotations[AnnotationCreated])
		if st.Created.IsZero() {
			st.Created = pod.CreationTimestamp.UTC()
		}
		if pod.Spec.NodeName != "" {
			st.Note += " on node " + pod.Spec.NodeName
		}
		st.State, st.Reason = podState(pod)
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b provider.InstanceStatus) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// podState maps a pod's phase and conditions to an instance state.
func podState(pod *corev1.Pod) (provider.State, string) {
	if pod.DeletionTimestamp != nil {
		return provider.StateStopped, "pod " + pod.Name + " is being deleted" + disruption(pod)
	}
	switch pod.Status.Phase {
	case corev1.PodRunning:
		return provider.StateRunning, ""
	case corev1.PodSucceeded:
		return provider.StateStopped, "pod " + pod.Name + " ended"
	case corev1.PodFailed:
		return provider.StateStopped, "pod " + pod.Name + " failed: " + cmp.Or(pod.Status.Reason+" "+pod.Status.Message, "no reason given")
	}
	for _, cs := range pod.Status.ContainerStatuses {
		if w := cs.State.Waiting; w != nil {
			switch w.Reason {
			case "ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError", "CreateContainerError":
				return provider.StateFailed, "pod " + pod.Name + ": " + w.Reason + ": " + w.Message
			}
		}
	}
	return provider.StateStarting, ""
}

// disruption says why the cluster is taking a pod away, from its
// DisruptionTarget condition, or "".
func disruption(pod *corev1.Pod) string {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.DisruptionTarget && c.Status == corev1.ConditionTrue {
			return " (" + strings.TrimSpace(c.Reason+": "+c.Message) + ")"
		}
	}
	return ""
}

// Preempted reports the preemptible pods the cluster is taking away: those
// being deleted by someone other than kumo (an eviction, a drain), those
// the kubelet evicted (phase Failed, reason Evicted), those with a
// DisruptionTarget condition, and those on a Kubernetes node being deleted
// or tainted with one of Config.TerminationTaints. At is when the pod's
// grace period ends, when known.
func (p *Provider) Preempted(ctx context.Context) ([]provider.Preemption, error) {
	pods, err := p.owned(ctx)
	if err != nil {
		return nil, err
	}
	nodes := map[string]*corev1.Node{}
	var out []provider.Preemption
	for id, pod := range pods {
		if pod.Labels[LabelPreemptible] != "true" {
			continue
		}
		var at time.Time
		taken := false
		switch {
		case pod.DeletionTimestamp != nil:
			taken, at = true, pod.DeletionTimestamp.UTC()
		case pod.Status.Phase == corev1.PodFailed && pod.Status.Reason == "Evicted":
			taken = true
		case disruption(pod) != "":
			taken = true
		case pod.Spec.NodeName != "":
			n, ok := nodes[pod.Spec.NodeName]
			if !ok {
				n, err = p.client.CoreV1().Nodes().Get(ctx, pod.Spec.NodeName, metav1.GetOptions{})
				if err != nil {
					n = nil // not allowed to read nodes, or gone: judged by the pod alone
				}
				nodes[pod.Spec.NodeName] = n
			}
			if n != nil && (n.DeletionTimestamp != nil || slices.ContainsFunc(n.Spec.Taints, func(t corev1.Taint) bool {
				return slices.Contains(p.cfg.TerminationTaints, t.Key)
			})) {
				taken = true
				for _, t := range n.Spec.Taints {
					if t.TimeAdded != nil && slices.Contains(p.cfg.TerminationTaints, t.Key) {
						at = t.TimeAdded.UTC().Add(p.cfg.Grace)
					}
				}
			}
		}
		if taken {
			out = append(out, provider.Preemption{ID: id, At: at})
		}
	}
	slices.SortFunc(out, func(a, b provider.Preemption) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}
