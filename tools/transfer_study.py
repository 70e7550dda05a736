"""Does SparK pretraining help? Pretrain, fine-tune Mask R-CNN, compare, in one command.

    python tools/transfer_study.py --work-dir work_dirs/transfer_study

For each initialisation (``random``; ``spark``: SparK pretraining on the
unlabelled images; ``zero_outing``: the same pretraining with the dense
backbone on the zero-outed image, ``model.sparse=False``; ``checkpoint``: a
backbone or pretraining checkpoint you pass with ``--checkpoint``) and each
seed, Mask R-CNN is fine-tuned on the labelled COCO-format set and evaluated
(COCO bbox and segm AP, pycocotools). Every run is a real ``tools/train.py``
(and, when needed, ``tools/test.py``) subprocess; their logs go to
``<work-dir>/logs/``. The table (mean +- std over seeds) is printed and written
to ``<work-dir>/results.md`` and ``results.csv``, the bar chart to
``<work-dir>/results.png``.

Data: by default the generated study scenes (``spark_mm/datasets/synthetic/
study_scenes.py``, ``STUDY_SETTINGS``), made in ``data/transfer_study`` when
missing. Your own: ``--unlabeled DIR`` (any image folder) and ``--coco DIR``
(mmdet's COCO layout; class names from its annotation file).

Interrupted? Run the same command again: finished runs are kept (one result
file per run, written atomically), an unfinished one continues from its last
checkpoint. ``--jobs 2`` runs two at a time (each with ``--threads`` threads).
"""
import argparse
import csv
import glob
import io
import json
import math
import os
import os.path as osp
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
from spark_mm.checkpoint.saving import (write_atomically,  # noqa: E402
                                       write_text_atomically)
from spark_mm.datasets.synthetic.study_scenes import (  # noqa: E402
    STUDY_SETTINGS, make_study_data, study_data_matches)

INITS = ('random', 'spark', 'zero_outing', 'checkpoint')
PRETRAINED_INITS = ('spark', 'zero_outing')
METRICS = (('bbox_AP', 'coco/bbox_mAP'), ('bbox_AP50', 'coco/bbox_mAP_50'),
           ('segm_AP', 'coco/segm_mAP'), ('segm_AP50', 'coco/segm_mAP_50'))
DEFAULT_PRETRAIN_CONFIG = 'configs/spark/custom_r18_study.py'
DEFAULT_FINETUNE_CONFIG = 'configs/mask_rcnn/custom_r18_study_coco.py'


class StudyError(Exception):
    """Bad input or a failed run: reported in one line."""


# ---- small helpers ----------------------------------------------------------
def read_json(path: str) -> Optional[dict]:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def fmt_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return (f'{hours}h{rest // 60:02d}m' if hours else
            f'{rest // 60}m{rest % 60:02d}s')


def mean_std(values: List[float]):
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, float('nan')
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


# ---- the runs -----------------------------------------------------------------
@dataclass
class Run:
    """One subprocess of the study: a pretraining or a fine-tuning."""
    name: str          # e.g. 'pretrain_spark_s0', 'finetune_spark_s1'
    kind: str          # 'pretrain' | 'finetune'
    init: str
    seed: int
    work_dir: str
    result_file: str
    needs: List[str] = field(default_factory=list)

    def done(self) -> bool:
        return read_json(self.result_file) is not None


class Study:
    def __init__(self, args):
        self.args = args
        self.work_dir = args.work_dir
        self.python = sys.executable
        self.inits = list(args.inits) + (['checkpoint'] if args.checkpoint else [])
        self.runs: Dict[str, Run] = {}
        for init in self.inits:
            if init in PRETRAINED_INITS or init == 'checkpoint':
                for seed in self.pretrain_seeds():
                    self._add(Run(f'pretrain_{init}_s{seed}', 'pretrain', init, seed,
                                  osp.join(self.work_dir, 'pretrain', f'{init}_s{seed}'),
                                  osp.join(self.work_dir, 'results',
                                           f'pretrain_{init}_s{seed}.json')))
        for seed in range(args.seeds):
            for init in self.inits:
                needs = []
                if init != 'random':
                    needs = [f'pretrain_{init}_s{self.pretrain_seed(seed)}']
                self._add(Run(f'finetune_{init}_s{seed}', 'finetune', init, seed,
                              osp.join(self.work_dir, 'finetune', f'{init}_s{seed}'),
                              osp.join(self.work_dir, 'results',
                                       f'finetune_{init}_s{seed}.json'), needs))

    def _add(self, run: Run):
        self.runs[run.name] = run

    def pretrain_seeds(self):
        return range(self.args.seeds) if self.args.pretrain_per_seed else [0]

    def pretrain_seed(self, seed: int) -> int:
        return seed if self.args.pretrain_per_seed else 0

    # -- commands -----------------------------------------------------------
    def command(self, run: Run) -> List[str]:
        args = self.args
        resume = osp.isfile(osp.join(run.work_dir, 'last_checkpoint'))
        if run.kind == 'pretrain' and run.init == 'checkpoint':
            return [self.python, osp.join(ROOT, 'tools', 'export_backbone.py'),
                    args.checkpoint, '--out-dir', run.work_dir, '--formats', 'mmdet']
        if run.kind == 'pretrain':
            options = [f'randomness.seed={run.seed}',
                       f'train_cfg.max_epochs={args.pretrain_epochs}',
                       f'param_scheduler.0.end={args.pretrain_epochs}',
                       f'param_scheduler.0.warmup={args.pretrain_warmup_epochs}',
                       f'param_scheduler.1.end={args.pretrain_epochs}']
            if run.init == 'zero_outing':
                options.append('model.sparse=False')
            options += args.pretrain_options
            command = [self.python, osp.join(ROOT, 'tools', 'train.py'),
                       args.pretrain_config, '--data-root', self.unlabeled,
                       '--work-dir', run.work_dir, '--cfg-options', *options]
        else:
            iters = args.finetune_iters
            milestones = [int(iters * 0.75), int(iters * 0.9)]
            options = [f'randomness.seed={run.seed}',
                       f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={iters}',
                       f'param_scheduler.0.end={max(1, min(30, iters // 10))}',
                       f'param_scheduler.1.end={iters}',
                       f'param_scheduler.1.milestones=[{milestones[0]},{milestones[1]}]',
                       f'default_hooks.checkpoint.interval={min(50, iters)}']
            if run.init == 'random':
                options.append('model.backbone.init_cfg=None')
            else:
                options.append('model.backbone.init_cfg.checkpoint='
                               + self.backbone_file(run.needs[0]))
            options += args.finetune_options
            command = [self.python, osp.join(ROOT, 'tools', 'train.py'),
                       args.finetune_config, '--data-root', self.coco,
                       '--work-dir', run.work_dir, '--cfg-options', *options]
        return command + (['--resume'] if resume else [])

    def backbone_file(self, pretrain_name: str) -> str:
        result = read_json(self.runs[pretrain_name].result_file)
        return result['backbone']

    # -- one run ------------------------------------------------------------------
    def log_file(self, run: Run) -> str:
        return osp.join(self.work_dir, 'logs', f'{run.name}.log')

    def start(self, run: Run) -> subprocess.Popen:
        os.makedirs(osp.dirname(self.log_file(run)), exist_ok=True)
        env = dict(os.environ, OMP_NUM_THREADS=str(self.args.threads),
                   MKL_NUM_THREADS=str(self.args.threads))
        log = open(self.log_file(run), 'a')
        log.write(f'\n$ {" ".join(self.command(run))}\n')
        log.flush()
        process = subprocess.Popen(self.command(run), stdout=log,
                                   stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        log.close()
        return process

    def failure_line(self, run: Run, code: int) -> str:
        lines = []
        try:
            with open(self.log_file(run)) as f:
                lines = [line.strip() for line in f if line.strip()]
        except OSError:
            pass
        errors = [line for line in lines if line.startswith('error:')]
        last = errors[-1] if errors else (lines[-1] if lines else '(no output)')
        return (f'{run.name} failed (exit {code}): {last[:300]}; log: '
                f'{self.log_file(run)}; fix it and run the same command again '
                'to continue')

    def finish(self, run: Run, seconds: float) -> dict:
        """Collect a finished run's result and write its result file."""
        if run.kind == 'pretrain':
            candidates = [osp.join(run.work_dir, 'backbone.pth'),
                          osp.join(run.work_dir, 'backbone_mmdet.pth')]
            backbone = next((path for path in candidates if osp.isfile(path)), None)
            if backbone is None:
                raise StudyError(f'{run.name} ended without writing a backbone '
                                 f'file in {run.work_dir}; log: {self.log_file(run)}')
            result = dict(backbone=osp.abspath(backbone))
        else:
            metrics = val_metrics(run.work_dir)
            if metrics is None:  # stopped during evaluation: test the checkpoint
                metrics = self.test_last_checkpoint(run)
            result = {name: 100.0 * float(metrics[key]) for name, key in METRICS}
        result.update(name=run.name, kind=run.kind, init=run.init, seed=run.seed,
                      seconds=round(seconds, 1))
        write_text_atomically(run.result_file, json.dumps(result, indent=1, sort_keys=True))
        return result

    def test_last_checkpoint(self, run: Run) -> dict:
        last = osp.join(run.work_dir, 'last_checkpoint')
        if not osp.isfile(last):
            raise StudyError(f'{run.name}: no checkpoint and no metrics in '
                             f'{run.work_dir}; log: {self.log_file(run)}')
        with open(last) as f:
            checkpoint = f.read().strip()
        command = [self.python, osp.join(ROOT, 'tools', 'test.py'),
                   self.args.finetune_config, checkpoint, '--work-dir',
                   osp.join(run.work_dir, 'test'), '--data-root', self.coco,
                   '--cfg-options', 'model.backbone.init_cfg=None',
                   *self.args.finetune_options]
        env = dict(os.environ, OMP_NUM_THREADS=str(self.args.threads))
        with open(self.log_file(run), 'a') as log:
            log.write(f'\n$ {" ".join(command)}\n')
            log.flush()
            code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT,
                                   env=env, cwd=ROOT)
        if code != 0:
            raise StudyError(self.failure_line(run, code))
        with open(self.log_file(run)) as f:
            lines = [line for line in f if line.startswith('metrics: ')]
        if not lines:
            raise StudyError(f'{run.name}: tools/test.py printed no metrics; log: '
                             f'{self.log_file(run)}')
        return dict(re.findall(r'([\w/]+)=([-\d.eE+]+)', lines[-1]))

    # -- the whole study ---------------------------------------------------------
    def check_settings(self):
        """Refuse to mix results of different settings in one work dir."""
        settings = dict(
            inits=self.inits, seeds=self.args.seeds,
            pretrain_per_seed=self.args.pretrain_per_seed,
            pretrain_epochs=self.args.pretrain_epochs,
            pretrain_warmup_epochs=self.args.pretrain_warmup_epochs,
            finetune_iters=self.args.finetune_iters,
            pretrain_config=self.args.pretrain_config,
            finetune_config=self.args.finetune_config,
            pretrain_options=self.args.pretrain_options,
            finetune_options=self.args.finetune_options,
            unlabeled=osp.abspath(self.unlabeled), coco=osp.abspath(self.coco),
            checkpoint=self.args.checkpoint)
        path = osp.join(self.work_dir, 'study.json')
        written = read_json(path)
        if written is not None:
            # more seeds or inits extend a study; anything else would mix results
            fixed = {key: value for key, value in settings.items()
                     if key not in ('inits', 'seeds')}
            old = {key: written.get(key) for key in fixed}
            if old != fixed:
                changed = ', '.join(key for key in fixed if old[key] != fixed[key])
                raise StudyError(
                    f'{self.work_dir} holds a study with other settings ({changed}); '
                    'use another --work-dir, or the settings in '
                    f'{path}')
        write_text_atomically(path, json.dumps(settings, indent=1, sort_keys=True))

    def prepare_data(self):
        args = self.args
        if args.unlabeled or args.coco:
            if not (args.unlabeled and args.coco):
                raise StudyError('pass both --unlabeled DIR (images for pretraining) '
                                 'and --coco DIR (the labelled set), or neither for '
                                 'the generated study data')
            self.unlabeled, self.coco = args.unlabeled, args.coco
            for path, what in ((self.unlabeled, '--unlabeled'), (self.coco, '--coco')):
                if not osp.isdir(path):
                    raise StudyError(f'{what} {path!r} does not exist')
            return
        if not study_data_matches(args.data_dir, **STUDY_SETTINGS):
            print(f'making the study data in {args.data_dir} '
                  f'({STUDY_SETTINGS["num_unlabeled"]} unlabelled scenes, '
                  f'{STUDY_SETTINGS["num_train"]} labelled for training, '
                  f'{STUDY_SETTINGS["num_val"]} for validation)', flush=True)
            make_study_data(args.data_dir, **STUDY_SETTINGS)
        self.unlabeled = osp.join(args.data_dir, 'unlabeled')
        self.coco = osp.join(args.data_dir, 'coco')

    def eta(self, pending: List[Run], running: Dict[str, float]) -> str:
        durations = {}
        for run in self.runs.values():
            result = read_json(run.result_file)
            if result is not None and result.get('seconds'):
                durations.setdefault((run.kind, run.init == 'checkpoint'),
                                     []).append(result['seconds'])
        work = 0.0
        for run in pending:
            known = durations.get((run.kind, run.init == 'checkpoint'))
            if not known:
                return 'ETA ? (after the first run of each kind)'
            work += sum(known) / len(known)
        for name, started in running.items():
            run = self.runs[name]
            known = durations.get((run.kind, run.init == 'checkpoint'))
            if not known:
                return 'ETA ? (after the first run of each kind)'
            work += max(0.0, sum(known) / len(known) - (time.time() - started))
        return f'ETA {fmt_duration(work / self.args.jobs)}'

    def run(self):
        self.prepare_data()
        self.check_settings()
        todo = [run for run in self.runs.values() if not run.done()]
        total = len(self.runs)
        finished = total - len(todo)
        if finished:
            print(f'resuming: {finished} of {total} runs already done', flush=True)
        started_at = time.time()
        running: Dict[str, tuple] = {}  # name -> (process, start time)
        try:
            failure = self._loop(todo, running, finished, total, started_at)
        finally:  # interrupted or failed: stop our runs; they resume next time
            for process, _ in running.values():
                process.terminate()
            for process, _ in running.values():
                process.wait()
        if failure is not None:
            raise StudyError(failure)
        return self.report()

    def _loop(self, todo, running, finished, total, started_at) -> Optional[str]:
        """Start runs as their inputs are ready; returns a failure line or None."""
        failure = None
        while (todo or running) and failure is None:
            for run in list(todo):
                if len(running) >= self.args.jobs:
                    break
                if all(self.runs[need].done() for need in run.needs):
                    todo.remove(run)
                    print(f'start {run.name} ({finished}/{total} runs done)',
                          flush=True)
                    running[run.name] = (self.start(run), time.time())
            if not running:
                failure = 'no run can start: ' + ', '.join(run.name for run in todo)
                break
            time.sleep(self.args.poll)
            for name, (process, started) in list(running.items()):
                code = process.poll()
                if code is None:
                    continue
                del running[name]
                run = self.runs[name]
                if code != 0:
                    failure = self.failure_line(run, code)
                    break
                result = self.finish(run, time.time() - started)
                finished += 1
                if run.kind == 'finetune':
                    what = (f'bbox AP {result["bbox_AP"]:.1f}, segm AP '
                            f'{result["segm_AP"]:.1f}')
                else:
                    what = f'backbone {result["backbone"]}'
                remaining = self.eta(todo, {n: s for n, (_, s) in running.items()})
                print(f'[{finished}/{total}] {name} done in '
                      f'{fmt_duration(result["seconds"])}: {what}; elapsed '
                      f'{fmt_duration(time.time() - started_at)}, {remaining}',
                      flush=True)
        return failure

    # -- the report ----------------------------------------------------------
    def report(self) -> str:
        rows = []
        for init in self.inits:
            results = [read_json(run.result_file) for run in self.runs.values()
                       if run.kind == 'finetune' and run.init == init]
            results = [result for result in results if result is not None]
            if not results:
                continue
            row = dict(init=init, seeds=len(results))
            for name, _ in METRICS:
                row[name] = mean_std([result[name] for result in results])
            rows.append(row)
        header = ('| init | seeds | ' + ' | '.join(name.replace('_', ' ')
                                                 for name, _ in METRICS) + ' |')
        lines = [header, '|' + '---|' * (len(METRICS) + 2)]
        for row in rows:
            cells = [f'{row[name][0]:.1f} ± {row[name][1]:.1f}'
                     if not math.isnan(row[name][1]) else f'{row[name][0]:.1f}'
                     for name, _ in METRICS]
            lines.append(f'| {row["init"]} | {row["seeds"]} | ' + ' | '.join(cells) + ' |')
        pretrain = ('one SparK pretraining per seed' if self.args.pretrain_per_seed
                    else 'one pretraining per init (seed 0), fine-tuning seeds vary')
        table = '\n'.join(lines)
        text = (f'{table}\n\nCOCO AP x 100 on {osp.join(self.coco, "annotations")}'
                f' val, mean ± sample std over seeds; {pretrain}; pretraining '
                f'{self.args.pretrain_epochs} epochs ({self.args.pretrain_config}), '
                f'fine-tuning {self.args.finetune_iters} iterations '
                f'({self.args.finetune_config}).\n')
        write_text_atomically(osp.join(self.work_dir, 'results.md'), text)
        table_csv = io.StringIO(newline='')
        writer = csv.writer(table_csv)
        writer.writerow(['init', 'seeds'] + [f'{name}_{stat}' for name, _ in METRICS
                                             for stat in ('mean', 'std')])
        for row in rows:
            writer.writerow([row['init'], row['seeds']] + [
                f'{value:.3f}' for name, _ in METRICS for value in row[name]])
        write_text_atomically(osp.join(self.work_dir, 'results.csv'),
                              table_csv.getvalue())
        self.plot(rows, osp.join(self.work_dir, 'results.png'))
        print(text + f'written: {self.work_dir}/results.md, results.csv, '
              'results.png', flush=True)
        return text

    def plot(self, rows: List[dict], path: str):
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
        names = [name for name, _ in METRICS]
        fig, ax = plt.subplots(figsize=(7, 3.6))
        width = 0.8 / max(1, len(rows))
        for index, row in enumerate(rows):
            means = [row[name][0] for name in names]
            stds = [0.0 if math.isnan(row[name][1]) else row[name][1] for name in names]
            xs = [i + (index - (len(rows) - 1) / 2) * width for i in range(len(names))]
            ax.bar(xs, means, width, yerr=stds, capsize=3,
                   label=f'{row["init"]} (n={row["seeds"]})')
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels([name.replace('_', ' ') for name in names])
        ax.set_ylabel('COCO AP x 100 (mean ± std)')
        ax.set_title(f'Mask R-CNN fine-tuned from each initialisation '
                     f'({osp.basename(self.args.finetune_config)})', fontsize=9)
        ax.legend(fontsize=8)
        fig.tight_layout()
        write_atomically(path, lambda tmp: fig.savefig(tmp, dpi=120, format='png'))
        plt.close(fig)


def val_metrics(work_dir: str) -> Optional[dict]:
    """The last COCO metrics a training run logged (mmengine's scalars.json)."""
    found = None
    for path in sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))):
        with open(path) as f:
            for line in f:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if all(key in entry for _, key in METRICS):
                    found = entry
    return found


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='\n'.join(__doc__.splitlines()[2:]))
    parser.add_argument('--work-dir', default='work_dirs/transfer_study')
    parser.add_argument('--inits', nargs='+', default=['random', 'spark', 'zero_outing'],
                        choices=INITS[:3])
    parser.add_argument('--checkpoint', help='also fine-tune from this checkpoint '
                        '(a SparK pretraining checkpoint or a backbone file)')
    parser.add_argument('--seeds', type=int, default=3, help='fine-tuning seeds per init')
    parser.add_argument('--pretrain-per-seed', action='store_true',
                        help='pretrain once per seed instead of once per init')
    parser.add_argument('--pretrain-epochs', type=int, default=5)
    parser.add_argument('--pretrain-warmup-epochs', type=int, default=1)
    parser.add_argument('--finetune-iters', type=int, default=300)
    parser.add_argument('--pretrain-config', default=DEFAULT_PRETRAIN_CONFIG)
    parser.add_argument('--finetune-config', default=DEFAULT_FINETUNE_CONFIG)
    parser.add_argument('--pretrain-options', nargs='*', default=[],
                        help='more --cfg-options for the pretraining runs')
    parser.add_argument('--finetune-options', nargs='*', default=[],
                        help='more --cfg-options for the fine-tuning runs')
    parser.add_argument('--data-dir', default='data/transfer_study',
                        help='where the generated study data lives')
    parser.add_argument('--unlabeled', help='your folder of unlabelled images')
    parser.add_argument('--coco', help='your labelled set, mmdet COCO layout')
    parser.add_argument('--jobs', type=int, default=2, help='runs at a time')
    parser.add_argument('--threads', type=int, default=1, help='torch threads per run')
    parser.add_argument('--poll', type=float, default=2.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.jobs < 1 or args.pretrain_epochs < 1 \
            or args.finetune_iters < 1:
        parser.error('--seeds, --jobs, --pretrain-epochs and --finetune-iters '
                     'must be >= 1')
    if args.checkpoint and not osp.isfile(args.checkpoint):
        parser.exit(1, f'error: --checkpoint {args.checkpoint!r} does not exist\n')
    args.inits = list(dict.fromkeys(args.inits))
    return args


def _stop(signum, frame):
    raise KeyboardInterrupt


def main(argv=None):
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _stop)  # stop the runs as Ctrl-C does
    try:
        Study(args).run()
    except StudyError as error:
        sys.exit(f'error: {error}')
    except KeyboardInterrupt:
        sys.exit('interrupted: run the same command again to continue')


if __name__ == '__main__':
    main()
