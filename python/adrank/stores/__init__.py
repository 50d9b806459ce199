"""Networked implementations of the control-state seams (:class:`~adrank.pacing.store.PacingStore`,
:class:`~adrank.traffic.TrafficStore`): PostgreSQL, shared by every serving replica."""
