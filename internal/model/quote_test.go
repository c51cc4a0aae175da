package model

import (
	"strings"
	"testing"
)

func TestQuote(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"short", "abc", `"abc"`},
		{"escapes", "a\"\n", `"a\"\n"`},
		{"exactly the limit", strings.Repeat("x", MaxQuoted), `"` + strings.Repeat("x", MaxQuoted) + `"`},
		{"long", strings.Repeat("x", 1<<20), `"` + strings.Repeat("x", MaxQuoted) + `"... (1048576 bytes)`},
		// 'é' is two bytes; a cut inside it moves back to its start.
		{"cut on a character boundary", strings.Repeat("x", MaxQuoted-1) + "é" + "yyyy",
			`"` + strings.Repeat("x", MaxQuoted-1) + `"... (69 bytes)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Quote(tt.in); got != tt.want {
				t.Errorf("Quote() = %.120s, want %.120s", got, tt.want)
			}
		})
	}
}

func TestSecretEnvName(t *testing.T) {
	tests := []struct {
		name string
		want bool
	}{
		{"DB_PASSWORD", true},
		{"hf_token", true},
		{"AWS_SECRET_ACCESS_KEY", true},
		{"ApiKey", true},
		{"GOOGLE_APPLICATION_CREDENTIALS", true},
		{"LEARNING_RATE", false},
		{"PATH", false},
		{"EPOCHS", false},
	}
	for _, tt := range tests {
		if got := SecretEnvName(tt.name); got != tt.want {
			t.Errorf("SecretEnvName(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
	env := map[string]string{"DB_PASSWORD": "hunter2", "EPOCHS": "3"}
	got := MaskSecretEnv(env)
	if got["DB_PASSWORD"] != MaskedValue || got["EPOCHS"] != "3" {
		t.Errorf("MaskSecretEnv = %v, want DB_PASSWORD masked and EPOCHS kept", got)
	}
	if env["DB_PASSWORD"] != "hunter2" {
		t.Error("MaskSecretEnv changed its argument")
	}
	if MaskSecretEnv(nil) != nil {
		t.Error("MaskSecretEnv(nil) is not nil")
	}
}
