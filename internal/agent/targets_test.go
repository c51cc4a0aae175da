package agent

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"kumo/internal/agentproto"
)

func TestParseTargets(t *testing.T) {
	tests := []struct {
		list    string
		want    []string // the targets' bases
		wantErr bool
	}{
		{list: "https://10.0.0.1:8443", want: []string{"https://10.0.0.1:8443"}},
		{list: "https://a:8443/, https://b:8443", want: []string{"https://a:8443", "https://b:8443"}},
		{list: "http://a,https://b,https://c/", want: []string{"http://a", "https://b", "https://c"}},
		{list: "https://a,", wantErr: true},
		{list: "https://a,ftp://b", wantErr: true},
		{list: "a:8443", wantErr: true},
	}
	for _, tt := range tests {
		ts, err := parseTargets(tt.list)
		if (err != nil) != tt.wantErr {
			t.Errorf("parseTargets(%q) error = %v, want error %t", tt.list, err, tt.wantErr)
			continue
		}
		var got []string
		for _, tg := range ts {
			got = append(got, tg.base)
			if want := tg.base + agentproto.ConnectPath; tg.connURL.String() != want {
				t.Errorf("parseTargets(%q): connect URL %s, want %s", tt.list, tg.connURL, want)
			}
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("parseTargets(%q) bases (-want +got):\n%s", tt.list, diff)
		}
	}
}
