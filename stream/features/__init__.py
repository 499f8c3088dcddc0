"""The one feature implementation, shared by serving and training (numpy only).

``features(y, spec)`` for a whole clip, ``FeatureBank`` for many live streams; both
run the same kernel, so training and serving see the same numbers.
"""

from stream.features.frontend import FeatureBank, PushResult
from stream.features.offline import features, logmel, mfcc, window_stack, windows
from stream.features.spec import FeatureSpec
from stream.features.windows import Window

__all__ = [
    "FeatureBank",
    "FeatureSpec",
    "PushResult",
    "Window",
    "features",
    "logmel",
    "mfcc",
    "window_stack",
    "windows",
]
