package model

import (
	"errors"
	"strings"
	"testing"
)

func TestSubstituteBindings(t *testing.T) {
	tests := []struct {
		name    string
		command string
		inputs  map[string]string
		outputs map[string]bool
		want    string
		wantErr string // substring; "" for success
	}{
		{name: "none", command: "echo hi", want: "echo hi"},
		{name: "input", command: "train --lr ${{inputs.lr}}", inputs: map[string]string{"lr": "0.1"}, want: "train --lr 0.1"},
		{name: "output", command: "train --out ${{outputs.model}}/m.pt", outputs: map[string]bool{"model": true}, want: "train --out outputs/model/m.pt"},
		{name: "spaces inside braces", command: "a ${{ outputs.model }} ${{ inputs.n }}", inputs: map[string]string{"n": "3"}, outputs: map[string]bool{"model": true},
			want: "a outputs/model 3"},
		{name: "twice", command: "ls ${{outputs.o}}; du ${{outputs.o}}", outputs: map[string]bool{"o": true}, want: "ls outputs/o; du outputs/o"},
		{name: "an input's value is not substituted again", command: "echo ${{inputs.x}}", inputs: map[string]string{"x": "${{outputs.o}}"},
			want: "echo ${{outputs.o}}"},
		{name: "undeclared output", command: "train --out ${{outputs.model}} ${{outputs.ckpt}}", wantErr: "refers to outputs that properties.outputs does not declare: ckpt, model"},
		{name: "missing input", command: "train ${{inputs.lr}}", outputs: map[string]bool{"lr": true}, wantErr: "refers to inputs that properties.inputs does not give: lr"},
		{name: "an output is not an input", command: "train ${{outputs.lr}}", inputs: map[string]string{"lr": "1"}, wantErr: "does not declare: lr"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := SubstituteBindings(tt.command, tt.inputs, tt.outputs)
			if tt.wantErr != "" {
				var fe *FieldError
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.As(err, &fe) {
					t.Fatalf("SubstituteBindings error = %v, want a *FieldError containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("SubstituteBindings = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestValidateOutput(t *testing.T) {
	tests := []struct {
		name, output, typ, mode string
		wantErr                 string // substring; "" for success
	}{
		{name: "defaults", output: "model"},
		{name: "yaml spelling", output: "model", typ: "uri_folder", mode: "rw_mount"},
		{name: "rest spelling", output: "model_2", typ: "UriFolder", mode: "ReadWriteMount"},
		{name: "upload", output: "m", mode: "upload"},
		{name: "uri_file", output: "m", typ: "uri_file", wantErr: `type "uri_file": kumo supports only uri_folder outputs`},
		{name: "mlflow", output: "m", typ: "mlflow_model", wantErr: "supports only uri_folder"},
		{name: "direct mode", output: "m", mode: "direct", wantErr: `mode "direct": kumo supports rw_mount and upload`},
		{name: "bad name", output: "a/b", wantErr: `output name "a/b" is invalid`},
		{name: "empty name", output: "", wantErr: "is invalid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateOutput(tt.output, tt.typ, tt.mode)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("ValidateOutput = %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("ValidateOutput = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestParseJobStatus(t *testing.T) {
	for in, want := range map[string]JobStatus{"queued": JobQueued, "RUNNING": JobRunning, "Cancelled": JobCanceled, "canceled": JobCanceled, "NotStarted": JobNotStarted} {
		if got, ok := ParseJobStatus(in); !ok || got != want {
			t.Errorf("ParseJobStatus(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
	if got, ok := ParseJobStatus("Done"); ok {
		t.Errorf("ParseJobStatus(Done) = %q, true; want false", got)
	}
}

func TestCheckpointDir(t *testing.T) {
	tests := []struct {
		value   string
		want    string
		wantErr bool
	}{
		{"", "", false},
		{"ckpt", "ckpt", false},
		{"./state/ckpt/", "state/ckpt", false},
		{"/abs", "", true},
		{"../up", "", true},
		{".", "", true},
		{"outputs/ckpt", "", true},
		{"logs", "", true},
	}
	for _, tt := range tests {
		got, err := CheckpointDir(map[string]string{CheckpointEnv: tt.value})
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("CheckpointDir(%q) = %q, %v; want %q, error %v", tt.value, got, err, tt.want, tt.wantErr)
		}
		if err := ValidateEnv(map[string]string{CheckpointEnv: tt.value}); (err != nil) != tt.wantErr {
			t.Errorf("ValidateEnv(%q) = %v, want error %v", tt.value, err, tt.wantErr)
		}
	}
}
