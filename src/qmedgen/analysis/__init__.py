"""Jacobian spectra, latent geometry, and ansatz trainability/expressibility."""
