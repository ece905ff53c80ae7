"""Posterior analysis of a trained VAE: PSIS diagnostics of the guide, ArviZ export,
posterior predictive checks, MCMC refinement of latents, figures and a report."""
