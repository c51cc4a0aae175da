package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"kumo/api"
)

func clusterBody(max int) map[string]any {
	return map[string]any{"properties": map[string]any{"computeType": "AmlCompute", "properties": map[string]any{
		"vmSize": "Standard_D2_v2", "scaleSettings": map[string]any{"maxNodeCount": max}}}}
}

// TestKillDuringCreateLeavesNoHalfMadeCompute kills the server with SIGKILL
// while creates are in flight, restarts it on the same data, and checks that
// every compute ends Succeeded (none stuck in Creating) and that every
// create a client was told about (201/200) exists with a settled operation.
func TestKillDuringCreateLeavesNoHalfMadeCompute(t *testing.T) {
	s := startServer(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const n = 40
	var (
		mu       sync.Mutex
		accepted = map[string]string{} // compute name -> operation URL
		wg       sync.WaitGroup
		first    = make(chan struct{})
		once     sync.Once
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprintf("k%02d", i)
			req := s.base + workspacePath + "/computes/" + name
			status, body := s.request(ctx, "PUT", req, clusterBody(2))
			var c api.ComputeResource
			// A whole answer counts as accepted; one cut off by the kill
			// may or may not have been.
			if (status == 201 || status == 200) && json.Unmarshal(body, &c) == nil && c.Properties != nil {
				mu.Lock()
				accepted[name] = string(c.Properties.ProvisioningState)
				mu.Unlock()
				once.Do(func() { close(first) })
			}
		}()
	}
	select {
	case <-first:
	case <-ctx.Done():
		t.Fatal("no create was accepted")
	}
	s.kill()
	wg.Wait()
	t.Logf("%d creates accepted before SIGKILL", len(accepted))

	s2 := startServer(t, s.dir)
	deadline := time.Now().Add(30 * time.Second)
	for {
		status, body := s2.request(ctx, "GET", workspacePath+"/computes", nil)
		if status != 200 {
			t.Fatalf("list after restart: %d %s", status, body)
		}
		var list api.ComputeList
		if err := json.Unmarshal(body, &list); err != nil {
			t.Fatal(err)
		}
		pending := 0
		seen := map[string]bool{}
		for _, c := range list.Value {
			seen[c.Name] = true
			switch c.Properties.ProvisioningState {
			case api.ProvisioningSucceeded:
			case api.ProvisioningCreating, api.ProvisioningUpdating:
				pending++
			default:
				t.Errorf("compute %s is %s after restart", c.Name, c.Properties.ProvisioningState)
			}
		}
		if pending == 0 {
			for name := range accepted {
				if !seen[name] {
					t.Errorf("compute %s was accepted before the kill but is gone after restart", name)
				}
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d computes still Creating 30s after restart", pending)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(s2.out.String(), "serving on") {
		t.Errorf("restart output: %s", s2.out.String())
	}
}

// TestCtrlCStopsCleanly checks that SIGINT ends kumo with exit status 0 and
// that a restart keeps the data and the client config.
func TestCtrlCStopsCleanly(t *testing.T) {
	s := startServer(t, "")
	ctx := context.Background()
	if status, body := s.request(ctx, "PUT", workspacePath+"/computes/keep", clusterBody(1)); status != 201 {
		t.Fatalf("create: %d %s", status, body)
	}
	if err := s.stop(); err != nil {
		t.Fatalf("kumo exited with %v after Ctrl-C\n%s", err, s.out)
	}
	if !strings.Contains(s.out.String(), "Created the owner API token") {
		t.Errorf("first start did not show the owner token once:\n%s", s.out)
	}
	s2 := startServer(t, s.dir)
	if strings.Contains(s2.out.String(), "Created the owner API token") {
		t.Errorf("second start created another owner token")
	}
	if s2.cfg.Token != s.cfg.Token {
		t.Errorf("restart rewrote the client config")
	}
	if status, body := s2.request(ctx, "GET", workspacePath+"/computes/keep", nil); status != 200 {
		t.Errorf("compute after restart: %d %s", status, body)
	}
}

// TestPlainHTTPRefusedOffLoopback checks that kumo will not send tokens in
// the clear across a network.
func TestPlainHTTPRefusedOffLoopback(t *testing.T) {
	out, err := run(t, t.TempDir(), "up", "--addr", "0.0.0.0:0", "--tls", "off", "--data-dir", t.TempDir())
	if err == nil || !strings.Contains(out, "refusing to serve plain HTTP") {
		t.Fatalf("kumo up --tls off on 0.0.0.0: err %v, output %q", err, out)
	}
}
