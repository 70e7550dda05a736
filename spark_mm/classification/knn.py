"""Weighted k-nearest-neighbour evaluation of a frozen backbone.

The standard SSL kNN protocol (Wu et al. 2018, as in DINO): features of the
training set, L2-normalized, form a bank; a test image's k most cosine-similar
bank entries vote for their labels with weight ``exp(similarity / T)``; the
class scores go to mmpretrain's ``Accuracy`` like any classifier's. mmpretrain
1.2.0 has no kNN evaluator: ``KNNClassifier`` is the model and
``KNNBankHook`` fills its bank from a dataloader before every test/val run.

Run it with ``tools/test.py CONFIG CHECKPOINT``: the checkpoint may be a
backbone export (``<work_dir>/backbone.pth``, keys without ``backbone.``) or
any checkpoint with ``backbone.`` keys (a SparK pretraining checkpoint).
"""
from typing import List, Optional

import torch
import torch.nn.functional as F
from mmengine.dist import all_gather_object
from mmengine.hooks import Hook
from mmengine.logging import MMLogger
from mmengine.model import is_model_wrapper
from mmpretrain.models.classifiers import BaseClassifier
from mmpretrain.structures import DataSample

from ..checkpoint.names import CONVNEXT_STAGE_NORM
from ..errors import SparKInputError
from ..registry import HOOKS, MODELS


@MODELS.register_module()
class KNNClassifier(BaseClassifier):
    """A frozen backbone (and neck) whose features are classified by kNN.

    Args:
        backbone, neck: as in mmpretrain's ``ImageClassifier``; the last
            output, flattened, is the feature.
        num_classes: number of classes of the bank's labels.
        k: neighbours that vote (20 in the common protocol).
        temperature: of the vote weights ``exp(sim / T)`` (0.07).
    """

    def __init__(self, backbone: dict, num_classes: int,
                 neck: Optional[dict] = None, k: int = 20,
                 temperature: float = 0.07,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None):
        if k < 1 or temperature <= 0 or num_classes < 1:
            raise SparKInputError('KNNClassifier needs k >= 1, temperature > 0 and '
                                  f'num_classes >= 1, got k={k}, temperature='
                                  f'{temperature}, num_classes={num_classes}')
        data_preprocessor = dict(data_preprocessor or {})
        data_preprocessor.setdefault('type', 'ClsDataPreprocessor')
        super().__init__(init_cfg=init_cfg,
                         data_preprocessor=data_preprocessor)
        self.backbone = MODELS.build(backbone)
        self.neck = MODELS.build(neck) if neck is not None else None
        self.num_classes, self.k, self.temperature = num_classes, k, temperature
        self.register_buffer('bank_features', torch.zeros(0), persistent=False)
        self.register_buffer('bank_labels', torch.zeros(0, dtype=torch.long),
                             persistent=False)
        self._register_load_state_dict_pre_hook(self._prefix_backbone_export)
        for param in self.parameters():
            param.requires_grad_(False)

    def train(self, mode: bool = True):
        # frozen: BN statistics and drop paths stay in inference mode
        return super().train(False)

    def _prefix_backbone_export(self, state_dict, prefix, *args):
        """Accept a backbone export (its keys lack ``backbone.``), and refuse a
        checkpoint that would leave the backbone with its random weights."""
        if prefix:
            return
        wanted = set(self.backbone.state_dict())
        if not any(key.startswith('backbone.') for key in state_dict) and \
                wanted & set(state_dict):
            for key in list(state_dict):
                state_dict['backbone.' + key] = state_dict.pop(key)
        missing = sorted(key for key in wanted
                         if 'backbone.' + key not in state_dict
                         and not key.endswith('num_batches_tracked'))
        if type(self.backbone).__name__ == 'ConvNeXt':
            # the official ConvNeXt releases carry no output norms (mmpretrain
            # norm0..3); fresh ones (weight 1, bias 0) just normalize
            fresh = [key for key in missing if CONVNEXT_STAGE_NORM.match(key)]
            if fresh:
                MMLogger.get_current_instance().warning(
                    f'kNN: {", ".join(fresh)} not in the checkpoint, kept at '
                    'their initial values (plain LayerNorm)')
            missing = [key for key in missing if key not in fresh]
        own = self.backbone.state_dict()
        reshaped = sorted(
            key for key in wanted if 'backbone.' + key in state_dict and
            tuple(state_dict['backbone.' + key].shape) != tuple(own[key].shape))
        if missing or reshaped:
            raise SparKInputError(
                f'the checkpoint lacks {len(missing)} and reshapes '
                f'{len(reshaped)} of the backbone\'s {len(wanted)} weights '
                f'(e.g. {", ".join((missing + reshaped)[:3])}): give a '
                'backbone export or a checkpoint with backbone.* keys of the '
                'same architecture')

    def extract_feat(self, inputs: torch.Tensor) -> torch.Tensor:
        """L2-normalized features, (B, C)."""
        feats = self.backbone(inputs)
        if self.neck is not None:
            feats = self.neck(feats)
        if isinstance(feats, (tuple, list)):
            feats = feats[-1]
        return F.normalize(feats.flatten(1).float(), dim=1)

    def set_bank(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        if labels.numel() and int(labels.max()) >= self.num_classes:
            raise SparKInputError(f'the bank holds label {int(labels.max())} but '
                                  f'num_classes is {self.num_classes}')
        device = self.bank_features.device
        self.bank_features = features.to(device)
        self.bank_labels = labels.to(device)

    def forward(self, inputs: torch.Tensor,
                data_samples: Optional[List[DataSample]] = None,
                mode: str = 'tensor'):
        if mode == 'tensor':
            return self.extract_feat(inputs)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        raise SparKInputError(f'KNNClassifier has nothing to train (mode={mode!r}):'
                              ' evaluate it with tools/test.py')

    def loss(self, inputs, data_samples):
        return self.forward(inputs, data_samples, mode='loss')

    @torch.no_grad()
    def predict(self, inputs: torch.Tensor,
                data_samples: Optional[List[DataSample]] = None
                ) -> List[DataSample]:
        if self.bank_labels.numel() == 0:
            raise RuntimeError('the kNN bank is empty: add KNNBankHook (with '
                               'the labelled training dataloader) to '
                               'custom_hooks')
        feats = self.extract_feat(inputs)
        similarity = feats @ self.bank_features.T  # (B, bank)
        k = min(self.k, similarity.shape[1])
        top_sim, top_index = similarity.topk(k, dim=1)
        votes = (top_sim / self.temperature).exp()
        scores = torch.zeros(feats.shape[0], self.num_classes,
                             device=feats.device)
        scores.scatter_add_(1, self.bank_labels[top_index], votes)
        scores = scores / scores.sum(dim=1, keepdim=True)
        if data_samples is None:
            data_samples = [DataSample() for _ in range(feats.shape[0])]
        for sample, score in zip(data_samples, scores):
            sample.set_pred_score(score).set_pred_label(score.argmax())
        return data_samples


@HOOKS.register_module()
class KNNBankHook(Hook):
    """Fill a :class:`KNNClassifier`'s bank before each test and validation.

    Args:
        dataloader: the labelled bank data (usually the training set with the
            test pipeline and ``DefaultSampler(shuffle=False,
            round_up=False)``), as a dataloader config.
    """

    priority = 'VERY_HIGH'

    def __init__(self, dataloader: dict):
        self.dataloader = dataloader

    def before_test(self, runner) -> None:
        self._fill_bank(runner)

    def before_val(self, runner) -> None:
        self._fill_bank(runner)

    @torch.no_grad()
    def _fill_bank(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) \
            else runner.model
        if not isinstance(model, KNNClassifier):
            raise TypeError(f'KNNBankHook needs a KNNClassifier, got '
                            f'{type(model).__name__}')
        loader = runner.build_dataloader(self.dataloader, seed=runner.seed)
        model.eval()
        rows = []
        for batch in loader:
            data = model.data_preprocessor(batch, False)
            feats = model.extract_feat(data['inputs']).cpu()
            for sample, feat in zip(data['data_samples'], feats):
                rows.append((sample.sample_idx, feat, int(sample.gt_label)))
        # each rank saw a share of the bank: gather, drop sampler padding
        merged = {}
        for part in all_gather_object(rows):
            for index, feat, label in part:
                merged[index] = (feat, label)
        if not merged:
            raise SparKInputError('the kNN bank dataloader yielded no images')
        order = sorted(merged)
        model.set_bank(torch.stack([merged[i][0] for i in order]),
                       torch.tensor([merged[i][1] for i in order]))
        MMLogger.get_current_instance().info(
            f'kNN bank: {len(order)} images, '
            f'{len(set(int(merged[i][1]) for i in order))} classes, '
            f'k={model.k}, T={model.temperature}')
