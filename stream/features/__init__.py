"""The one feature implementation, shared by serving and training (numpy only)."""

from stream.features.spec import FeatureSpec

__all__ = ["FeatureSpec"]
