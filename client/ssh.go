package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"kumo/api"
)

// DialSSH opens a tunnel to the SSH server of one of the cluster's nodes,
// through the control plane (GET .../nodes/{nodeID}/ssh with an Upgrade
// to api.SSHUpgrade): what is written to the returned stream reaches the
// node's SSH server, and what it sends is read from it. It needs a token
// of role contributor or higher. The caller closes the stream.
func (ct *ComputeTarget) DialSSH(ctx context.Context, nodeID string) (io.ReadWriteCloser, error) {
	u, err := ct.ws.resolve(ct.ws.computePath(ct.name) + "/nodes/" + url.PathEscape(nodeID) + "/ssh")
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "kumo-go-client")
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", api.SSHUpgrade)
	if ct.ws.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+ct.ws.cfg.Token)
	}
	res, err := ct.ws.hc.Do(req)
	if err != nil {
		return nil, err
	}
	if res.StatusCode == http.StatusSwitchingProtocols {
		rwc, ok := res.Body.(io.ReadWriteCloser)
		if !ok {
			res.Body.Close()
			return nil, errors.New("ssh tunnel: the HTTP client cannot upgrade connections")
		}
		return rwc, nil
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("GET %s: read answer: %w", u.Path, err)
	}
	if res.StatusCode >= 200 && res.StatusCode <= 299 {
		return nil, fmt.Errorf("GET %s: the server answered %s, not 101 Switching Protocols", u.Path, res.Status)
	}
	return nil, newError(res.StatusCode, res.Header, b)
}
