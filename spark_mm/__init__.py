"""SparK masked image modeling for any CNN, as an OpenMMLab project.

Importing the package registers its components (scope ``spark_mm``).
"""
from .version import __version__
from . import registry  # noqa: F401  (first: makes mmpretrain's registries complete)
from . import datasets, engine, models  # noqa: F401,E402

__all__ = ['__version__']
