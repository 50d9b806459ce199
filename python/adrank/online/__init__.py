"""Online learning: a streaming trainer over dynamic embedding tables and its serving follower.

Glossary: ``learner`` the model trained in small steps as impressions arrive
(:class:`FMLearner`); ``publication`` a numbered folder of per-field deltas and the dense
parameters, written whole (renamed into place); ``follower`` a serving copy that applies each
new publication in place (:class:`DeltaFollower`); ``scorer`` the serving process's hook
(:class:`OnlineScorer`, ``adrank serve --online``) that follows and scores with the learner.
"""

from adrank.online.join import JoinStats, LabelJoiner
from adrank.online.learner import FMLearner, LearnerConfig
from adrank.online.publish import DeltaFollower, Publisher
from adrank.online.serving import OnlineScorer
from adrank.online.stream import ParquetDirectory

__all__ = [
    "DeltaFollower",
    "FMLearner",
    "JoinStats",
    "LabelJoiner",
    "LearnerConfig",
    "OnlineScorer",
    "ParquetDirectory",
    "Publisher",
]
