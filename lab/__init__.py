"""The test lab: network-namespace topologies joined by veth, echo servers and clients,
the BPF_PROG_TEST_RUN harness and the Kubernetes API emulator. Used by the tests,
bench/, the demo and the VM tier; part of the checkout, never shipped or imported by the
product."""
