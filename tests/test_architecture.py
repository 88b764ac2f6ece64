"""The code's shape: imports point down the data flow, stage by stage, with no cycles; every
public definition says what it is in a one-line summary.

Imports are read from the source (every `import` and `from` statement, function bodies
included), so the rule holds for deferred imports too.
"""
import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / 'gaze_jax'
LEAVES = {'errors', 'geometry', 'config', 'configs', 'phases'}
# Stage -> the stages its modules may import (besides their own stage and the leaves).
ALLOWED = {
    'leaves': set(),
    'data': set(),
    'attacks': set(),
    'models': set(),
    'workdir': set(),
    'metrics': {'data', 'attacks'},
    'training': {'data', 'attacks', 'models', 'workdir', 'metrics'},
    'defences': {'data', 'attacks', 'models', 'workdir', 'metrics', 'training'},
    'report': {'metrics', 'workdir', 'defences'},
    'experiments': {'data', 'attacks', 'models', 'workdir', 'metrics', 'training', 'defences',
                    'report'},
    'edges': {'data', 'attacks', 'models', 'workdir', 'metrics', 'training', 'defences',
              'report', 'experiments', 'edges'},
}
EDGES = {'cli', 'predict', 'export', 'convert_weights'}


def module_name(path):
  parts = path.relative_to(ROOT).with_suffix('').parts
  return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def stage(module):
  """The stage of a gaze_jax module: its subpackage, 'leaves' or 'edges'."""
  first = module.split('.')[1] if '.' in module else ''
  if first in LEAVES or not first:
    return 'leaves'
  if first in EDGES:
    return 'edges'
  assert first in ALLOWED, f'{module} is in no stage; add it to tests/test_architecture.py'
  return first


def imports(path):
  """The project modules (gaze_jax.*, tfds_mpiifacegaze.*) that `path` imports."""
  found = set()
  for node in ast.walk(ast.parse(path.read_text(), str(path))):
    if isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
      names = [node.module] + [f'{node.module}.{a.name}' for a in node.names]
    else:
      continue
    found |= {n for n in names if n.split('.')[0] in ('gaze_jax', 'tfds_mpiifacegaze')}
  modules = {module_name(p) for p in ROOT.glob('*/**/*.py')}
  return {n for n in found if n in modules}  # `from pkg import name`: modules only.


def graph():
  paths = list(PACKAGE.rglob('*.py')) + list((ROOT / 'tfds_mpiifacegaze').rglob('*.py'))
  return {module_name(p): imports(p) for p in paths}


def test_every_import_points_down_the_flow():
  wrong = []
  for module, targets in graph().items():
    if module.startswith('tfds_mpiifacegaze'):
      wrong += [f'{module} -> {t}' for t in targets if t.startswith('gaze_jax')]
      continue
    allowed = ALLOWED[stage(module)] | {stage(module), 'leaves'}
    wrong += [f'{module} ({stage(module)}) -> {t} ({stage(t)})' for t in targets
              if t.startswith('gaze_jax') and stage(t) not in allowed]
  assert not wrong, '\n'.join(wrong)


def test_no_import_cycles():
  edges = graph()
  done, path = set(), []

  def visit(module):
    if module in path:
      raise AssertionError('import cycle: ' + ' -> '.join(path[path.index(module):] + [module]))
    if module in done:
      return
    path.append(module)
    for target in edges.get(module, ()):
      if target != module.rsplit('.', 1)[0]:  # A package's own __init__ is not a cycle.
        visit(target)
    path.pop()
    done.add(module)

  for module in edges:
    visit(module)


def test_the_checker_sees_a_wrong_import(tmp_path):
  """The rule itself: a metrics module importing training is caught."""
  bad = tmp_path / 'bad.py'
  bad.write_text('def f():\n  from gaze_jax.training import loop\n')
  assert 'gaze_jax.training.loop' in imports(bad)
  assert 'training' not in ALLOWED['metrics'] and stage('gaze_jax.training.loop') == 'training'


SOURCES = ('gaze_jax', 'tfds_mpiifacegaze', 'benchmarks')


def public_definitions(tree):
  """The module-level public functions and classes of a parsed module, and their public
  methods."""
  for node in tree.body:
    if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith('_'):
      yield node
      if isinstance(node, ast.ClassDef):
        yield from (m for m in node.body
                    if isinstance(m, ast.FunctionDef) and not m.name.startswith('_'))


def lacking_summary(source):
  """Names of the public definitions in `source` whose docstring does not open with a
  one-line summary: a sentence ending in '.', then a blank line or nothing more."""
  lacking = []
  for node in public_definitions(ast.parse(source)):
    doc = ast.get_docstring(node)
    lines = (doc or '').splitlines()
    if not (lines and lines[0].strip().endswith('.') and (len(lines) == 1 or
                                                          not lines[1].strip())):
      lacking.append(node.name)
  return lacking


def test_every_public_definition_opens_with_a_one_line_summary():
  lacking = [f'{path.relative_to(ROOT)}: {name}'
             for folder in SOURCES for path in sorted((ROOT / folder).rglob('*.py'))
             if 'configs' not in path.parts for name in lacking_summary(path.read_text())]
  assert not lacking, lacking


def test_the_summary_checker_sees_a_wrapped_first_sentence():
  source = (
      'def good():\n  """One line.\n\n  More text.\n  """\n'
      'def wrapped():\n  """A sentence that\n  goes on.\n  """\n'
      'def missing():\n  pass\n'
      'def _private():\n  pass\n'
      'class Thing:\n  """A thing."""\n  def method(self):\n    """no period"""\n')
  assert lacking_summary(source) == ['wrapped', 'missing', 'method']


def test_the_package_defines_no_coroutine():
  """workdir/background_errors.py silences every 'coroutine … was never awaited' warning as
  a library's (orbax's restore of a skipped damaged checkpoint); that holds while gaze_jax
  has no coroutine of its own."""
  found = [f'{path.relative_to(ROOT)}:{node.lineno}'
           for path in sorted(PACKAGE.rglob('*.py'))
           for node in ast.walk(ast.parse(path.read_text()))
           if isinstance(node, ast.AsyncFunctionDef)]
  assert not found, found
