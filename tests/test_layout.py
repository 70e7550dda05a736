"""The package's shape: no import cycle, a top level that is only its face,
``import spark_mm`` without mmdet/mmseg, scoped names through the public
registry API, one user-error type."""
import ast
import os
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
    """The spark_mm modules a module-level ``from ... import ...`` loads."""
    if node.level:
        base = module.split('.')
        if not _is_package(module):
            base = base[:-1]
        base = base[:len(base) - (node.level - 1)]
        target = '.'.join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ''
    if not target.startswith('spark_mm'):
        return []
    found = [target]
    for alias in node.names:  # `from package import submodule`
        candidate = f'{target}.{alias.name}'
        if os.path.isfile(os.path.join(ROOT, *candidate.split('.')) + '.py') or \
                _is_package(candidate):
            found.append(candidate)
    return found


def import_graph() -> dict:
    graph = {}
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if not name.endswith('.py'):
                continue
            path = os.path.join(folder, name)
            module = _module_name(path)
            edges = set()
            for node in ast.parse(open(path).read()).body:  # module level only
                if isinstance(node, ast.ImportFrom):
                    edges.update(_resolve(module, node))
                elif isinstance(node, ast.Import):
                    edges.update(alias.name for alias in node.names
                                 if alias.name.startswith('spark_mm'))
            graph[module] = edges - {module}
    return graph


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


def test_top_level_is_the_package_face():
    modules = sorted(name for name in os.listdir(PACKAGE) if name.endswith('.py'))
    assert modules == ['__init__.py', 'errors.py', 'registry.py', 'version.py']


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
