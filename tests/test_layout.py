"""The package's shape: no import cycle, dependencies between folders in one
direction (imports inside functions included), a top level that is only its
face, ``import spark_mm`` without mmdet/mmseg, scoped names through the public
registry API, one user-error type."""
import ast
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, 'spark_mm')


def _module_name(path: str) -> str:
    relative = os.path.relpath(path, ROOT)[:-len('.py')].replace(os.sep, '.')
    return relative[:-len('.__init__')] if relative.endswith('.__init__') else relative


def _is_package(module: str) -> bool:
    return os.path.isfile(os.path.join(ROOT, *module.split('.'), '__init__.py'))


def _resolve(module: str, node: ast.ImportFrom) -> list:
    """The modules a ``from ... import ...`` in ``module`` loads (absolute names)."""
    if node.level:
        base = module.split('.')
        if not _is_package(module):
            base = base[:-1]
        base = base[:len(base) - (node.level - 1)]
        target = '.'.join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ''
    found = [target]
    for alias in node.names:  # `from package import submodule`
        candidate = f'{target}.{alias.name}'
        if os.path.isfile(os.path.join(ROOT, *candidate.split('.')) + '.py') or \
                _is_package(candidate):
            found.append(candidate)
    return found


def imports_of(module: str, source: str) -> list:
    """(imported module, line) of every import in ``source``, at module level
    or inside functions, classes and ``try`` blocks."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            found += [(target, node.lineno) for target in _resolve(module, node)]
        elif isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
    return found


def package_imports() -> dict:
    """module -> [(imported module, line)] for every module of spark_mm."""
    found = {}
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith('.py'):
                path = os.path.join(folder, name)
                with open(path) as file:
                    found[_module_name(path)] = imports_of(_module_name(path),
                                                           file.read())
    return found


def import_graph() -> dict:
    """module -> the spark_mm modules it imports (anywhere in its code)."""
    return {module: {target for target, _ in targets
                     if target.split('.')[0] == 'spark_mm'} - {module}
            for module, targets in package_imports().items()}


def find_cycle(graph: dict):
    state, stack = {}, []

    def visit(node):
        state[node] = 'open'
        stack.append(node)
        for child in sorted(graph.get(node, ())):
            if state.get(child) == 'open':
                return stack[stack.index(child):] + [child]
            if child not in state:
                cycle = visit(child)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 'done'
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_cycle_finder_finds_a_planted_cycle():
    graph = import_graph()
    assert find_cycle(graph) is None, ' -> '.join(find_cycle(graph))
    graph['spark_mm.models.sparse.bn_statistics'] = {'spark_mm.models.sparse.batch_norm'}
    cycle = find_cycle(graph)
    assert cycle and 'spark_mm.models.sparse.batch_norm' in cycle


def test_graph_sees_relative_imports():
    graph = import_graph()
    assert 'spark_mm.models.sparse.bn_statistics' in graph['spark_mm.models.sparse.batch_norm']
    assert 'spark_mm.errors' in graph['spark_mm.checkpoint.loading']


def test_graph_sees_imports_inside_functions():
    source = ('def build():\n'
              '    from .fast import resnet_rows\n'
              '    import tools.common.run_config\n')
    found = imports_of('spark_mm.models.spark', source)
    assert ('spark_mm.models.fast', 2) in found
    assert ('tools.common.run_config', 3) in found
    # a real one: mmdet, optional, is imported where it is needed
    assert 'mmdet.models.backbones' in {
        target for target, _ in package_imports()['spark_mm.checkpoint.load_checks']}


TOOLS = ('tools', ) + tuple(  # tools/ scripts, importable as top-level names
    name[:-len('.py')] for name in os.listdir(os.path.join(ROOT, 'tools'))
    if name.endswith('.py')) + ('common', )
TASKS = ('spark_mm.engine', 'spark_mm.datasets', 'spark_mm.classification',
         'spark_mm.detection', 'spark_mm.segmentation',
         'spark_mm.visualization', 'spark_mm.apis')
# (importers, importers exempted, modules they must not import, why)
FORBIDDEN = {
    'library-imports-tools': (
        'spark_mm', (), TOOLS,
        'the library never imports the command-line tools'),
    'core-imports-fast': (
        'spark_mm.models', ('spark_mm.models.fast', ), ('spark_mm.models.fast', ),
        'the plain SparK stands alone; fast/ is a plug-in that depends on it'),
    'models-import-tasks': (
        'spark_mm.models', (), TASKS,
        'models are the algorithm; training, data and tasks use them, '
        'never the reverse'),
    'checkpoint-imports-engine': (
        'spark_mm.checkpoint', (), ('spark_mm.engine', ),
        'checkpoints are read and written without the training machinery'),
}


def _within(module: str, prefixes) -> bool:
    return any(module == prefix or module.startswith(prefix + '.')
               for prefix in prefixes)


def forbidden_imports(rule: str, imports: dict) -> list:
    """'path:line imports target' for every import that breaks ``rule``."""
    importers, exempt, targets, _ = FORBIDDEN[rule]
    offences = []
    for module, found in sorted(imports.items()):
        if not _within(module, (importers, )) or _within(module, exempt):
            continue
        path = module.replace('.', '/') + (
            '/__init__.py' if _is_package(module) else '.py')
        offences += [f'{path}:{line} imports {target}'
                     for target, line in found if _within(target, targets)]
    return offences


def test_rules_catch_a_planted_offence():
    planted = {'spark_mm.models.spark': imports_of(
        'spark_mm.models.spark', 'def f():\n    from ..engine import hooks\n')}
    assert forbidden_imports('models-import-tasks', planted) == [
        'spark_mm/models/spark.py:2 imports spark_mm.engine']
    assert forbidden_imports('checkpoint-imports-engine', planted) == []


@pytest.mark.parametrize('rule', list(FORBIDDEN))
def test_dependencies_point_one_way(rule):
    offences = forbidden_imports(rule, package_imports())
    assert not offences, (f'{FORBIDDEN[rule][3]}: ' + '; '.join(offences))


def test_spark_runs_with_the_fast_path_deleted(tmp_path):
    """A copy of the package without models/fast: the plain algorithm builds
    and trains; asking for the fast path is one clear error."""
    shutil.copytree(PACKAGE, tmp_path / 'spark_mm',
                    ignore=shutil.ignore_patterns('fast', '__pycache__'))
    code = (
        "import torch, spark_mm\n"
        "from spark_mm.registry import MODELS\n"
        "assert 'fast' not in dir(spark_mm.models)\n"
        "cfg = dict(type='SparK', backbone=dict(type='ResNet', depth=18, "
        "base_channels=8, stem_channels=8, out_indices=(0, 1, 2, 3)), "
        "neck=dict(type='LightUNetDecoder', width=32), input_size=64)\n"
        "model = MODELS.build(cfg)\n"
        "model.loss(torch.randn(2, 3, 64, 64), [])['loss'].backward()\n"
        "try:\n    MODELS.build(dict(cfg, fast_path=True))\n"
        "except ValueError as error:\n    print('REFUSED', error)\n")
    result = subprocess.run([sys.executable, '-c', code], cwd=tmp_path,
                            capture_output=True, text=True, timeout=600,
                            env=dict(os.environ, PYTHONPATH=str(tmp_path)))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "REFUSED fast_path type 'SparKFastPath' is not registered" in result.stdout


def test_top_level_is_the_package_face():
    modules = sorted(name for name in os.listdir(PACKAGE) if name.endswith('.py'))
    assert modules == ['__init__.py', 'apis.py', 'errors.py', 'registry.py',
                       'version.py']


def test_import_without_mmdet_and_mmseg():
    code = ("import sys\n"
            "sys.modules['mmdet'] = None\nsys.modules['mmseg'] = None\n"
            "import spark_mm\n"
            "from spark_mm.registry import MODELS\n"
            "assert MODELS.get('SparK') is not None\n"
            "try:\n    import spark_mm.detection\nexcept ImportError:\n"
            "    print('detection needs mmdet')\n")
    result = subprocess.run([sys.executable, '-c', code], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'detection needs mmdet' in result.stdout


def test_scoped_names_resolve_from_mmdet_and_mmseg_registries():
    import mmdet.registry
    import mmseg.registry

    import spark_mm.detection  # noqa: F401
    import spark_mm.segmentation  # noqa: F401
    from spark_mm.checkpoint import CheckedPretrained
    from spark_mm.engine import AtomicCheckpointHook, ResNetLayerDecayOptimWrapperConstructor
    assert mmdet.registry.HOOKS.get('spark_mm.AtomicCheckpointHook') is AtomicCheckpointHook
    assert mmseg.registry.HOOKS.get('spark_mm.AtomicCheckpointHook') is AtomicCheckpointHook
    assert mmdet.registry.WEIGHT_INITIALIZERS.get(
        'spark_mm.CheckedPretrained') is CheckedPretrained
    for registry in (mmdet.registry, mmseg.registry):  # unscoped, default scope mmdet/mmseg
        assert registry.OPTIM_WRAPPER_CONSTRUCTORS.get(
            'ResNetLayerDecayOptimWrapperConstructor') is ResNetLayerDecayOptimWrapperConstructor
    # mmpretrain's components stay reachable through ours (parent lookup)
    from mmpretrain.models import ResNet

    from spark_mm.registry import MODELS
    assert MODELS.get('ResNet') is ResNet


def test_no_private_registry_attributes_in_the_package():
    offenders = []
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith('.py'):
                text = open(os.path.join(folder, name)).read()
                for private in ('._children', '._module_dict', '._get_root_registry',
                                '._scope'):
                    if private in text:
                        offenders.append(f'{name}: {private}')
    assert not offenders


def test_one_user_error_type():
    from spark_mm.errors import (CheckpointError, DataNotFoundError,
                                 NonFiniteLossError, SparKInputError,
                                 UnsupportedLayerError, one_line_message)
    for kind in (CheckpointError, DataNotFoundError, NonFiniteLossError,
                 UnsupportedLayerError):
        assert issubclass(kind, SparKInputError)
        assert one_line_message(kind('a\n  b')) == 'a b'
    assert one_line_message(KeyError('bug')) is None
    assert one_line_message(ValueError('a ValueError from a library: a bug')) is None
    # our checks raise it: a bad mask ratio from a config
    from spark_mm.models import RandomPatchMasker
    with pytest.raises(SparKInputError, match='mask_ratio'):
        RandomPatchMasker(mask_ratio=1.5)
