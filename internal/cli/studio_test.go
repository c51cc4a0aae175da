package cli

import (
	"errors"
	"strings"
	"testing"
)

func TestStudioOpensOrPrints(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		openErr    error
		wantOpened bool
		wantOut    bool // the address is printed on stdout
	}{
		{"opens a browser", nil, nil, true, false},
		{"no browser: prints", nil, errors.New("no graphical session"), false, true},
		{"--no-browser prints", []string{"--no-browser"}, nil, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEnv(t)
			var opened string
			cmd := NewCmdStudio(e.f, func(o *StudioOptions) error {
				o.Open = func(url string) error {
					if tt.openErr == nil {
						opened = url
					}
					return tt.openErr
				}
				return studioRun(o)
			})
			cmd.SetArgs(tt.args)
			if err := cmd.Execute(); err != nil {
				t.Fatal(err)
			}
			want := e.srv.URL + "/studio/"
			if got := opened == want; got != tt.wantOpened {
				t.Errorf("opened %q, want opened %v", opened, tt.wantOpened)
			}
			if got := strings.TrimSpace(e.out.String()); (got == want) != tt.wantOut {
				t.Errorf("stdout %q, want the address printed: %v", got, tt.wantOut)
			}
		})
	}
}
