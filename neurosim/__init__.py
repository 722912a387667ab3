"""Spiking-network simulation: Izhikevich neurons and reservoirs, plasticity, dendrites."""
