"""Weighted k-nearest-neighbour evaluation of a frozen backbone.

The standard SSL kNN protocol (Wu et al. 2018, as in DINO): features of the
training set, L2-normalized, form a bank; a test image's k most cosine-similar
bank entries vote for their labels with weight ``exp(similarity / T)``; the
class scores go to mmpretrain's ``Accuracy`` like any classifier's.

The bank is mmpretrain's: :class:`KNNClassifier` is an ``ImageToImageRetriever``
whose ``prototype`` (a dataloader config) is collected over all ranks before the
first test batch, and before every validation with
``PrepareProtoBeforeValLoopHook``. mmpretrain lacks only the vote (the retriever
ranks bank images, it does not classify) and the labels of the bank: those two
are here (:func:`knn_vote`).

Run it with ``tools/test.py CONFIG CHECKPOINT``: the checkpoint may be a
backbone export (``<work_dir>/backbone.pth``, keys without ``backbone.``) or
any checkpoint with ``backbone.`` keys (a SparK pretraining checkpoint).
"""
from typing import List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.logging import MMLogger
from mmpretrain.models.retrievers import ImageToImageRetriever
from mmpretrain.structures import DataSample

from ..checkpoint.names import CONVNEXT_STAGE_NORM
from ..errors import SparKInputError
from ..registry import MODELS

ENCODER = 'image_encoder.0.'  # the backbone's keys inside the retriever


def knn_vote(query: torch.Tensor, bank: torch.Tensor, bank_labels: torch.Tensor,
             k: int, temperature: float, num_classes: int) -> torch.Tensor:
    """Class scores (B, num_classes), summing to 1, of the weighted kNN vote.

    ``query`` (B, C) and ``bank`` (N, C) need not be normalized; each of the
    ``k`` most cosine-similar bank rows adds ``exp(sim / temperature)`` to its
    label's score.
    """
    similarity = F.normalize(query, dim=1) @ F.normalize(bank, dim=1).T
    top_sim, top_index = similarity.topk(min(k, bank.shape[0]), dim=1)
    votes = (top_sim / temperature).exp()
    scores = torch.zeros(query.shape[0], num_classes, dtype=votes.dtype,
                         device=votes.device)
    scores.scatter_add_(1, bank_labels[top_index], votes)
    return scores / scores.sum(dim=1, keepdim=True)


@MODELS.register_module()
class KNNClassifier(ImageToImageRetriever):
    """A frozen backbone (and neck) whose features are classified by kNN.

    Args:
        backbone, neck: as in mmpretrain's ``ImageClassifier``; the last
            output, flattened, is the feature.
        num_classes: number of classes of the bank's labels.
        prototype: the labelled bank data (usually the training set with the
            test pipeline and ``DefaultSampler(shuffle=False,
            round_up=False)``), as a dataloader config.
        k: neighbours that vote (20 in the common protocol).
        temperature: of the vote weights ``exp(sim / T)`` (0.07).
    """

    def __init__(self, backbone: dict, num_classes: int, prototype: dict,
                 neck: Optional[dict] = None, k: int = 20,
                 temperature: float = 0.07,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None):
        if k < 1 or temperature <= 0 or num_classes < 1:
            raise SparKInputError('KNNClassifier needs k >= 1, temperature > 0 and '
                                  f'num_classes >= 1, got k={k}, temperature='
                                  f'{temperature}, num_classes={num_classes}')
        if not isinstance(prototype, dict):
            raise SparKInputError('KNNClassifier needs prototype=<a dataloader config '
                                  'of the labelled bank images> (saved features '
                                  'carry no labels to vote with)')
        encoder = [backbone] + ([neck] if neck is not None else [])
        super().__init__(image_encoder=encoder, prototype=prototype,
                         data_preprocessor=dict(data_preprocessor or {}),
                         init_cfg=init_cfg)
        self.num_classes, self.k, self.temperature = num_classes, k, temperature
        self._register_load_state_dict_pre_hook(self._prefix_backbone_export)
        for param in self.parameters():
            param.requires_grad_(False)

    @property
    def backbone(self) -> nn.Module:
        return self.image_encoder[0]

    def train(self, mode: bool = True):
        # frozen: BN statistics and drop paths stay in inference mode
        return super().train(False)

    def _prefix_backbone_export(self, state_dict, prefix, *args):
        """Accept a backbone export (its keys lack ``backbone.``) or a
        checkpoint with ``backbone.`` keys, and refuse one that would leave
        the backbone with its random weights."""
        if prefix:
            return
        wanted = set(self.backbone.state_dict())
        source = 'backbone.' if any(key.startswith('backbone.')
                                    for key in state_dict) else ''
        for key in list(state_dict):
            if key.startswith(source) and key[len(source):] in wanted:
                state_dict[ENCODER + key[len(source):]] = state_dict.pop(key)
        missing = sorted(key for key in wanted
                         if ENCODER + key not in state_dict
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
            key for key in wanted if ENCODER + key in state_dict and
            tuple(state_dict[ENCODER + key].shape) != tuple(own[key].shape))
        if missing or reshaped:
            raise SparKInputError(
                f'the checkpoint lacks {len(missing)} and reshapes '
                f'{len(reshaped)} of the backbone\'s {len(wanted)} weights '
                f'(e.g. {", ".join((missing + reshaped)[:3])}): give a '
                'backbone export or a checkpoint with backbone.* keys of the '
                'same architecture')

    def extract_feat(self, inputs: torch.Tensor) -> torch.Tensor:
        """L2-normalized features, (B, C)."""
        feats = self.image_encoder(inputs)
        if isinstance(feats, (tuple, list)):
            feats = feats[-1]
        return F.normalize(feats.flatten(1).float(), dim=1)

    def _get_prototype_vecs_from_dataloader(self, data_loader):
        """mmpretrain's bank (features by sample index, summed over ranks),
        and its labels from the dataset."""
        dataset = data_loader.dataset
        if not hasattr(dataset, 'get_gt_labels'):
            raise SparKInputError(f'the kNN bank dataset {type(dataset).__name__} '
                                  'has no labels (get_gt_labels)')
        labels = torch.as_tensor(dataset.get_gt_labels(), dtype=torch.long)
        if labels.numel() == 0:
            raise SparKInputError('the kNN bank dataloader yielded no images')
        if int(labels.max()) >= self.num_classes:
            raise SparKInputError(f'the bank holds label {int(labels.max())} but '
                                  f'num_classes is {self.num_classes}')
        features = super()._get_prototype_vecs_from_dataloader(data_loader)
        device = next(self.image_encoder.parameters()).device
        self.register_buffer('prototype_labels', labels.to(device),
                             persistent=False)
        MMLogger.get_current_instance().info(
            f'kNN bank: {len(labels)} images, {len(labels.unique())} classes, '
            f'k={self.k}, T={self.temperature}')
        return features

    def forward(self, inputs: torch.Tensor,
                data_samples: Optional[List[DataSample]] = None,
                mode: str = 'tensor'):
        if mode == 'tensor':
            return self.extract_feat(inputs)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        raise SparKInputError(f'KNNClassifier has nothing to train (mode={mode!r}):'
                              ' evaluate it with tools/test.py')

    @torch.no_grad()
    def predict(self, inputs: torch.Tensor,
                data_samples: Optional[List[DataSample]] = None
                ) -> List[DataSample]:
        if not self.prototype_inited:
            self.prepare_prototype()
        feats = self.extract_feat(inputs)
        scores = knn_vote(feats, self.prototype_vecs, self.prototype_labels,
                          self.k, self.temperature, self.num_classes)
        if data_samples is None:
            data_samples = [DataSample() for _ in range(feats.shape[0])]
        for sample, score in zip(data_samples, scores):
            sample.set_pred_score(score).set_pred_label(score.argmax())
        return data_samples
