"""The losses of every task family, and the label-class path through the model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from icl_jax import losses, tasks
from icl_jax.models import tokens, transformer
from tests.conftest import small_config

pytestmark = pytest.mark.timeout(120)


def test_losses_match_their_formulas_and_respect_the_mask():
    out = jnp.array([[0.5, -2.0, 3.0]])
    y = jnp.array([[1.0, 1.0, -1.0]])
    mask = jnp.array([1.0, 1.0, 0.0])
    np.testing.assert_allclose(losses.masked_loss("squared", out, y, mask), (0.25 + 9.0) / 2, rtol=1e-6)
    expected = (np.log1p(np.exp(-0.5)) + np.log1p(np.exp(2.0))) / 2
    np.testing.assert_allclose(losses.masked_loss("logistic", out, y, mask), expected, rtol=1e-6)
    logits = jnp.log(jnp.array([[[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.3, 0.3, 0.4]]]))
    labels = jnp.array([[0.0, 1.0, 2.0]])
    np.testing.assert_allclose(losses.masked_loss("cross_entropy", logits, labels, mask),
                               -(np.log(0.7) + np.log(0.1)) / 2, rtol=1e-5)
    with pytest.raises(ValueError, match="unknown loss"):
        losses.masked_loss("hinge", out, y, mask)


def test_logistic_loss_is_finite_for_huge_logits():
    out = jnp.array([[1e4, -1e4]])
    value = losses.masked_loss("logistic", out, jnp.array([[-1.0, 1.0]]), jnp.ones(2))
    np.testing.assert_allclose(value, 1e4, rtol=1e-6)


def test_accuracy_counts_a_zero_logit_as_wrong():
    np.testing.assert_array_equal(
        losses.correct("logistic", jnp.array([[2.0, -1.0, 0.0]]), jnp.array([[1.0, 1.0, 1.0]])), [[1, 0, 0]])
    logits = jnp.array([[[0.0, 5.0], [3.0, 1.0]]])
    np.testing.assert_array_equal(losses.correct("cross_entropy", logits, jnp.array([[1.0, 1.0]])), [[1, 0]])


def test_one_hot_label_tokens():
    x = jnp.ones((1, 2, 3))
    z = tokens.interleave(x, jnp.array([[2.0, 4.0]]), type_channel=True, label_classes=5)
    assert z.shape == (1, 4, 6)  # max(D=3, C=5) + type channel
    np.testing.assert_array_equal(z[0, 1], [0, 0, 1, 0, 0, 1])
    np.testing.assert_array_equal(z[0, 3], [0, 0, 0, 0, 1, 1])
    np.testing.assert_array_equal(z[0, 0], [1, 1, 1, 0, 0, 0])


def test_model_gives_logits_per_class_when_the_task_has_label_classes(monkeypatch):
    from icl_jax import tasks

    monkeypatch.setattr(tasks, "label_classes", lambda t: 7)
    c = small_config()
    model = transformer.build(c.model, c.task.n_dims, tasks.label_classes(c.task), jax.random.key(0))
    x = jnp.zeros((2, c.task.n_points, c.task.n_dims))
    out = model(x, jnp.zeros((2, c.task.n_points)))
    assert out.shape == (2, c.task.n_points, 7)
