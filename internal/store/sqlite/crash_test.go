package sqlite

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kumo/internal/model"
)

// crashEnv, when set, makes TestCrashKeepsCommits act as the child that
// writes to the named file and is then killed.
const crashEnv = "KUMO_SQLITE_CRASH_CHILD"

const crashWrites = 20

func crashWorkspace(i int) model.Workspace {
	name := fmt.Sprintf("ws%02d", i)
	return model.Workspace{
		ID:           "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/" + name,
		Subscription: "s", ResourceGroup: "rg", Name: name, Location: "local",
	}
}

// TestCrashKeepsCommits kills (SIGKILL) a process that has committed writes
// and never closed its store, then checks that every write is there.
func TestCrashKeepsCommits(t *testing.T) {
	if path := os.Getenv(crashEnv); path != "" {
		crashChild(t, path)
		return
	}
	if testing.Short() {
		t.Skip("starts a child process")
	}
	path := filepath.Join(t.TempDir(), "kumo.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashKeepsCommits$")
	cmd.Env = append(os.Environ(), crashEnv+"="+path)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start child: %v", err)
	}
	sc := bufio.NewScanner(stdout)
	done := false
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == "committed" {
			done = true
			break
		}
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatalf("kill child: %v", err)
	}
	_ = cmd.Wait()
	if !done {
		t.Fatal("child exited before committing")
	}

	s := openTest(t, path)
	for i := range crashWrites {
		w := crashWorkspace(i)
		if _, err := s.WorkspaceGet(t.Context(), w.ID); err != nil {
			t.Errorf("WorkspaceGet(%s) after crash: %v", w.Name, err)
		}
	}
}

// crashChild commits crashWrites workspaces, says so, and waits to be
// killed without closing the store.
func crashChild(t *testing.T, path string) {
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	for i := range crashWrites {
		if err := s.WorkspaceCreate(t.Context(), crashWorkspace(i)); err != nil {
			t.Fatalf("WorkspaceCreate: %v", err)
		}
	}
	fmt.Println("committed")
	time.Sleep(time.Hour) // until the parent kills us; a select{} could end in a deadlock panic
	t.Fatal("not killed")
}
