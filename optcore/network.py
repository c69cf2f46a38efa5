"""A fully connected L-layer network, vectorised over the batch.

Orientation, stated once: ``X`` is ``(m, n_features)``; layer ``l`` has ``W_l`` of shape ``(fan_in, fan_out)``
and ``b_l`` of shape ``(fan_out,)``; parameters travel as the flat list ``[W_1, b_1, …, W_L, b_L]``.

    Z_l = A_{l−1} W_l + b_l,   A_l = g(Z_l) (hidden layers),   Z_L = logits
    J   = (1/m)·Σ_i L(ŷ_i, y_i) + (λ/2m)·Σ_l ‖W_l‖²_F           (biases are not penalised)

with m the number of training rows. A mini-batch B of b rows estimates J by

    J_B = (1/b)·Σ_{i∈B} L(ŷ_i, y_i) + (λ/2m)·Σ_l ‖W_l‖²_F       (m still the training-set size, ``n_train``)

whose gradient is an unbiased estimate of ∇J: the L2 term and its decay (λ/m)·W per step are the same
for every batch size, a 1-row last batch included. Backward, per layer (dZ_L = ∂L/∂Z_L / b from the loss
table):

    dW_l = A_{l−1}ᵀ dZ_l + (λ/m) W_l,   db_l = Σ_rows dZ_l,   dZ_{l−1} = (dZ_l W_lᵀ) ⊙ g'(Z_{l−1})

:meth:`Network.cost_grad_and_norms` also gives each example's squared gradient norm from the same arrays,
for the gradient noise scale (:mod:`optcore.noise`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from optcore.activations import get_activation
from optcore.errors import OptcoreError
from optcore.losses import get_loss


def pack(arrays: Sequence[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Copy ``arrays`` into one contiguous 1-D buffer; return it and views of it shaped like ``arrays``.

    An optimizer given ``[flat]`` then updates every parameter with one vectorised expression instead of a
    Python loop over layers, which is what keeps small networks fast.
    """
    dtype = np.result_type(*arrays)
    flat = np.empty(sum(a.size for a in arrays), dtype=dtype)
    views, offset = [], 0
    for a in arrays:
        view = flat[offset : offset + a.size].reshape(a.shape)
        view[...] = a
        views.append(view)
        offset += a.size
    return flat, views


INITS = {
    # variance of W entries, from (fan_in, fan_out)
    "he": lambda fan_in, fan_out: 2.0 / fan_in,
    "xavier": lambda fan_in, fan_out: 2.0 / (fan_in + fan_out),
}


class Network:
    """Layer sizes, activation, task (which fixes output and loss), L2 strength and dtype.

    The network holds no parameters: :meth:`init` returns them and every method takes them, so an optimizer,
    a gradient check or a user's own loop can work on the same list.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        *,
        activation: str = "relu",
        task: str = "binary",
        l2: float = 0.0,
        init: str | None = None,
        dtype: type | str = np.float32,
    ):
        if len(sizes) < 2 or any(int(s) < 1 for s in sizes):
            raise OptcoreError(f"sizes must list at least an input and an output size, all ≥ 1; got {list(sizes)}")
        if l2 < 0:
            raise OptcoreError(f"l2 must be ≥ 0; got {l2}")
        self.sizes = [int(s) for s in sizes]
        self.activation = get_activation(activation)
        self.loss = get_loss(task)
        self.task = task
        self.l2 = float(l2)
        self.init_name = init or self.activation.init
        if self.init_name not in INITS:
            raise OptcoreError(f"unknown init {self.init_name!r}; valid inits: {', '.join(INITS)}")
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise OptcoreError(f"dtype must be float32 or float64; got {self.dtype}")
        self._workspaces: dict[int, tuple[list[np.ndarray], list[np.ndarray], np.ndarray]] = {}
        self._norm_workspaces: dict[int, _RowNorms] = {}  # only when the gradient noise scale is measured

    @classmethod
    def for_dataset(cls, dataset, hidden: Sequence[int] = (), **kwargs) -> Network:
        """A network whose input and output sizes fit ``dataset`` (an :class:`optcore.Dataset`)."""
        sizes = [dataset.n_features, *hidden, dataset.n_outputs]
        return cls(sizes, task=dataset.task, **kwargs)

    @property
    def n_layers(self) -> int:
        return len(self.sizes) - 1

    def init(self, rng: np.random.Generator) -> list[np.ndarray]:
        """Fresh parameters ``[W_1, b_1, …]``: W ~ N(0, var(fan_in, fan_out)), b = 0."""
        params = []
        for fan_in, fan_out in zip(self.sizes[:-1], self.sizes[1:], strict=True):
            std = np.sqrt(INITS[self.init_name](fan_in, fan_out))
            w = rng.standard_normal((fan_in, fan_out), dtype=np.float64) * std
            params += [w.astype(self.dtype), np.zeros(fan_out, dtype=self.dtype)]
        return params

    # -- forward -------------------------------------------------------------------------------
    def logits(self, params: Sequence[np.ndarray], X: np.ndarray) -> np.ndarray:
        """Output pre-activations ``Z_L`` of shape ``(m, n_outputs)`` (allocates; for evaluation)."""
        a = X
        for l in range(self.n_layers):
            z = a @ params[2 * l]
            z += params[2 * l + 1]
            a = self.activation.forward(z) if l < self.n_layers - 1 else z
        return a

    def predict(self, params: Sequence[np.ndarray], X: np.ndarray) -> np.ndarray:
        """Probabilities (classification) or values (regression), ``(m, n_outputs)``."""
        return self.loss.predict(self.logits(params, X))

    def penalty(self, params: Sequence[np.ndarray], m: int) -> float:
        """The L2 term (λ/2m)·Σ‖W‖², ``m`` the training-set size."""
        if self.l2 == 0.0:
            return 0.0
        return self.l2 / (2 * m) * sum(float(np.vdot(w, w)) for w in params[0::2])

    def cost(self, params: Sequence[np.ndarray], X: np.ndarray, Y: np.ndarray, n_train: int | None = None) -> float:
        """J_B on the rows ``(X, Y)``, the L2 term included with ``m = n_train`` (default: the rows given,
        i.e. J when ``X`` is the whole training set)."""
        b = X.shape[0]
        return self.loss.total(self.logits(params, X), Y) / b + self.penalty(params, n_train or b)

    def evaluate(self, params: Sequence[np.ndarray], X: np.ndarray, Y: np.ndarray) -> tuple[float, float]:
        """(data cost without the L2 term, metric) on ``(X, Y)``; the metric is accuracy or R²."""
        z = self.logits(params, X)
        return self.loss.total(z, Y) / X.shape[0], self.loss.metric(z, Y)

    # -- forward and backward, the training hot path ----------------------------------------------
    def _workspace(self, m: int) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
        """Per-batch-size buffers for activations and their gradients, reused across steps, and m ones."""
        ws = self._workspaces.get(m)
        if ws is None:
            acts = [np.empty((m, n), dtype=self.dtype) for n in self.sizes[1:]]
            deltas = [np.empty((m, n), dtype=self.dtype) for n in self.sizes[1:]]
            ws = self._workspaces[m] = (acts, deltas, np.ones(m, dtype=self.dtype))
        return ws

    def new_grads(self, params: Sequence[np.ndarray]) -> list[np.ndarray]:
        return [np.empty_like(p) for p in params]

    def cost_and_grad(
        self,
        params: Sequence[np.ndarray],
        X: np.ndarray,
        Y: np.ndarray,
        grads: list[np.ndarray] | None = None,
        n_train: int | None = None,
    ) -> tuple[float, list[np.ndarray]]:
        """J_B and ∂J_B/∂params on one batch. ``grads`` (from :meth:`new_grads`) is overwritten and returned.

        ``X`` is ``(b, n_features)``, ``Y`` is ``(b, n_outputs)``, both of the network's dtype. ``n_train``
        is m, the training-set size that scales the L2 term (default b: the batch is the whole set).
        Intermediate arrays live in a workspace reused for every batch of the same size.
        """
        cost, grads, _ = self._forward_backward(params, X, Y, grads, n_train, None)
        return cost, grads

    def cost_grad_and_norms(
        self,
        params: Sequence[np.ndarray],
        X: np.ndarray,
        Y: np.ndarray,
        grads: list[np.ndarray] | None = None,
        n_train: int | None = None,
    ) -> tuple[float, list[np.ndarray], np.ndarray, float]:
        """:meth:`cost_and_grad` plus the squared norms of the data term's gradients: ``(cost, grads,
        per_example_sq, batch_sq)``, without forming a per-example gradient.

        Example i's gradient of its loss Lᵢ is, per layer, the outer product ∂Wₗ = aᵢδᵢᵀ and ∂bₗ = δᵢ
        (aᵢ the row of A_{l−1}, δᵢ = b·(row i of dZ_l), dZ being the batch mean's), so

            ‖gᵢ‖² = Σ_l (‖aᵢ‖² + 1)·‖δᵢ‖²                  per_example_sq, shape (b,)
            ‖g_B‖² = Σ_l ‖A_{l−1}ᵀ dZ_l‖² + ‖1ᵀ dZ_l‖²       batch_sq, g_B = (1/b)·Σᵢ gᵢ

        The L2 term is left out of both (its gradient is the same for every example, so it is not
        noise; ``grads`` still includes it). ``per_example_sq`` is a workspace buffer, overwritten by the
        next call with the same batch size. For :class:`optcore.noise.NoiseScale`.
        """
        b = X.shape[0]
        rows = self._norm_workspaces.get(b)
        if rows is None:
            rows = self._norm_workspaces[b] = _RowNorms(b, self.sizes, self.dtype)
        cost, grads, batch_sq = self._forward_backward(params, X, Y, grads, n_train, rows)
        return cost, grads, rows.per_example(), batch_sq

    def _forward_backward(self, params, X, Y, grads, n_train, rows: _RowNorms | None):
        """(J_B, grads, ‖g_B‖² of the data term, or 0.0 when ``rows`` is None): see the two methods above."""
        b = X.shape[0]
        m = n_train or b
        if grads is None:
            grads = self.new_grads(params)
        acts, deltas, ones = self._workspace(b)
        last = self.n_layers - 1
        a = X
        for l in range(self.n_layers):
            z = acts[l]
            np.matmul(a, params[2 * l], out=z)
            z += params[2 * l + 1]
            a = self.activation.forward(z) if l < last else z
        dz = deltas[last]
        cost = self.loss.total_and_gradient(a, Y, dz) / b + self.penalty(params, m)

        batch_sq = 0.0
        dz *= 1.0 / b
        for l in range(last, -1, -1):
            a_prev = acts[l - 1] if l > 0 else X
            gw, gb = grads[2 * l], grads[2 * l + 1]
            np.matmul(a_prev.T, dz, out=gw)
            if rows is not None:
                batch_sq += float(np.vdot(gw, gw))  # before the L2 term is added: it is not noise
            if self.l2:
                gw += (self.l2 / m) * params[2 * l]
            # db = Σ_rows dZ as the product 1ᵀ dZ: BLAS's gemv is ~3× faster than np.sum over axis 0.
            np.matmul(ones, dz, out=gb)
            dz_l = dz
            if l > 0:
                da = deltas[l - 1]
                # With one output unit dZ W_lᵀ is an outer product, which BLAS's gemm does 2–4× slower than
                # a broadcast multiply (the same products, no sums, so the same numbers).
                product = np.multiply if dz.shape[1] == 1 else np.matmul
                product(dz, params[2 * l].T, out=da)
                dz = self.activation.backward(a_prev, da)
            if rows is not None:
                batch_sq += float(np.vdot(gb, gb))
                rows.add_layer(l, a_prev, dz_l)
        return cost, grads, batch_sq


class _RowNorms:
    """Buffers for :meth:`Network.cost_grad_and_norms` at one batch size b: the row norms ‖aᵢ‖² and
    ‖dZᵢ‖² of every layer, ``(n_layers, b)`` each, and the per-example result ``(b,)``."""

    def __init__(self, b: int, sizes: Sequence[int], dtype: np.dtype):
        self.b = b
        self.a_sq = np.empty((len(sizes) - 1, b), dtype=dtype)
        self.dz_sq = np.empty_like(self.a_sq)
        self.x_sq = np.empty((b, sizes[0]), dtype=dtype)  # X is the caller's: squared into a copy
        self.ones = {n: np.ones(n, dtype=dtype) for n in sizes}
        self.ones_layers = np.ones(len(sizes) - 1, dtype=dtype)
        self.result = np.empty(b, dtype=dtype)

    def add_layer(self, l: int, a_prev: np.ndarray, dz: np.ndarray) -> None:
        """Row norms of layer l's input and of its dZ. Both are spent once the backward pass has moved to
        layer l − 1, so they are squared in place (layer 0's input, X, into a buffer); a row sum is the
        product with ones, which BLAS's gemv does faster than np.sum over axis 1."""
        a_sq = np.multiply(a_prev, a_prev, out=self.x_sq if l == 0 else a_prev)
        np.matmul(a_sq, self.ones[a_sq.shape[1]], out=self.a_sq[l])
        np.multiply(dz, dz, out=dz)
        np.matmul(dz, self.ones[dz.shape[1]], out=self.dz_sq[l])

    def per_example(self) -> np.ndarray:
        """‖gᵢ‖² = b²·Σ_l (‖aᵢ‖² + 1)·‖dZᵢ‖², from the layers added since the last call."""
        self.a_sq += 1
        self.a_sq *= self.dz_sq
        np.matmul(self.ones_layers, self.a_sq, out=self.result)
        self.result *= float(self.b) ** 2
        return self.result
