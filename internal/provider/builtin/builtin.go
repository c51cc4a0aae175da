// Package builtin lists the providers compiled into kumo, by the name a
// region's configuration uses. It is a separate package because the
// providers import package provider.
package builtin

import (
	"kumo/internal/provider"
	"kumo/internal/provider/fake"
	"kumo/internal/provider/kubernetes"
	"kumo/internal/provider/local"
	"kumo/internal/provider/sshhosts"
)

// Providers maps a provider name to its constructor. Adding a provider means
// adding a line here; there is no registration by init.
var Providers = map[string]provider.Factory{
	"fake":       fake.Factory,
	"kubernetes": kubernetes.Factory,
	"local":      local.Factory,
	"sshhosts":   sshhosts.Factory,
}
