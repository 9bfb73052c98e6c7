"""
A convolution from scratch: forward and backward
================================================

The "CNN from scratch in NumPy" tutorials write a convolutional layer as loops: the forward pass slides a
kernel over the image, the backward pass sends the output's gradient back to the kernel and to the image.
This page writes both by hand, then does the same with the stateless functions of :mod:`xpcnn.ops`
(:func:`~xpcnn.ops.conv2d`, :func:`~xpcnn.ops.conv2d_backward`, :func:`~xpcnn.ops.max_pool2d`,
:func:`~xpcnn.ops.max_pool2d_backward`) and checks that the numbers agree. The ops take arrays of any
backend; here they run on NumPy.
"""

# %%
# The image and the kernel
# ------------------------
# The 6x6 image and the vertical-edge kernel of the classic example. xpcnn is NCHW: a batch of one
# image with one channel is ``(1, 1, 6, 6)``, a layer of one 3x3 filter over one channel ``(1, 1, 3, 3)``.
import matplotlib.pyplot as plt
import numpy as np

import xpcnn
from xpcnn import ops

xpcnn.set_backend("numpy")

image = np.array([[3, 0, 1, 2, 7, 4],
                  [1, 5, 8, 9, 3, 1],
                  [2, 7, 2, 5, 1, 3],
                  [0, 1, 3, 1, 7, 8],
                  [4, 2, 1, 6, 2, 8],
                  [2, 4, 5, 2, 3, 9]], dtype=np.float64)
kernel = np.array([[1, 0, -1],
                   [1, 0, -1],
                   [1, 0, -1]], dtype=np.float64)

# %%
# Forward, by hand
# ----------------
# At each position, multiply the 3x3 patch by the kernel element-wise and sum ("valid" padding, stride 1:
# the output is 4x4).


def conv_forward_by_hand(image, kernel):
    kh, kw = kernel.shape
    out = np.zeros((image.shape[0] - kh + 1, image.shape[1] - kw + 1))
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = np.sum(image[i:i + kh, j:j + kw] * kernel)
    return out


by_hand = conv_forward_by_hand(image, kernel)
print(by_hand)

# %%
# Forward, with ``xpcnn.ops.conv2d``
# ----------------------------------
# The same numbers from one call; like PyTorch's ``conv2d`` it computes a cross-correlation (the kernel
# is not flipped), over a whole batch and every channel at once.
x = xpcnn.asarray(image[None, None], dtype="float64")  # (N=1, C=1, H=6, W=6)
w = xpcnn.asarray(kernel[None, None], dtype="float64")  # (O=1, C=1, kh=3, kw=3)
y = ops.conv2d(x, w)
print(xpcnn.to_numpy(y)[0, 0])
assert np.allclose(xpcnn.to_numpy(y)[0, 0], by_hand)

# %%
# Backward, by hand
# -----------------
# Say the loss is ``L = sum(y * g)`` for some upstream gradient ``g = dL/dy``. Each output ``y[i, j]``
# used the patch ``image[i:i+3, j:j+3]`` and the whole kernel, so the kernel's gradient collects every
# patch weighted by its output's gradient, and each patch pixel gets ``g[i, j]`` times the kernel back.
rng = np.random.default_rng(0)
g = rng.standard_normal(by_hand.shape)


def conv_backward_by_hand(g, image, kernel):
    kh, kw = kernel.shape
    d_image, d_kernel = np.zeros_like(image), np.zeros_like(kernel)
    for i in range(g.shape[0]):
        for j in range(g.shape[1]):
            d_kernel += g[i, j] * image[i:i + kh, j:j + kw]
            d_image[i:i + kh, j:j + kw] += g[i, j] * kernel
    return d_image, d_kernel, g.sum()  # the bias' gradient is the sum of the output's


d_image, d_kernel, d_bias = conv_backward_by_hand(g, image, kernel)

# %%
# Backward, with ``xpcnn.ops.conv2d_backward``
# --------------------------------------------
# ``conv2d_backward(dy, x, weight)`` returns ``(dx, dweight, dbias)``, each the shape of what it is the
# gradient of. Every layer of :mod:`xpcnn.layers` is such a pair of functions with its parameters kept in
# dicts; the test suite checks each against numerical gradients and against PyTorch's autograd.
dx, dw, db = ops.conv2d_backward(xpcnn.asarray(g[None, None], dtype="float64"), x, w)
assert np.allclose(xpcnn.to_numpy(dx)[0, 0], d_image)
assert np.allclose(xpcnn.to_numpy(dw)[0, 0], d_kernel)
assert np.allclose(xpcnn.to_numpy(db), [d_bias])
print("dL/dkernel =\n", xpcnn.to_numpy(dw)[0, 0].round(3))

# %%
# A numerical check
# -----------------
# The gradient is right if nudging one kernel weight by ``h`` changes the loss by about ``h`` times it:
# central differences over every weight.
h = 1e-6
numerical = np.zeros_like(kernel)
for a in range(3):
    for b in range(3):
        bump = np.zeros_like(kernel)
        bump[a, b] = h
        numerical[a, b] = (np.sum(conv_forward_by_hand(image, kernel + bump) * g)
                           - np.sum(conv_forward_by_hand(image, kernel - bump) * g)) / (2 * h)
print("largest difference:", np.abs(numerical - xpcnn.to_numpy(dw)[0, 0]).max())

# %%
# ReLU and max pooling, forward and backward
# ------------------------------------------
# The rest of a stage: ReLU zeroes the negative responses (and their gradients), 2x2 max pooling keeps
# each window's maximum and sends the gradient back to it alone.
r = ops.relu(y)
p, indices = ops.max_pool2d(r, 2, return_indices=True)
dp = xpcnn.asarray(np.ones((1, 1, 2, 2)), dtype="float64")
dr = ops.max_pool2d_backward(dp, r, 2, indices=indices)
dy = ops.relu_backward(dr, y)

fig, axes = plt.subplots(1, 5, figsize=(11, 2.6))
panels = [("image", image), ("conv (vertical edges)", xpcnn.to_numpy(y)[0, 0]),
          ("ReLU", xpcnn.to_numpy(r)[0, 0]), ("2x2 max pool", xpcnn.to_numpy(p)[0, 0]),
          ("gradient reaching the conv", xpcnn.to_numpy(dy)[0, 0])]
for ax, (title, a) in zip(axes, panels):
    ax.imshow(a, cmap="coolwarm" if a.min() < 0 else "viridis")
    for (i, j), v in np.ndenumerate(a):
        ax.text(j, i, f"{v:g}", ha="center", va="center", fontsize=7, color="black")
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()
fig.tight_layout()

# %%
# The same with layers
# --------------------
# :class:`xpcnn.layers.Conv2D` keeps the weight in ``params`` and its gradient in ``grads``; set the weight
# by hand and its ``forward``/``backward`` give the numbers above. A model is a list of such layers,
# trained by ``fit`` (see the MNIST example of this gallery).
from xpcnn.layers import Conv2D

conv = Conv2D(1, 3, bias=False)
conv.build((1, 6, 6))  # per-sample shape (C, H, W)
conv.params["weight"] = w
out = conv.forward(x, training=True)  # training: keep what backward needs
dx_layer = conv.backward(xpcnn.asarray(g[None, None], dtype="float64"))
assert np.allclose(xpcnn.to_numpy(conv.grads["weight"]), xpcnn.to_numpy(dw))
print(conv)
