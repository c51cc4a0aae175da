package cli

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"

	"github.com/spf13/cobra"
)

// StudioOptions are the inputs of kumo studio.
type StudioOptions struct {
	commonOptions
	// NoBrowser prints the address without trying to open a browser.
	NoBrowser bool
	// Open opens url in a browser; nil means openBrowser. It returns an
	// error when there is no browser to open.
	Open func(url string) error
}

// NewCmdStudio returns "kumo studio".
func NewCmdStudio(f *Factory, runF func(*StudioOptions) error) *cobra.Command {
	opts := &StudioOptions{commonOptions: f.options()}
	cmd := &cobra.Command{
		Use:   "studio",
		Short: "Open the kumo studio (web UI) in a browser, or print its address",
		Long: `Open the studio of the configured kumo server in a browser, or print its
address when there is no browser (no graphical session, or --no-browser).
Sign in there with an API token.`,
		Args: cobra.NoArgs,
		RunE: runE(f, opts, runF, studioRun),
	}
	cmd.Flags().BoolVar(&opts.NoBrowser, "no-browser", false, "print the address only")
	return cmd
}

func studioRun(opts *StudioOptions) error {
	ws, err := opts.Workspace()
	if err != nil {
		return err
	}
	url := strings.TrimRight(ws.Config().Endpoint, "/") + "/studio/"
	open := opts.Open
	if open == nil {
		open = openBrowser
	}
	if !opts.NoBrowser {
		if err := open(url); err == nil {
			fmt.Fprintf(opts.IO.ErrOut, "Opened the studio in your browser: %s\n", url)
			return nil
		}
	}
	fmt.Fprintln(opts.IO.Out, url)
	return nil
}

// openBrowser starts the system's browser on url, without waiting for it.
// It fails when there is no graphical session or no opener.
func openBrowser(url string) error {
	var name string
	var args []string
	switch {
	case os.Getenv("BROWSER") != "":
		name, args = os.Getenv("BROWSER"), []string{url}
	case runtime.GOOS == "darwin":
		name, args = "open", []string{url}
	case os.Getenv("DISPLAY") != "" || os.Getenv("WAYLAND_DISPLAY") != "":
		name, args = "xdg-open", []string{url}
	default:
		return fmt.Errorf("no graphical session to open a browser in")
	}
	path, err := exec.LookPath(name)
	if err != nil {
		return fmt.Errorf("open browser: %w", err)
	}
	cmd := exec.Command(path, args...)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("open browser: %w", err)
	}
	return cmd.Process.Release()
}
