package catchup

import "context"

// Hold and Release expose the lease to the black-box tests.
func (c *Catchup) Hold(ctx context.Context) (bool, error) { return c.lease.hold(ctx) }
func (c *Catchup) Release()                               { c.release() }
