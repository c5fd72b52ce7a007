// Package netutil holds small network helpers shared by the commands that
// start servers of their own on loopback (the quick start, the benchmark).
package netutil

import "net"

// FreePorts returns n loopback TCP ports free at the moment, all different.
// Another program could take one before it is used; on a development or
// benchmark machine that is rare, and the failure is clear.
func FreePorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	ports := make([]int, n)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, l)
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports, nil
}
