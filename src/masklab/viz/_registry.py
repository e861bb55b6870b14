"""The picture registry (kind "picture"), apart from ``__init__`` so that picture modules can import it."""

from masklab.registry import Registry

PICTURE = Registry("picture", "pictures: (out, **options) -> Path of the PNG written")
