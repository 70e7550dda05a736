"""Make ``type='spark_mm.<Name>'`` resolvable in configs whose scope is mmdet.

spark_mm's registries are children of mmpretrain's. From a detection config
(``default_scope='mmdet'``) mmengine resolves ``spark_mm.X`` only among the
mmdet registry's own children and the root's, so it would not find it; yet
the tools add such types to every config they run (e.g. the atomic
checkpoint hook). The detection configs import this module, which also lists
each spark_mm registry as a child of mmdet's registry of the same kind.
Lookups in the spark_mm and mmpretrain scopes are unchanged.
"""
from mmdet import registry as mmdet_registry
from mmengine.registry import Registry

from .. import registry as spark_registry


def expose_to_mmdet() -> int:
    """Register spark_mm's registries under mmdet's; returns how many."""
    count = 0
    for name, spark in vars(spark_registry).items():
        mmdet = getattr(mmdet_registry, name, None)
        if isinstance(spark, Registry) and isinstance(mmdet, Registry):
            mmdet.children.setdefault(spark.scope, spark)
            count += 1
    return count


expose_to_mmdet()
