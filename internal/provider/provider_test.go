package provider

import (
	"errors"
	"fmt"
	"testing"
)

func TestValidID(t *testing.T) {
	tests := []struct {
		id   string
		want bool
	}{
		{"node-0001", true},
		{"a.b_c-D9", true},
		{"", false},
		{".", false},
		{"..", false},
		{"a/b", false},
		{"a b", false},
		{string(make([]byte, 129)), false},
	}
	for _, tt := range tests {
		if got := ValidID(tt.id); got != tt.want {
			t.Errorf("ValidID(%q) = %v, want %v", tt.id, got, tt.want)
		}
	}
}

func TestErrors(t *testing.T) {
	ce := &CapacityError{Size: Size{Name: "STANDARD_NC6"}, Resource: "gpu", Need: 1, Free: 0, Total: 0}
	err := fmt.Errorf("create: %w", errors.Join(&InstanceError{ID: "n1", Err: ce}))
	if got, want := err.Error(), "create: instance n1: insufficient gpu for size STANDARD_NC6: need 1 GPUs, 0 GPUs free of 0"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	var got *CapacityError
	if !errors.As(err, &got) || got != ce {
		t.Errorf("errors.As did not find the CapacityError in %v", err)
	}
}
