"""jaxloss: loss functions for JAX with hand-derived, verified derivative rules."""

from jaxloss import checks as checks
from jaxloss import reduce as reduce
from jaxloss.angular import angular_margin_loss as angular_margin_loss
from jaxloss.angular import arcface_loss as arcface_loss
from jaxloss.angular import cosface_loss as cosface_loss
from jaxloss.angular import ge2e_loss as ge2e_loss
from jaxloss.angular import sphereface_loss as sphereface_loss
from jaxloss.classification import hinge_loss as hinge_loss
from jaxloss.classification import logistic_loss as logistic_loss
from jaxloss.classification import margin_ranking_loss as margin_ranking_loss
from jaxloss.classification import sigmoid_binary_cross_entropy as sigmoid_binary_cross_entropy
from jaxloss.classification import square_loss as square_loss
from jaxloss.classification import squared_hinge_loss as squared_hinge_loss
from jaxloss.contrastive import clip_loss as clip_loss
from jaxloss.contrastive import info_nce_loss as info_nce_loss
from jaxloss.contrastive import multiple_negatives_ranking_loss as multiple_negatives_ranking_loss
from jaxloss.contrastive import ntxent_loss as ntxent_loss
from jaxloss.contrastive import sigmoid_contrastive_loss as sigmoid_contrastive_loss
from jaxloss.embedding import batch_triplet_loss as batch_triplet_loss
from jaxloss.embedding import contrastive_loss as contrastive_loss
from jaxloss.embedding import cosine_embedding_loss as cosine_embedding_loss
from jaxloss.embedding import triplet_margin_loss as triplet_margin_loss
from jaxloss.embedding import valid_triplet_anchors as valid_triplet_anchors
from jaxloss.gradients import check_gradients as check_gradients
from jaxloss.multiclass import distillation_loss as distillation_loss
from jaxloss.multiclass import kl_divergence as kl_divergence
from jaxloss.multiclass import multiclass_hinge_loss as multiclass_hinge_loss
from jaxloss.multiclass import nll_loss as nll_loss
from jaxloss.multiclass import poly1_cross_entropy as poly1_cross_entropy
from jaxloss.multiclass import sigmoid_focal_loss as sigmoid_focal_loss
from jaxloss.multiclass import softmax_cross_entropy as softmax_cross_entropy
from jaxloss.multiclass import softmax_focal_loss as softmax_focal_loss
from jaxloss.regression import absolute_error as absolute_error
from jaxloss.regression import huber_loss as huber_loss
from jaxloss.regression import log_cosh as log_cosh
from jaxloss.regression import smooth_l1_loss as smooth_l1_loss
from jaxloss.regression import squared_error as squared_error
from jaxloss.segmentation import dice_loss as dice_loss
from jaxloss.segmentation import generalized_dice_loss as generalized_dice_loss
from jaxloss.segmentation import jaccard_loss as jaccard_loss
from jaxloss.segmentation import tversky_loss as tversky_loss
from jaxloss.sequence import ctc_loss as ctc_loss
# <<< issue 10 exports >>>
from jaxloss.fused import linear_softmax_cross_entropy as linear_softmax_cross_entropy
from jaxloss.fused import linear_softmax_cross_entropy_mean as linear_softmax_cross_entropy_mean
# <<< issue 11 probabilistic exports >>>
from jaxloss.probabilistic import gaussian_kl_divergence as gaussian_kl_divergence
from jaxloss.probabilistic import gaussian_nll_loss as gaussian_nll_loss
from jaxloss.probabilistic import poisson_nll_loss as poisson_nll_loss
from jaxloss.regression import quantile_loss as quantile_loss
# <<< issue 11 self-supervised exports >>>
from jaxloss.selfsupervised import barlow_twins_loss as barlow_twins_loss
from jaxloss.selfsupervised import dino_center_update as dino_center_update
from jaxloss.selfsupervised import dino_loss as dino_loss
from jaxloss.selfsupervised import negative_cosine_similarity as negative_cosine_similarity
from jaxloss.selfsupervised import vicreg_loss as vicreg_loss

__version__ = "0.1.0"
