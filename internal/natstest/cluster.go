package natstest

import (
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// clusterReadyTimeout bounds the wait for routes, a JetStream meta leader
// and every peer (RunCluster) and for a stream leader (WaitStreamLeader).
const clusterReadyTimeout = 30 * time.Second

// pollInterval is how often cluster state is looked at while waiting: the
// server offers no event for "a leader was elected".
const pollInterval = 20 * time.Millisecond

// Cluster is a JetStream cluster of embedded servers routed to each other on
// loopback, each with its own store, so that replicated streams, leader
// elections and the loss of a node are real.
type Cluster struct {
	// Nodes are the servers, in start order; a stopped node stays in place.
	Nodes []*Server
	// Name is the cluster name every node was given.
	Name string
}

// RunCluster starts n routed JetStream servers on loopback and returns once
// they form a cluster: a JetStream meta leader knows all n peers and every
// node is current. It fails the test, never skips, if that does not happen
// within 30 s. Every node is shut down when the test ends.
func RunCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	if n < 1 {
		t.Fatalf("natstest: cluster of %d nodes", n)
	}
	ports := freePorts(t, n)
	routes := make([]string, n)
	for i, p := range ports {
		routes[i] = fmt.Sprintf("nats-route://127.0.0.1:%d", p)
	}
	c := &Cluster{Name: "cardwire-test"}
	for i := range n {
		opts := jetStreamOptions(t.TempDir())
		opts.ServerName = fmt.Sprintf("n%d", i+1)
		opts.Cluster = server.ClusterOpts{Name: c.Name, Host: "127.0.0.1", Port: ports[i]}
		// Every node lists every node (itself included, which the server
		// ignores), as a static cluster config does.
		opts.Routes = server.RoutesFromStr(strings.Join(routes, ","))
		c.Nodes = append(c.Nodes, run(t, opts))
	}
	c.waitFormed(t)
	return c
}

// Cluster ports are drawn from [clusterPortMin, clusterPortMax), below the
// ephemeral ranges (Linux 32768–60999, macOS and Windows 49152–65535) that
// the OS hands out for port-0 listeners and outgoing connections: a port
// released by freePorts could otherwise be taken by a node's own client
// listener or route dial before the node meant to listen on it starts
// (nats-server's own cluster tests avoid that range for the same reason).
const (
	clusterPortMin = 12000
	clusterPortMax = 32000
)

// freePorts picks n distinct loopback ports that are free now, so that
// every node's route list can name every cluster port before any node
// starts. A port taken by another process in between fails the test when
// the node cannot listen; it does not hang it.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	ports := make([]int, 0, n)
	var held []net.Listener
	defer func() {
		for _, l := range held {
			_ = l.Close()
		}
	}()
	for tries := 0; len(ports) < n; tries++ {
		if tries == 1000 {
			t.Fatalf("natstest: no %d free cluster ports in [%d, %d)", n, clusterPortMin, clusterPortMax)
		}
		p := clusterPortMin + rand.IntN(clusterPortMax-clusterPortMin)
		// Held until all are picked, so the same port is not picked twice.
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		held = append(held, l)
		ports = append(ports, p)
	}
	return ports
}

// waitFormed waits until a running node is the JetStream meta leader, it
// knows every node as a peer, and every running node is current with the
// meta group: only then can a replicated stream be placed on all nodes.
func (c *Cluster) waitFormed(t testing.TB) {
	t.Helper()
	ok := poll(clusterReadyTimeout, func() bool {
		leader := c.MetaLeader()
		if leader == nil || len(leader.JetStreamClusterPeers()) != len(c.Nodes) {
			return false
		}
		for _, s := range c.Nodes {
			if s.Running() && !s.JetStreamIsCurrent() {
				return false
			}
		}
		return true
	})
	if !ok {
		peers := 0
		if leader := c.MetaLeader(); leader != nil {
			peers = len(leader.JetStreamClusterPeers())
		}
		t.Fatalf("natstest: cluster of %d not formed within %s (meta leader: %v, peers: %d)",
			len(c.Nodes), clusterReadyTimeout, c.MetaLeader() != nil, peers)
	}
}

// poll calls cond every pollInterval until it reports true (true) or
// timeout passes (false).
func poll(timeout time.Duration, cond func() bool) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		if cond() {
			return true
		}
		select {
		case <-deadline.C:
			return cond()
		case <-tick.C:
		}
	}
}

// ClientURLs returns every node's client URL, in node order.
func (c *Cluster) ClientURLs() []string {
	urls := make([]string, len(c.Nodes))
	for i, s := range c.Nodes {
		urls[i] = s.ClientURL()
	}
	return urls
}

// URL returns every node's client URL, comma-separated, as NATS_URL takes
// them.
func (c *Cluster) URL() string { return strings.Join(c.ClientURLs(), ",") }

// MetaLeader returns the running node that leads the JetStream meta group,
// or nil while there is none.
func (c *Cluster) MetaLeader() *Server {
	for _, s := range c.Nodes {
		if s.Running() && s.JetStreamIsLeader() {
			return s
		}
	}
	return nil
}

// StreamLeader returns the index of the running node that leads stream (in
// the global account, the one clients without credentials use), or -1
// while there is none.
func (c *Cluster) StreamLeader(stream string) int {
	for i, s := range c.Nodes {
		if s.Running() && s.JetStreamIsStreamLeader(server.DEFAULT_GLOBAL_ACCOUNT, stream) {
			return i
		}
	}
	return -1
}

// ConsumerLeader returns the index of the running node that leads consumer
// on stream (in the global account), or -1 while there is none.
func (c *Cluster) ConsumerLeader(stream, consumer string) int {
	for i, s := range c.Nodes {
		if s.Running() && s.JetStreamIsConsumerLeader(server.DEFAULT_GLOBAL_ACCOUNT, stream, consumer) {
			return i
		}
	}
	return -1
}

// WaitStreamLeader waits until a running node leads stream and returns its
// index; it fails the test if none does within 30 s. After a node is
// stopped this is the wait for the election.
func (c *Cluster) WaitStreamLeader(t testing.TB, stream string) int {
	t.Helper()
	leader := -1
	if !poll(clusterReadyTimeout, func() bool { leader = c.StreamLeader(stream); return leader >= 0 }) {
		t.Fatalf("natstest: no leader for stream %s within %s", stream, clusterReadyTimeout)
	}
	return leader
}

// Stop shuts node i down and waits until it has stopped; its clients are
// disconnected and the other nodes elect new leaders for what it led.
func (c *Cluster) Stop(i int) { c.Nodes[i].Stop() }
