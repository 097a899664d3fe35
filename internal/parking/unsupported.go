//go:build !(linux && (amd64 || arm64))

package parking

import (
	"errors"
	"fmt"
	"runtime"
)

func newPoller() (poller, error) {
	return nil, fmt.Errorf("parking on %s/%s: %w", runtime.GOOS, runtime.GOARCH, errors.ErrUnsupported)
}
