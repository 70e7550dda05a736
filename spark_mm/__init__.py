"""SparK masked image modeling for any CNN, as an OpenMMLab project.

Importing the package registers its components (scope ``spark_mm``); it
needs mmpretrain, not mmdet or mmseg. The detection and segmentation parts
register themselves in mmdet's / mmseg's registries when their configs import
``spark_mm.detection`` / ``spark_mm.segmentation``.
"""
from .version import __version__
from . import registry  # noqa: F401  (first: makes mmpretrain's registries complete)
from . import checkpoint, datasets, engine, models  # noqa: F401,E402
from .models import fast  # noqa: F401,E402  (registers the fast-path plug-in)
from .errors import CheckpointError, SparKInputError  # noqa: E402

__all__ = ['__version__', 'CheckpointError', 'SparKInputError']
