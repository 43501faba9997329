"""Guest images: recipes, the image builder and built-image metadata."""

from banger_core.images.build import BuiltImage, build_image, read_image
from banger_core.images.recipe import (
    Recipe,
    default_recipe,
    default_recipe_path,
    load_recipe,
    parse_recipe,
)

__all__ = [
    "BuiltImage",
    "Recipe",
    "build_image",
    "default_recipe",
    "default_recipe_path",
    "load_recipe",
    "parse_recipe",
    "read_image",
]
