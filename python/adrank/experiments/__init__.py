"""Experiments: traffic splitting, exploration with logged propensities, the request log,
off-policy evaluation and the A/B report (see the README section "Experiments")."""
