"""spark_mm's registries: children of mmpretrain's, scope ``spark_mm``.

Configs with ``default_scope = 'spark_mm'`` find our components first and
everything else (ResNet, ImageNet, Lamb, ...) in mmpretrain, its parent.
``type='SparK'`` therefore means our SparK, while mmpretrain's own stays
reachable as ``type='mmpretrain.SparK'`` (the benchmark compares the two).
Backbones of other packages are reachable with their scope prefix, e.g.
``type='mmdet.ResNet'``, and our components from any other scope (an mmdet
config) as ``type='spark_mm.<Name>'``.
"""
from mmengine.registry import Registry
from mmpretrain import registry as mmpretrain_registry
from mmpretrain.utils import register_all_modules

# A child registry looks into its parent's table without importing the
# parent's modules first, so mmpretrain's components must be registered now.
register_all_modules(init_default_scope=False)


class _ScopeEntry(Registry):
    """Our scope as a direct child of mmengine's root registry.

    mmengine resolves a scoped key (``'spark_mm.X'``) asked of another
    package's registry (mmdet's, mmseg's) among the root registry's direct
    children only, and ours hangs under mmpretrain's. This entry (built with
    the public ``parent`` argument) answers for our scope there and delegates
    every lookup to our registry.
    """

    def __init__(self, registry: Registry):
        super().__init__(registry.name, parent=registry.root,
                         scope=registry.scope)
        self.registry = registry

    def get(self, key: str):
        return self.registry.get(key)


def _child(parent: Registry, location: str = None) -> Registry:
    registry = Registry(
        parent.name,
        parent=parent,
        scope='spark_mm',
        locations=[location] if location else [])
    _ScopeEntry(registry)
    return registry


MODELS = _child(mmpretrain_registry.MODELS, 'spark_mm.models')
DATASETS = _child(mmpretrain_registry.DATASETS, 'spark_mm.datasets')
TRANSFORMS = _child(mmpretrain_registry.TRANSFORMS, 'spark_mm.datasets')
HOOKS = _child(mmpretrain_registry.HOOKS, 'spark_mm.engine')
OPTIM_WRAPPERS = _child(mmpretrain_registry.OPTIM_WRAPPERS, 'spark_mm.engine')
OPTIM_WRAPPER_CONSTRUCTORS = _child(
    mmpretrain_registry.OPTIM_WRAPPER_CONSTRUCTORS, 'spark_mm.engine')
OPTIMIZERS = _child(mmpretrain_registry.OPTIMIZERS)
PARAM_SCHEDULERS = _child(mmpretrain_registry.PARAM_SCHEDULERS)
RUNNERS = _child(mmpretrain_registry.RUNNERS)
RUNNER_CONSTRUCTORS = _child(mmpretrain_registry.RUNNER_CONSTRUCTORS)
LOOPS = _child(mmpretrain_registry.LOOPS)
DATA_SAMPLERS = _child(mmpretrain_registry.DATA_SAMPLERS)
METRICS = _child(mmpretrain_registry.METRICS)
EVALUATORS = _child(mmpretrain_registry.EVALUATORS)
VISUALIZERS = _child(mmpretrain_registry.VISUALIZERS)
VISBACKENDS = _child(mmpretrain_registry.VISBACKENDS)
LOG_PROCESSORS = _child(mmpretrain_registry.LOG_PROCESSORS)
WEIGHT_INITIALIZERS = _child(mmpretrain_registry.WEIGHT_INITIALIZERS)
MODEL_WRAPPERS = _child(mmpretrain_registry.MODEL_WRAPPERS)
TASK_UTILS = _child(mmpretrain_registry.TASK_UTILS)
