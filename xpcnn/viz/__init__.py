"""Pictures of what a network does: training curves, feature maps, filters and class activation maps.

matplotlib is an optional extra (``pip install "xpcnn[examples]"``) imported only when a plot is drawn; see
``plots`` for the headless default. ``class_activation_map`` computes maps from a model and needs no
matplotlib.
"""

from .cam import class_activation_map
from .plots import (
    plot_class_activation_maps,
    plot_feature_maps,
    plot_filters,
    plot_history,
    plot_images,
)

__all__ = [
    "class_activation_map",
    "plot_class_activation_maps",
    "plot_feature_maps",
    "plot_filters",
    "plot_history",
    "plot_images",
]
