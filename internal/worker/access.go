package worker

import (
	"fmt"
	"net/http"

	"github.com/cardwire/cardwire/internal/httpapi"
	"github.com/cardwire/cardwire/internal/workspaces"
)

// access is what a request's token may reach, under the configuration it
// was checked against (one configuration per request, whatever reloads
// meanwhile).
type access struct {
	cfg   *workspaces.Config
	scope workspaces.Scope
}

type accessKey struct{}

// accessOf is the request's access, set by auth.
func accessOf(r *http.Request) access {
	acc, _ := r.Context().Value(accessKey{}).(access)
	return acc
}

// workspaceFor is the workspace a registration or start runs in. With
// WORKSPACES_FILE it must be configured (400) and reached by the token
// (403 forbidden_workspace); it may be left out when only one workspace is
// configured or the token reaches only one. Without the file it is
// whatever the request names, or SEAM_WORKSPACE_ID (the request's
// validation says when neither is set).
func (acc access) workspaceFor(requested string) (string, *httpapi.Error) {
	if acc.cfg.IsSingle() {
		return requested, nil
	}
	if requested == "" {
		reach := acc.cfg.Reachable(acc.scope)
		switch {
		case len(acc.cfg.IDs()) == 1:
			requested = acc.cfg.IDs()[0]
		case len(reach) == 1:
			requested = reach[0]
		default:
			return "", &httpapi.Error{Status: http.StatusBadRequest, Type: "invalid_input",
				Message: fmt.Sprintf("workspace_id is required: %d workspaces are configured and this token reaches %d", len(acc.cfg.IDs()), len(reach))}
		}
	}
	if _, ok := acc.cfg.Workspace(requested); !ok {
		return "", &httpapi.Error{Status: http.StatusBadRequest, Type: "invalid_input",
			Message: fmt.Sprintf("workspace_id %.64q is not a configured workspace", requested)}
	}
	if !acc.scope.Reaches(requested) {
		return "", forbidden(requested)
	}
	return requested, nil
}

func forbidden(ws string) *httpapi.Error {
	return &httpapi.Error{Status: http.StatusForbidden, Type: "forbidden_workspace",
		Message: fmt.Sprintf("this token does not reach workspace %.64q", ws)}
}
