// Package servercmd holds the commands that run kumo's own processes
// rather than talk to a server through the SDK: "kumo up" (the control
// plane), "kumo agent" (a node agent), the hidden "kumo ssh-helper" that a
// node agent's SSH server runs, and "kumo admin" (backup, restore, migrate
// and leader, which work on the control plane's store on its host).
//
// cmd/kumo hands Commands to cli.Execute, which adds them to the root
// command beside the client commands, so that internal/cli never imports
// the server, agent or store packages.
package servercmd
