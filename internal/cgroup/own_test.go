package cgroup

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestOwnProcsFiles(t *testing.T) {
	tests := []struct {
		name      string
		cgroup    string
		mountinfo string // %D is replaced by the temp dir
		want      []string
	}{
		{
			name:   "v1 hierarchies, a sub-tree mount, v2 and a named one",
			cgroup: "9:name=systemd:/\n4:memory:/outer/inner\n2:cpu,cpuacct:/node\n0::/svc\n",
			mountinfo: "31 30 0:28 / %D/cpu rw - cgroup cgroup rw,cpu,cpuacct\n" +
				"34 30 0:31 /outer %D/memory rw - cgroup cgroup rw,memory\n" +
				"35 30 0:32 / %D/systemd rw - cgroup cgroup rw,xattr,name=systemd\n" +
				"40 30 0:37 / %D/unified rw - cgroup2 cgroup2 rw\n",
			want: []string{"cpu/node/cgroup.procs", "memory/inner/cgroup.procs", "systemd/cgroup.procs", "unified/svc/cgroup.procs"},
		},
		{
			name:      "a hierarchy that is not mounted",
			cgroup:    "4:memory:/a\n",
			mountinfo: "31 30 0:28 / %D/cpu rw - cgroup cgroup rw,cpu\n",
			want:      nil,
		},
		{
			name:      "a group outside the mounted sub-tree",
			cgroup:    "4:memory:/elsewhere\n",
			mountinfo: "34 30 0:31 /outer %D/memory rw - cgroup cgroup rw,memory\n",
			want:      nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := t.TempDir()
			cg, mi := filepath.Join(d, "cgroup"), filepath.Join(d, "mountinfo")
			if err := os.WriteFile(cg, []byte(tt.cgroup), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(mi, []byte(strings.ReplaceAll(tt.mountinfo, "%D", d)), 0o644); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, f := range ownProcsFiles(cg, mi) {
				rel, _ := filepath.Rel(d, f)
				got = append(got, rel)
			}
			slices.Sort(got)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ownProcsFiles (-want +got):\n%s", diff)
			}
		})
	}
}
