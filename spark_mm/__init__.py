"""SparK masked image modeling for any CNN, as an OpenMMLab project.

Importing the package registers its components (scope ``spark_mm``); it
needs mmpretrain, not mmdet or mmseg. The detection and segmentation parts
register themselves in mmdet's / mmseg's registries when their configs import
``spark_mm.detection`` / ``spark_mm.segmentation``.
"""
import importlib.util

from .version import __version__
from . import registry  # noqa: F401  (first: makes mmpretrain's registries complete)
from . import checkpoint, datasets, engine, models  # noqa: F401,E402
# The fast path is a plug-in (spark_mm/models/fast): it registers itself where
# it is installed; without it SparK runs as the plain algorithm.
if importlib.util.find_spec('spark_mm.models.fast') is not None:
    from .models import fast  # noqa: F401
from .errors import CheckpointError, SparKInputError  # noqa: E402

__all__ = ['__version__', 'CheckpointError', 'SparKInputError']
