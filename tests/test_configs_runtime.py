"""Every config of ours states the safety hooks it runs with.

tools/train.py adds no hooks of its own: what a config file says is what runs.
Each runnable config under configs/ (not the _base_ fragments) must resolve, in
its own default scope and through the real registries, its checkpoint hook to
spark_mm's AtomicCheckpointHook and hold NanGuardHook, StepSeedHook and
PreemptionHook once each. The expected classes come from spark_mm's
registry, not from names.
"""
import ast
import glob
import os

import pytest
from mmengine.config import Config
from mmengine.registry import HOOKS as ROOT_HOOKS
from mmengine.utils import import_modules_from_strings

import spark_mm  # noqa: F401  (registers spark_mm's components)
from spark_mm.registry import HOOKS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_ROOT = os.path.join(ROOT, 'configs')
CONFIGS = sorted(
    os.path.relpath(path, CONFIG_ROOT)
    for path in glob.glob(os.path.join(CONFIG_ROOT, '**', '*.py'),
                          recursive=True)
    if '_base_' not in os.path.relpath(path, CONFIG_ROOT).split(os.sep))


def load(relpath):
    cfg = Config.fromfile(os.path.join(CONFIG_ROOT, relpath))
    if cfg.get('custom_imports'):
        import_modules_from_strings(**cfg.custom_imports)
    return cfg


def resolve(hook_cfg, default_scope):
    """The class the runner builds for ``hook_cfg``: mmengine's HOOKS.build
    switches to the config's scope (or the dict's ``_scope_``) and looks the
    type up there."""
    scope = hook_cfg.get('_scope_', default_scope)
    with ROOT_HOOKS.switch_scope_and_registry(scope) as registry:
        return registry.get(hook_cfg['type'])


def test_every_config_folder_is_covered():
    assert len(CONFIGS) >= 50
    assert {path.split(os.sep)[0] for path in CONFIGS} == {
        'imagenet', 'mask_rcnn', 'spark', 'upernet'}


@pytest.mark.parametrize('relpath', CONFIGS)
def test_config_states_the_safety_hooks(relpath):
    cfg = load(relpath)
    # mmdet's convention: the lr is the config's; --auto-scale-lr rescales it
    assert not cfg.get('auto_scale_lr', {}).get('enable', False)
    scope = cfg.get('default_scope')
    atomic = HOOKS.get('AtomicCheckpointHook')
    guards = [HOOKS.get('NanGuardHook'), HOOKS.get('StepSeedHook'),
              HOOKS.get('PreemptionHook')]
    assert atomic is not None and None not in guards

    checkpoint = cfg.get('default_hooks', {}).get('checkpoint')
    assert checkpoint is not None, f'{relpath}: no checkpoint hook'
    assert resolve(checkpoint, scope) is atomic, (
        f'{relpath}: checkpoint hook {checkpoint["type"]!r} in scope {scope!r}')

    hooks = cfg.get('custom_hooks') or []
    resolved = [resolve(hook, scope) for hook in hooks]
    unknown = [hook['type'] for hook, cls in zip(hooks, resolved) if cls is None]
    assert not unknown, f'{relpath}: hooks not found in scope {scope!r}: {unknown}'
    for guard in guards:
        assert resolved.count(guard) == 1, (
            f'{relpath}: {guard.__name__} x{resolved.count(guard)} in '
            f'{[hook["type"] for hook in hooks]}')


def test_schedule_fragment_states_the_official_schedule_without_imports():
    """_base_/lamb_1600e.py is plain data (no import, so no `_base_ = []`
    trick) and equals what spark_param_scheduler gives for 1600/40 epochs."""
    from spark_mm.engine.schedulers import spark_param_scheduler
    path = os.path.join(CONFIG_ROOT, 'spark', '_base_', 'lamb_1600e.py')
    with open(path) as f:
        tree = ast.parse(f.read())
    assert not [node for node in ast.walk(tree)
                if isinstance(node, (ast.Import, ast.ImportFrom))]
    cfg = Config.fromfile(path)
    assert '_base_' not in cfg
    assert cfg.param_scheduler == spark_param_scheduler(1600, 40)
    assert cfg.train_cfg.max_epochs == cfg.max_epochs == 1600
    for name in ('r50_pretrain.py', 'convnext_s_pretrain.py',
                 'convnext_l_pretrain.py'):
        assert load(os.path.join('spark', name)).param_scheduler == (
            spark_param_scheduler(1600, 40))


def test_convnext_pretraining_is_standalone():
    """convnext_s_pretrain.py stands on the shared fragments only, not on the
    ResNet-50 config; B and L inherit it."""
    def bases(name):
        with open(os.path.join(CONFIG_ROOT, 'spark', name)) as f:
            tree = ast.parse(f.read())
        base, = [node.value for node in tree.body
                 if isinstance(node, ast.Assign)
                 and node.targets[0].id == '_base_']
        return ast.literal_eval(base)
    assert all(path.startswith('_base_/') for path in bases(
        'convnext_s_pretrain.py'))
    for name in ('convnext_b_pretrain.py', 'convnext_l_pretrain.py'):
        assert bases(name) == ['convnext_s_pretrain.py']
