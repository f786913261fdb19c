"""jaxloss: loss functions for JAX with hand-derived, verified derivative rules."""

from jaxloss import checks as checks
from jaxloss import queue as queue
from jaxloss import reduce as reduce
from jaxloss.angular import angular_margin_loss as angular_margin_loss
from jaxloss.angular import arcface_loss as arcface_loss
from jaxloss.angular import cosface_loss as cosface_loss
from jaxloss.angular import sphereface_loss as sphereface_loss
from jaxloss.cached import cached_contrastive as cached_contrastive
from jaxloss.classification import binary_cross_entropy as binary_cross_entropy
from jaxloss.classification import hinge_embedding_loss as hinge_embedding_loss
from jaxloss.classification import hinge_loss as hinge_loss
from jaxloss.classification import logistic_loss as logistic_loss
from jaxloss.classification import margin_ranking_loss as margin_ranking_loss
from jaxloss.classification import perceptron_loss as perceptron_loss
from jaxloss.classification import sigmoid_binary_cross_entropy as sigmoid_binary_cross_entropy
from jaxloss.classification import soft_margin_loss as soft_margin_loss
from jaxloss.classification import square_loss as square_loss
from jaxloss.classification import squared_hinge_loss as squared_hinge_loss
from jaxloss.compound import dice_ce_loss as dice_ce_loss
from jaxloss.compound import dice_focal_loss as dice_focal_loss
from jaxloss.contrastive import info_nce_loss as info_nce_loss
from jaxloss.contrastive import ntxent as ntxent
from jaxloss.contrastive import ntxent_loss as ntxent_loss
from jaxloss.contrastive import sigmoid_contrastive_loss as sigmoid_contrastive_loss
from jaxloss.divergence import convex_kl_divergence as convex_kl_divergence
from jaxloss.divergence import distillation_loss as distillation_loss
from jaxloss.divergence import generalized_kl_divergence as generalized_kl_divergence
from jaxloss.divergence import kl_divergence as kl_divergence
from jaxloss.divergence import kl_divergence_with_log_targets as kl_divergence_with_log_targets
from jaxloss.embedding import batch_triplet_loss as batch_triplet_loss
from jaxloss.embedding import contrastive_loss as contrastive_loss
from jaxloss.embedding import cosine_embedding_loss as cosine_embedding_loss
from jaxloss.embedding import triplet_margin_loss as triplet_margin_loss
from jaxloss.embedding import valid_triplet_anchors as valid_triplet_anchors
from jaxloss.focal import sigmoid_focal_loss as sigmoid_focal_loss
from jaxloss.focal import softmax_focal_loss as softmax_focal_loss
from jaxloss.fused import linear_softmax_cross_entropy as linear_softmax_cross_entropy
from jaxloss.fused import linear_softmax_cross_entropy_mean as linear_softmax_cross_entropy_mean
from jaxloss.gradients import check_gradients as check_gradients
from jaxloss.lovasz import lovasz_hinge_loss as lovasz_hinge_loss
from jaxloss.lovasz import lovasz_softmax_loss as lovasz_softmax_loss
from jaxloss.margin import multiclass_hinge_loss as multiclass_hinge_loss
from jaxloss.margin import multiclass_perceptron_loss as multiclass_perceptron_loss
from jaxloss.margin import multilabel_margin_loss as multilabel_margin_loss
from jaxloss.margin import multilabel_soft_margin_loss as multilabel_soft_margin_loss
from jaxloss.multiclass import nll_loss as nll_loss
from jaxloss.multiclass import poly1_cross_entropy as poly1_cross_entropy
from jaxloss.multiclass import poly_loss_cross_entropy as poly_loss_cross_entropy
from jaxloss.multiclass import safe_softmax_cross_entropy as safe_softmax_cross_entropy
from jaxloss.multiclass import smooth_labels as smooth_labels
from jaxloss.multiclass import softmax_cross_entropy as softmax_cross_entropy
from jaxloss.multiclass import softmax_cross_entropy_with_integer_labels as softmax_cross_entropy_with_integer_labels
from jaxloss.paired_contrastive import clip_loss as clip_loss
from jaxloss.paired_contrastive import multiple_negatives_ranking_loss as multiple_negatives_ranking_loss
from jaxloss.pairs import circle_loss as circle_loss
from jaxloss.pairs import lifted_structure_loss as lifted_structure_loss
from jaxloss.pairs import multi_similarity_loss as multi_similarity_loss
from jaxloss.pairs import npair_loss as npair_loss
from jaxloss.probabilistic import gaussian_kl_divergence as gaussian_kl_divergence
from jaxloss.probabilistic import gaussian_nll_loss as gaussian_nll_loss
from jaxloss.probabilistic import poisson_nll_loss as poisson_nll_loss
from jaxloss.proxies import center_loss as center_loss
from jaxloss.proxies import center_update as center_update
from jaxloss.proxies import proxy_anchor_loss as proxy_anchor_loss
from jaxloss.proxies import proxy_nca_loss as proxy_nca_loss
from jaxloss.proxies import subcenter_arcface_loss as subcenter_arcface_loss
from jaxloss.ranking import listmle_loss as listmle_loss
from jaxloss.ranking import pairwise_hinge_loss as pairwise_hinge_loss
from jaxloss.ranking import pairwise_logistic_loss as pairwise_logistic_loss
from jaxloss.ranking import pairwise_soft_zero_one_loss as pairwise_soft_zero_one_loss
from jaxloss.ranking import pointwise_mse_loss as pointwise_mse_loss
from jaxloss.ranking import pointwise_sigmoid_loss as pointwise_sigmoid_loss
from jaxloss.ranking import ranking_softmax_loss as ranking_softmax_loss
from jaxloss.ranking_metrics import approx_mrr_loss as approx_mrr_loss
from jaxloss.ranking_metrics import approx_ndcg_loss as approx_ndcg_loss
from jaxloss.regression import absolute_error as absolute_error
from jaxloss.regression import cosine_distance as cosine_distance
from jaxloss.regression import cosine_similarity as cosine_similarity
from jaxloss.regression import huber_loss as huber_loss
from jaxloss.regression import l1_loss as l1_loss
from jaxloss.regression import l2_loss as l2_loss
from jaxloss.regression import log_cosh as log_cosh
from jaxloss.regression import mse_loss as mse_loss
from jaxloss.regression import quantile_loss as quantile_loss
from jaxloss.regression import smooth_l1_loss as smooth_l1_loss
from jaxloss.regression import squared_error as squared_error
from jaxloss.segmentation import focal_tversky_loss as focal_tversky_loss
from jaxloss.segmentation import generalized_dice_loss as generalized_dice_loss
from jaxloss.segmentation import jaccard_loss as jaccard_loss
from jaxloss.segmentation import soft_dice_loss as soft_dice_loss
from jaxloss.segmentation import tversky_loss as tversky_loss
from jaxloss.segmentation_optax import binary_dice_loss as binary_dice_loss
from jaxloss.segmentation_optax import dice_loss as dice_loss
from jaxloss.segmentation_optax import multiclass_generalized_dice_loss as multiclass_generalized_dice_loss
from jaxloss.selfsupervised import barlow_twins_loss as barlow_twins_loss
from jaxloss.selfsupervised import dino_center_update as dino_center_update
from jaxloss.selfsupervised import dino_loss as dino_loss
from jaxloss.selfsupervised import negative_cosine_similarity as negative_cosine_similarity
from jaxloss.selfsupervised import vicreg_loss as vicreg_loss
from jaxloss.sequence import ctc_loss as ctc_loss
from jaxloss.sequence import ctc_loss_with_forward_probs as ctc_loss_with_forward_probs
from jaxloss.sparsemax import make_fenchel_young_loss as make_fenchel_young_loss
from jaxloss.sparsemax import multiclass_sparsemax_loss as multiclass_sparsemax_loss
from jaxloss.sparsemax import sparsemax_loss as sparsemax_loss
from jaxloss.speaker import ge2e_loss as ge2e_loss
from jaxloss.supcon import supervised_contrastive_loss as supervised_contrastive_loss
from jaxloss.transducer import rnnt_loss as rnnt_loss
from jaxloss.transducer import rnnt_loss_from_joiner as rnnt_loss_from_joiner

__all__ = [
    "absolute_error", "angular_margin_loss", "approx_mrr_loss", "approx_ndcg_loss", "arcface_loss",
    "barlow_twins_loss", "batch_triplet_loss", "binary_cross_entropy", "binary_dice_loss", "cached_contrastive",
    "center_loss", "center_update", "check_gradients", "checks", "circle_loss", "clip_loss", "contrastive_loss",
    "convex_kl_divergence", "cosface_loss", "cosine_distance", "cosine_embedding_loss", "cosine_similarity",
    "ctc_loss", "ctc_loss_with_forward_probs", "dice_ce_loss", "dice_focal_loss", "dice_loss", "dino_center_update",
    "dino_loss", "distillation_loss", "focal_tversky_loss", "gaussian_kl_divergence", "gaussian_nll_loss", "ge2e_loss",
    "generalized_dice_loss", "generalized_kl_divergence", "hinge_embedding_loss", "hinge_loss", "huber_loss",
    "info_nce_loss", "jaccard_loss", "kl_divergence", "kl_divergence_with_log_targets", "l1_loss", "l2_loss",
    "lifted_structure_loss", "linear_softmax_cross_entropy", "linear_softmax_cross_entropy_mean", "listmle_loss",
    "log_cosh", "logistic_loss", "lovasz_hinge_loss", "lovasz_softmax_loss", "make_fenchel_young_loss",
    "margin_ranking_loss", "mse_loss", "multi_similarity_loss", "multiclass_generalized_dice_loss",
    "multiclass_hinge_loss", "multiclass_perceptron_loss", "multiclass_sparsemax_loss", "multilabel_margin_loss",
    "multilabel_soft_margin_loss", "multiple_negatives_ranking_loss", "negative_cosine_similarity", "nll_loss",
    "npair_loss", "ntxent", "ntxent_loss", "pairwise_hinge_loss", "pairwise_logistic_loss",
    "pairwise_soft_zero_one_loss", "perceptron_loss", "pointwise_mse_loss", "pointwise_sigmoid_loss",
    "poisson_nll_loss", "poly1_cross_entropy", "poly_loss_cross_entropy", "proxy_anchor_loss", "proxy_nca_loss",
    "quantile_loss", "queue", "ranking_softmax_loss", "reduce", "rnnt_loss", "rnnt_loss_from_joiner",
    "safe_softmax_cross_entropy", "sigmoid_binary_cross_entropy", "sigmoid_contrastive_loss", "sigmoid_focal_loss",
    "smooth_l1_loss", "smooth_labels", "soft_dice_loss", "soft_margin_loss", "softmax_cross_entropy",
    "softmax_cross_entropy_with_integer_labels", "softmax_focal_loss", "sparsemax_loss", "sphereface_loss",
    "square_loss", "squared_error", "squared_hinge_loss", "subcenter_arcface_loss", "supervised_contrastive_loss",
    "triplet_margin_loss", "tversky_loss", "valid_triplet_anchors", "vicreg_loss",
]

__version__ = "0.1.0"
