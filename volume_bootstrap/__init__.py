"""Cold start of a worker on the network volume."""
