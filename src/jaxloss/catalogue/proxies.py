"""Catalogue entries: centre- and proxy-based metric learning (proxies.py), embeddings against class vectors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxloss import proxies
from jaxloss.catalogue._common import Entry

_SHAPE = (6, 4, 3)  # examples, classes, features
_IDS = (("labels", "proxies", 0),)


def _vectors(name, **options):
    """(embeddings [6, 3], class vectors [4, 3], labels [6]) drawn at random: the loss is smooth
    in them (norms stay away from the 1e-12 floor); class 3 gets no example, so that a
    proxy without positives is exercised."""

    def sample(rng):
        n, c, d = _SHAPE
        labels = rng.permutation(np.arange(n) % (c - 1))
        vectors = rng.standard_normal((c, d)) * rng.uniform(0.5, 2.0, (c, 1))
        embeddings = rng.standard_normal((n, d)) * rng.uniform(0.5, 2.0, (n, 1))
        return (jnp.float32(embeddings), jnp.float32(vectors), jnp.int32(labels)), dict(options)

    return sample


def _extremes(**options):
    """An embedding equal to its class vector and one opposite, a zero embedding, values of 1e4,
    an ignored id and an empty mask."""

    def extremes():
        vectors = jnp.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 3.0], [1e4, -1e4, 1e4]])
        embeddings = jnp.array([[1.0, 0.0, 0.0], [0.0, -6.0, 0.0], [0.0, 0.0, 0.0], [1e4, -1e4, 1e4]])
        labels = jnp.array([0, 1, 2, 3])
        args = (embeddings, vectors, labels)
        return [(args, dict(options)), ((-embeddings, vectors, labels), dict(options)),
                ((embeddings, vectors, labels.at[1].set(-100)), dict(options)),
                (args, {**options, "where": jnp.zeros(4, bool)})]

    return extremes


def _shard_batch(args, kwargs, shards, axis_name):
    """Proxy-Anchor's sharded form: embeddings, labels and ``where`` split in ``shards``, the
    proxies on every shard; each shard returns the loss of the whole batch (their mean is it)."""
    (embeddings, vectors, labels), rest = args, {k: v for k, v in kwargs.items() if k != "where"}
    split = lambda x: None if x is None else x.reshape((shards, -1) + x.shape[1:])  # noqa: E731
    local = lambda e, y, m: proxies.proxy_anchor_loss(e, vectors, y, where=m, axis_name=axis_name, **rest)  # noqa: E731
    return jnp.mean(jax.vmap(local, axis_name=axis_name)(split(embeddings), split(labels), split(kwargs["where"])))


_SUB = (4, 3, 2, 3)  # examples, classes, sub-centres, features


def _subcenters(rng):
    """(embeddings [4, 3], class_centers [3, 2, 3], labels [4]) for scale 4, margin 0.5: each
    class's two sub-centre cosines at least 0.1 apart (no tie in the max) and the label cosine
    at least 0.1 from ArcFace's fallback threshold cos(π − 0.5); redrawn until it holds."""
    n, c, k, d = _SUB
    while True:
        labels = rng.integers(0, c, size=n)
        centers = rng.standard_normal((c, k, d)) * rng.uniform(0.5, 2.0, (c, k, 1))
        embeddings = rng.standard_normal((n, d)) * rng.uniform(0.5, 2.0, (n, 1))
        e_hat = embeddings / np.linalg.norm(embeddings, axis=-1, keepdims=True)
        cos = np.einsum("nd,ckd->nck", e_hat, centers / np.linalg.norm(centers, axis=-1, keepdims=True))
        c_y = cos.max(-1)[np.arange(n), labels]
        if np.min(np.abs(cos[..., 0] - cos[..., 1])) > 0.1 and np.min(np.abs(c_y - np.cos(np.pi - 0.5))) > 0.1:
            return (jnp.float32(embeddings), jnp.float32(centers), jnp.int32(labels)), {
                "scale": jnp.float32(4.0), "margin": jnp.float32(0.5)}


def _extreme_subcenters():
    """An embedding along a sub-centre (cos = 1) and against one (−1), a zero embedding, tied
    sub-centres, values of 1e4, an ignored id and an empty mask."""
    centers = jnp.array([[[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]], [[0.0, 2.0, 0.0], [0.0, 0.0, 1.0]],
                         [[1e4, -1e4, 1e4], [0.0, 0.0, -3.0]]])
    embeddings = jnp.array([[1.0, 0.0, 0.0], [0.0, -6.0, 0.0], [0.0, 0.0, 0.0], [1e4, -1e4, 1e4]])
    labels = jnp.array([0, 1, 2, 2])
    args = (embeddings, centers, labels)
    return [(args, {}), (args, {"scale": 8.0, "margin": 0.5}), ((-embeddings, centers, labels), {}),
            ((embeddings, centers, labels.at[1].set(-100)), {}), (args, {"where": jnp.zeros(4, bool)})]


ENTRIES: tuple[Entry, ...] = (
    Entry(proxies.center_loss, "metric-learning",
          "Wen et al. 2016 center loss (per example, ½‖x − c_y‖²)",
          _vectors("centers"), _extremes(), class_ids=(("labels", "centers", 0),)),
    Entry(proxies.proxy_nca_loss, "metric-learning",
          "pytorch_metric_learning ProxyNCALoss",
          _vectors("proxies", softmax_scale=jnp.float32(2.0)), _extremes(softmax_scale=8.0), class_ids=_IDS),
    Entry(proxies.proxy_anchor_loss, "metric-learning",
          "pytorch_metric_learning ProxyAnchorLoss (DivisorReducer; one number per batch)",
          _vectors("proxies", margin=jnp.float32(0.1), alpha=jnp.float32(4.0)), _extremes(), class_ids=_IDS,
          per_batch=True, sharded=True, shard=_shard_batch),
    Entry(proxies.subcenter_arcface_loss, "metric-learning",
          "pytorch_metric_learning SubCenterArcFaceLoss (margin in degrees)",
          _subcenters, _extreme_subcenters, class_ids=(("labels", "class_centers", 0),)),
)
