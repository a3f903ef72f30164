"""Room changes from the network: addresses and handlers (`controller`), the UDP thread
(`server`)."""
