"""The pixel stream shared by the spatial stages (padding, window generator, max-pool).

Images one after another, pixels in row-major ``(y, x)`` order, each pixel's ``C`` channels as
``G = C/n`` beats of ``n`` elements (beat ``g``, element ``j`` = channel ``g*n + j``); elements
are :data:`hw.width_converter.BIT` or :data:`hw.width_converter.ML_PAIR`, a beat's payload
:func:`hw.width_converter.beat_layout`.  No ``last`` flag: stages count images.
"""

from __future__ import annotations

from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .width_converter import BIT, ML_PAIR, beat_layout, plane_names

__all__ = ["check_positive", "PixelStreamStage"]


def check_positive(**values) -> None:
    """Each value must be a positive ``int`` (not a bool): one-line ``ValueError`` otherwise."""
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, not {value!r}")


class PixelStreamStage(wiring.Component):
    """Base of a stage with one pixel-stream input ``i`` and one output ``o`` of ``n``
    elements per beat over an ``H x W x C`` input image.

    Interface: ``i: In(stream.Signature(beat_layout(elem_shape, n)))``, ``o`` the same
    layout out.  Subclasses check their own parameters first and call ``__init__``.
    """

    def __init__(self, elem_shape, *, channels: int, height: int, width: int,
                 elems_per_beat: int, name: str = "elems_per_beat"):
        self._planes = plane_names(elem_shape)
        check_positive(channels=channels, height=height, width=width,
                       **{name: elems_per_beat})
        if channels % elems_per_beat:
            raise ValueError(f"{name} must divide channels {channels}, not {elems_per_beat!r}")
        self._elem_shape = ML_PAIR if self._planes else BIT
        self._channels, self._height, self._width = channels, height, width
        self._n = elems_per_beat
        layout = beat_layout(self._elem_shape, elems_per_beat)
        super().__init__({"i": In(stream.Signature(layout)), "o": Out(stream.Signature(layout))})

    elem_shape = property(lambda self: self._elem_shape)
    channels = property(lambda self: self._channels)
    height = property(lambda self: self._height)
    width = property(lambda self: self._width)
    elems_per_beat = property(lambda self: self._n)

    @property
    def folds(self) -> int:
        """``G = C/n``, beats per pixel."""
        return self._channels // self._n

    @property
    def beats_in_per_image(self) -> int:
        """Input beats per image, ``H*W*G``."""
        return self._height * self._width * self.folds

    @property
    def beats_out_per_image(self) -> int:
        """Output beats per image, ``out_height*out_width*G``."""
        return self.out_height * self.out_width * self.folds
