"""PyTorch as an oracle: the same network, weights and data through ``torch.autograd``.

Optional — imported only by ``fcnet gradcheck``, the tests and comparisons, never by training.
:func:`torch_loss_and_gradients` rebuilds the forward pass from ``torch``
primitives in float64 and lets autograd differentiate it; :func:`torch_optimizer`
maps an fcnet optimizer to the ``torch.optim`` one that follows the same
trajectory (see ``docs/backprop.md`` for the mapping).
"""

import numpy as np

from .errors import FcnetError
from .gradcheck import GradcheckResult, GradcheckRow, parameter_names, relative_error

__all__ = ["torch_loss", "torch_loss_and_gradients", "torch_check", "torch_optimizer", "import_torch",
           "TORCH_TOLERANCE"]

TORCH_TOLERANCE = 1e-10


def import_torch():
    """``torch``, or a one-line error saying how to install it."""
    try:
        import torch
    except ImportError:
        raise FcnetError("this needs PyTorch: pip install 'fcnet[torch]'") from None
    return torch


def _activation(torch, layer, z):
    F, act = torch.nn.functional, layer.activation
    functions = {"linear": lambda v: v, "relu": F.relu, "leaky_relu": lambda v: F.leaky_relu(v, act.alpha),
                 "sigmoid": torch.sigmoid, "tanh": torch.tanh, "softmax": lambda v: torch.softmax(v, dim=-1),
                 "gelu": F.gelu, "swish": F.silu}  # gelu: torch's exact (erf) form, as fcnet's
    return functions[act.name](z)


def _loss(torch, loss, out, y):
    F = torch.nn.functional
    if loss.elementwise:  # torch's mean over every element is Keras' mean over outputs, then over the batch
        target = F.one_hot(torch.as_tensor(y), out.shape[1]).double() if y.ndim == 1 else torch.as_tensor(y)
        if loss.name == "binary_crossentropy":
            return F.binary_cross_entropy_with_logits(out, target)  # on logits, as fcnet's
        if loss.name == "huber":
            return F.huber_loss(out, target, delta=loss.delta)
        return (F.l1_loss if loss.name == "mae" else F.mse_loss)(out, target)
    eps = loss.label_smoothing
    if y.ndim == 1:
        return F.cross_entropy(out, torch.as_tensor(y, dtype=torch.long), label_smoothing=eps)
    target = (1 - eps) * torch.as_tensor(y) + eps / out.shape[1]  # Keras' smoothing of given targets
    return -(target * torch.log_softmax(out, dim=-1)).sum(dim=1).mean()


def _as_float64(x):
    x = np.asarray(x)
    x = x / 255.0 if x.dtype == np.uint8 else x.astype(np.float64)
    return x.reshape(len(x), -1)


def torch_loss(model, params, x, y):
    """``model``'s loss as a differentiable torch scalar of ``params`` (torch tensors shaped like its weights).

    The cross-entropy of a softmax output is taken on the logits, as fcnet does. A layer with dropout drops its
    inputs with the mask of its last training forward pass (``layer.mask``): the same thinned network. Batch
    normalization is ``torch.nn.functional.batch_norm`` in training mode (the batch's statistics).
    """
    torch = import_torch()
    y = model.check_targets(y, len(x))
    h = z = torch.as_tensor(_as_float64(x))
    params = iter(params)
    for layer in model.layers:
        if layer.mask is not None:
            h = h * torch.as_tensor(np.asarray(layer.mask, dtype=np.float64))
        z = h @ next(params) + next(params)
        h = _activation(torch, layer, z)
        if layer.batch_norm is not None:
            gamma, beta = next(params), next(params)
            h = torch.nn.functional.batch_norm(h, None, None, gamma, beta, training=True,
                                               eps=layer.batch_norm.epsilon)
    return _loss(torch, model.loss, z if model.fuses_output else h, y)


def torch_loss_and_gradients(model, x, y):
    """The loss and its gradients for ``model``'s weights, computed by torch autograd in float64.

    Returns
    -------
    loss : float
    grads : list of ndarray, in the order of ``model.parameters``
    """
    torch = import_torch()
    params = [torch.tensor(p, dtype=torch.float64, requires_grad=True) for p in model.parameters]
    loss = torch_loss(model, params, x, y)
    loss.backward()
    return loss.item(), [p.grad.numpy() for p in params]


def torch_check(model, x, y, tol=TORCH_TOLERANCE):
    """Compare fcnet's loss and gradients (in float64) with torch autograd's; rows as in :func:`gradcheck`."""
    model = model if model.dtype == np.float64 else model.astype("float64")
    x = _as_float64(x)
    loss, grads = model.loss_and_gradients(x, y)
    t_loss, t_grads = torch_loss_and_gradients(model, x, y)
    loss_err = abs(loss - t_loss) / max(abs(t_loss), np.finfo(float).tiny)
    result = GradcheckResult([GradcheckRow("loss", (), 1, abs(loss - t_loss), loss_err, loss_err < tol)])
    for name, g, t in zip(parameter_names(model), grads, t_grads):
        rel = relative_error(g, t)
        result.append(GradcheckRow(name, g.shape, g.size, float(np.abs(g - t).max()), rel, rel < tol))
    return result


def torch_optimizer(optimizer, params):
    """The ``torch.optim`` optimizer whose trajectory matches ``optimizer``'s on ``params`` (torch tensors).

    SGD: Keras' ``v = μv − lr·g; p += v`` is torch's ``b = μb + g; p −= lr·b`` with ``v = −lr·b``
    (Nesterov likewise). RMSprop: ``rho`` is torch's ``alpha``. Adam and RMSprop match torch exactly only with
    ``epsilon_form="torch"``; in their default Keras form epsilon sits elsewhere (inside the root for
    RMSprop, outside the bias correction for Adam), a difference that vanishes when ``sqrt(v) ≫ epsilon``.
    Decoupled weight decay is ``torch.optim.AdamW``'s, and for SGD without momentum torch's (coupled) one, which
    is then the same step; torch has none for RMSprop or SGD with momentum (ValueError). Gradient clipping is
    not an optimizer option in torch: callers clip ``p.grad`` themselves.
    """
    torch = import_torch()
    c = optimizer.get_config()
    wd = c.get("weight_decay") or 0.0
    if wd and (c["name"] == "rmsprop" or c.get("momentum")):
        raise ValueError("torch.optim has no decoupled weight decay for RMSprop or SGD with momentum")
    if c["name"] == "sgd":  # without momentum torch's coupled weight decay is the decoupled one
        return torch.optim.SGD(params, lr=c["learning_rate"], momentum=c["momentum"], nesterov=c["nesterov"],
                               weight_decay=wd)
    if c["name"] == "rmsprop":
        return torch.optim.RMSprop(params, lr=c["learning_rate"], alpha=c["rho"], eps=c["epsilon"])
    return torch.optim.AdamW(params, lr=c["learning_rate"], betas=(c["beta_1"], c["beta_2"]), eps=c["epsilon"],
                             weight_decay=wd)
